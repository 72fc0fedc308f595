"""A real node (as `edged run`) plus a source of door events, for outage and crash tests.

Prints `ready` once the node runs, then `durable I WHEN` for each event I once the outbox
has it on disk (`WHEN`: `time.monotonic()` then, a clock the test shares) — what the test
may then demand from the broker, whatever happens next (after a power cut: what was said
before the cut began, `tests.edged.outbox.test_power_cut` says why).
With `--taps`, the events are taps (`events/tap`, card_ref ending in I) and `acted I` is
printed as soon as `publish` returns: the instant the access service moves the relay.
"""

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from edged.config import load_config
from edged.node import Node
from edged.outbox import PutResult
from edged.payloads import DoorEvent, TapEvent
from edged.topics import DOOR, TAP


def tap_event(i: int) -> TapEvent:
    return TapEvent(
        card_ref=f"{i:032x}",
        reader="front",
        decision="granted",
        reason="ok",
        action="board",
        profile="resident",
        fare_cents=150,
        lists_version=1,
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", type=Path)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--taps", action="store_true")
    args = ap.parse_args()
    node = Node(load_config(args.config), base_dir=args.config.parent)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = asyncio.create_task(node.run(stop))
    await node.ready.wait()
    print("ready", flush=True)

    def report(i: int) -> "callable[[asyncio.Future[PutResult]], None]":  # type: ignore[valid-type]
        def done(f: "asyncio.Future[PutResult]") -> None:
            if not f.exception() and f.result() is PutResult.STORED:
                sys.stdout.write(f"durable {i} {time.monotonic()}\n")
                sys.stdout.flush()

        return done

    for i in range(args.count):
        if args.taps:
            node.host.publish(TAP, tap_event(i)).add_done_callback(report(i))
            sys.stdout.write(f"acted {i}\n")
            sys.stdout.flush()
        else:
            node.host.publish(DOOR, DoorEvent(door=f"e{i}", open=True)).add_done_callback(report(i))
        if args.interval:
            await asyncio.sleep(args.interval)
        elif i % args.chunk == 0:
            await asyncio.sleep(0)
    print("sent", flush=True)
    await runner


if __name__ == "__main__":
    asyncio.run(main())

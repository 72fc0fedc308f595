"""The real outbox in a process of its own, busy, for power-cut and kill tests.

Writes a mix (a panic alarm every 20 messages, door events, positions) with the writer
task as the node runs it, and plays an uplink that acknowledges what it reads after a few
milliseconds (PUBACKs in flight, acknowledged rows deleted at the next commit). Prints
`durable STREAM SEQ WHEN` when a put is reported stored (`WHEN`: `time.monotonic()` once it
was, a clock the test shares), `refused STREAM SEQ` when the hard cap refused it, and
`acked STREAM SEQ` before a message is acknowledged: the test demands from the outbox on
disk every message reported durable before the cut that was not acknowledged, whatever
happens to this process.

    python -m tests.helpers.outbox_child OUTBOX_PATH [--max-rows N] [--wal-bytes B]
        [--in-flight-ms MS] [--gather offline|online]

A slow uplink (`--in-flight-ms 50`) with small caps (`--max-rows 300`) keeps the outbox at
its caps: samples thinned, events refused, alarms in their reserve. `--gather` makes runs of
positions alone between the mix, which gather for one commit (SD wear): `offline` as with
the link down (`set_linked(False)`: the uplink still acknowledges, as PUBACKs of a session
that just ended do), `online` for their share of `batch_s` (`sample_gather_s`).
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.errors import OutboxFullError
from edged.outbox import Outbox, Publication, PutResult
from tests.edged.outbox.test_store import TOPICS, alarm, door, position


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def stream_seq(payload: bytes, topic: str) -> str:
    return f"{topic.removeprefix(TOPICS.base + '/')} {json.loads(payload)['seq']}"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", type=Path)
    ap.add_argument("--max-rows", type=int, default=200_000)
    ap.add_argument("--wal-bytes", type=int, default=64 * 1024)
    ap.add_argument("--in-flight-ms", type=float, default=3.0)
    ap.add_argument("--gather", choices=["offline", "online"])
    args = ap.parse_args()
    config = OutboxConfig(
        path=args.path,
        flush_interval_ms=5,
        max_rows=args.max_rows,
        hard_max_rows=args.max_rows * 2,
        alarm_reserve_rows=100_000,
        wal_max_bytes=args.wal_bytes,
    )
    box = Outbox(config, Clock())
    await box.open()
    if args.gather == "offline":
        box.set_linked(False)
    elif args.gather == "online":
        box.sample_gather_s = 0.05
    writer = asyncio.create_task(box.run_writer())
    say("ready")

    async def uplink() -> None:
        box.begin_session()
        while True:
            batch = await box.next_batch(50)
            await asyncio.sleep(args.in_flight_ms / 1000)  # in flight
            for m in batch:
                say(f"acked {stream_seq(m.payload, m.topic)}")
                box.ack(m)

    reader = asyncio.create_task(uplink())

    def report(pub: Publication) -> "asyncio.Future[PutResult]":
        future = box.put_nowait(pub)

        def done(f: "asyncio.Future[PutResult]") -> None:
            seq = seqs.pop(id(f))
            if f.cancelled():
                return
            if f.exception() is None and f.result() is PutResult.STORED:
                say(f"durable {pub.stream} {seq} {time.monotonic()}")
            elif isinstance(f.exception(), OutboxFullError):
                say(f"refused {pub.stream} {seq}")

        seqs[id(future)] = box._seqs[pub.stream]
        future.add_done_callback(done)
        return future

    seqs: dict[int, int] = {}
    i = 0
    while True:
        i += 1
        if args.gather and i % 40 < 20:  # positions alone for a while: they gather
            report(position(i))
            await asyncio.sleep(0.002)
            continue
        report(alarm() if i % 20 == 0 else door(i) if i % 2 else position(i))
        if i % 10 == 0:
            await asyncio.sleep(0.001)
    await asyncio.gather(writer, reader)


if __name__ == "__main__":
    asyncio.run(main())

"""A hundred phones on the captive portal while riders tap their cards.

    python -m bench.portal --json            # 100 phones, 300 taps per run (about 1.5 min)
    python -m bench.portal --phones 20 --taps 40 --presentations 5 --json   # smoke test

The node is bench.tap's (a real `Node` in this process: nfc.sim and a PN532 on its
emulator, mock GPIO, a private Mosquitto), with the kiosk on and the hotspot's portal
(`edged.services.wifi.WifiService`, as the daemon builds it) listening on 127.0.0.1. The tap
benchmark runs three times in the same process: without phones, with the phones, and
without again (the two runs without phones give the noise of this machine).

The phones are another process (as phones are other devices; on this machine they share
its cores, so this is a harsher test than a bus): each phone has an address of its own
(127.0.1.N), keeps the page's live stream open (/api/events) as kiosk.js does, and polls
/api/state and /api/portal in turn every `--poll-s`. Meanwhile dispatch's announcement
changes every second (`kiosk.message`), so every phone gets a live push each second.

Printed as JSON:

- `tap_p99_ms`: card on nfc.sim to relay, p99, with the phones; `tap_p99_ms_without_phones`
  before and `tap_p99_ms_without_phones_after` after them (their spread is the noise);
  the same for `puback_p99_ms` (tap to PUBACK);
- `portal_p50_ms`, `portal_p99_ms`: a phone's poll, request to full answer, as the phone
  saw it; `portal_requests`, `portal_failed`;
- `live_p99_ms`: an announcement from the moment dispatch's command was handled to its
  arrival on a phone's live stream; `live_updates` received in all;
- `phones`, `phones_streaming` (live streams the portal kept open), the node's portal
  counters, the load of the machine.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from bench import tap
from bench.common import percentile, rnd, say

PORTAL_KIOSK = """[services.kiosk]
enabled = true
port = 0
buttons = ["mediator", "service"]
"""
STATE_WAIT_S = 10.0


# -- the phones (a child process) ----------------------------------------------------------------


async def one_phone(
    n: int, port: int, poll_s: float, until: float, polls: list[float], lives: list[float],
    failed: list[int],
) -> None:  # fmt: skip
    import aiohttp

    ip = f"127.0.1.{n}"
    heard: set[str] = set()
    headers = {"Host": "10.42.0.1"}
    connector = aiohttp.TCPConnector(local_addr=(ip, 0), limit=2)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_read=30)
    ) as s:

        async def stream() -> None:
            while time.time() < until:
                try:
                    async with s.get(f"http://127.0.0.1:{port}/api/events", headers=headers) as r:
                        async for raw in r.content:
                            line = raw.decode(errors="replace")
                            if line.startswith("data:") and '"bench-t=' in line:
                                data = json.loads(line[5:])
                                for m in data.get("messages", []):
                                    text = m.get("text", "")
                                    if text.startswith("bench-t=") and text not in heard:
                                        heard.add(text)  # a later push repeats it: not news
                                        lives.append(time.time() - float(text[8:]))
                            if time.time() >= until:
                                return
                except (aiohttp.ClientError, TimeoutError):
                    failed[0] += 1
                    await asyncio.sleep(1)

        async def poll() -> None:
            await asyncio.sleep(random.uniform(0, poll_s))
            paths = ("/api/state", "/api/portal")
            i = 0
            while time.time() < until:
                t = time.monotonic()
                try:
                    async with s.get(
                        f"http://127.0.0.1:{port}{paths[i % 2]}", headers=headers
                    ) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    polls.append(time.monotonic() - t)
                else:
                    failed[0] += 1
                i += 1
                await asyncio.sleep(poll_s)

        await asyncio.gather(stream(), poll())


async def phones_main(
    count: int, port: int, poll_s: float, seconds: float, seen: dict[str, Any]
) -> None:
    """`seen` fills as the phones go: "polls" and "lives" (seconds), "failed" ([count])."""
    until = time.time() + seconds
    await asyncio.gather(
        *(
            one_phone(n, port, poll_s, until, seen["polls"], seen["lives"], seen["failed"])
            for n in range(1, count + 1)
        )
    )


# -- the node's side -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def portal_on(
    node: Any, phones: int, poll_s: float, quiet: bool
) -> AsyncIterator[dict[str, Any]]:
    """The hotspot's portal on the running node; with `phones`, the phones' process and
    dispatch's announcements every second, stopped (and read) on exit."""
    from edged.config import parse_config
    from edged.services.wifi import WifiService

    wifi = parse_config(
        """
[node]
fleet = "bench"
id = "portal"
profile = "shuttle"
[wifi]
enabled = true
ssid = "bench"
country = "FR"
interface = "hs0"
max_clients = 128
"""
    ).wifi
    kiosk = node.services["kiosk"]
    service = WifiService(node.host, wifi, kiosk, kiosk.config, address="127.0.0.1")
    node.services["wifi"] = service  # in the node's health, as the daemon's hotspot is
    task = asyncio.create_task(service.portal.run(), name="bench.portal")
    result: dict[str, Any] = {}
    child = None
    announcer = None
    try:
        await asyncio.wait_for(service.portal.listening.wait(), 5)
        port = service.portal.port
        if phones:
            say(quiet, f"{phones} phones on the portal at 127.0.0.1:{port}")
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.portal", "--phones-child", str(phones),
                "--port", str(port), "--poll-s", str(poll_s), "--seconds", "3600",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip

            async def announce() -> None:
                n = 0
                while True:
                    await asyncio.sleep(1.0)
                    n += 1
                    await kiosk.command_message(
                        {"id": "bench", "text": f"bench-t={time.time():.6f}", "lang": "fr"}
                    )

            await asyncio.sleep(3.0)  # the phones connect first
            result["phones_streaming"] = sum(service.portal.limits.streams.values())
            announcer = asyncio.create_task(announce())
        yield result
    finally:
        if announcer is not None:
            announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcer
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(2)  # SIGINT: the child prints what it measured
            out, _ = await asyncio.wait_for(child.communicate(), 30)
            with contextlib.suppress(ValueError):
                result |= json.loads(out.decode().strip().splitlines()[-1])
        result["counters"] = {
            k: v for k, v in node.counters.snapshot().items() if k.startswith("portal.")
        }
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the three runs ------------------------------------------------------------------------------


def run_once(args: argparse.Namespace, phones: int) -> dict[str, Any]:
    """One bench.tap run (its own options, defaults but the counts) with the portal on."""
    tap_args = tap._parser().parse_args(
        ["--taps", str(args.taps), "--presentations", str(args.presentations), "--baseline-n", "5"]
    )

    def around(node: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        return portal_on(node, phones, args.poll_s, args.json)

    return asyncio.run(tap.run_node(tap_args, args.json, extra=PORTAL_KIOSK, around=around))


def summary(args: argparse.Namespace, runs: list[dict[str, Any]], load: float) -> dict[str, Any]:
    before, loaded, after = runs
    phones = loaded["around"]
    polls = [x * 1000 for x in phones.get("polls", [])]
    lives = [x * 1000 for x in phones.get("lives", [])]

    def p99(run: dict[str, Any], key: str) -> float | None:
        return rnd(percentile(run[key], 99), 3)

    return {
        "tap_p99_ms": p99(loaded, "decision"),
        "tap_p99_ms_without_phones": p99(before, "decision"),
        "tap_p99_ms_without_phones_after": p99(after, "decision"),
        "tap_p50_ms": rnd(percentile(loaded["decision"], 50), 3),
        "tap_p50_ms_without_phones": rnd(percentile(before["decision"], 50), 3),
        "puback_p99_ms": p99(loaded, "puback"),
        "puback_p99_ms_without_phones": p99(before, "puback"),
        "puback_p99_ms_without_phones_after": p99(after, "puback"),
        "pn532_p99_ms": p99(loaded, "pn532"),
        "pn532_p99_ms_without_phones": p99(before, "pn532"),
        "portal_p50_ms": rnd(percentile(polls, 50), 2),
        "portal_p99_ms": rnd(percentile(polls, 99), 2),
        "portal_requests": len(polls),
        "portal_failed": phones.get("failed"),
        "live_p50_ms": rnd(percentile(lives, 50), 2),
        "live_p99_ms": rnd(percentile(lives, 99), 2),
        "live_updates": len(lives),
        "phones": args.phones,
        "phones_streaming": phones.get("phones_streaming"),
        "poll_s": args.poll_s,
        "taps": len(loaded["decision"]),
        "missed": sum(r["decision_missed"] + r["pn532_missed"] for r in runs),
        "portal_counters": phones.get("counters"),
        "cores": os.cpu_count(),
        "loadavg_1m_before": round(load, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.portal", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--phones", type=int, default=100)
    ap.add_argument("--poll-s", type=float, default=2.0, help="each phone polls this often")
    ap.add_argument("--taps", type=int, default=300)
    ap.add_argument("--presentations", type=int, default=30)
    ap.add_argument("--phones-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=3600, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phones_child:
        return phones_child(args)
    if not 1 <= args.phones <= 250:
        print("--phones: 1 to 250 (one address each, 127.0.1.1 on)", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    load = os.getloadavg()[0]
    runs = []
    for phones in (0, args.phones, 0):
        say(args.json, f"tap run with {phones} phones")
        runs.append(run_once(args, phones))
    result = summary(args, runs, load)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def phones_child(args: argparse.Namespace) -> int:
    """The phones' process: runs until SIGINT, then prints what the phones measured."""
    import signal

    seen: dict[str, Any] = {"polls": [], "lives": [], "failed": [0]}
    loop = asyncio.new_event_loop()
    main_task = loop.create_task(
        phones_main(args.phones_child, args.port, args.poll_s, args.seconds, seen)
    )
    loop.add_signal_handler(signal.SIGINT, main_task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(main_task)
    print(json.dumps({"polls": seen["polls"], "lives": seen["lives"], "failed": seen["failed"][0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

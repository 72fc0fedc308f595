"""`python -m bench.kiosk_flood`: a kiosk visitor floods the node while its broker restarts.

A real `edged run` (from this tree, or `--tree DIR`: an older checkout, to compare) with the
kiosk on, under the descriptor limit systemd gives it (`LimitNOFILE` of
systemd/edged.service by default, `--nofile SOFT:HARD` to choose). The baseline, in the same
run: the broker restarts with nobody at the kiosk, and the time until the node's next
`online` is measured. Then `hil.kioskflood` holds live streams, half-sent requests and more
idle connections than the node has descriptors, from 16 loopback addresses, while a screen
(127.0.0.1) polls its state; the broker restarts again mid-flood. Printed as JSON: both
reconnect times, the daemon's descriptors (quiet and peak), what its log grew by, and what
the kiosk did to each kind of connection.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from hil.broker import Mosquitto, free_port
from hil.dispatch import Collector
from hil.kioskflood import flood, unit_nofile
from hil.proc import proc_fds

ROOT = Path(__file__).resolve().parents[1]
BASE = "rnst/v1/bench/kiosk-1"
VISITORS = [f"127.0.0.{i}" for i in range(2, 18)]


def node_config(workdir: Path, broker_port: int, kiosk_port: int, kiosk_extra: str) -> Path:
    path = workdir / "edged.toml"
    path.write_text(
        f"""
[node]
fleet = "bench"
id = "kiosk-1"
profile = "shuttle"

[broker]
host = "127.0.0.1"
port = {broker_port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[outbox]
path = "{workdir / "outbox.sqlite"}"

[services.kiosk]
enabled = true
port = {kiosk_port}
{kiosk_extra}
"""
    )
    return path


async def _online_again(c: Collector, after: int, timeout: float) -> float:
    t0 = time.monotonic()
    await c.wait_for(
        lambda: any(m.payload.get("state") == "online" for m in c.on("state")[after:]),
        timeout,
        "the node back online",
    )
    return time.monotonic() - t0


async def _restart(broker: Mosquitto, c: Collector, timeout: float) -> float | None:
    before = len(c.on("state"))
    broker.stop()
    broker.start()
    try:
        return round(await _online_again(c, before, timeout), 2)
    except TimeoutError:
        return None  # not back within the timeout


async def measure(
    workdir: Path,
    *,
    tree: Path = ROOT,
    nofile: tuple[int, int] | None = None,
    streams: int = 8,
    half: int = 300,
    idle: int | None = None,
    hold_s: float = 30.0,
    restart_after_s: float = 10.0,
    kiosk_extra: str = "",
) -> dict[str, Any]:
    """Run the whole measurement; `idle` defaults to the soft limit + 100."""
    soft, hard = nofile or (unit_nofile(), unit_nofile())
    broker = Mosquitto(workdir).start()
    kiosk_port = free_port()
    config = node_config(workdir, broker.port, kiosk_port, kiosk_extra)
    log = workdir / "edged.log"

    def limit() -> None:  # as systemd's LimitNOFILE does
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edged", "run", "-c", str(config),
            cwd=tree, env=env, stdout=out, stderr=out, preexec_fn=limit,
        )  # fmt: skip
    result: dict[str, Any] = {"tree": str(tree), "nofile": [soft, hard]}
    try:
        async with Collector(broker.port, topic=f"{BASE}/state", client_id="bench") as c:
            await _online_again(c, 0, 20)
            result["reconnect_s_quiet"] = await _restart(broker, c, 20)
            fds_quiet = proc_fds(proc.pid) or 0
            log_lines, log_bytes = len(log.read_bytes().splitlines()), log.stat().st_size
            attack = asyncio.create_task(
                flood(
                    f"http://127.0.0.1:{kiosk_port}/",
                    streams=streams,
                    half=half,
                    idle=soft + 100 if idle is None else idle,
                    hold_s=hold_s,
                    sources=VISITORS,
                )
            )
            peak = fds_quiet
            t0 = time.monotonic()
            while time.monotonic() - t0 < restart_after_s:
                peak = max(peak, proc_fds(proc.pid) or 0)
                await asyncio.sleep(0.1)
            reconnect = asyncio.create_task(_restart(broker, c, hold_s))
            while not attack.done():
                peak = max(peak, proc_fds(proc.pid) or 0)
                await asyncio.sleep(0.1)
            report = await attack
            result["reconnect_s_flooded"] = await reconnect
        result |= {
            "daemon_alive": proc.returncode is None,
            "daemon_fds_quiet": fds_quiet,
            "daemon_fds_peak": peak,
            "log_lines_during_flood": len(log.read_bytes().splitlines()) - log_lines,
            "log_bytes_during_flood": log.stat().st_size - log_bytes,
            "flood": report.as_dict(),
        }
        return result
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.kiosk_flood", description=__doc__)
    ap.add_argument("--tree", type=Path, default=ROOT, help="run edged from this checkout")
    ap.add_argument("--nofile", default="", help="SOFT:HARD (default: the unit's LimitNOFILE)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds the flood is held")
    ap.add_argument("--quick", action="store_true", help="a 12 s flood (smoke test)")
    args = ap.parse_args(argv)
    nofile = tuple(int(x) for x in args.nofile.split(":")) if args.nofile else None
    hold = 12.0 if args.quick else args.hold
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-kiosk-") as tmp:
        result = asyncio.run(
            measure(
                Path(tmp),
                tree=args.tree.resolve(),
                nofile=nofile,  # type: ignore[arg-type]
                hold_s=hold,
                restart_after_s=min(10.0, hold / 3),
            )
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

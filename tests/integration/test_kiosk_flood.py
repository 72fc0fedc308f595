"""The kiosk as a way to starve the node (#12.7): the daemon runs under the unit's
LimitNOFILE, a visitor floods its kiosk (held live streams, half-sent requests, more idle
connections than the node has descriptors), and the broker restarts in the middle: the
uplink must reconnect, the screen must still get its state, and the log must stay small.
Prints what it measured as JSON."""

import asyncio
import json
import re
import resource
import sys
import time
from pathlib import Path

from edged.config.services import KioskConfig
from hil.dispatch import Collector
from hil.kioskflood import flood
from hil.proc import proc_fds
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.nodes import ROOT, write_config

UNIT = ROOT / "systemd" / "edged.service"
BASE = "rnst/v1/test/shuttle-07"
VISITORS = [f"127.0.0.{i}" for i in range(2, 18)]  # 16 phones on the hotspot


def unit_nofile() -> int:
    match = re.search(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.M)
    assert match, "systemd/edged.service sets no LimitNOFILE"
    return int(match.group(1))


async def online_again(c: Collector, after: int, timeout: float) -> float:
    """Seconds until a new `online` birth arrives after index `after`."""
    t0 = time.monotonic()
    await c.wait_for(
        lambda: any(m.payload.get("state") == "online" for m in c.on("state")[after:]),
        timeout,
        "the node back online",
    )
    return time.monotonic() - t0


async def screen_opens_its_page(port: int) -> bytes:
    """The screen (127.0.0.1) opens its live stream: the status line it gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def test_the_uplink_reconnects_while_the_kiosk_is_flooded(tmp_path: Path) -> None:
    limit = unit_nofile()
    broker = Mosquitto(tmp_path).start()
    kiosk_port = free_port()
    config = write_config(
        tmp_path,
        broker.port,
        gps=False,
        kiosk=True,
        extra=f"port = {kiosk_port}\nheader_timeout_s = 3\n",  # into [services.kiosk]
    )
    log = tmp_path / "edged.log"

    def as_systemd_starts_it() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edged", "run", "-c", str(config),
            cwd=ROOT, stdout=out, stderr=out, preexec_fn=as_systemd_starts_it,
        )  # fmt: skip
    measured: dict[str, object] = {"LimitNOFILE": limit}
    try:
        async with Collector(broker.port, topic=f"{BASE}/state", client_id="watch") as c:
            await online_again(c, 0, 15)
            # the same-run baseline: a broker restart with nobody at the kiosk
            before = len(c.on("state"))
            broker.stop()
            broker.start()
            measured["reconnect_s_quiet"] = round(await online_again(c, before, 20), 2)
            fds_quiet = proc_fds(proc.pid) or 0
            lines_before = len(log.read_text(errors="replace").splitlines())

            hold_s = 14.0
            attack = asyncio.create_task(
                flood(
                    f"http://127.0.0.1:{kiosk_port}/",
                    streams=8,
                    half=300,
                    idle=limit + 100,  # more than the node has descriptors
                    hold_s=hold_s,
                    sources=VISITORS,
                )
            )
            peak = fds_quiet
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:  # the flood is on
                peak = max(peak, proc_fds(proc.pid) or 0)
                await asyncio.sleep(0.1)
            screen_stream = await screen_opens_its_page(kiosk_port)
            before = len(c.on("state"))
            broker.stop()
            broker.start()
            reconnect = asyncio.create_task(online_again(c, before, hold_s))
            while not attack.done():
                peak = max(peak, proc_fds(proc.pid) or 0)
                await asyncio.sleep(0.1)
            report = await attack
            measured["reconnect_s_flooded"] = round(await reconnect, 2)
        lines = log.read_text(errors="replace").splitlines()
        measured |= {
            "daemon_fds_quiet": fds_quiet,
            "daemon_fds_peak": peak,
            "log_lines_during_flood": len(lines) - lines_before,
            "flood": report.as_dict(),
        }
        print(json.dumps(measured))
        assert proc.returncode is None, "the daemon died under the flood"
        assert peak < limit - 200, f"the kiosk took the node's descriptors: {measured}"
        assert report.page_ok > 0 and report.page_failed == 0, f"the screen lost: {measured}"
        kiosk = KioskConfig()
        visitors_share = kiosk.max_clients - kiosk.max_streams_per_peer
        assert report.streams.answered == visitors_share, "visitors' streams: not their share"
        assert screen_stream.startswith(b"HTTP/1.1 200"), f"the screen's page: {screen_stream!r}"
        assert report.half.closed == report.half.opened > 0, "half-sent requests held on"
        assert max(report.half.closed_after_s) < 3 + 2, "half-sent requests outlived the timeout"
        assert len(lines) - lines_before < 100, f"the log grew by {len(lines) - lines_before}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        broker.stop()

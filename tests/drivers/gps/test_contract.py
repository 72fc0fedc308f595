"""The contract every GPS backend keeps, run on each one the registry lists: gps.sim,
gps.nmea-serial on the pty emulator, gps.gpsd on Debian's gpsd fed by gpsfake (skipped when
gpsfake is missing).

Built from the registry as the node builds it, in the real DriverContext on a real Bus,
under a real Supervisor: the driver becomes ready, emits Fix events whose valid ones are in
range with a UTC fix_time and a non-negative speed, and survives garbage on its wire.
"""

import asyncio
import contextlib
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.events import Fix
from drivers.registry import backends
from edged.config.models import SupervisorConfig
from edged.supervisor import Supervised
from hil.broker import free_port
from hil.gps.emulator import NmeaEmulator
from tests.helpers.drivers import Recorder, configured, wait_until

ROOT = Path(__file__).resolve().parents[3]
LOG = ROOT / "hil" / "gps" / "logs" / "ublox-m8-gn.nmea"
ROUTE = ROOT / "config" / "routes" / "creuse-shuttle.json"
FAST = SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.2, stable_after_s=30)
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
GPSFAKE = shutil.which("gpsfake")
GPSD = shutil.which("gpsd", path=f"{os.environ.get('PATH', '')}:{SBIN}")

NMEA_GARBAGE = (
    b"\x00\xff\xfe\x80 binary noise \x1b[2J\r\n"
    b"$GPRMC,081500.00,A,4552.99800,N,00210.4640"  # cut in half
    b"$GNGGA,081500.00,4552.998,N,00210.464,E,1,12,0.87,452.4,M,49.2,M,,*00\r\n"  # bad sum
    b"$GNRMC,no checksum at all\r\n" + b"$GNTXT," + b"X" * 300 + b"\r\n"
)
JSON_GARBAGE = (
    b"\nnot json at all\n\x00\xff\xfe\n[[[[[[[[\n"
    b'{"class":"TPV","mode":3,"lat":"north","lon":2,"time":"2025-06-12T08:15:00Z"}\n'
    b'{"class":"TPV","mode":3,"lat":1e999,"lon":2,"time":"2025-06-12T08:15:00Z"}\n'
)


@dataclass
class Leg:
    name: str
    options: dict[str, Any]
    garble: Callable[[], None] | None = None  # put garbage on the wire
    rec: Recorder = field(default_factory=lambda: Recorder("gps", kinds=(Fix,)))

    @property
    def fixes(self) -> list[Fix]:
        return self.rec.fixes


class GarblingProxy:
    """TCP between the driver and gpsd that can slip garbage into gpsd's stream."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.clients: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> "GarblingProxy":
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        self.clients.append(writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self.tasks.add(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    def garble(self) -> None:
        for w in self.clients:
            w.write(JSON_GARBAGE)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for w in self.clients:
            w.close()
        assert self.server is not None
        self.server.close()


@pytest.fixture(scope="module")
def gpsfake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gpsd on a free port, fed by gpsfake replaying the u-blox log in a loop.

    Looping (no -1): the module's tests share it. gpsfake never exits by itself, so it is
    stopped by PID; TMPDIR is the test's, because it leaves a socket file there.
    """
    if GPSFAKE is None or GPSD is None:
        pytest.skip("gpsfake/gpsd not installed (apt-get install gpsd gpsd-clients)")
    tmp = tmp_path_factory.mktemp("gpsfake")
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "PATH": f"{os.environ.get('PATH', '')}:{SBIN}"}
    with (tmp / "gpsfake.log").open("wb") as log:
        proc = subprocess.Popen(
            [GPSFAKE, "-q", "-c", "0.01", "-P", str(port), str(LOG)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"gpsfake did not listen: {(tmp / 'gpsfake.log').read_text()[-1000:]}"
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Leg]:
    yield Leg("gps.sim", {"route": str(ROUTE), "speed_factor": 20, "rate_hz": 20, "seed": 1})


async def nmea_serial(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Leg]:
    with NmeaEmulator(LOG, tmp_path / "gps0", speed=10) as emu:
        yield Leg("gps.nmea-serial", {"port": str(emu.link)}, lambda: emu.inject(NMEA_GARBAGE))


async def gpsd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Leg]:
    proxy = await GarblingProxy(request.getfixturevalue("gpsfake")).start()
    yield Leg("gps.gpsd", {"port": proxy.port}, proxy.garble)
    await proxy.close()


LEGS: dict[str, Callable[[pytest.FixtureRequest, Path], AsyncIterator[Leg]]] = {
    "gps.sim": sim,
    "gps.nmea-serial": nmea_serial,
    "gps.gpsd": gpsd,
}
"""How each backend is fed: its options and what puts garbage on its wire."""


def test_every_registered_gps_backend_keeps_the_contract() -> None:
    assert set(LEGS) == set(backends("gps")), "a GPS backend without a leg here is untested"


@pytest.fixture(params=backends("gps"))
async def leg(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Leg]:
    async for fed in LEGS[request.param](request, tmp_path):
        yield fed


@pytest.fixture
async def running(leg: Leg) -> AsyncIterator[Supervised]:
    """The leg's driver under a real Supervisor, from its config, as a node runs it."""
    sup = leg.rec.supervisor(FAST)
    task = asyncio.create_task(sup.run(configured("gps", leg.name, leg.options)))
    await wait_until(lambda: "gps" in sup.drivers, 1, "supervision")
    yield sup.drivers["gps"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_driver_becomes_ready_and_emits_fixes(leg: Leg, running: Supervised) -> None:
    await wait_until(lambda: running.state == "running", 5, f"{leg.name} ready")
    await wait_until(lambda: len(leg.fixes) >= 3, 5, "three fixes")
    assert running.restarts == 0


async def test_valid_fixes_are_in_range_with_utc_time_and_no_negative_speed(
    leg: Leg, running: Supervised
) -> None:
    await wait_until(lambda: sum(f.valid for f in leg.fixes) >= 5, 5, "five valid fixes")
    for fix in leg.fixes:
        assert fix.fix_time.utcoffset() == timedelta(0)
        if fix.valid:
            assert -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
            assert math.isfinite(fix.lat) and math.isfinite(fix.lon)
            assert fix.speed is None or fix.speed >= 0


async def test_driver_survives_garbage_on_its_wire(leg: Leg, running: Supervised) -> None:
    if leg.garble is None:
        pytest.skip(f"{leg.name} has no wire to put garbage on")
    await wait_until(lambda: len(leg.fixes) >= 2, 5, "fixes before the garbage")
    for _ in range(3):
        leg.garble()
        await asyncio.sleep(0.05)
    seen = len(leg.fixes)
    await wait_until(lambda: len(leg.fixes) >= seen + 3, 5, "fixes after the garbage")
    assert running.restarts == 0 and running.state == "running"
    assert sum(leg.rec.counts.values()) > 0  # what it dropped, counted as driver.gps.*

"""The contract every CAN backend keeps, run on each one the registry lists: can.bus on
python-can's virtual bus and on an slcan adapter emulated on a pty, can.replay from a log.

Built from the registry as the node builds it, in the real DriverContext on a real Bus,
under a real Supervisor: the driver becomes ready, decodes the DBC's signals with their
source address, reassembles a DM1 sent over the transport protocol, and junk frames on its
bus neither stop it nor keep it from decoding what follows.
"""

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
import pytest

from core.events import ActiveFaults, J1939Signals, TroubleCode
from drivers.can.candump import format_line
from drivers.can.j1939 import make_id
from drivers.registry import backends
from edged.supervisor import Supervised
from hil.can.fms import bam_frames
from hil.can.slcan import SlcanEmulator
from tests.helpers.drivers import Recorder, configured

CCVS1_37_5 = bytes([0xF4, 0x80, 0x25, 0x10, 0xFF, 0x50, 0xFF, 0xFF])
DM1 = bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xE1, 0x06, 0x12, 0x02])  # 110/16 + 1761/18
Frames = list[tuple[int, bytes]]


def junk(n: int = 300) -> Frames:
    rng = random.Random(3)
    return [(rng.randrange(1 << 29), rng.randbytes(rng.randrange(9))) for _ in range(n)]


@dataclass
class Wire:
    """A backend and its bus: `play(frames)` starts the driver under a supervisor and puts
    the frames on its bus, in order."""

    driver: str
    options: Callable[[Frames], dict[str, Any]]
    send: Callable[[Frames], Awaitable[None]] = field(default=lambda frames: _nothing())
    rec: Recorder = field(
        default_factory=lambda: Recorder("can", kinds=(J1939Signals, ActiveFaults))
    )
    tasks: list["asyncio.Task[None]"] = field(default_factory=list)

    async def play(self, frames: Frames) -> Supervised:
        d = configured("can", self.driver, self.options(frames))
        status, task = await self.rec.supervised(d)
        self.tasks.append(task)
        await self.send(frames)
        return status


async def _nothing() -> None:
    return None


@contextlib.asynccontextmanager
async def virtual(tmp_path: Path) -> AsyncIterator[Wire]:
    channel = f"contract-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel)

    async def send(frames: Frames) -> None:
        for can_id, data in frames:
            sender.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=True))

    try:
        yield Wire(
            "can.bus",
            lambda _: {"interface": "virtual", "channel": channel, "min_interval_s": 0},
            send,
        )
    finally:
        sender.shutdown()


@contextlib.asynccontextmanager
async def slcan(tmp_path: Path) -> AsyncIterator[Wire]:
    emulator = SlcanEmulator(link=tmp_path / "ttyACM-can").start()

    async def send(frames: Frames) -> None:
        assert await asyncio.to_thread(emulator.wait_open), "the driver never opened the channel"
        emulator.inject(frames)

    options = {
        "interface": "slcan",
        "channel": emulator.path,
        "bitrate": 250_000,
        "min_interval_s": 0,
        "bus_options": {"sleep_after_open": 0},
    }
    try:
        yield Wire("can.bus", lambda _: options, send)
    finally:
        emulator.stop()


@contextlib.asynccontextmanager
async def replay(tmp_path: Path) -> AsyncIterator[Wire]:
    def options(frames: Frames) -> dict[str, Any]:
        log = tmp_path / "bus.log"
        lines = [format_line(i * 0.001, "can0", c, d) for i, (c, d) in enumerate(frames)]
        log.write_text("\n".join(lines) + "\n")
        return {"log": str(log), "speed": 100, "min_interval_s": 0}

    yield Wire("can.replay", options)


WIRES: dict[str, list[Callable[[Path], contextlib.AbstractAsyncContextManager[Wire]]]] = {
    "can.bus": [virtual, slcan],
    "can.replay": [replay],
}
"""Each backend's buses: what puts frames where its driver reads them."""


def test_every_registered_can_backend_keeps_the_contract() -> None:
    assert set(WIRES) == set(backends("can")), "a CAN backend without a wire here is untested"


@pytest.fixture(
    params=[(name, make) for name in backends("can") for make in WIRES[name]],
    ids=lambda p: f"{p[0]}-{p[1].__name__}",
)
async def wire(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Wire]:
    async with request.param[1](tmp_path) as w:
        yield w
        for task in w.tasks:
            task.cancel()
        await asyncio.gather(*w.tasks, return_exceptions=True)


async def test_signals_are_decoded_with_their_source(wire: Wire) -> None:
    status = await wire.play([(make_id(65265, 0x17), CCVS1_37_5)])
    await wire.rec.wait_for(lambda: bool(wire.rec.signals("CCVS1")), "CCVS1")
    (event,) = wire.rec.signals("CCVS1")
    assert (event.pgn, event.source) == (65265, 0x17)
    assert event.signals["WheelBasedVehicleSpeed"] == 37.5
    assert status.restarts == 0


async def test_a_dm1_over_the_transport_protocol_is_one_set_of_faults(wire: Wire) -> None:
    await wire.play(bam_frames(65226, 0x00, DM1))
    await wire.rec.wait_for(lambda: bool(wire.rec.faults()), "the DM1")
    (faults,) = wire.rec.faults()
    assert faults.source == 0x00
    assert faults.codes == (TroubleCode(110, 16, 1), TroubleCode(1761, 18, 2))


async def test_junk_frames_neither_stop_the_driver_nor_hide_what_follows(wire: Wire) -> None:
    status = await wire.play([*junk(), (make_id(65265, 0x00), CCVS1_37_5)])
    await wire.rec.wait_for(
        lambda: any(e.source == 0 for e in wire.rec.signals("CCVS1")), "the CCVS1 after the junk"
    )
    assert status.restarts == 0 and status.state == "running"

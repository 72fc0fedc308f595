"""The receive thread reads python-can buses without BusABC.recv's per-frame log call, and
keeps what that call stood beside: the software filters."""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

import can
import pytest
from can.interfaces.virtual import VirtualBus

from drivers.can.decoder import SHIPPED_DBC, Decoders
from drivers.can.pipeline import Pipeline
from drivers.can.receiver import Receiver
from tests.drivers.can.support import frame
from tests.helpers.drivers import Recorder

CCVS1, DD, EEC1 = 65265, 65276, 61444


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def can_logging_on() -> Iterator[Records]:
    """python-can's logger at its most verbose, as a user debugging the bus would set it."""
    logger = logging.getLogger("can")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(1)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def receive(bus: can.BusABC, channel: str, frames: list[can.Message], want: str) -> Recorder:
    sender = can.Bus(interface="virtual", channel=channel)
    ctx = Recorder("can")
    receiver = Receiver(Pipeline(Decoders(SHIPPED_DBC), min_interval_s=0))
    task = asyncio.create_task(receiver.run(bus, ctx.ctx))
    try:
        for msg in frames:
            sender.send(msg)
        await ctx.wait_for(lambda: bool(ctx.signals(want)), want)
    finally:
        receiver.stop()
        await task
        sender.shutdown()
    return ctx


@pytest.fixture
def channel() -> str:
    return f"test-{uuid.uuid4().hex}"


async def test_frames_are_read_without_python_cans_per_frame_log_call(channel: str) -> None:
    bus = VirtualBus(channel=channel)
    try:
        with can_logging_on() as logged:
            frames = [frame(CCVS1, bytes(8), source=i) for i in range(20)]
            await receive(bus, channel, [*frames, frame(DD, bytes(8))], "DD")
    finally:
        bus.shutdown()
    assert not [r for r in logged.records if r.getMessage().startswith("Received")]


async def test_software_filters_still_keep_other_frames_out(channel: str) -> None:
    bus = VirtualBus(
        channel=channel, can_filters=[{"can_id": DD << 8, "can_mask": 0x3FFFF00, "extended": True}]
    )
    try:
        ctx = await receive(
            bus, channel, [frame(CCVS1, bytes(8)), frame(EEC1, bytes(8)), frame(DD, bytes(8))], "DD"
        )
    finally:
        bus.shutdown()
    assert [e.name for e in ctx.signals()] == ["DD"]
    assert ctx.counts["frames"] == 1

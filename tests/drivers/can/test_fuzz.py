"""No frame content can crash the pipeline: arbitrary identifiers, lengths, flags and bytes."""

import asyncio
import math

import can
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import ActiveFaults, J1939Signals
from drivers.can.decoder import SHIPPED_DBC, Decoders
from drivers.can.j1939 import make_id
from drivers.can.pipeline import Pipeline
from drivers.can.receiver import Receiver
from tests.helpers.drivers import Recorder

DECODERS = Decoders(SHIPPED_DBC)
INTERESTING = [65265, 65217, 65257, 65276, 61444, 65253, 65102, 64933, 65226, 60416, 60160]


def well_formed(event: object) -> bool:
    if event is None:
        return True
    if isinstance(event, J1939Signals):
        return all(v is None or math.isfinite(v) for v in event.signals.values())
    return isinstance(event, ActiveFaults) and all(0 <= c.spn < 1 << 19 for c in event.codes)


messages = st.builds(
    lambda arb, ext, data, err, rtr, fd: can.Message(
        arbitration_id=arb if ext else arb & 0x7FF,
        is_extended_id=ext,
        data=data,
        is_error_frame=err,
        is_remote_frame=rtr,
        is_fd=fd,
        check=False,
    ),
    st.integers(0, (1 << 29) - 1),
    st.booleans(),
    st.binary(max_size=64),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)

j1939_frames = st.builds(
    lambda pgn, source, dest, data: can.Message(
        arbitration_id=make_id(pgn, source, destination=dest),
        is_extended_id=True,
        data=data,
        check=False,
    ),
    st.sampled_from(INTERESTING),
    st.integers(0, 255),
    st.sampled_from([0xFF, 0x00, 0x21]),
    st.binary(max_size=12),
)


@settings(max_examples=400)
@given(msg=messages, now=st.floats(0, 1e6))
def test_any_frame_is_handled_without_raising(msg: can.Message, now: float) -> None:
    pipeline = Pipeline(DECODERS, min_interval_s=0.1)
    assert well_formed(pipeline.process(msg, now))
    assert all(well_formed(e) for e in pipeline.tick(now + 1))


@settings(max_examples=150)
@given(
    frames=st.lists(st.tuples(j1939_frames, st.floats(0, 0.5)), max_size=60),
    interval=st.sampled_from([0.0, 0.1]),
)
def test_any_sequence_of_j1939_frames_is_handled_without_raising(
    frames: list[tuple[can.Message, float]], interval: float
) -> None:
    pipeline = Pipeline(DECODERS, min_interval_s=interval)
    now = 0.0
    for msg, gap in frames:
        now += gap
        assert well_formed(pipeline.process(msg, now))
        assert all(well_formed(e) for e in pipeline.tick(now))


class ListBus:
    """A bus that delivers these messages, then stops the receiver reading it."""

    def __init__(self, messages: list[can.Message]) -> None:
        self.messages = list(reversed(messages))
        self.receiver: Receiver | None = None

    def recv(self, timeout: float | None = None) -> can.Message | None:
        if self.messages:
            return self.messages.pop()
        assert self.receiver is not None
        self.receiver.stop()
        return None


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(st.one_of(messages, j1939_frames), max_size=80))
def test_the_receive_loop_survives_any_frames(frames: list[can.Message]) -> None:
    async def run() -> Recorder:
        rec = Recorder("can")
        bus = ListBus(frames)
        receiver = Receiver(Pipeline(DECODERS, min_interval_s=0.1))
        bus.receiver = receiver
        await asyncio.wait_for(receiver.run(bus, rec.ctx), 5)  # type: ignore[arg-type]
        return rec

    rec = asyncio.run(run())
    assert rec.counts.get("frames", 0) == len(frames)
    assert all(well_formed(e) for e in rec.events)

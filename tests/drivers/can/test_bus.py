"""`can.bus` back to back: the same tests on python-can's virtual bus, on an slcan adapter
emulated on a pty, and on SocketCAN when EDGED_TEST_SOCKETCAN names an interface."""

import asyncio
import contextlib
import errno
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import can
import pytest
from can.interfaces.virtual import VirtualBus
from pydantic import ValidationError

from core.errors import DriverError
from core.events import TroubleCode
from drivers.can.bus import CanBusDriver, CanBusOptions, _open_hint
from drivers.can.decoder import SHIPPED_DBC
from drivers.can.j1939 import PGN_TP_DT, make_id
from drivers.can.pipeline import Pipeline
from edged.config.loader import driver_options
from hil.can.fms import bam_frames, rts_cts_frames
from hil.can.slcan import SlcanEmulator
from tests.helpers.drivers import Recorder

SOCKETCAN = os.environ.get("EDGED_TEST_SOCKETCAN")
CCVS1_37_5 = bytes([0xF4, 0x80, 0x25, 0x10, 0xFF, 0x50, 0xFF, 0xFF])
DM1_A = bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xE1, 0x06, 0x12, 0x02])  # 110/16 + 1761/18
DM1_B = bytes([0x10, 0xFF, 0x64, 0x00, 0x01, 0x01, 0xBE, 0x00, 0x02, 0x03])  # 100/1 + 190/2

Frames = list[tuple[int, bytes]]


@dataclass
class Rig:
    """A bus the driver reads, and a way to put frames on it."""

    kind: str
    options: CanBusOptions
    send: Callable[[Frames], None]
    transmitted: Callable[[], int]  # frames the driver put on the bus
    emulator: SlcanEmulator | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)


@contextlib.contextmanager
def python_can_rig(kind: str, interface: str, channel: str) -> Iterator[Rig]:
    sender = can.Bus(interface=interface, channel=channel)
    observer = can.Bus(interface=interface, channel=channel)
    sent = [0]

    def send(frames: Frames) -> None:
        for can_id, data in frames:
            sender.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=True))
            sent[0] += 1

    def transmitted() -> int:
        seen = 0
        while observer.recv(0.05) is not None:
            seen += 1
        return seen - sent[0]

    options = CanBusOptions(interface=interface, channel=channel, min_interval_s=0)
    try:
        yield Rig(kind, options, send, transmitted)
    finally:
        sender.shutdown()
        observer.shutdown()


@contextlib.contextmanager
def slcan_rig(tmp_path: Path, *, z1: bool = False) -> Iterator[Rig]:
    emulator = SlcanEmulator(link=tmp_path / "ttyACM-can", z1=z1).start()

    def send(frames: Frames) -> None:
        assert emulator.wait_open(), "the driver never opened the slcan channel"
        emulator.inject(frames)

    options = CanBusOptions(
        interface="slcan",
        channel=emulator.path,
        bitrate=250_000,
        min_interval_s=0,
        bus_options={"sleep_after_open": 0},
    )
    try:
        yield Rig("slcan", options, send, lambda: len(emulator.transmitted), emulator)
    finally:
        emulator.stop()


@pytest.fixture(params=["virtual", "slcan", "socketcan"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "virtual":
        with python_can_rig("virtual", "virtual", f"test-{uuid.uuid4().hex}") as r:
            yield r
    elif request.param == "slcan":
        with slcan_rig(tmp_path) as r:
            yield r
    else:
        if not SOCKETCAN:
            pytest.skip(
                "SocketCAN tests need a real interface: set EDGED_TEST_SOCKETCAN=can0 (or vcan0) "
                "where frames sent by one socket are seen by another; this kernel has no vcan"
            )
        with python_can_rig("socketcan", "socketcan", SOCKETCAN) as r:
            yield r


@contextlib.asynccontextmanager
async def running(options: CanBusOptions, rec: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(CanBusDriver(options).run(rec.ctx))
    try:
        await rec.wait_for(lambda: rec.is_ready or task.done(), "the driver to open the bus")
        if task.done():
            task.result()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_decodes_a_pgn_from_any_source(rig: Rig) -> None:
    rec = Recorder("can")
    async with running(rig.options, rec):
        rig.send([(make_id(65265, 0x17), CCVS1_37_5)])
        await rec.wait_for(lambda: bool(rec.signals("CCVS1")), "CCVS1")
    (event,) = rec.signals("CCVS1")
    assert event.source == 0x17 and event.signals["WheelBasedVehicleSpeed"] == 37.5


async def test_interleaved_dm1_from_two_ecus_over_bam(rig: Rig) -> None:
    rec = Recorder("can")
    a, b = bam_frames(65226, 0x00, DM1_A), bam_frames(65226, 0x3D, DM1_B)
    interleaved = [f for pair in zip(a, b, strict=True) for f in pair]
    async with running(rig.options, rec):
        rig.send(interleaved)
        await rec.wait_for(lambda: len(rec.faults()) == 2, "two DM1")
    by_source = {f.source: f.codes for f in rec.faults()}
    assert by_source == {
        0x00: (TroubleCode(110, 16, 1), TroubleCode(1761, 18, 2)),
        0x3D: (TroubleCode(100, 1, 1), TroubleCode(190, 2, 3)),
    }


async def test_dm1_between_two_other_nodes_over_rts_cts_is_read(rig: Rig) -> None:
    rec = Recorder("can")
    async with running(rig.options, rec):
        rig.send(rts_cts_frames(65226, 0x00, 0xF9, DM1_A))  # an engine answering a tool
        await rec.wait_for(lambda: len(rec.faults()) == 1, "the DM1")
    (faults,) = rec.faults()
    assert faults.source == 0x00
    assert faults.codes == (TroubleCode(110, 16, 1), TroubleCode(1761, 18, 2))


async def test_eec1_torque_mode_other_is_a_reading_and_not_available_is_none(rig: Rig) -> None:
    """SPN 899 Engine Torque Mode: 1110b is "other" (J1939-71: modes 0001b-1110b are the
    function controlling the engine), a mode like any other; only 1111b is not available.
    The generic 4-bit rule (1110b error) is overruled by the DBC's value table."""
    rec = Recorder("can")
    eec1 = make_id(61444, 0x00, priority=3)
    async with running(rig.options, rec):
        rig.send(
            [
                (eec1, bytes([0xF0 | mode, 0x7D, 0x7D, 0x20, 0x1C, 0, 0xFF, 0xFF]))
                for mode in (14, 15)
            ]
        )
        await rec.wait_for(lambda: len(rec.signals("EEC1")) == 2, "two EEC1")
    assert [e.signals["EngineTorqueMode"] for e in rec.signals("EEC1")] == [14, None]


async def test_frames_of_other_pgns_make_no_event(rig: Rig) -> None:
    rec = Recorder("can")
    async with running(rig.options, rec):
        rig.send(
            [(make_id(61442, 0x03), bytes(8))] * 50
            + [(make_id(65276, 0x17), bytes([0, 0x9C] + [0xFF] * 6))]
        )
        await rec.wait_for(lambda: bool(rec.signals("DD")), "DD")
    assert [e.name for e in rec.events] == ["DD"]
    assert rec.counts.get("frames", 0) <= 51  # fewer where the kernel filters


async def test_random_frames_do_not_stop_the_driver(rig: Rig) -> None:
    rng = random.Random(3)
    junk = [(rng.randrange(1 << 29), rng.randbytes(rng.randrange(9))) for _ in range(300)]
    rec = Recorder("can")
    async with running(rig.options, rec) as task:
        rig.send(junk)
        rig.send([(make_id(65265, 0x00), CCVS1_37_5)])
        await rec.wait_for(
            lambda: any(
                e.source == 0 and e.signals["WheelBasedVehicleSpeed"] == 37.5
                for e in rec.signals("CCVS1")
            ),
            "the CCVS1 after the junk",
        )
        assert not task.done()


async def test_the_driver_never_transmits(rig: Rig) -> None:
    rec = Recorder("can")
    async with running(rig.options, rec):
        rig.send([(make_id(65265, 0x00), CCVS1_37_5)])
        await rec.wait_for(lambda: bool(rec.events), "an event")
    assert rig.transmitted() == 0
    if rig.emulator is not None:
        assert rig.emulator.commands[:4] == ["C", "S5", "", "L"]  # listen-only at 250 kbit/s
        assert rig.emulator.bitrate == 250_000


# -- the transport protocol on the bus's time ----------------------------------------------

DM1_A_CODES = (TroubleCode(110, 16, 1), TroubleCode(1761, 18, 2))
DM1_B_CODES = (TroubleCode(100, 1, 1), TroubleCode(190, 2, 3))


def stall_after_first_packet(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[float]:
    """The receive thread stalls for `seconds` once it has processed the first packet of a
    message (as a garbage collection, an SD card stall or a loaded Pi Zero stall it), once;
    returns when it did, filled once it has."""
    original = Pipeline.routed
    stalled: list[float] = []

    def routed(self: Pipeline, msg: can.Message, pgn: int, route: Any, now: Any = None) -> Any:
        event = original(self, msg, pgn, route, now)
        if not stalled and pgn == PGN_TP_DT and msg.data[:1] == b"\x01":
            stalled.append(time.monotonic())
            time.sleep(seconds)
        return event

    monkeypatch.setattr(Pipeline, "routed", routed)
    return stalled


async def test_a_message_on_time_on_the_bus_survives_a_stalled_receive_thread(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the packets were 0 ms apart on the bus but the second is processed 1 s after the first
    # (past T1): judged on when each was on the bus, the DM1 is whole. Frames of another
    # PGN queued between them (most held back by the throttle) run the housekeeping, which
    # must not time the session out.
    stalled = stall_after_first_packet(monkeypatch, 1.0)
    cm, dt1, dt2 = bam_frames(65226, 0x00, DM1_A)
    rec = Recorder("can")
    async with running(rig.options.model_copy(update={"min_interval_s": 0.1}), rec):
        rig.send([cm, dt1, *[(make_id(65265, 0x17), CCVS1_37_5)] * 40, dt2])
        await rec.wait_for(
            lambda: bool(rec.faults() or rec.counts.get("bam_timeout")), "the DM1 or a timeout"
        )
    assert stalled
    assert [f.codes for f in rec.faults()] == [DM1_A_CODES]
    assert "bam_timeout" not in rec.counts


async def test_a_sender_quiet_on_the_bus_is_timed_out_even_while_the_receive_thread_stalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the sender waits 0.9 s (past T1) before its second packet, while the receive thread
    # is stalled: the packet is processed with no delay after the stall, but it was late
    # on the bus, and the message is dropped; the next one from that ECU is read
    stall_after_first_packet(monkeypatch, 1.2)
    cm, dt1, dt2 = bam_frames(65226, 0x00, DM1_A)
    with python_can_rig("virtual", "virtual", f"test-{uuid.uuid4().hex}") as rig:
        rec = Recorder("can")
        async with running(rig.options, rec):
            rig.send([cm, dt1])
            await asyncio.sleep(0.9)
            rig.send([dt2, *bam_frames(65226, 0x00, DM1_B)])
            await rec.wait_for(lambda: bool(rec.faults()), "the second DM1")
            await rec.wait_for(lambda: rec.counts.get("bam_timeout") == 1, "the timeout")
    assert [f.codes for f in rec.faults()] == [DM1_B_CODES]



@pytest.mark.parametrize("quiet_s", [0.1, 0.9], ids=["on-time", "sender-quiet-past-t1"])
async def test_an_slcan_adapter_set_to_z1_times_the_packets_that_waited_in_the_tty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_s: float
) -> None:
    # the thread stalls for 1.2 s after the first packet; the second leaves the adapter
    # 0.1 s (or 0.9 s: past T1) later and waits in the tty buffer, read after the stall: its
    # read says 1.2 s, the adapter's Z1 stamp what the bus saw
    stall_after_first_packet(monkeypatch, 1.2)
    cm, dt1, dt2 = bam_frames(65226, 0x00, DM1_A)
    with slcan_rig(tmp_path, z1=True) as rig:
        rec = Recorder("can")
        async with running(rig.options, rec):
            rig.send([cm, dt1])
            await asyncio.sleep(quiet_s)
            rig.send([dt2])
            await rec.wait_for(
                lambda: bool(rec.faults() or rec.counts.get("bam_timeout")), "the DM1 or a timeout"
            )
    if quiet_s < 0.75:
        assert [f.codes for f in rec.faults()] == [DM1_A_CODES] and "bam_timeout" not in rec.counts
    else:
        assert rec.faults() == [] and rec.counts["bam_timeout"] == 1


async def test_a_garbled_line_read_after_a_stall_does_not_time_out_the_packets_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the thread stalls for 1.2 s after the first packet; a line of noise and the second
    # packet (0.1 s later on the bus, by its Z1 stamp) wait in the tty and are read after
    # the stall. The noise is no sign that the queue is empty: the bus's time must not move
    # on by the stall as if the bus had gone quiet, or the session behind it is timed out
    stall_after_first_packet(monkeypatch, 1.2)
    cm, dt1, dt2 = bam_frames(65226, 0x00, DM1_A)
    with slcan_rig(tmp_path, z1=True) as rig:
        assert rig.emulator is not None
        rec = Recorder("can")
        async with running(rig.options, rec):
            rig.send([cm, dt1])
            await asyncio.sleep(0.1)
            rig.emulator.inject_raw(b"\x00noise\r")
            rig.send([dt2])
            await rec.wait_for(
                lambda: bool(rec.faults() or rec.counts.get("bam_timeout")), "the DM1 or a timeout"
            )
    assert rec.counts.get("garbled") == 1
    assert [f.codes for f in rec.faults()] == [DM1_A_CODES] and "bam_timeout" not in rec.counts


UNSTAMPED = 0.0


def _ahead(t0: float, sent: float) -> float:
    return t0 + 3600


@pytest.mark.parametrize(
    ("stamps", "quiet_s", "whole"),
    [
        # how the frames' clock stamps (cm, dt1, dt2), from the session's start t0 and the
        # time each is sent; whether the sender waits before dt2 (past T1); whether the
        # DM1 must be read
        ((None, None, lambda t0, sent: t0 - 3600), 0.0, True),
        ((None, None, lambda t0, sent: t0 + 3600), 0.0, True),
        ((lambda t0, sent: UNSTAMPED,) * 3, 0.0, True),
        ((lambda t0, sent: t0,) * 3, 1.0, False),
        ((_ahead, _ahead, None), 1.0, False),
    ],
    ids=[
        "stepped-back-an-hour",
        "stepped-forward-an-hour",
        "unstamped",
        "stuck-while-quiet",
        "an-hour-ahead-then-right-after-quiet",
    ],
)
async def test_a_frame_clock_that_jumps_or_stops_neither_drops_a_good_message_nor_holds_a_late_one(
    stamps: tuple[Callable[[float, float], float] | None, ...], quiet_s: float, whole: bool
) -> None:
    channel = f"test-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    options = CanBusOptions(interface="virtual", channel=channel, min_interval_s=0)
    frames = bam_frames(65226, 0x00, DM1_A)
    rec = Recorder("can")
    try:
        async with running(options, rec):
            t0 = time.time()
            for i, ((can_id, data), stamp) in enumerate(zip(frames, stamps, strict=True)):
                if i == 2:  # the sender pauses, or not, before its last packet
                    await asyncio.sleep(quiet_s)
                sent = time.time()
                ts = sent if stamp is None else stamp(t0, sent)
                sender.send(can.Message(timestamp=ts, arbitration_id=can_id, data=data))
            await rec.wait_for(
                lambda: bool(rec.faults() or rec.counts.get("bam_timeout")),
                "the DM1 or a timeout",
            )
            await asyncio.sleep(0.05)
    finally:
        sender.shutdown()
    assert [f.codes for f in rec.faults()] == ([DM1_A_CODES] if whole else [])
    assert rec.counts.get("bam_timeout", 0) == (0 if whole else 1)


# -- slcan adapter: what only a serial adapter does ---------------------------------------


async def test_slcan_garbled_line_is_counted_and_skipped(tmp_path: Path) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        rec = Recorder("can")
        async with running(r.options, rec):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(b"TZZZZZZZZ8FFFF\r")  # not hex
            r.emulator.inject_raw(b"T18FEF1\xff\xfe00\r")  # line noise, not even ASCII
            r.send([(make_id(65265, 0x00), CCVS1_37_5)])
            await rec.wait_for(
                lambda: bool(rec.events) and rec.counts.get("garbled", 0) == 2, "garbled count"
            )


async def test_slcan_unplugged_fails_the_run_and_replugged_reads_again(tmp_path: Path) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        rec = Recorder("can")
        task = asyncio.create_task(CanBusDriver(r.options).run(rec.ctx))
        await rec.wait_for(lambda: rec.is_ready, "ready")
        assert r.emulator.wait_open()
        r.emulator.unplug()
        with pytest.raises(DriverError, match="is it plugged in"):
            await asyncio.wait_for(task, 5)
        assert rec.counts["bus_error"] == 1
        # the supervisor runs the driver again, with backoff; the adapter is back by then
        r.emulator.plug()
        again = Recorder("can")
        async with running(r.options, again):
            r.send([(make_id(65265, 0x00), CCVS1_37_5)])
            await again.wait_for(lambda: bool(again.events), "an event after re-plugging")


async def test_slcan_adapter_missing_says_what_to_check(tmp_path: Path) -> None:
    options = CanBusOptions(
        interface="slcan", channel=str(tmp_path / "ttyACM9"), bus_options={"sleep_after_open": 0}
    )
    rec = Recorder("can")
    with pytest.raises(
        DriverError, match=r"ttyACM9.*is it plugged in\? See `ls -l /dev/serial/by-id/`"
    ):
        await CanBusDriver(options).run(rec.ctx)
    assert rec.counts == {"open_failed": 1}


# -- options and messages -----------------------------------------------------------------


def test_slcan_bitrate_must_be_one_an_adapter_has() -> None:
    with pytest.raises(ValidationError, match="an slcan adapter runs at"):
        CanBusOptions(interface="slcan", channel="/dev/ttyACM0", bitrate=300_000)


def test_unknown_interface_lists_the_known_ones() -> None:
    with pytest.raises(
        ValidationError, match=r"unknown python-can interface 'socketcann'; known: .*socketcan"
    ):
        CanBusOptions(interface="socketcann")


def test_pgn_out_of_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="262144 is not a PGN"):
        CanBusOptions(pgns=[65265, 262144])


def test_missing_socketcan_interface_says_how_to_bring_it_up() -> None:
    hint = _open_hint(CanBusOptions(channel="can0"), OSError(errno.ENODEV, "No such device"))
    assert "no CAN interface can0" in hint
    assert "MCP2515 overlay" in hint and "`ip link set can0 up type can bitrate 250000`" in hint


def test_socketcan_interface_down_says_how_to_bring_it_up() -> None:
    hint = _open_hint(CanBusOptions(channel="can1"), can.CanOperationError("down", errno.ENETDOWN))
    assert hint == "can1 is down: `ip link set can1 up type can bitrate 250000 restart-ms 100`"


@pytest.mark.skipif(bool(SOCKETCAN), reason="a SocketCAN interface is configured here")
async def test_socketcan_unavailable_is_a_driver_error_with_a_hint() -> None:
    rec = Recorder("can")
    with pytest.raises(DriverError, match=r"can0|SocketCAN"):
        await CanBusDriver(CanBusOptions(interface="socketcan", channel="can0")).run(rec.ctx)
    assert rec.counts == {"open_failed": 1}


class FilteringBus(VirtualBus):
    """A virtual bus that says it filters below Python, as SocketCAN does."""

    applied: ClassVar[list[Any]] = []

    def _apply_filters(self, filters: Any) -> None:
        FilteringBus.applied.append(filters)


async def test_acceptance_filters_are_set_where_the_interface_applies_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FilteringBus.applied = []
    channel = f"test-{uuid.uuid4().hex}"
    monkeypatch.setattr(can, "Bus", lambda **kw: FilteringBus(channel=channel))
    rec = Recorder("can")
    async with running(
        CanBusOptions(interface="virtual", channel=channel, pgns=[65265, 65226]), rec
    ):
        pass
    filters = [f for f in FilteringBus.applied if f]
    assert filters == [
        [
            {"can_id": 0xEB00 << 8, "can_mask": 0x3FF0000, "extended": True},  # TP.DT, any dest.
            {"can_id": 0xEC00 << 8, "can_mask": 0x3FF0000, "extended": True},  # TP.CM, any dest.
            {"can_id": 0xFECA << 8, "can_mask": 0x3FFFF00, "extended": True},  # DM1
            {"can_id": 0xFEF1 << 8, "can_mask": 0x3FFFF00, "extended": True},  # CCVS1
        ]
    ]


def test_broken_dbc_is_refused_when_the_config_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "fms.dbc"
    bad.write_text("BO_ nonsense\n")
    with pytest.raises(ValidationError, match="cannot read this DBC"):
        CanBusOptions(dbc=bad)


def test_dbc_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "vehicle.dbc").write_text(SHIPPED_DBC.read_text())
    options = driver_options("can.bus", {"dbc": "vehicle.dbc"}, tmp_path)
    assert options.dbc == tmp_path / "vehicle.dbc"
    assert options.decoders().path == tmp_path / "vehicle.dbc"


def test_socketcan_receive_buffer_is_enlarged() -> None:
    class SocketBus:  # what python-can's SocketcanBus exposes: its raw socket
        def __init__(self) -> None:
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    bus = SocketBus()
    driver = CanBusDriver(CanBusOptions(receive_buffer_bytes=3 << 20))
    with bus.socket:
        before = bus.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        driver.enlarge_receive_buffer(bus, logging.getLogger("test"))  # type: ignore[arg-type]
        after = bus.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert before < 3 << 20 <= after // 2


async def test_bus_off_that_lasts_fails_the_run_so_the_bus_is_reopened() -> None:
    channel = f"test-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel)
    rec = Recorder("can")
    options = CanBusOptions(interface="virtual", channel=channel, busoff_reopen_s=0.3)
    task = asyncio.create_task(CanBusDriver(options).run(rec.ctx))
    try:
        await rec.wait_for(lambda: rec.is_ready, "ready")
        sender.send(
            can.Message(
                arbitration_id=0x040, is_error_frame=True, is_extended_id=False, data=bytes(8)
            )
        )
        with pytest.raises(DriverError, match=r"bus-off and no frame for 0\.3 s.*restart-ms 100"):
            await asyncio.wait_for(task, 5)
    finally:
        sender.shutdown()
    assert rec.counts["bus_off"] == 1 and rec.counts["error_frame"] == 1


async def test_bus_off_followed_by_frames_is_only_counted() -> None:
    channel = f"test-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel)
    rec = Recorder("can")
    options = CanBusOptions(
        interface="virtual", channel=channel, busoff_reopen_s=0.5, min_interval_s=0
    )
    try:
        async with running(options, rec) as task:
            sender.send(
                can.Message(
                    arbitration_id=0x040, is_error_frame=True, is_extended_id=False, data=bytes(8)
                )
            )
            for _ in range(8):  # the kernel restarted the controller: frames flow again
                sender.send(can.Message(arbitration_id=make_id(65265, 0x00), data=CCVS1_37_5))
                await asyncio.sleep(0.1)
            assert not task.done()
            await rec.wait_for(lambda: rec.counts.get("bus_off") == 1, "bus_off count")
    finally:
        sender.shutdown()


async def test_a_door_controller_s_open_passes_a_device_flipping_other_bytes_of_its_dc2(
    rig: Rig,
) -> None:
    """The driver's throttle knows the doors in use (`use_doors`, from the config): a
    device sending DC2 under the door controller's address, "closed" with another byte
    changed in each frame, takes none of the prompt passes the controller's "open" needs.
    The interval is long, so that only a prompt pass delivers it in time."""
    options = rig.options.model_copy(update={"min_interval_s": 10.0})
    options.use_doors(["DC2.Door1OpenStatus"])
    shut = bytes([0xF3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    rec = Recorder("can")
    async with running(options, rec):
        rig.send([(make_id(64933, 0x21), shut)])
        await rec.wait_for(lambda: bool(rec.signals("DC2")), "the first DC2")
        forged = [(make_id(64933, 0x21), shut[:3] + bytes([i]) + shut[4:]) for i in range(10)]
        rig.send([*forged, (make_id(64933, 0x21), bytes([0xF7]) + shut[1:])])
        await rec.wait_for(
            lambda: any(e.signals["Door1OpenStatus"] == 1 for e in rec.signals("DC2")),
            "the door controller's open",
        )
    assert len(rec.signals("DC2")) == 2  # the first frame and the open: none forged

"""The chunked slcan reader: its filters are python-can's, applied before a frame is parsed;
line noise of every shape is counted, never guessed; nothing is lost in a burst."""

import time
import uuid
from pathlib import Path

import can
import pytest
from can.interfaces.virtual import VirtualBus
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.can.j1939 import make_id
from drivers.can.slcan import (
    MAX_LINE,
    AdapterClock,
    BufferedSlcanBus,
    compile_filters,
    passes,
)
from hil.can.slcan import SlcanEmulator
from tests.drivers.can.test_bus import CCVS1_37_5, running, slcan_rig
from tests.helpers.drivers import Recorder

DD_LEVEL = bytes([0, 0x9C] + [0xFF] * 6)

filters = st.lists(
    st.fixed_dictionaries(
        {"can_id": st.integers(0, (1 << 29) - 1), "can_mask": st.integers(0, (1 << 29) - 1)},
        optional={"extended": st.booleans()},
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    chosen=filters,
    frames=st.lists(st.tuples(st.integers(0, (1 << 29) - 1), st.booleans()), max_size=30),
)
def test_the_compiled_filters_let_through_what_python_cans_own_would(
    chosen: list[can.typechecking.CanFilter], frames: list[tuple[int, bool]]
) -> None:
    reference = VirtualBus(channel=f"t-{uuid.uuid4().hex}", can_filters=chosen)
    try:
        ext, std = compile_filters(chosen)
        for can_id, extended in frames:
            can_id &= (1 << 29) - 1 if extended else (1 << 11) - 1
            msg = can.Message(arbitration_id=can_id, is_extended_id=extended)
            assert passes(can_id, ext if extended else std) == reference._matches_filters(msg)
    finally:
        reference.shutdown()


async def test_frames_of_pgns_nobody_decodes_are_dropped_unparsed_and_counted(
    tmp_path: Path,
) -> None:
    with slcan_rig(tmp_path) as r:
        ctx = Recorder("can")
        async with running(r.options, ctx):
            r.send([(make_id(61442, 0x03), bytes(8))] * 50 + [(make_id(65276, 0x17), DD_LEVEL)])
            await ctx.wait_for(
                lambda: bool(ctx.signals("DD")) and ctx.counts.get("filtered") == 50, "DD"
            )
        assert ctx.counts["frames"] == 1


async def test_truncated_and_overlong_frames_are_garbled_not_guessed(tmp_path: Path) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(b"T18FEF1008F480\r")  # DLC 8, two data bytes
            r.emulator.inject_raw(b"T18FEF1009" + b"00" * 9 + b"\r")  # DLC 9
            r.emulator.inject_raw(b"T18FEF1008" + b"00" * 9 + b"\r")  # a byte too many
            r.emulator.inject_raw(b"T18FE\r")  # cut after the id
            r.send([(make_id(65265, 0x00), CCVS1_37_5)])
            await ctx.wait_for(
                lambda: bool(ctx.signals("CCVS1")) and ctx.counts.get("garbled") == 4,
                "the four garbled lines counted, the good frame decoded",
            )
        (event,) = ctx.signals("CCVS1")
        assert event.signals["WheelBasedVehicleSpeed"] == 37.5


async def test_an_error_reply_among_frames_loses_no_frame(tmp_path: Path) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            good = b"T%08X8%s\r" % (make_id(65265, 0x00), CCVS1_37_5.hex().upper().encode())
            r.emulator.inject_raw(b"\a" + good + b"\a")  # BELs: error replies of the adapter
            await ctx.wait_for(lambda: bool(ctx.signals("CCVS1")), "the frame between the BELs")


async def test_a_remote_frame_goes_through_python_cans_parser(tmp_path: Path) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(b"R%08X8\r" % make_id(65265, 0x00))
            r.send([(make_id(65276, 0x17), DD_LEVEL)])
            await ctx.wait_for(
                lambda: bool(ctx.signals("DD")) and ctx.counts.get("not_j1939") == 1,
                "the remote frame counted as not J1939",
            )
        assert not ctx.signals("CCVS1")


async def test_a_burst_of_frames_is_read_whole(tmp_path: Path) -> None:
    n = 5000
    with slcan_rig(tmp_path) as r:
        ctx = Recorder("can")
        burst = [(make_id(65265, i % 200), CCVS1_37_5) for i in range(n // 2)]
        burst += [(make_id(61442, i % 200), bytes(8)) for i in range(n // 2)]
        async with running(r.options, ctx):
            r.send(burst)
            await ctx.wait_for(
                lambda: ctx.counts.get("frames", 0) + ctx.counts.get("filtered", 0) >= n,
                "every frame of the burst",
                timeout=15,
            )
        assert ctx.counts["frames"] == ctx.counts["filtered"] == n // 2
        assert "garbled" not in ctx.counts


def _ccvs1_line(suffix: bytes = b"", prefix: bytes = b"") -> bytes:
    return prefix + b"T%08X8%s" % (make_id(65265, 0x00), CCVS1_37_5.hex().upper().encode()) + suffix


async def test_frames_stamped_by_an_adapter_set_to_z1_are_decoded(tmp_path: Path) -> None:
    """Lawicel `Z1` (kept in the adapter's EEPROM) adds a 4-hex-digit ms counter, 0-EA5F."""
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(_ccvs1_line(b"1A2B\r") + _ccvs1_line(b"EA5F\r"))
            await ctx.wait_for(lambda: len(ctx.signals("CCVS1")) == 2, "both stamped frames")
        assert "garbled" not in ctx.counts
        assert {e.signals["WheelBasedVehicleSpeed"] for e in ctx.signals("CCVS1")} == {37.5}


async def test_frames_stamped_in_microseconds_by_a_canable2_set_to_z2_are_decoded(
    tmp_path: Path,
) -> None:
    """CANable 2.0 / usb2canfd slcan firmware set to `Z2` (kept in its flash) ends each frame
    in 8 hex digits of microseconds: every frame was garbled, the bus read as silent."""
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(_ccvs1_line(b"0012D687\r") + _ccvs1_line(b"FFFFFFFF\r"))
            await ctx.wait_for(lambda: len(ctx.signals("CCVS1")) == 2, "both stamped frames")
        assert "garbled" not in ctx.counts


async def test_frames_of_an_adapter_ending_its_lines_cr_lf_are_all_decoded(
    tmp_path: Path,
) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(_ccvs1_line(b"\r\n") * 3)
            await ctx.wait_for(lambda: len(ctx.signals("CCVS1")) == 3, "the three frames")
        assert "garbled" not in ctx.counts


GARBLED = {
    "id over 29 bits": b"T98FEF1008F4802510FF50FFFF\r",
    "11-bit id over 0x7FF": b"t8FF8F4802510FF50FFFF\r",
    "id with a sign": b"T+8FEF1008F4802510FF50FFFF\r",
    "id with a space": b"T 8FEF1008F4802510FF50FFFF\r",
    "id with an underscore": b"T18F_F1008F4802510FF50FFFF\r",
    "a NUL before the frame": _ccvs1_line(b"\r", prefix=b"\x00"),
    "a letter no reply starts with": _ccvs1_line(b"\r", prefix=b"q"),
    "a stamp that is not hex": _ccvs1_line(b"1G2B\r"),
    "a stamp of 3 digits": _ccvs1_line(b"1A2\r"),
    "a stamp of 6 digits": _ccvs1_line(b"1A2B3C\r"),
    "a stamp of 8 digits, not hex": _ccvs1_line(b"1A2B3C4G\r"),
}


@pytest.mark.parametrize("line", GARBLED.values(), ids=GARBLED.keys())
async def test_a_corrupted_line_is_counted_garbled_not_guessed(tmp_path: Path, line: bytes) -> None:
    with slcan_rig(tmp_path) as r:
        assert r.emulator is not None
        ctx = Recorder("can")
        async with running(r.options, ctx):
            assert r.emulator.wait_open()
            r.emulator.inject_raw(line)
            r.send([(make_id(65276, 0x17), DD_LEVEL)])  # a good frame after it
            await ctx.wait_for(
                lambda: bool(ctx.signals("DD")) and ctx.counts.get("garbled") == 1,
                "the line counted garbled, the next frame decoded",
            )
        assert ctx.signals("CCVS1") == []


def test_a_stream_that_never_ends_a_line_is_garbled_once_and_not_held(tmp_path: Path) -> None:
    """Lawicel: every reply ends in CR (or is a lone BEL); the longest, a CAN FD frame with a
    Z1 stamp, is 142 bytes. A port that streams without a CR (a floating RX line, a device
    that is not an slcan adapter) must not pile up in memory until one comes."""
    with SlcanEmulator(link=tmp_path / "ttyACM-can") as emulator:
        bus = BufferedSlcanBus(emulator.path, bitrate=250_000, sleep_after_open=0)
        try:
            assert emulator.wait_open()
            for _ in range(64):  # 256 KiB, in pieces the emulated adapter's FIFO takes
                emulator.inject_raw(b"\x00" * 4096)
            garbled, quiet, held = 0, 0, 0
            while quiet < 3:
                try:
                    msg = bus.recv(0.1)
                except ValueError:
                    garbled += 1
                    continue
                assert msg is None
                quiet = quiet + 1 if not emulator._inject else 0
                held = max(held, len(bus._rest))
            assert garbled == 1
            assert held <= MAX_LINE
            emulator.inject_raw(b"\r" + _ccvs1_line(b"\r"))
            msg = bus.recv(2.0)
            assert msg is not None and bytes(msg.data) == CCVS1_37_5
        finally:
            bus.shutdown()


def _written(emulator: SlcanEmulator, lines: int) -> None:
    """Wait until the emulated adapter has written `lines` lines to the host's side."""
    deadline = time.monotonic() + 5
    while emulator.sent < lines or emulator._inject:
        assert time.monotonic() < deadline, "the emulator never wrote the lines"
        time.sleep(0.005)
    time.sleep(0.05)


def test_none_from_recv_means_nothing_waits_at_the_port(tmp_path: Path) -> None:
    """The receiver takes None for "no frame waits" (the bus's time then moves on with the
    node's): a poll (`recv(0)`), or a time-out spent before the port was looked at (the
    thread stalled), must still read what the port holds."""
    with SlcanEmulator(link=tmp_path / "ttyACM-can") as emulator:
        bus = BufferedSlcanBus(emulator.path, bitrate=250_000, sleep_after_open=0)
        try:
            assert emulator.wait_open()
            emulator.inject_raw(_ccvs1_line(b"\r"))
            _written(emulator, 1)
            msg = bus.recv(0)
            assert msg is not None and bytes(msg.data) == CCVS1_37_5
            assert bus.recv(0) is None
        finally:
            bus.shutdown()


def test_frames_are_stamped_when_their_lines_are_read_not_when_parsed(tmp_path: Path) -> None:
    """The transport protocol is timed on frame stamps: a thread that stalls between two
    frames of one read must not make the second one late."""
    with SlcanEmulator(link=tmp_path / "ttyACM-can") as emulator:
        bus = BufferedSlcanBus(emulator.path, bitrate=250_000, sleep_after_open=0)
        try:
            assert emulator.wait_open()
            emulator.inject_raw(_ccvs1_line(b"\r") * 2)
            _written(emulator, 1)
            before = time.time()
            first = bus.recv(1.0)
            time.sleep(0.2)  # stalled
            second = bus.recv(1.0)
            assert first is not None and second is not None
            assert second.timestamp == first.timestamp >= before
        finally:
            bus.shutdown()


def test_z1_stamps_time_frames_read_late_as_the_adapter_saw_them() -> None:
    clock = AdapterClock()
    assert clock.time(59_990, 100.0) == 100.0  # the first anchors at its read
    # read together after a stall of 1.5 s: 10 ms, then 30 ms, after it (the counter turns)
    assert clock.time(0, 101.5) == pytest.approx(100.01)
    assert clock.time(20, 101.5) == pytest.approx(100.03)


def test_z1_stamps_add_the_minutes_the_counter_turned_with_no_frame() -> None:
    clock = AdapterClock()
    clock.time(1_000, 100.0)
    assert clock.time(16_000, 175.01) == pytest.approx(175.0)  # 75 s later, not 15 s


def test_a_z1_stamp_past_its_read_takes_the_read_time_and_anchors_the_next() -> None:
    clock = AdapterClock()
    clock.time(5_000, 100.0)
    assert clock.time(40_000, 100.02) == 100.02  # the adapter reset (or its clock is fast)
    assert clock.time(40_050, 100.2) == pytest.approx(100.07)
    times = [clock.time(ms, 100.3) for ms in (30_000, 30_010, 59_999, 0)]
    assert times == sorted(times) and times[-1] <= 100.3


def test_a_late_anchor_and_a_minute_of_silence_do_not_put_a_frame_a_minute_early() -> None:
    # the first frame was read 2 s after it was on the bus (the thread started late, or
    # stalled); the bus then went quiet for 75 s. Counting the turns of the counter by what
    # fits before the read counted one short: the frame was placed 58 s early, and the
    # minute came back as a jump at the next read later than 2 s (a stall), which timed
    # out a session whose packets were on time
    clock = AdapterClock()
    clock.time(1_000, 102.0)  # on the bus at 100.0
    assert clock.time(16_000, 175.01) == pytest.approx(175.01)  # on the bus at 175.0
    assert clock.time(16_050, 178.0) == pytest.approx(175.06)  # read after a 3 s stall

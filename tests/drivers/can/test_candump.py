import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.can.candump import LogFrame, LogLineError, format_line, parse_line, read_log


def test_extended_frame_line() -> None:
    assert parse_line("(1700000000.123456) can0 18FEF100#FFFF00FFFFFFFFFF") == LogFrame(
        ts=1700000000.123456,
        channel="can0",
        can_id=0x18FEF100,
        data=bytes.fromhex("FFFF00FFFFFFFFFF"),
    )


def test_standard_frame_line() -> None:
    frame = parse_line("(1.5) vcan0 123#DEAD")
    assert (frame.can_id, frame.extended, frame.data) == (0x123, False, b"\xde\xad")


def test_remote_and_error_frames() -> None:
    assert parse_line("(1.0) can0 18EA00FE#R").remote
    error = parse_line("(1.0) can0 20000040#0000000000000000")
    assert error.error and error.can_id == 0x40


def test_empty_data_is_a_frame() -> None:
    assert parse_line("(1.0) can0 18FEF100#").data == b""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("(1.0) can0", "expected 3 fields, got 2"),
        ("1.0 can0 18FEF100#00", "timestamp must be in parentheses"),
        ("(abc) can0 18FEF100#00", "bad timestamp"),
        ("(inf) can0 18FEF100#00", "not a finite number"),
        ("(-inf) can0 18FEF100#00", "not a finite number"),
        ("(nan) can0 18FEF100#00", "not a finite number"),
        ("(1e400) can0 18FEF100#00", "not a finite number"),
        ("(1.0) can0 18FEF10000", "no '#'"),
        ("(1.0) can0 18FEF1#00", "3 or 8 hex digits"),
        ("(1.0) can0 18FEF1G0#00", "not hex"),
        ("(1.0) can0 18FEF100#0", "not 0..8 bytes"),
        ("(1.0) can0 18FEF100#00112233445566778899", "not 0..8 bytes"),
        ("(1.0) can0 18FEF100#ZZ", "not hex"),
        ("(1.0) can0 18FEF100##1FF", "CAN FD"),
    ],
)
def test_malformed_lines_say_what_is_wrong(line: str, reason: str) -> None:
    with pytest.raises(LogLineError, match=reason):
        parse_line(line)


def test_format_then_parse_round_trips() -> None:
    line = format_line(1715671800.000356, "can0", 0x0CF00400, bytes.fromhex("F18585511400FF85"))
    assert line == "(1715671800.000356) can0 0CF00400#F18585511400FF85"
    assert parse_line(line).data == bytes.fromhex("F18585511400FF85")


def test_read_log_skips_comments_and_blank_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("# a comment\n\n(1.0) can0 18FEF100#00\nnonsense\n(2.0) can0 18FEF100#01\n")
    items = list(read_log(log))
    assert [n for n, _ in items] == [3, 4, 5]
    assert isinstance(items[1][1], LogLineError)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=12)))
def test_any_timestamp_text_gives_a_finite_time_or_a_clear_error(stamp: str) -> None:
    try:
        frame = parse_line(f"({stamp}) can0 18FEF100#00")
    except LogLineError:
        return
    assert math.isfinite(frame.ts)

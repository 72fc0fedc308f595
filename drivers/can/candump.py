"""The `candump -L` log format: `(1700000000.123456) can0 18FEF100#FFFF00FFFFFFFFFF`.

One frame per line: timestamp in seconds, interface, identifier (3 hex digits: 11-bit;
8: 29-bit, with 0x20000000 marking an error frame), `#`, data in hex (`R` for a remote
frame). Lines starting with `#` are comments, which candump never writes but which let a
committed sample say where it came from. A timestamp that is not a finite number (`inf`,
`nan`: a corrupted capture) makes the line malformed: nothing can be paced by it.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CAN_ERR_FLAG = 0x20000000
EXAMPLE = "(1700000000.123456) can0 18FEF100#FFFF00FFFFFFFFFF"


@dataclass(frozen=True, slots=True)
class LogFrame:
    ts: float
    channel: str
    can_id: int
    data: bytes
    extended: bool = True
    remote: bool = False
    error: bool = False


class LogLineError(ValueError):
    """A line that is not a `candump -L` frame; the message says what is wrong."""


def parse_line(line: str) -> LogFrame:
    parts = line.split()
    if len(parts) != 3:
        raise LogLineError(f"expected 3 fields, got {len(parts)}")
    stamp, channel, frame = parts
    if not (stamp.startswith("(") and stamp.endswith(")")):
        raise LogLineError("the timestamp must be in parentheses")
    try:
        ts = float(stamp[1:-1])
    except ValueError:
        raise LogLineError(f"bad timestamp {stamp}") from None
    if not math.isfinite(ts):
        raise LogLineError(f"timestamp {stamp} is not a finite number of seconds")
    ident, sep, payload = frame.partition("#")
    if not sep:
        raise LogLineError("no '#' between identifier and data")
    if payload.startswith("#"):
        raise LogLineError("CAN FD frames (##) are not read")
    if len(ident) not in (3, 8):
        raise LogLineError(f"identifier {ident!r} must have 3 or 8 hex digits")
    try:
        can_id = int(ident, 16)
    except ValueError:
        raise LogLineError(f"identifier {ident!r} is not hex") from None
    extended = len(ident) == 8
    error = extended and bool(can_id & CAN_ERR_FLAG)
    can_id &= 0x1FFFFFFF if extended else 0x7FF
    if payload.upper().startswith("R"):
        return LogFrame(ts, channel, can_id, b"", extended, remote=True, error=error)
    if len(payload) % 2 or len(payload) > 16:
        raise LogLineError(f"data {payload!r} is not 0..8 bytes of hex")
    try:
        data = bytes.fromhex(payload)
    except ValueError:
        raise LogLineError(f"data {payload!r} is not hex") from None
    return LogFrame(ts, channel, can_id, data, extended, error=error)


def format_line(ts: float, channel: str, can_id: int, data: bytes, *, extended: bool = True) -> str:
    ident = f"{can_id:08X}" if extended else f"{can_id:03X}"
    return f"({ts:.6f}) {channel} {ident}#{data.hex().upper()}"


def read_log(path: Path) -> Iterator[tuple[int, LogFrame | LogLineError]]:
    """(line number, frame or the reason the line is not one), skipping blanks and comments."""
    with path.open(encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                yield lineno, parse_line(text)
            except LogLineError as exc:
                yield lineno, exc

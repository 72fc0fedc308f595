"""Bus recordings as other tools write them: Vector ASC and BLF, PEAK TRC.

`can.replay` reads `candump -L` itself, a line at a time (a bad line is counted and
skipped). A recording whose name ends `.asc`, `.blf` or `.trc` (CANalyzer, CANoe, PCAN-View:
what a bus operator's workshop hands over) is read by python-can's own reader for that
format (`can.LogReader`), each frame made the same `LogFrame`. As in a candump log, a CAN FD
frame or a timestamp that is not a finite number is malformed; a recording its reader cannot
go on with (cut short, damaged) ends there, said as one malformed entry.
"""

import math
from collections.abc import Iterator
from pathlib import Path

import can

from drivers.can.candump import LogFrame, LogLineError, read_log

FORMATS = {".asc": "Vector ASC", ".blf": "Vector BLF", ".trc": "PEAK TRC"}


def read_recording(path: Path) -> Iterator[tuple[int, LogFrame | LogLineError]]:
    """(entry number, frame or why it is not one): line numbers for candump, frame numbers
    for the formats python-can reads."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        yield from read_log(path)
        return
    n = 0
    try:
        with can.LogReader(path) as reader:
            for msg in reader:
                n += 1
                yield n, _frame(msg)
            # python-can's BLF reader stops quietly where a file is cut short; its header
            # says how long the file was written
            written = getattr(reader, "file_size", None)
            if isinstance(written, int) and written > (size := path.stat().st_size):
                yield (
                    n + 1,
                    LogLineError(
                        f"the {kind} recording is cut short after frame {n}: "
                        f"{size} of its {written} bytes"
                    ),
                )
    except Exception as exc:  # a third-party parser on a damaged file: any error ends it
        if isinstance(exc, OSError) and n == 0:
            raise  # the file itself: the driver says it cannot read it
        yield n + 1, LogLineError(f"the {kind} recording cannot be read past frame {n}: {exc}")


def _frame(msg: can.Message) -> LogFrame | LogLineError:
    if msg.is_fd:
        return LogLineError("CAN FD frames are not read")
    if not math.isfinite(msg.timestamp):
        return LogLineError(f"timestamp {msg.timestamp} is not a finite number of seconds")
    if msg.arbitration_id > (0x1FFFFFFF if msg.is_extended_id else 0x7FF) or len(msg.data) > 8:
        return LogLineError(f"not a CAN frame: id {msg.arbitration_id:#x}, {len(msg.data)} bytes")
    return LogFrame(
        ts=msg.timestamp,
        channel=str(msg.channel if msg.channel is not None else ""),
        can_id=msg.arbitration_id,
        data=bytes(msg.data),
        extended=msg.is_extended_id,
        remote=msg.is_remote_frame,
        error=msg.is_error_frame,
    )

"""python-can's slcan interface, read in chunks and parsed without a per-frame detour.

python-can 4.6 reads an slcan adapter one byte per `read(1)` (a select and a read system
call each, about 27 per frame) and polls the port every millisecond while the bus is
quiet; on a saturated 250 kbit/s bus that is a third of a core here, most of a Pi's. This
subclass:

- reads whatever the port has in one non-blocking `os.read` once `select` says it is
  readable, at most once per `read_gap_s` (5 ms): a busy bus then costs two system calls per
  read of ~8 frames (1,700 frames/s), not per frame; a USB adapter hands the kernel a frame
  or two per USB packet, and the kernel's tty buffer (64 KiB, ~2,400 frames) holds far more
  than the gap;
- splits the lines itself and parses `T`/`t` frames from bytes, applying the acceptance
  filters before anything is built: a frame of a PGN nobody decodes costs a hex id parse
  and a set lookup, no `can.Message` (python-can's `_apply_filters` hook: the driver sets
  the filters where the interface applies them itself, as it does for SocketCAN);
- skips `BusABC.recv`'s per-frame `LOG.log(9, ...)` call and filter loop (`recv` is
  `_recv_internal`, which filters and honours the time-out itself);
- stamps each frame (`timestamp`, `time.time()` as python-can's parser does) with the time
  of the read that brought its line, not of its parsing: the transport protocol's timeouts
  are judged on frame times (drivers/can/busclock.py), and a receive thread that stalls
  while lines wait parsed does not make the packets among them late.

A line of noise (not hex, an identifier over 29 or 11 bits, a DLC over 8, a short frame, a
byte no slcan reply starts with, over MAX_LINE bytes without a CR) raises ValueError, which
the receiver counts as `garbled`: the line is gone, the next one is fine. A frame may end
in the 4 hex digits of an adapter's millisecond timestamp (Lawicel `Z1`, kept in the
adapter's EEPROM across resets): the frame is then stamped with the time the adapter took
it off the bus (`AdapterClock`), so that a thread that stalls before the read does not make
the frames that waited in the tty buffer late either. The 8 hex digits of a microsecond
stamp (CANable 2.0 / usb2canfd firmware set to `Z2`) are read past: such a frame is timed
by its read. A LF before a line (an adapter ending
its lines CR LF) is dropped. Every other reply (remote and FD frames, command answers) goes
through python-can's own parser; commands, send and shutdown are python-can's.
"""

import binascii
import os
import re
import select
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from can import Message
from can.exceptions import error_check
from can.interfaces.slcan import slcanBus
from can.typechecking import CanFilter

_LINE = re.compile(rb"[^\r\a]*[\r\a]")
"""One slcan reply when a BEL (error) is among them: anything up to CR or BEL, included."""
CR, LF, BEL, T_EXT, T_STD = 0x0D, 0x0A, 0x07, 0x54, 0x74  # b"\r", b"\n", b"\a", b"T", b"t"
REPLIES = frozenset(b"xrRdDbBFzZVvN\a")
"""What else a line from an adapter starts with: python-can's parser takes these (remote, FD
and CANdapter `x` frames, status, acknowledgements, version, serial number, BEL)."""
MAX_ID = {True: 0x1FFFFFFF, False: 0x7FF}
MAX_LINE = 256
"""The longest slcan reply (a CAN FD frame with a Z1 stamp is 142 bytes), and then some: a
port that streams on without a CR (a floating RX line, a device that is not an adapter)
costs one garbled line, never memory."""
OVERLONG = b"\x00overlong"
"""Stands in the line queue for a line dropped for its length (raised as garbled)."""
STAMP = 4  # hex digits of a Lawicel `Z1` timestamp after the data
STAMP_US = 8
"""Hex digits of a microsecond timestamp after the data: CANable 2.0 / usb2canfd slcan
firmware set to `Z2` (kept in its flash, like `Z1`)."""
Z1_TURN_MS = 60_000
"""A Lawicel `Z1` stamp counts milliseconds from 0 to 59999 (0xEA5F), then starts again."""
READ_GAP_S = 0.005
"""Least time between two reads of the port while frames stream in."""
CHUNK = 65536

Accept = list[tuple[int, frozenset[int]]]
"""(mask, the ids it lets through, masked): a frame passes if any pair takes it."""


def compile_filters(filters: Sequence[CanFilter] | None) -> tuple[Accept | None, Accept | None]:
    """python-can `can_filters` as (extended, 11-bit) accept lists, each None when
    everything passes: the rule of `BusABC._matches_filters` (a filter without `extended`
    applies to both), as one set lookup per distinct mask."""
    if not filters:
        return None, None
    by_mask: dict[tuple[bool, int], set[int]] = {}
    for f in filters:
        mask = int(f["can_mask"])
        extended = f.get("extended")
        for ext in (True, False):
            if extended is None or bool(extended) == ext:
                by_mask.setdefault((ext, mask), set()).add(int(f["can_id"]) & mask)
    ext_accept = [(m, frozenset(ids)) for (e, m), ids in by_mask.items() if e]
    std_accept = [(m, frozenset(ids)) for (e, m), ids in by_mask.items() if not e]
    return ext_accept, std_accept


def passes(can_id: int, accept: Accept | None) -> bool:
    """Whether a frame passes (the receive path has this inline)."""
    return accept is None or any((can_id & mask) in ids for mask, ids in accept)


class BufferedSlcanBus(slcanBus):
    """`can.Bus(interface="slcan", ...)`, with a chunked read and filters before parsing."""

    def __init__(self, channel: str, *, read_gap_s: float = READ_GAP_S, **kwargs: Any) -> None:
        self._lines: deque[bytes] = deque()
        self._rest = b""  # a line not complete yet
        self._overlong = False  # dropping the rest of a line longer than MAX_LINE
        self._read_gap_s = read_gap_s
        self._last_read = 0.0
        self._read_at = 0.0  # time.time() of the read that completed the lines queued
        self._adapter_clock = AdapterClock()
        self._accept_ext: Accept | None = None  # None: everything passes
        self._accept_std: Accept | None = None
        self.filtered = 0  # frames the acceptance filters dropped (read by another thread)
        super().__init__(channel, **kwargs)
        try:
            self._fd: int | None = int(self.serialPortOrig.fileno())
        except Exception:  # a serial URL (socket://, rfc2217://) without a file descriptor
            self._fd = None

    # -- filters -----------------------------------------------------------------------

    def _apply_filters(self, filters: Sequence[CanFilter] | None) -> None:
        """python-can's hook for interfaces that filter themselves."""
        self._accept_ext, self._accept_std = compile_filters(filters)

    # -- receiving ---------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message | None:
        """`BusABC.recv` without its per-frame log call: `_recv_internal` filters."""
        msg, _ = self._recv_internal(timeout)
        return msg

    def _recv_internal(self, timeout: float | None) -> tuple[Message | None, bool]:
        if self._fd is None:
            msg, filtered = super()._recv_internal(timeout)
            return msg, filtered
        deadline = None if timeout is None else time.monotonic() + timeout
        lines = self._lines
        polled = False
        while True:
            while lines:
                line = lines.popleft()
                if not line:
                    continue  # an OK (a bare CR) to a command python-can did not wait for
                if line is OVERLONG:
                    raise ValueError(f"slcan: over {MAX_LINE} bytes without an end of line")
                kind = line[0]
                if kind == LF:
                    line = line.lstrip(b"\n")
                    if not line:
                        continue
                    kind = line[0]
                if kind in (T_EXT, T_STD):
                    extended = kind == T_EXT
                    at = 9 if extended else 4
                    if len(line) <= at:
                        raise ValueError(f"slcan: a frame cut short: {line[:40]!r}")
                    can_id = _hex(line[1:at], line)
                    if can_id > MAX_ID[extended]:
                        raise ValueError(f"slcan: identifier out of range: {line[:40]!r}")
                    accept = self._accept_ext if extended else self._accept_std
                    if accept is not None:
                        for mask, ids in accept:
                            if (can_id & mask) in ids:
                                break
                        else:
                            self.filtered += 1  # before anything is built
                            continue
                    return self._frame(can_id, line, at, extended), True
                if kind not in REPLIES:
                    raise ValueError(f"slcan: not a reply: {line[:40]!r}")
                # anything else: python-can's parser, from its queue
                self._queue.put_nowait(_text(line))
                msg, _ = super()._recv_internal(0)
                if msg is not None and self._matches_filters(msg):
                    return msg, True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                # the time is up (a poll, or a thread stalled on the way): a last look at
                # the port, so that None means nothing waits there, which the receiver
                # takes as the bus being quiet (drivers/can/busclock.py)
                if polled or not self._fill(0):
                    return None, True
                polled = True
                continue
            if not self._fill(remaining):
                return None, True

    def _frame(self, can_id: int, line: bytes, at: int, extended: bool) -> Message:
        dlc = line[at] - 0x30
        if not 0 <= dlc <= 8:
            raise ValueError(f"slcan: DLC {chr(line[at])!r} in {line[:40]!r}")
        end = at + 1 + 2 * dlc
        stamp = self._read_at
        if len(line) != end:
            if len(line) == end + STAMP:
                ms = _hex(line[end:], line)  # the adapter's Z1 stamp
                if ms < Z1_TURN_MS:
                    stamp = self._adapter_clock.time(ms, stamp)
            elif len(line) == end + STAMP_US:
                _hex(line[end:], line)  # a Z2 stamp (µs): checked, timed by the read
            else:
                raise ValueError(f"slcan: {dlc} data bytes announced in {line[:40]!r}")
        return Message(
            arbitration_id=can_id,
            is_extended_id=extended,
            timestamp=stamp,
            dlc=dlc,
            data=binascii.unhexlify(line[at + 1 : end]),
        )

    def _read(self, timeout: float | None) -> str | None:
        """One reply as python-can reads it (its commands and `get_version` use this)."""
        if self._fd is None:
            line: str | None = super()._read(timeout)
            return line
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._lines:
            remaining = None if deadline is None else deadline - time.monotonic()
            if (remaining is not None and remaining <= 0) or not self._fill(remaining):
                return None
        return _text(self._lines.popleft())

    def _fill(self, timeout: float | None) -> bool:
        """Wait (at most `timeout`) for the port, read what it has, split it into lines;
        False when nothing came in time."""
        fd = self._fd
        assert fd is not None
        wait = self._last_read + self._read_gap_s - time.monotonic()
        if wait > 0:  # let a few more frames arrive: one read for all of them
            time.sleep(wait if timeout is None else min(wait, timeout))
            if timeout is not None:
                timeout = max(0.0, timeout - wait)
        with error_check("Could not read from serial device"):
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return False
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return False
            if not data:  # readable with nothing to read: the device is gone
                raise OSError("the serial device returned no data (unplugged?)")
        self._last_read = time.monotonic()
        self._read_at = time.time()  # python-can's clock for slcan frames, taken per read
        self._split(self._rest + data)
        return True

    def _split(self, data: bytes) -> None:
        """Complete lines, without their CR (a BEL, an error reply, is kept). A line that
        grows past MAX_LINE without an end is one garbled line, dropped up to its end."""
        if self._overlong:  # the tail of a line already counted: drop it up to its end
            ends = [i for i in (data.find(b"\r"), data.find(b"\a")) if i >= 0]
            if not ends:
                return
            self._overlong = False
            data = data[min(ends) + 1 :]
        if BEL in data:
            end = 0
            for match in _LINE.finditer(data):
                line = match.group()
                self._lines.append(line[:-1] if line[-1] == CR else line)
                end = match.end()
            self._rest = data[end:]
        else:
            *complete, self._rest = data.split(b"\r")
            self._lines.extend(complete)
        if len(self._rest) > MAX_LINE:
            self._lines.append(OVERLONG)
            self._rest = b""
            self._overlong = True

    def flush(self) -> None:
        self._lines.clear()
        self._rest = b""
        self._overlong = False
        super().flush()


class AdapterClock:
    """When an adapter's `Z1` stamps say each frame was on the bus, on the host's clock
    (`time.time()`, as the frames' other stamps).

    A stamp is the adapter's milliseconds modulo a minute, so the time between two frames
    is the difference of their stamps modulo a minute, plus the minutes the counter turned
    unseen: as many as bring it nearest its read (a bus quiet for over a minute). A frame
    is never on the bus after it was read: a stamp that says so (the adapter reset, its
    clock runs fast, the host's clock was set back) takes the read's time, which anchors
    the stamps that follow. Stamps so stay in order, and the first frames, read a little
    after they were on the bus, anchor the stamps no later than the reads say."""

    __slots__ = ("_at", "_ms")

    def __init__(self) -> None:
        self._at: float | None = None  # the last frame's time
        self._ms = 0  # its stamp

    def time(self, ms: int, read_at: float) -> float:
        """The time on the bus of a frame stamped `ms` and read at `read_at`."""
        at = self._at
        if at is None:
            at = read_at
        else:
            at += (ms - self._ms) % Z1_TURN_MS / 1000
            # the minutes the counter turned with no frame: as many as bring the frame
            # nearest its read (give or take half a minute of stall), since the last
            # frame's time may itself be late (anchored at a late read), and counting one
            # minute short would place the frame a minute early
            turns = round((read_at - at) / 60.0)
            if turns > 0:
                at += turns * 60.0
            if at > read_at:
                at = read_at
        self._at, self._ms = at, ms
        return at


def _hex(digits: bytes, line: bytes) -> int:
    """Hex digits and nothing else (`int(x, 16)` takes spaces, a sign and underscores)."""
    if not digits.isalnum():
        raise ValueError(f"slcan: not hex: {line[:40]!r}")
    return int(digits, 16)


def _text(line: bytes) -> str:
    """A line as python-can's own reader returns it: with its terminator."""
    text = line.decode("ascii", "replace")
    return text if line.endswith(b"\a") else text + "\r"

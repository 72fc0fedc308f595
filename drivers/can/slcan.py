"""python-can's slcan interface, reading the serial port in chunks instead of byte by byte.

python-can 4.6 reads an slcan adapter one byte per `read(1)` (a select and a read system
call each, about 27 per frame) and polls the port every millisecond while the bus is
quiet; on a saturated 250 kbit/s bus that is a third of a core here, most of a Pi's. This
subclass reads whatever is waiting in one call, splits it into lines, queues the extra
lines where python-can already looks first, and sleeps in `select` until data arrives. It
also decodes with `errors="replace"`, so a byte of line noise becomes a garbled line the
driver counts, not an error that restarts it. Everything else (commands, parsing, send,
shutdown) is python-can's.
"""

import re
import select
import time
from typing import Any

from can.exceptions import error_check
from can.interfaces.slcan import slcanBus

_LINE = re.compile(rb"[^\r\a]*[\r\a]")
"""One slcan reply: anything up to CR (OK / frame) or BEL (error), terminator included."""


class BufferedSlcanBus(slcanBus):
    """`can.Bus(interface="slcan", ...)`, with a chunked, blocking read."""

    def __init__(self, channel: str, **kwargs: Any) -> None:
        super().__init__(channel, **kwargs)
        try:
            self._fd: int | None = int(self.serialPortOrig.fileno())
        except Exception:  # a serial URL (socket://, rfc2217://) without a file descriptor
            self._fd = None

    def _read(self, timeout: float | None) -> str | None:
        if self._fd is None:
            line: str | None = super()._read(timeout)
            return line
        port = self.serialPortOrig
        deadline = None if timeout is None else time.monotonic() + timeout
        with error_check("Could not read from serial device"):
            while True:
                waiting = port.in_waiting
                if waiting:
                    self._buffer += port.read(waiting)
                    line = self._split()
                    if line is not None:
                        return line
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                ready, _, _ = select.select([self._fd], [], [], remaining)
                if ready and not port.in_waiting:
                    # readable with nothing to read: pyserial raises for a device that is gone
                    self._buffer += port.read(1)

    def _split(self) -> str | None:
        """The first complete line of the buffer; later ones go to python-can's queue."""
        data = bytes(self._buffer)
        end = 0
        lines: list[str] = []
        for match in _LINE.finditer(data):
            lines.append(match.group().decode("ascii", "replace"))
            end = match.end()
        if not lines:
            return None
        del self._buffer[:end]
        for extra in lines[1:]:
            self._queue.put(extra)
        return lines[0]

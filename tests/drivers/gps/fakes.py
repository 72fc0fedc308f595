"""What the GPS driver tests share: a recording driver context, NMEA lines, waiting."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from core.events import Fix


class RecordingContext:
    """A `DriverContext` that keeps what the driver emitted and counted."""

    name = "gps"

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.counts: Counter[str] = Counter()
        self.readies = 0
        self.log = logging.getLogger("test.gps")

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def emit_threadsafe(self, event: Any) -> None:
        self.events.append(event)

    def ready(self) -> None:
        self.readies += 1

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    @property
    def fixes(self) -> list[Fix]:
        return [e for e in self.events if isinstance(e, Fix)]


def nmea(body: str) -> bytes:
    """`$body*hh\\r\\n` with the checksum a receiver would send."""
    checksum = 0
    for byte in body.encode("ascii"):
        checksum ^= byte
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)

"""What the NFC driver tests share: a recording driver context, waiting, a driver task."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from core.events import Tap


class RecordingContext:
    """A `DriverContext` that keeps what the driver emitted and counted.

    `emit_threadsafe` hands over through the event loop, as the supervisor's context does,
    so a test sees a reader thread's taps in the order and at the time the loop would.
    """

    def __init__(self, name: str = "front-reader") -> None:
        self.name = name
        self.events: list[Any] = []
        self.arrived: list[float] = []  # time.monotonic() when each event reached the loop
        self.counts: Counter[str] = Counter()
        self.readies = 0
        self.log = logging.getLogger(f"test.nfc.{name}")
        self._loop = asyncio.get_running_loop()

    def emit(self, event: Any) -> None:
        self.events.append(event)
        self.arrived.append(time.monotonic())

    def emit_threadsafe(self, event: Any) -> None:
        self._loop.call_soon_threadsafe(self.emit, event)

    def ready(self) -> None:
        self.readies += 1

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        raise AssertionError("NFC readers subscribe to nothing")

    @property
    def taps(self) -> list[Tap]:
        return [e for e in self.events if isinstance(e, Tap)]

    @property
    def uids(self) -> list[bytes]:
        return [t.uid for t in self.taps]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)

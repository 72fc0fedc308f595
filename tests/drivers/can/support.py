"""What the CAN driver tests share: a recording DriverContext and frame builders."""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import can

from core.events import ActiveFaults, J1939Signals
from drivers.can.j1939 import GLOBAL, make_id


class Ctx:
    """A DriverContext that records what the driver emits and counts."""

    def __init__(self, name: str = "can") -> None:
        self.name = name
        self.log = logging.getLogger(f"test.{name}")
        self.events: list[Any] = []
        self.counts: dict[str, int] = {}
        self.is_ready = False
        self._loop = asyncio.get_running_loop()

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def emit_threadsafe(self, event: Any) -> None:
        self._loop.call_soon_threadsafe(self.emit, event)

    def ready(self) -> None:
        self.is_ready = True

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def signals(self, name: str | None = None) -> list[J1939Signals]:
        return [e for e in self.events if isinstance(e, J1939Signals) and name in (None, e.name)]

    def faults(self) -> list[ActiveFaults]:
        return [e for e in self.events if isinstance(e, ActiveFaults)]

    async def wait_for(
        self, predicate: Callable[[], bool], what: str, timeout: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"events={self.events[-5:]} counts={self.counts}"
                )
            await asyncio.sleep(0.01)


def frame(
    pgn: int,
    data: bytes,
    *,
    source: int = 0x00,
    priority: int = 6,
    destination: int = GLOBAL,
    **flags: Any,
) -> can.Message:
    """A python-can message as a J1939 node would send it."""
    return can.Message(
        arbitration_id=make_id(pgn, source, priority=priority, destination=destination),
        is_extended_id=True,
        data=data,
        check=False,
        **flags,
    )

"""Drivers under test run in the real `DriverContext` on a real `Bus`; this records what
went through them: the events on the bus, the driver's counters, its `ready` calls."""

import asyncio
import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any

from core import events
from core.bus import Bus
from core.counters import Counters
from core.driver import DriverContext
from edged.config.models import SupervisorConfig
from edged.supervisor import Supervisor

EVENT_TYPES: tuple[type, ...] = tuple(
    cls
    for _, cls in inspect.getmembers(events, inspect.isclass)
    if dataclasses.is_dataclass(cls) and cls.__module__ == events.__name__
)
"""Every event type a driver emits or receives (`core.events`)."""


class Recorder:
    """A real bus and counters, the real context of driver `name` on them, and a record of
    every event of `kinds` (default: all of `core.events`) in the order the bus delivered
    them, with the instant each reached the loop."""

    def __init__(self, name: str = "test", kinds: tuple[type, ...] = EVENT_TYPES) -> None:
        self.name = name
        self.counters = Counters()
        self.bus = Bus(self.counters)
        self.events: list[Any] = []
        self.arrived: list[float] = []
        self.readies = 0
        self.ctx = DriverContext(name, self.bus, self.counters, on_ready=self._ready)
        for kind in kinds:
            self.bus.subscribe(kind, self._record)

    def _record(self, event: Any) -> None:
        self.events.append(event)
        self.arrived.append(time.monotonic())

    def _ready(self) -> None:
        self.readies += 1

    @property
    def is_ready(self) -> bool:
        return self.readies > 0

    @property
    def counts(self) -> dict[str, int]:
        """The driver's own counters, without their `driver.{name}.` prefix."""
        prefix = f"driver.{self.name}."
        return {
            k.removeprefix(prefix): n
            for k, n in self.counters.snapshot().items()
            if k.startswith(prefix)
        }

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def supervisor(self, config: SupervisorConfig) -> Supervisor:
        """A real supervisor on this bus and these counters."""
        return Supervisor(config, self.bus, self.counters)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)

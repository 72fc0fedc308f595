"""Drivers under test run in the real `DriverContext` on a real `Bus`; this records what
went through them: the events on the bus, the driver's counters, its `ready` calls."""

import asyncio
import dataclasses
import inspect
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import events
from core.bus import Bus
from core.counters import Counters
from core.driver import DriverContext
from core.events import ActiveFaults, Fix, J1939Signals, Tap
from edged.config.loader import with_settings
from edged.config.models import DriverConfig, SupervisorConfig
from edged.supervisor import Supervised, Supervisor

FAST = SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.2, stable_after_s=30)
"""Restarts that do not make a test wait."""

EMITTED: tuple[type, ...] = tuple(
    cls
    for _, cls in inspect.getmembers(events, inspect.isclass)
    if dataclasses.is_dataclass(cls)
    and cls.__module__ == events.__name__
    and cls
    not in (
        events.Unlock,
        events.Feedback,
        events.VehicleDoorStatus,
        events.VehicleDoorUnheard,
        events.TroubleCode,
    )
)
"""Every event type a driver emits (`core.events`; `Unlock` and `Feedback` go to drivers:
a subscriber to them is a relay or a light; `VehicleDoorStatus` and `VehicleDoorUnheard`,
from the vehicle service, to the GPIO driver's beams)."""


def configured(
    name: str, driver: str, options: dict[str, Any], base_dir: Path | None = None
) -> DriverConfig:
    """A `[[drivers]]` entry, its options validated as the config loader does."""
    return with_settings(DriverConfig(name=name, driver=driver, options=options), base_dir)


class Recorder:
    """A real bus and counters, the real context of driver `name` on them, and a record of
    every event of `kinds` (default: all a driver emits) in the order the bus delivered
    them, with the instant each reached the loop."""

    def __init__(
        self, name: str = "test", kinds: tuple[type, ...] = EMITTED, state_dir: Path | None = None
    ) -> None:
        self.name = name
        self.counters = Counters()
        self.bus = Bus(self.counters)
        self.events: list[Any] = []
        self.arrived: list[float] = []
        self.readies = 0
        self.ctx = DriverContext(
            name, self.bus, self.counters, on_ready=self._ready, state_dir=state_dir
        )
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
    def counts(self) -> Counter[str]:
        """The driver's own counters, without their `driver.{name}.` prefix."""
        prefix = f"driver.{self.name}."
        return Counter(
            {
                k.removeprefix(prefix): n
                for k, n in self.counters.snapshot().items()
                if k.startswith(prefix)
            }
        )

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def fixes(self) -> list[Fix]:
        return self.of(Fix)

    @property
    def taps(self) -> list[Tap]:
        return self.of(Tap)

    @property
    def uids(self) -> list[bytes]:
        return [t.uid for t in self.taps]

    def signals(self, name: str | None = None) -> list[J1939Signals]:
        return [e for e in self.of(J1939Signals) if name in (None, e.name)]

    def faults(self) -> list[ActiveFaults]:
        return self.of(ActiveFaults)

    def send(self, event: Any) -> None:
        """An event from the services to the driver (an `Unlock` for its relay)."""
        self.bus.emit(event)

    def close(self) -> None:
        """What the supervisor does when the driver stops: its subscriptions go."""
        self.ctx.close()

    async def wait_for(
        self, predicate: Callable[[], bool], what: str, timeout: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"events={self.events[-5:]} counts={dict(self.counts)}"
                )
            await asyncio.sleep(0.01)

    def supervisor(self, config: SupervisorConfig) -> Supervisor:
        """A real supervisor on this bus and these counters."""
        return Supervisor(config, self.bus, self.counters)

    async def supervised(
        self, d: DriverConfig, config: SupervisorConfig = FAST
    ) -> "tuple[Supervised, asyncio.Task[None]]":
        """`d` run as the node runs it, by a real supervisor, once it says it is ready."""
        sup = self.supervisor(config)
        task = asyncio.create_task(sup.run(d))
        await self.wait_for(lambda: d.name in sup.drivers, "supervision")
        status = sup.drivers[d.name]
        await self.wait_for(lambda: status.state == "running", f"{d.driver} ready")
        return status, task


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.005
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)

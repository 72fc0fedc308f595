"""A real host for a service under test (`edged.host.Host`): a real bus, counters and
clock, state kept as the state store keeps it (JSON), and what the service published.

Every event on the bus is recorded in `emitted`, as a watcher (`acts=False`: a service
asking `has_subscribers` sees nobody); `Unlock` too unless `relay=False`, as a handler
(recording it means a lock relay listens for it, as the GPIO driver does).
"""

import dataclasses
import inspect
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel

from core import events as driver_events
from core.bus import Bus
from core.counters import Counters
from core.events import Unlock
from edged.clock import Clock
from edged.config.models import NodeConfig, Profile
from edged.host import MemoryState
from edged.services import events as service_events
from edged.topics import TopicSpec

EVENT_TYPES: tuple[type, ...] = tuple(
    cls
    for module in (driver_events, service_events)
    for _, cls in inspect.getmembers(module, inspect.isclass)
    if dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
)


class TestHost:
    __test__ = False  # not a test class

    def __init__(
        self,
        state: dict[str, Any] | None = None,
        *,
        synced: bool = False,
        clock: Clock | None = None,
        profile: str = "shuttle",
        fleet: str = "test",
        timezone: str = "Europe/Paris",
        relay: bool = True,
    ) -> None:
        self.node = NodeConfig(fleet=fleet, id="node-1", profile=Profile(profile), timezone=timezone)
        # not synced means not synced, whatever the NTP state of the machine running the tests
        self.clock = clock or Clock(trust_system_clock=synced, kernel_synced=lambda: synced)
        self.counters = Counters()
        self.bus = Bus(self.counters)
        self.state = MemoryState()
        for key, value in (state or {}).items():
            self.state.set(key, value)
        self.published: list[tuple[str, BaseModel, int | None]] = []
        self.names: list[str | None] = []
        self.emitted: list[Any] = []
        for kind in EVENT_TYPES:
            if relay or kind is not Unlock:
                self.bus.subscribe(kind, self.emitted.append, acts=kind is Unlock)

    def publish(
        self,
        spec: TopicSpec,
        body: BaseModel,
        *,
        name: str | None = None,
        qos: int | None = None,
        state: dict[str, Any] | None = None,
    ) -> "Future[Any]":
        for key, value in (state or {}).items():
            self.state.set(key, value)
        self.published.append((spec.name, body, qos))
        self.names.append(name)
        return Future()  # services do not wait on it; no event loop needed

    def emit(self, event: Any) -> None:
        """An event on the bus, as a driver or another service would hand it."""
        self.bus.emit(event)

    def of_type(self, event_type: type) -> list[Any]:
        return [e for e in self.emitted if isinstance(e, event_type)]

    def bodies(self, topic: str) -> list[Any]:
        return [b for name, b, _ in self.published if name == topic]

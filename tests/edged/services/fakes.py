"""A node stand-in that records what a service publishes; the services under test are real."""

import json
from collections import defaultdict
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel

from edged.clock import Clock
from edged.topics import TopicSpec


class FakeNode:
    """Records publications; the service under test is real."""

    def __init__(self, state: dict[str, Any] | None = None, *, synced: bool = False) -> None:
        self.clock = Clock(trust_system_clock=synced)
        self.published: list[tuple[str, BaseModel, int | None]] = []
        self.names: list[str | None] = []
        self.state = state or {}
        self.handlers: list[Any] = []
        self.by_type: defaultdict[type, list[Any]] = defaultdict(list)
        self.emitted: list[Any] = []

    def publish(
        self, spec: TopicSpec, body: BaseModel, *, name: str | None = None, qos: int | None = None
    ) -> "Future[Any]":
        self.published.append((spec.name, body, qos))
        self.names.append(name)
        return Future()  # services do not wait on it; no event loop needed

    def subscribe(self, event_type: type, handler: Any) -> Any:
        self.handlers.append(handler)
        self.by_type[event_type].append(handler)
        return lambda: self.by_type[event_type].remove(handler)

    def emit(self, event: Any) -> None:
        """As the node does: to every handler of the event's type; kept for assertions."""
        self.emitted.append(event)
        for handler in list(self.by_type.get(type(event), ())):
            handler(event)

    def of_type(self, event_type: type) -> list[Any]:
        return [e for e in self.emitted if isinstance(e, event_type)]

    def get_state(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        self.state[key] = json.loads(json.dumps(value))  # as the outbox stores it

    def bodies(self, topic: str) -> list[Any]:
        return [b for name, b, _ in self.published if name == topic]

"""A node stand-in that records what a service publishes; the services under test are real."""

import json
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel

from edged.clock import Clock
from edged.topics import TopicSpec


class FakeNode:
    """Records publications; the service under test is real."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.published: list[tuple[str, BaseModel, int | None]] = []
        self.state = state or {}
        self.handlers: list[Any] = []

    def publish(
        self, spec: TopicSpec, body: BaseModel, *, name: str | None = None, qos: int | None = None
    ) -> "Future[Any]":
        self.published.append((spec.name, body, qos))
        return Future()  # services do not wait on it; no event loop needed

    def subscribe(self, event_type: type, handler: Any) -> None:
        self.handlers.append(handler)

    def get_state(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        self.state[key] = json.loads(json.dumps(value))  # as the outbox stores it

    def bodies(self, topic: str) -> list[Any]:
        return [b for name, b, _ in self.published if name == topic]

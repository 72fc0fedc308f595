"""What a service is given: the one narrow interface between the services and the node.

A service is built from a `Host` and its own config, and nothing else of the node: it
stamps time with `clock`, keeps small state across restarts in `state`, counts in
`counters`, hands payloads to the outbox with `publish`, and speaks to drivers and to the
other services only through typed events on `bus` (`edged.services.events`: the link
going up and down is a `LinkChanged` there). `node` is the `[node]` section: fleet, id,
profile, timezone, name.
"""

import asyncio
import json
from typing import Any, Protocol

from pydantic import BaseModel

from core.bus import Bus
from core.counters import Counters
from edged.clock import Clock
from edged.config.models import NodeConfig
from edged.outbox import Outbox, PutResult
from edged.topics import TopicSpec


class State(Protocol):
    """Small JSON values kept across restarts (an odometer, an open trip, the mode)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, *, may_wait: bool = False) -> None:
        """`may_wait`: set often, and cheap to lose to a crash: it may wait with samples
        gathering for one commit (`Outbox.set_state`)."""
        ...


class Publisher(Protocol):
    def publish(
        self,
        spec: TopicSpec,
        body: BaseModel,
        *,
        name: str | None = None,
        qos: int | None = None,
        state: dict[str, Any] | None = None,
    ) -> "asyncio.Future[PutResult]":
        """`state`: `State` values that go with the message, kept or lost with it (an
        alarm and the service's memory of it: `Outbox.put_nowait`)."""
        ...


class Host(Publisher, Protocol):
    node: NodeConfig
    clock: Clock
    bus: Bus
    counters: Counters
    state: State


class NodeHost:
    """The node's `Host`: publications go through `door` (the outbox's front door, which
    raises the alarm when the disk refuses them), state into the outbox's state store."""

    def __init__(
        self,
        node: NodeConfig,
        clock: Clock,
        bus: Bus,
        counters: Counters,
        state: State,
        door: Publisher,
    ) -> None:
        self.node = node
        self.clock = clock
        self.bus = bus
        self.counters = counters
        self.state = state
        self._door = door

    def publish(
        self,
        spec: TopicSpec,
        body: BaseModel,
        *,
        name: str | None = None,
        qos: int | None = None,
        state: dict[str, Any] | None = None,
    ) -> "asyncio.Future[PutResult]":
        return self._door.publish(spec, body, name=name, qos=qos, state=state)


class OutboxState:
    """`State` in the node's state store, written with the outbox's next commit (a rider
    request and the kiosk's memory of it are one commit)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def get(self, key: str, default: Any = None) -> Any:
        return self._outbox.get_state(key, default)

    def set(self, key: str, value: Any, *, may_wait: bool = False) -> None:
        self._outbox.set_state(key, value, may_wait=may_wait)


class MemoryState(dict[str, Any]):
    """`State` in memory only, each value stored as the state store stores it (through
    JSON), for a service run without a node (a benchmark, a test)."""

    def set(self, key: str, value: Any, *, may_wait: bool = False) -> None:
        self[key] = json.loads(json.dumps(value))

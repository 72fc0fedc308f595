"""What a service may use of the node: publish through the outbox, persist small state."""

import asyncio
from typing import Any, Protocol

from pydantic import BaseModel

from edged.clock import Clock
from edged.outbox import PutResult
from edged.topics import TopicSpec


class NodeApi(Protocol):
    clock: Clock

    def publish(
        self, spec: TopicSpec, body: BaseModel, *, name: str | None = None, qos: int | None = None
    ) -> "asyncio.Future[PutResult]": ...

    def subscribe(self, event_type: type, handler: Any) -> Any: ...

    def get_state(self, key: str, default: Any = None) -> Any: ...

    def set_state(self, key: str, value: Any) -> None: ...

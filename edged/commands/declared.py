"""Commands a service declares beside its handlers, so the node registers them in one loop."""

from collections.abc import Iterable
from typing import NamedTuple, Protocol

from edged.commands.router import MAX_COMMAND_BYTES, Handler
from edged.config.security import Scope


class Declared(NamedTuple):
    """One command of a service: its name, handler, signing scope and size limit."""

    name: str
    handler: Handler
    scope: Scope = "operate"
    max_bytes: int = MAX_COMMAND_BYTES


class Registers(Protocol):
    def register(
        self, name: str, handler: Handler, *, scope: Scope = ..., max_bytes: int = ...
    ) -> None: ...


def register_declared(router: Registers, commands: Iterable[Declared]) -> None:
    for c in commands:
        router.register(c.name, c.handler, scope=c.scope, max_bytes=c.max_bytes)

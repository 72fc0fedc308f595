"""What a command is, declared by its owner beside its handler, so the node adds them all
to the router in one loop and a command's scope is written in one place."""

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple, Protocol

from edged.config.security import Scope

MAX_COMMAND_BYTES = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

SIGNED_SCOPES: ContextVar[frozenset[str] | None] = ContextVar("command_scopes", default=None)
"""While a handler runs: the scopes of the key whose signature the command carries (None:
unsigned). For a handler whose command may hand out more than its own scope (`config.set`
giving a key the scope `update`): no key gives what it does not hold."""

SENT_AT: ContextVar[int | None] = ContextVar("command_sent_at", default=None)
"""While a handler runs: the command's `ts` (UTC ms when dispatch sent it; None when it has
none). For a handler that must not act on what began after the command was sent: an
`alarm.ack` the broker kept through a dead zone must not clear an alarm raised meanwhile."""


class CommandSpec(NamedTuple):
    """One command: its name, handler, signing scope and size limit."""

    name: str
    handler: Handler
    scope: Scope = "operate"
    max_bytes: int = MAX_COMMAND_BYTES
    kind: str | None = None
    """Several owners share one command, each answering for one value of its `kind`
    argument (`alarm.ack`: `panic` is the panic service's, `outbox_lost` the outbox's);
    the first one added is the kind meant when none is given. The handler gets the
    arguments without `kind`."""
    lane: str | None = None
    """The commands that run one at a time with this one (edged.commands.lanes); None: its
    owner's (the node names each owner's lane as it adds its commands)."""


class Declares(Protocol):
    """Whoever answers commands: a service, the node's own commands, the outbox's alarms."""

    def commands(self) -> Sequence[CommandSpec]: ...

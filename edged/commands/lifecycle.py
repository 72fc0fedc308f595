"""What the node's own commands may use of it: its config, its health, a restart.

The node implements it; `ping`, `republish`, `config.*`, `diag.dump` and `restart` take this
and nothing else of the node.
"""

from pathlib import Path
from typing import Any, Protocol

from core.counters import Counters
from edged.config.models import EdgedConfig
from edged.payloads import Health


class Lifecycle(Protocol):
    config: EdgedConfig
    config_path: Path | None
    """The file the node was started from (None: built in memory, no `config.set`)."""
    config_hash: str
    counters: Counters

    @property
    def connected(self) -> bool:
        """The node has a session with the broker now."""

    @property
    def hears_commands(self) -> bool:
        """Connected, and the broker granted the command subscription: a config.set can
        reach the node (what a config on probation must show)."""

    def uptime_s(self) -> float: ...

    def outbox_depth(self) -> int: ...

    def recent_log(self) -> list[str]:
        """The last log lines, oldest first."""

    async def health(self) -> Health: ...

    async def republish(self) -> dict[str, Any]:
        """Birth, every retained topic and a fresh `health` again."""

    def request_restart(self, *, after_reply: bool) -> None:
        """Stop and start again from the config file (now, or once the reply has left)."""

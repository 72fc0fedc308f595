"""Commands every node answers: `ping` and `republish`."""

from typing import Any

from edged import __version__
from edged.commands.args import only
from edged.commands.lifecycle import Lifecycle
from edged.commands.spec import CommandSpec


class Builtin:
    def __init__(self, life: Lifecycle) -> None:
        self.life = life

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("ping", self.ping, scope="read", lane="ping"),  # behind nothing else
            CommandSpec("republish", self.republish, scope="operate"),
        ]

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        only("ping", args)
        return {
            "pong": True,
            "version": __version__,
            "uptime_s": round(self.life.uptime_s(), 1),
            "outbox_depth": self.life.outbox_depth(),
        }

    async def republish(self, args: dict[str, Any]) -> dict[str, Any]:
        """Birth, retained topics and a fresh health report, e.g. after a broker lost them."""
        only("republish", args)
        return await self.life.republish()

"""Commands every node answers: `ping` and `republish`."""

import time
from typing import TYPE_CHECKING, Any

from edged import __version__
from edged.commands.args import only

if TYPE_CHECKING:
    from edged.node import Node


def register_builtin(node: "Node") -> None:
    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        only("ping", args)
        return {
            "pong": True,
            "version": __version__,
            "uptime_s": round(time.monotonic() - node.started, 1),
            "outbox_depth": node.outbox.depth,
        }

    async def republish(args: dict[str, Any]) -> dict[str, Any]:
        """Birth, retained topics and a fresh health report, e.g. after a broker lost them."""
        only("republish", args)
        done = await node.uplink.republish()
        await node.publish_health(full=True)
        return {**done, "health": True}

    node.router.register("ping", ping, scope="read")
    node.router.register("republish", republish, scope="operate")

"""A retained command is never run (issue #12.5): a key taken from one node's SD card must
not plant a `mode.set` that runs again at every reconnect."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.broker import Mosquitto
from tests.helpers.commands import online, replies, send
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_command_planted_retained_before_the_node_starts_is_ignored_and_counted(
    broker: Mosquitto, tmp_path: Path, spawn: Any, protocol: str
) -> None:
    await send(
        broker.port, "cmd/mode.set", b'{"id": "p1", "args": {"mode": "school"}}', retain=True
    )
    config = write_config(tmp_path, broker.port, gps=False, health_s=1, protocol=protocol)
    async with Collector(broker.port) as c:
        await online(c, config, spawn)
        await c.wait_for(
            lambda: any(m.payload["errors"].get("cmd.retained") for m in c.on("health")),
            10,
            "cmd.retained in health",
        )
        await send(broker.port, "cmd/mode.set", b'{"id": "p2", "args": {"mode": "school"}}')
        await c.wait_for(lambda: bool(replies(c, "mode/set")), 10, "the reply to p2")
        (answer,) = replies(c, "mode/set")
        assert answer["id"] == "p2" and answer["result"]["previous"] == "on-demand"


async def test_a_retained_command_published_while_the_node_listens_is_ignored(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(tmp_path, broker.port, gps=False, health_s=1)
    async with Collector(broker.port) as c:
        await online(c, config, spawn)
        await send(
            broker.port, "cmd/mode.set", b'{"id": "live", "args": {"mode": "school"}}', retain=True
        )
        await c.wait_for(
            lambda: any(m.payload["errors"].get("cmd.retained") for m in c.on("health")),
            10,
            "cmd.retained in health",
        )
        await asyncio.sleep(0.3)
        assert not replies(c, "mode/set")

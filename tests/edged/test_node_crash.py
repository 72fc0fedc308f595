"""The node ending on a failure of one of its tasks (edged.node), in-process, with a broker."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edged.config import load_config
from edged.node import Node
from edged.services import table
from edged.topics import STATE
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config


class Failing:
    """A service with a defect: it fails once the node is up (a fault injected: no real
    service is known to fail, which is why the node must still say it went)."""

    def __init__(self) -> None:
        self.fail = asyncio.Event()

    def commands(self) -> list[Any]:
        return []

    async def run(self) -> None:
        await self.fail.wait()
        raise RuntimeError("a defect in a service")


async def test_a_node_ended_by_a_failing_task_is_offline_for_dispatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task fails: the node's TaskGroup cancels the others and the process ends, no
    stop run. Its uplink ended its session with a DISCONNECT, which drops the will: the
    node stayed `online` at dispatch while it was gone (throughout, for a node that fails
    at each start: systemd restarts it for ever, `StartLimitIntervalSec=0`)."""
    broker = Mosquitto(tmp_path).start()
    failing = Failing()
    build = table.build
    monkeypatch.setattr(table, "build", lambda host, c: {**build(host, c), "failing": failing})
    node = Node(load_config(write_config(tmp_path, broker.port, gps=False)))
    state = node.topics.of(STATE)
    try:
        task = asyncio.create_task(node.run(asyncio.Event()))
        async with Collector(broker.port, state) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await c.wait_for(lambda: said()[-1:] == ["online"], 10, "online")
            failing.fail.set()
            with pytest.raises(BaseExceptionGroup):
                await asyncio.wait_for(task, 10)
            await c.wait_for(lambda: said()[-1:] == ["offline"], 5, "offline")
    finally:
        broker.stop()

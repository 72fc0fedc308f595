"""A broker configured tighter than the tests' Mosquitto: a small Receive Maximum
(`max_inflight_messages`), QoS 0 only (`max_qos 0`), no retained messages
(`retain_available false`), a small `max_packet_size`. The node keeps every message, says
what to change on the broker, and does not loop."""

from pathlib import Path
from typing import Any

import pytest

from edged.outbox import Publication
from edged.payloads import DoorEvent
from edged.topics import DOOR
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import send
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import NODE_TOPICS, queue_before_start, write_config


def doors(n: int) -> list[Publication]:
    return [
        Publication.make(NODE_TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True)) for i in range(n)
    ]


def door_order(c: Collector) -> list[int]:
    return [int(m.payload["door"][1:]) for m in c.on("events/door")]


@pytest.mark.parametrize("receive_max", [1, 2])
async def test_a_backlog_drains_in_order_within_a_small_receive_maximum_beside_a_republish(
    tmp_path: Path, spawn: Any, receive_max: int
) -> None:
    """Mosquitto announces `max_inflight_messages` as its Receive Maximum (MQTT 5) but takes
    more; HiveMQ ends the session of a client that sends more (DISCONNECT 0x93), played by
    the proxy. A `republish` in the middle of the drain goes beside it through paho: the
    drain must leave it room, or the session ends and starts again."""
    n = 2000
    broker = Mosquitto(tmp_path, extra=f"max_inflight_messages {receive_max}").start()
    proxy = await MqttProxy(broker.port, Quirks(enforce_receive_max=True)).start()
    try:
        config = write_config(tmp_path, proxy.port, gps=False)
        await queue_before_start(config, doors(n))
        async with Collector(broker.port) as c:
            node = await spawn(config)
            await c.wait_for(lambda: bool(c.on("events/door")), 10, "the drain")
            for i in range(3):
                await send(broker.port, "cmd/republish", f'{{"id": "r{i}"}}'.encode())
            await c.wait_for(lambda: len(c.on("events/door")) >= n, 20, "the whole backlog")
            await c.wait_for(lambda: len(c.on("reply/republish")) >= 3, 10, "the replies")
        assert proxy.over_receive_max == 0
        assert door_order(c) == list(range(n))  # in order, each once
        assert sum("connected to" in line for line in node.lines) == 1
    finally:
        await proxy.close()
        broker.stop()

"""Commands over a real broker: replies, MQTT 5 response topics, and hostile input."""

import json
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.cancellable import CancellableClient
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import write_config

BASE = "rnst/v1/test/shuttle-07"


async def started(c: Collector, broker: Mosquitto, tmp_path: Path, spawn: Any) -> Any:
    proc = await spawn(write_config(tmp_path, broker.port, health_s=1))
    await c.wait_for(
        lambda: any(m.payload.get("state") == "online" for m in c.on("state")), 10, "birth"
    )
    return proc


def replies(c: Collector, name: str) -> list[dict[str, Any]]:
    return [m.payload for m in c.on(f"reply/{name}")]


async def test_ping_gets_an_ok_reply_with_the_same_id(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await started(c, broker, tmp_path, spawn)
        await publish(broker.port, f"{BASE}/cmd/ping", b'{"id":"p1","args":{}}')
        await c.wait_for(lambda: bool(replies(c, "ping")), 5, "the reply")
        (reply,) = replies(c, "ping")
        assert reply["id"] == "p1" and reply["ok"] is True and reply["result"]["pong"] is True


async def test_reply_goes_to_the_mqtt5_response_topic_with_correlation_data(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await started(c, broker, tmp_path, spawn)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "ops/console-1/replies"
        props.CorrelationData = b"corr-42"
        async with CancellableClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as ops:
            await ops.subscribe("ops/console-1/replies", qos=1)
            await ops.publish(f"{BASE}/cmd/ping", b'{"id":"p2"}', qos=1, properties=props)
            async for m in ops.messages:
                assert json.loads(m.payload)["id"] == "p2"  # type: ignore[arg-type]
                assert m.properties is not None
                assert m.properties.CorrelationData == b"corr-42"
                break


async def test_duplicate_delivery_gets_the_same_reply(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await started(c, broker, tmp_path, spawn)
        for _ in range(2):
            await publish(broker.port, f"{BASE}/cmd/ping", b'{"id":"same"}')
        await c.wait_for(lambda: len(replies(c, "ping")) == 2, 5, "two replies")
        first, second = replies(c, "ping")
        assert first["result"] == second["result"]


async def test_hostile_commands_get_error_replies_and_the_node_stays_healthy(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    hostile = [
        ("ping", b"not json", "bad_json"),
        ("ping", b"\xff\xfe\x00\x01", "bad_json"),
        ("ping", b"x" * 1_000_000, "too_large"),
        ("ping", b'{"id": 5, "args": "x"}', "bad_request"),
        ("ping", b'{"args": {}}', "missing_id"),
        ("ping", b"[1,2,3]", "bad_request"),
        ("ping", b'{"id": "x1", "args": {"a": 1}}', "bad_args"),
        ("self-destruct", b'{"id": "x2"}', "unknown_command"),
    ]
    async with Collector(broker.port) as c:
        proc = await started(c, broker, tmp_path, spawn)
        for name, payload, _ in hostile:
            await publish(broker.port, f"{BASE}/cmd/{name}", payload)
        await publish(broker.port, f"{BASE}/cmd/ping", b'{"id":"after"}')
        await c.wait_for(
            lambda: any(r["id"] == "after" for r in replies(c, "ping")),
            10,
            "the ping after the garbage",
        )
        got = [
            r["error"]["code"]
            for r in replies(c, "ping") + replies(c, "self-destruct")
            if not r["ok"]
        ]
        assert sorted(got) == sorted(code for _, _, code in hostile)
        await c.wait_for(
            lambda: any(m.payload["errors"].get("cmd.bad_json") == 2 for m in c.on("health")),
            5,
            "counters in health",
        )
        assert proc.proc.returncode is None

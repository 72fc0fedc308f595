"""Dispatch's side of commands in the integration tests: send, and read the replies."""

from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.cancellable import CancellableClient
from tests.helpers.mqtt import Collector

BASE = "rnst/v1/test/shuttle-07"


async def online(c: Collector, config: Path, spawn: Any, *, after: int = 0) -> Any:
    """Start `edged run` with `config`; return once dispatch saw its birth."""
    proc = await spawn(config)
    await c.wait_for(lambda: len(births(c)) > after, 15, "the node online")
    return proc


def births(c: Collector) -> list[dict[str, Any]]:
    return [m.payload for m in c.on("state") if m.payload.get("state") == "online"]


def offlines(c: Collector) -> list[dict[str, Any]]:
    return [m.payload for m in c.on("state") if m.payload.get("state") == "offline"]


def replies(c: Collector, suffix: str = "") -> list[dict[str, Any]]:
    """Replies on `reply/{suffix}`, or on every reply topic when `suffix` is empty."""
    if suffix:
        return [m.payload for m in c.on(f"reply/{suffix}")]
    return [m.payload for m in c.messages if "/reply/" in m.topic]


def reply_to(c: Collector, cmd_id: str) -> dict[str, Any] | None:
    return next((r for r in replies(c) if r.get("id") == cmd_id), None)


def v5_properties(
    response_topic: str | None = None, correlation: bytes | None = None
) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


async def send(
    port: int,
    suffix: str,
    payload: bytes,
    *,
    retain: bool = False,
    properties: Properties | None = None,
    base: str = BASE,
) -> None:
    """One QoS 1 publish on `{base}/{suffix}` from a fresh MQTT 5 client."""
    async with CancellableClient("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish(
            f"{base}/{suffix}", payload, qos=1, retain=retain, properties=properties
        )


def signing_config(public_key: str, scopes: str = '"read", "operate"') -> str:
    """Config lines that make a node check commands signed by `public_key` (key id "ops")."""
    return f"""
[clock]
trust_system_clock = true
[[security.keys]]
id = "ops"
public_key = "{public_key}"
scopes = [{scopes}]
"""

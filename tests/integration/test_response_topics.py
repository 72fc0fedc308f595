"""MQTT 5 response topics on a real broker: a copy of the reply goes only where the node may
write (issue #12.6)."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.security.signing import public_key_text, sign
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, online, replies, send, signing_config, v5_properties
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config


async def test_a_response_topic_on_the_nodes_own_alarm_is_refused_and_nothing_runs(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port, topic="#") as c:
        await online(c, write_config(tmp_path, broker.port, gps=False), spawn)
        hostile = v5_properties(f"{BASE}/alarm/panic", b"x")
        payload = b'{"id": "r1", "args": {"mode": "school"}}'
        await send(broker.port, "cmd/mode.set", payload, properties=hostile)
        await c.wait_for(lambda: bool(replies(c, "mode/set")), 10, "the reply")
        (refused,) = replies(c, "mode/set")
        assert refused["error"]["code"] == "bad_response_topic"
        await send(broker.port, "cmd/mode.set", b'{"id": "r2", "args": {"mode": "school"}}')
        await c.wait_for(lambda: len(replies(c, "mode/set")) == 2, 10, "the second reply")
        assert replies(c, "mode/set")[1]["result"]["previous"] == "on-demand", "r1 ran"
        await asyncio.sleep(0.3)
        assert not c.on("alarm/panic")


async def test_a_captured_signed_command_sent_again_with_a_spys_response_topic_gets_no_copy(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A peer that reads `cmd/` sends a signed command's bytes again, within its window,
    with its own response topic: the node answers from its memory, on `reply/{name}` only."""
    key = Ed25519PrivateKey.generate()
    signing = signing_config(public_key_text(key.public_key()))
    config = write_config(tmp_path, broker.port, gps=False, extra=signing)
    payload = _signed_mode_set(key, "s1")
    dispatch, spy = "rnst/v1/test/_replies/dispatch", "rnst/v1/test/_replies/spy"
    async with Collector(broker.port, topic="#") as c:
        await online(c, config, spawn)
        await send(broker.port, "cmd/mode/set", payload, properties=v5_properties(dispatch, b"d"))
        await c.wait_for(
            lambda: any(m.topic == dispatch for m in c.messages), 10, "the copy to dispatch"
        )
        await send(broker.port, "cmd/mode/set", payload, properties=v5_properties(spy, b"s"))
        await c.wait_for(lambda: len(replies(c, "mode/set")) == 2, 10, "the second reply")
        await asyncio.sleep(0.3)
    first, again = replies(c, "mode/set")
    assert first["ok"] and again["result"] == first["result"]
    assert not [m for m in c.messages if m.topic == spy]


async def test_a_signed_command_refused_for_its_response_topic_is_not_run_by_a_spys_resend(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Dispatch names a response topic outside `response_topic_prefix`: refused, not run. A
    peer that read the command sends its bytes again, in its window, with a response topic
    under the prefix: refused `replayed`, still not run."""
    key = Ed25519PrivateKey.generate()
    signing = signing_config(public_key_text(key.public_key()))
    prefix = 'response_topic_prefix = "ops/replies"'
    config = write_config(tmp_path, broker.port, gps=False, extra=signing, broker=prefix)
    payload = _signed_mode_set(key, "s1")
    async with Collector(broker.port, topic="#") as c:
        await online(c, config, spawn)
        dispatch = v5_properties("rnst/v1/test/_replies/edgectl-1", b"d")
        await send(broker.port, "cmd/mode/set", payload, properties=dispatch)
        await c.wait_for(lambda: len(replies(c, "mode/set")) == 1, 10, "the refusal")
        spy = v5_properties("ops/replies/spy", b"s")
        await send(broker.port, "cmd/mode/set", payload, properties=spy)
        await send(broker.port, "cmd/mode/set", b'{"id": "check", "args": {"mode": "school"}}')
        await c.wait_for(lambda: len(replies(c, "mode/set")) == 3, 10, "three replies")
    refused, resent, check = replies(c, "mode/set")
    assert refused["error"]["code"] == "bad_response_topic"
    assert resent["error"]["code"] == "replayed"
    assert check["result"]["previous"] == "on-demand", "the resent command ran"


def _signed_mode_set(key: Ed25519PrivateKey, cmd_id: str) -> bytes:
    """`mode.set school`, signed by `key` (key id "ops") for the test node, sent now."""
    ts, args = int(time.time() * 1000), {"mode": "school"}
    doc = {"id": cmd_id, "ts": ts, "args": args, "kid": "ops"}
    doc["sig"] = sign(key, f"{BASE}/cmd/mode.set", cmd_id, ts, args)
    return json.dumps(doc).encode()


async def test_with_a_reply_prefix_only_topics_under_it_get_the_copy(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(
        tmp_path, broker.port, gps=False, broker='response_topic_prefix = "ops/replies"'
    )
    async with Collector(broker.port, topic="#") as c:
        await online(c, config, spawn)
        await send(
            broker.port,
            "cmd/ping",
            b'{"id": "in"}',
            properties=v5_properties("ops/replies/c1", b"1"),
        )
        await send(
            broker.port, "cmd/ping", b'{"id": "out"}', properties=v5_properties("ops/other", b"2")
        )
        await c.wait_for(lambda: len(replies(c, "ping")) == 2, 10, "two replies")
        await c.wait_for(
            lambda: bool([m for m in c.messages if m.topic == "ops/replies/c1"]), 5, "the copy"
        )
        by_id = {r["id"]: r for r in replies(c, "ping")}
        assert by_id["in"]["ok"] and by_id["out"]["error"]["code"] == "bad_response_topic"
        await asyncio.sleep(0.3)
        assert not [m for m in c.messages if m.topic == "ops/other"]


async def test_copies_the_broker_refuses_do_not_pile_up_in_the_outbox(
    tmp_path: Path, spawn: Any
) -> None:
    """A response topic the node may use but the broker's ACL refuses it (the shipped broker
    takes only `{prefix}/{fleet}/_replies/+`): `reply/{name}` carries the reply; the refused
    copy must not stay in the outbox, sent again every few minutes for ever, one more row
    for every such command."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite rnst/v1/#\n")
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}\n")
    broker.start()
    try:
        config = write_config(tmp_path, broker.port, gps=False, health_s=1)
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            await online(c, config, spawn)
            for i in range(20):
                props = v5_properties(f"elsewhere/console-{i}", b"c")
                await send(
                    broker.port, "cmd/ping", json.dumps({"id": f"p{i}"}).encode(), properties=props
                )
            await c.wait_for(lambda: len(replies(c, "ping")) == 20, 10, "a reply to each")
            seen = len(c.on("health"))
            await c.wait_for(lambda: len(c.on("health")) > seen + 2, 10, "health reports")
            assert c.on("health")[-1].payload["outbox"]["depth"] == 0
    finally:
        broker.stop()

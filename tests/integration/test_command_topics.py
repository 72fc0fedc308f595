"""A command is the same however the broker spelled its topic, and its reply reaches
dispatch on every broker (issue #22): a proxy plays RabbitMQ, which turns `.` into `/`."""

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.security.signing import public_key_text, sign
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import (
    BASE,
    births,
    offlines,
    online,
    replies,
    reply_to,
    send,
    signing_config,
)
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

KEY = Ed25519PrivateKey.generate()
SIGNING = signing_config(public_key_text(KEY.public_key()))


@pytest.fixture
async def rabbit(broker: Mosquitto) -> AsyncIterator[MqttProxy]:
    """The broker as a node behind RabbitMQ sees it: dots in topics become slashes."""
    proxy = await MqttProxy(broker.port, Quirks(rewrite_dots=True)).start()
    yield proxy
    await proxy.close()


async def test_a_dotted_command_through_a_broker_that_rewrites_dots_is_answered(
    broker: Mosquitto, rabbit: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await online(c, write_config(tmp_path, rabbit.port, gps=False), spawn)
        await send(broker.port, "cmd/config.get", b'{"id": "g1"}')
        await c.wait_for(lambda: bool(replies(c, "config/get")), 10, "reply/config/get")
        (answer,) = replies(c, "config/get")
        assert answer["id"] == "g1" and answer["ok"] is True and "config" in answer["result"]
        assert len(births(c)) == 1 and not offlines(c)


async def test_a_signed_command_through_a_broker_that_rewrites_dots_verifies(
    broker: Mosquitto, rabbit: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    """The signature covers the dotted topic dispatch signed, whatever arrived."""
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await online(c, write_config(tmp_path, rabbit.port, gps=False, extra=SIGNING), spawn)
        ts = int(time.time() * 1000)
        doc = {"id": "s1", "ts": ts, "args": {}, "kid": "ops"}
        doc["sig"] = sign(KEY, f"{BASE}/cmd/config.get", "s1", ts, {})
        await send(broker.port, "cmd/config.get", json.dumps(doc).encode())
        await c.wait_for(lambda: reply_to(c, "s1") is not None, 10, "the reply")
        answer = reply_to(c, "s1")
        assert answer is not None and answer["ok"] is True, answer


async def test_both_spellings_run_the_command_and_share_its_id(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await online(c, write_config(tmp_path, broker.port, gps=False), spawn)
        await send(broker.port, "cmd/mode/set", b'{"id": "m1", "args": {"mode": "school"}}')
        await send(broker.port, "cmd/mode.set", b'{"id": "m1", "args": {"mode": "school"}}')
        await send(broker.port, "cmd/mode.set", b'{"id": "m2", "args": {"mode": "school"}}')
        await c.wait_for(lambda: len(replies(c, "mode/set")) == 3, 10, "three replies")
        first, again, other = replies(c, "mode/set")
        assert first["ok"] and again == {**first, "seq": again["seq"], "ts": again["ts"]}
        assert other["result"]["previous"] == "school", "m1 ran once, under either spelling"

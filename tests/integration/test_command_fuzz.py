"""Fuzz the whole incoming path of a running node through a real Mosquitto (issue #13.1).

Hypothesis makes command messages: topic suffixes under `cmd/`, payload bytes, the retain
flag and MQTT 5 properties (response topic, correlation data, user properties, content
type, payload format, expiry). After each one a marker `ping` must be answered: the node is
alive and still reading. What must hold over the whole run: one MQTT session (no second
birth, no will), and exactly one reply for each message the broker accepted and delivered
(retained ones get none), as docs/topics.md promises.
"""

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.cancellable import CancellableClient
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, births, offlines, online
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

EXAMPLES = int(os.environ.get("EDGED_FUZZ_EXAMPLES", "120"))  # more: a longer hunt
NAMES = [
    "ping",
    "config.get",
    "config/get",
    "PING",
    "mode.set",
    "mode/set",
    "diag.dump",
    "kiosk.message",
    "door.unlock",
    "access.update",
    "_invalid",
    "a/b/c/d/e",
    "ping/",
    "x" * 200,
    "trip.stop",
    "republish",
]
# what Mosquitto lets through to the node: no control characters, surrogates or wildcards
# (it throws off a publisher that sends them; that costs the test a reconnect, not a finding)
TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="+#"), max_size=40)
TOPICS = [
    f"{BASE}/alarm/panic",
    f"{BASE}/cmd/ping",
    "rnst/v1/test/other/cmd/door.unlock",
    "rnst.v1.test.shuttle-07.alarm.panic",
    "$SYS/x",
    "ops/replies/1",
    "x" * 300,
    "/",
    "a//b",
]


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=15,
    )


PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda doc: json.dumps(doc).encode(),
        st.fixed_dictionaries(
            {"id": st.one_of(TEXT, st.integers(), st.none())},
            optional={
                "args": json_values(),
                "ts": st.one_of(st.integers(), TEXT),
                "sig": TEXT,
                "kid": TEXT,
                "extra": json_values(),
            },
        ),
    ),
    st.builds(
        lambda n: b'{"id": "big", "args": {"n": ' + b"9" * n + b"}}", st.integers(4000, 9000)
    ),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(500, 30000)),
)


@st.composite
def properties(draw: st.DrawFn) -> Properties | None:
    if draw(st.booleans()):
        return None
    props = Properties(PacketTypes.PUBLISH)
    if draw(st.booleans()):
        props.ResponseTopic = draw(st.sampled_from(TOPICS) | TEXT.filter(bool))
    if draw(st.booleans()):
        props.CorrelationData = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        props.UserProperty = draw(st.lists(st.tuples(TEXT, TEXT), max_size=3))
    if draw(st.booleans()):
        props.ContentType = draw(TEXT)
    if draw(st.booleans()):
        props.PayloadFormatIndicator = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        # at least a minute: a message that expires in the broker's queue of one subscriber
        # and not the other's (the node's or the witness's, on a loaded machine) would make
        # a reply the witness cannot account for
        props.MessageExpiryInterval = draw(st.integers(60, 2**32 - 1))
    return props


@dataclass
class Target:
    port: int
    witness: Collector
    publisher: aiomqtt.Client | None = None
    expected: int = 0  # replies the node owes for the hostile messages so far

    def replies(self) -> list[dict[str, Any]]:
        head = f"{BASE}/reply/"
        return [m.payload for m in self.witness.messages if m.topic.startswith(head)]

    def hostile_replies(self) -> int:
        return sum(1 for r in self.replies() if not str(r.get("id", "")).startswith("zz-mark-"))

    def delivered(self) -> int:
        """Command publishes the broker passed on, markers excluded. Counted by publish, not
        by what the witness decodes in it: a payload that reads as an empty batch (`[]`,
        CBOR's 0x80) is no message to the witness and still one command to the node."""
        publishes = sum(len(n) for s, n in self.witness.publishes.items() if s.startswith("cmd/"))
        head = f"{BASE}/cmd/"
        markers = sum(
            1
            for m in self.witness.messages
            if m.topic.startswith(head) and str(m.payload.get("id", "")).startswith("zz-mark-")
        )
        return publishes - markers

    async def publish(self, topic: str, payload: bytes, retain: bool, props: Any) -> None:
        """One publish; a publisher the broker throws off (it refused what we sent) is
        replaced: that message never reached the node."""
        if self.publisher is None:
            self.publisher = CancellableClient(
                "127.0.0.1", self.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=0.5
            )
            await self.publisher.__aenter__()
        try:
            await self.publisher.publish(topic, payload, qos=1, retain=retain, properties=props)
        except (aiomqtt.MqttError, ValueError, TypeError):
            gone = self.publisher._disconnected  # read, so asyncio does not log it
            if gone.done() and not gone.cancelled():
                gone.exception()
            with contextlib.suppress(Exception):
                await self.publisher.__aexit__(None, None, None)
            self.publisher = None

    async def mark(self) -> str:
        """A ping from a well-behaved client; its id."""
        mark = f"zz-mark-{uuid.uuid4().hex[:8]}"
        async with CancellableClient(
            "127.0.0.1", self.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.publish(f"{BASE}/cmd/ping", json.dumps({"id": mark}).encode(), qos=1)
        return mark


@pytest.fixture
async def target(broker: Mosquitto, tmp_path: Path, spawn: Any) -> AsyncIterator[Target]:
    config = write_config(tmp_path, broker.port, gps=False, health_s=3600)
    async with Collector(broker.port, topic="#") as witness:
        await online(witness, config, spawn)
        t = Target(broker.port, witness)
        yield t
        if t.publisher is not None:
            with contextlib.suppress(Exception):
                await t.publisher.__aexit__(None, None, None)
        assert len(births(witness)) == 1 and not offlines(witness), "the session was dropped"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(name="ping", payload=b"[]", retain=False, props=None)  # an empty batch to a reader
@example(name="_invalid", payload=b"\x80", retain=False, props=None)  # CBOR's empty array
@example(name="ping", payload=b"\x82\x01\x02", retain=False, props=None)  # a CBOR list of 2
@given(
    name=st.sampled_from(NAMES) | TEXT,
    payload=PAYLOADS,
    retain=st.integers(0, 7).map(lambda n: n == 0),
    props=properties(),
)
async def test_no_command_message_ends_the_session_and_each_gets_one_reply(
    target: Target, name: str, payload: bytes, retain: bool, props: Properties | None
) -> None:
    before = target.delivered()
    await target.publish(f"{BASE}/cmd/{name}", payload, retain, props)
    mark = await target.mark()
    w = target.witness
    await w.wait_for(lambda: any(r.get("id") == mark for r in target.replies()), 10, "the marker")
    if target.delivered() > before and not retain:
        target.expected += 1
    await w.wait_for(lambda: target.hostile_replies() >= target.expected, 3, "the reply")
    assert target.hostile_replies() == target.expected
    assert len(births(w)) == 1 and not offlines(w), "the session was dropped"

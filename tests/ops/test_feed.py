"""`FleetFeed` (what `edgectl watch`, `edgectl feed` and the demo show) against a real
Mosquitto and the embedded amqtt broker: each message reaches the view once, although the
feed subscribes a node's retained topics by name beside `{prefix}/#`."""

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edged.ops.client import connect
from edged.ops.feed import (
    EXACT_ID,
    MAX_NODE_QUEUED,
    WILDCARD_ID,
    Copies,
    FleetFeed,
    Shares,
    subscription_id,
)
from edged.ops.fleet import FleetView
from edged.ops.login import Login
from edged.ops.urls import parse_broker_url
from edged.uplink.cancellable import CancellableClient
from tests.helpers.amqtt import ThreadedAmqtt
from tests.helpers.broker import Mosquitto
from tests.helpers.quirks import QuirkProxy, Quirks

PREFIX = "rnst/v1"
NODE = f"{PREFIX}/test/n1"
SETTLE_S = 0.5
"""Long enough for a copy that would come to come (they come within milliseconds)."""


@pytest.fixture
def amqtt() -> Iterator[ThreadedAmqtt]:
    b = ThreadedAmqtt().start()
    yield b
    b.stop()


@pytest.fixture(params=["mosquitto-5", "mosquitto-3.1.1", "amqtt-3.1.1"])
def where(request: pytest.FixtureRequest) -> tuple[int, str]:
    """A broker's port and the protocol to speak to it: Mosquitto 2.0 sends a message once
    per matching subscription over MQTT 5, amqtt over 3.1.1."""
    name, protocol = request.param.split("-", 1)
    port: int = request.getfixturevalue("broker" if name == "mosquitto" else "amqtt").port
    return port, protocol


@pytest.fixture
def exact_only(broker: Mosquitto) -> Iterator[QuirkProxy]:
    """Mosquitto behind a proxy giving retained messages only to subscriptions naming the
    exact topic, as RabbitMQ 3.10 does (tests/helpers/quirks.py)."""
    p = QuirkProxy(broker.port, Quirks(retained_exact_only=True)).start()
    yield p
    p.stop()


def _state(seq: int) -> bytes:
    body = {"v": 1, "seq": seq, "ts": int(time.time() * 1000), "clock": "ntp", "state": "online"}
    return json.dumps(body).encode()


@contextlib.asynccontextmanager
async def _publisher(port: int) -> AsyncIterator[CancellableClient]:
    async with CancellableClient("127.0.0.1", port, identifier="test-node-n1") as c:
        yield c


@contextlib.asynccontextmanager
async def _feed(port: int, protocol: Any) -> AsyncIterator[tuple[FleetFeed, FleetView]]:
    view = FleetView(PREFIX)
    feed = FleetFeed(Login(parse_broker_url(f"mqtt://127.0.0.1:{port}"), protocol=protocol), view)
    task = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(10):
            await feed.subscribed.wait()
        yield feed, view
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _shown(view: FleetView, suffix: str = "state") -> int:
    node = view.node("test", "n1")
    return 0 if node is None else node.messages[suffix]


async def _settled(view: FleetView, at_least: int, suffix: str = "state") -> int:
    """How many messages on `suffix` the view took, once `at_least` came and then no more."""
    async with asyncio.timeout(10):
        while _shown(view, suffix) < at_least:
            await asyncio.sleep(0.02)
    await asyncio.sleep(SETTLE_S)
    return _shown(view, suffix)


async def test_a_retained_message_is_shown_once(where: tuple[int, str]) -> None:
    """The broker gives it to `{prefix}/#`, and again to the exact subscription to `state`."""
    port, protocol = where
    async with _publisher(port) as node:
        await node.publish(f"{NODE}/state", _state(1), qos=1, retain=True)
    async with _feed(port, protocol) as (_, view):
        assert await _settled(view, 1) == 1


async def test_a_live_message_on_a_retained_topic_is_shown_once(where: tuple[int, str]) -> None:
    """It matches `{prefix}/#` and the node's `state` subscribed by name."""
    port, protocol = where
    async with _publisher(port) as node:
        await node.publish(f"{NODE}/state", _state(1), qos=1, retain=True)
        async with _feed(port, protocol) as (_, view):
            before = await _settled(view, 1)
            await node.publish(f"{NODE}/state", _state(2), qos=1, retain=True)
            assert await _settled(view, before + 1) == before + 1


async def test_where_retained_goes_only_by_name_a_node_first_heard_live_shows_once(
    exact_only: QuirkProxy, broker: Mosquitto
) -> None:
    """The `state` that made the feed notice the node came live through `{prefix}/#`; the
    retained value its subscription by name brings next is that same message."""
    async with _feed(exact_only.port, "3.1.1") as (_, view):
        async with _publisher(broker.port) as node:
            await node.publish(f"{NODE}/state", _state(1), qos=1, retain=True)
        assert await _settled(view, 1) == 1


async def test_the_same_payload_published_twice_is_shown_twice(where: tuple[int, str]) -> None:
    """Two publishes of identical bytes are two messages (a node repeating its state, a
    position that did not move), retained or not: none is taken for a copy of the other."""
    port, protocol = where
    async with _publisher(port) as node:
        await node.publish(f"{NODE}/state", _state(1), qos=1, retain=True)
        async with _feed(port, protocol) as (_, view):
            before = await _settled(view, 1)
            same = _state(2)
            await node.publish(f"{NODE}/state", same, qos=1, retain=True)
            await node.publish(f"{NODE}/state", same, qos=1, retain=True)
            await node.publish(f"{NODE}/state", same, qos=0, retain=False)
            assert await _settled(view, before + 3) == before + 3


async def test_a_flood_on_a_retained_topic_counts_each_message_once(
    where: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message of a flood on a node's `health` is either read or dropped at the
    reader's bound, once: the drop count is not inflated by a second copy of each."""
    monkeypatch.setattr("edged.ops.client.MAX_QUEUED_MESSAGES", 8)
    port, protocol = where
    count = 3000
    async with _publisher(port) as node:
        await node.publish(f"{NODE}/state", _state(1), qos=1, retain=True)
        async with _feed(port, protocol) as (feed, view):
            await _settled(view, 1)
            received, dropped = view.received, feed.dropped
            for _ in range(count):
                await node.publish(f"{NODE}/health", b"{}", qos=0)

            def taken() -> int:
                return view.received - received + feed.dropped - dropped

            async with asyncio.timeout(30):
                while taken() < count:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(SETTLE_S)
            assert feed.dropped > dropped, "the reader kept up: nothing shows how drops count"
            assert taken() == count, f"{feed.dropped - dropped} of them dropped"


async def test_over_mqtt5_a_copy_for_an_exact_subscription_alone_is_never_queued(
    broker: Mosquitto,
) -> None:
    """While both subscriptions stand (the feed's round trip to fetch a node's retained
    topics), Mosquitto sends a live message once per subscription, each copy naming its
    own: the exact one's copy takes no room in the reader's queue."""
    login = Login(parse_broker_url(broker.url), protocol="5")
    async with connect(login, "edgectl-test-ids") as reader:
        copies = Copies(PREFIX, identifiers=True)
        reader.skip, reader.taken = copies.repeat, copies.queued
        await reader.subscribe(f"{PREFIX}/#", qos=1, properties=subscription_id(WILDCARD_ID))
        await reader.subscribe(f"{NODE}/state", qos=1, properties=subscription_id(EXACT_ID))
        async with _publisher(broker.port) as node:
            await node.publish(f"{NODE}/state", _state(1), qos=1)
        await asyncio.sleep(SETTLE_S)
        assert len(reader.messages) == 1
        message = await anext(aiter(reader.messages))
        assert WILDCARD_ID in getattr(message.properties, "SubscriptionIdentifier", [])


async def test_a_slow_answer_to_the_subscriptions_by_name_holds_up_no_node(
    broker: Mosquitto,
) -> None:
    """Each node first seen had its subscriptions by name answered (SUBACK, then UNSUBACK
    since they last one round trip) before the feed read its next message: a fleet came on
    screen a node per two round trips (measured through a 40 ms link: 100 nodes in 10.8 s,
    4.3 s with one round trip). The retained values `{prefix}/#` brings show at once."""
    nodes = 20
    async with CancellableClient("127.0.0.1", broker.port, identifier="seed") as seed:
        for i in range(nodes):
            await seed.publish(f"{PREFIX}/test/n{i}/state", _state(1), qos=1, retain=True)
    proxy = QuirkProxy(broker.port, Quirks(hold_exact_s=2.0)).start()
    try:
        async with _feed(proxy.port, "5") as (_, view):
            async with asyncio.timeout(1.5):
                while len(view.nodes) < nodes:
                    await asyncio.sleep(0.02)
    finally:
        proxy.stop()


FLOOD_PER_S = 600
FLOOD_S = 8.0


def _flood(port: int, stop: Any, sent: Any) -> None:
    """A node with a valid certificate publishing, faster than the reader takes them, batches of a
    thousand positions (one payload: a thousand messages for the reader to take)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-node-evil")
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = int(time.time() * 1000)
    batch = json.dumps(
        [
            {"v": 1, "ts": now + n, "clock": "ntp", "lat": 45.9, "lon": 2.1 + n / 1e6}
            for n in range(1000)
        ]
    ).encode()
    started = time.monotonic()
    try:
        while not stop.is_set():
            client.publish(f"{PREFIX}/test/evil/position", batch, qos=0).wait_for_publish(5)
            sent.value += 1
            # 600 a second (80 MB/s): more than the reader takes on a quiet machine (at 300 it
            # kept up in 2 runs of 7, nothing dropped), less than localhost carries
            time.sleep(max(0.0, started + sent.value / FLOOD_PER_S - time.monotonic()))
    finally:
        client.loop_stop()
        client.disconnect()


async def test_a_flood_from_one_node_does_not_hold_up_the_others(broker: Mosquitto) -> None:
    """One node flooding its topics made every message queue behind its own: the reader
    fell behind by as long as the flood lasted, and the feed served every other vehicle
    tens of seconds late, then as stale (left out). Each node now has a bounded share of
    the reader's queue; what a flooding node sends over it is dropped (counted)."""
    stop = multiprocessing.Event()
    sent = multiprocessing.Value("i", 0)
    published: dict[int, float] = {}
    async with _feed(broker.port, "5") as (feed, view), _publisher(broker.port) as good:
        flooder = multiprocessing.Process(target=_flood, args=(broker.port, stop, sent))
        flooder.start()
        try:
            started = time.monotonic()
            seq = 0
            while time.monotonic() - started < FLOOD_S:
                seq += 1
                body = {
                    "v": 1,
                    "seq": seq,
                    "ts": int(time.time() * 1000),
                    "clock": "ntp",
                    "lat": 45.95,
                    "lon": 2.16,
                    "fix_time": "2027-01-15T08:00:00+00:00",
                }
                await good.publish(f"{NODE}/position", json.dumps(body).encode(), qos=1)
                published[seq] = time.monotonic()
                await asyncio.sleep(0.25)
            node = view.node("test", "n1")
            assert node is not None and node.position is not None and node.position.seq
            lag = time.monotonic() - published[node.position.seq]
        finally:
            stop.set()
            flooder.join(10)
    assert sent.value > 50, "no flood"
    # behind the whole queue, it lagged by most of the flood (6 s of 8 here); behind its
    # share, by what the broker and the socket hold (well under a second when not loaded)
    assert lag < 3.0, f"the other node's latest position shown was sent {lag:.1f} s ago"
    assert feed.dropped > 0


def _message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=topic.encode())
    message.payload = payload
    return message


def test_a_node_over_its_share_still_gets_its_alarms_in() -> None:
    # a node's burst after a dead zone filled its share: its positions wait, not its panic
    shares = Shares(PREFIX)
    batch = _message(f"{NODE}/position", b"x" * (MAX_NODE_QUEUED - 100))
    assert not shares.over(batch)
    shares.queued(batch)
    assert shares.over(_message(f"{NODE}/position", b"y" * 200))
    panic = _message(f"{NODE}/alarm/panic", b"z" * 200)
    assert not shares.over(panic)
    shares.queued(panic)
    assert shares.held[NODE.removeprefix(f"{PREFIX}/")] > MAX_NODE_QUEUED  # still counted
    other = _message(f"{PREFIX}/test/n2/position", b"y" * 200)
    assert not shares.over(other)  # another node's share is its own


def test_a_nodes_long_topic_names_count_in_its_share() -> None:
    # `events/{kind}` may be 64 KiB long: empty payloads under such names took a node's
    # share at 64 bytes each, and every other node waited behind thousands of them
    shares = Shares(PREFIX)
    topic = f"{NODE}/events/" + "x" * 60_000
    queued = 0
    while not shares.over(message := _message(topic, b"")):
        assert queued <= MAX_NODE_QUEUED // 60_000, "the node's share never filled"
        shares.queued(message)
        queued += 1
    for _ in range(queued):  # and reading them gives the share back, to the byte
        shares.read(topic, b"")
    assert shares.held == {}


def test_only_retained_topics_of_a_node_id_are_remembered() -> None:
    # under no ACL (a broker that delivers anything) a peer's retained `state` under
    # 60 kB "fleet" names was each remembered, up to MAX_REMEMBERED (16,000: 1 GB)
    import tracemalloc

    copies = Copies(PREFIX, identifiers=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):  # 18 MB of names
            message = _message(f"{PREFIX}/{i}{'f' * 60_000}/n1/state", b"{}")
            message.retain = True
            copies.queued(message)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept:,} bytes kept"
    state = _message(f"{NODE}/state", b"{}")
    state.retain = True
    copies.queued(state)
    assert copies.repeat(state)  # a node's own retained value is still known again

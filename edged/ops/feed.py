"""The dispatch side of the wire: one MQTT subscriber on `{prefix}/#` feeding a `FleetView`.

The demo screen and `edgectl watch` both use it, so what they show is exactly what the
broker delivers to a subscriber, never what a node believes it sent.

Some brokers (RabbitMQ 3.10) hand retained messages only to a subscription naming the
exact topic, never to `{prefix}/#`: a node that is online but quiet would show "no state".
So each node seen (or named in `nodes`) also gets exact subscriptions to its retained
topics, for the retained value the broker sends when they are made.

A message matching both subscriptions may come once per subscription (MQTT allows it:
Mosquitto over MQTT 5 and amqtt do it), and the retained value a subscription by name
brings comes again after `{prefix}/#` brought it (at its own subscription on Mosquitto, as
a live message on RabbitMQ). Each message is shown once all the same (`Copies`, which
sorts the copies as they arrive: one not taken is neither queued nor counted as dropped):

- the exact subscriptions are dropped as soon as the broker has answered them: it queues
  the retained values when it takes the SUBSCRIBE (Mosquitto, RabbitMQ, amqtt), and a live
  message comes through `{prefix}/#` alone from then on. A flood on those topics costs
  one copy, not two, and counts once against the reader's bound (`ToolClient.dropped`);
- over MQTT 5 each subscription carries an identifier, so a copy that matched only an
  exact subscription and is not a retained value (one published during that round trip)
  is not taken: `{prefix}/#` brought the same message;
- a retained value (retain flag set: sent because a subscription was made, MQTT-3.3.1-8,
  never for a live publish) equal to the last payload taken on its topic is the same
  message sent again, and is not taken. A node publishing the same payload twice is two
  live messages without the flag: both are shown.

Left over MQTT 3.1.1 only: on a broker that duplicates overlapping subscriptions (amqtt;
Mosquitto 2.0 does not over 3.1.1) a message published during the one round trip between
an exact subscription and its removal shows twice, as nothing tells it from a repeat.
"""

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.ops.client import (
    BrokerUnreachableError,
    Say,
    ToolClient,
    connect,
    payload_size,
    refused,
)
from edged.ops.fleet import MAX_PAYLOAD, NAME, FleetView
from edged.ops.login import Login
from edged.topics import ALARM, TOPICS

log = logging.getLogger(__name__)

ALARM_KINDS = ("panic", "outbox_full")
RETAINED = tuple(
    s.name for s in TOPICS.values() if s.retain and s.direction == "out" and "{" not in s.name
) + tuple(ALARM.suffix(kind) for kind in ALARM_KINDS)
"""A node's retained topics, each subscribed exactly (see the module's docstring)."""
_NAMES = frozenset(RETAINED)
MAX_EXACT_NODES = 2_000
"""Past this many nodes, no more exact subscriptions (each costs the broker one round trip
and, for a moment, one subscription per retained topic)."""
EXACT_AT_ONCE = 4
"""Nodes whose subscriptions by name are under way at once, beside the reading (under
aiomqtt's warning of pending calls, 10)."""
MAX_REMEMBERED = MAX_EXACT_NODES * len(RETAINED)
"""Retained topics whose last payload is kept (a 16-byte digest each) to know a replay."""
MAX_NODE_QUEUED = 4 * MAX_PAYLOAD
"""What one node may have in the reader's queue (payload bytes, plus `MESSAGE_WEIGHT` for
each message): a flood from one node (a stolen certificate, a bug) fills its own share and
is dropped there, and every other node's messages wait behind at most that much of it,
not behind the whole queue (50,000 messages, seconds to minutes of reading). Four of the
largest payloads the view reads: a node's ordinary burst (a reconnection's retained
topics, an outbox replay's first batches) fits while the reader catches up."""
MESSAGE_WEIGHT = 64
WILDCARD_ID = 1
EXACT_ID = 2
"""MQTT 5 subscription identifiers: which of our subscriptions a PUBLISH matched."""


def subscription_id(identifier: int | None) -> Properties | None:
    """SUBSCRIBE properties naming the subscription `identifier` (None: no properties)."""
    if identifier is None:
        return None
    props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
    props.SubscriptionIdentifier = identifier
    return props


def _digest(payload: object) -> bytes:
    data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
    return hashlib.blake2b(data, digest_size=16).digest()


class Copies:
    """Which copies reaching one connection are repeats (see the module's docstring), decided
    as they arrive, before the reader's queue, so a repeat takes no room in it and is not
    counted as dropped: the MQTT 5 copy of a live message that matched only an exact
    subscription, and a retained value equal to the last payload queued on its topic (a
    copy dropped at the queue's bound is not remembered: its replay is a second chance)."""

    def __init__(self, prefix: str, identifiers: bool) -> None:
        self.prefix = f"{prefix}/"
        self.identifiers = identifiers
        """Whether our subscriptions carry identifiers (MQTT 5, unless the broker says no)."""
        self._last: dict[str, bytes] = {}
        """Digest of the last payload queued on each node's retained topic (a bounded few)."""

    def repeat(self, message: mqtt.MQTTMessage) -> bool:
        """Whether `message` is a copy of one already taken (then it is not queued)."""
        return self._extra(message) or (
            message.retain and self._last.get(message.topic) == _digest(message.payload)
        )

    def queued(self, message: mqtt.MQTTMessage) -> None:
        """Note the payload queued on a node's retained topic, for its replay to match."""
        topic = message.topic
        parts = _levels(self.prefix, topic)
        if len(parts) < 3 or parts[2] not in _NAMES:
            return
        if not NAME.fullmatch(parts[0]) or not NAME.fullmatch(parts[1]):
            return  # no node's topic (a broker without ACL delivers any): not remembered
        if topic in self._last or len(self._last) < MAX_REMEMBERED:
            self._last[topic] = _digest(message.payload)

    def _extra(self, message: mqtt.MQTTMessage) -> bool:
        """A live message's copy for an exact subscription alone, over MQTT 5: the
        wildcard subscription brought the same message."""
        if not self.identifiers or message.retain:
            return False
        found = getattr(message.properties, "SubscriptionIdentifier", None)
        return isinstance(found, list) and bool(found) and WILDCARD_ID not in found


def _levels(prefix: str, topic: str) -> list[str]:
    """`[fleet, node, rest]` of a topic under `prefix` (ending in `/`), fewer when it has
    fewer levels; none for a topic outside it."""
    return topic[len(prefix) :].split("/", 2) if topic.startswith(prefix) else []


class Shares:
    """How much of the reader's queue each node holds (see `MAX_NODE_QUEUED`). Counted as
    messages are queued and read, both on the event loop (aiomqtt reads the socket there)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}/"
        self.held: dict[str, int] = {}

    def _key(self, topic: str) -> str | None:
        parts = _levels(self.prefix, topic)
        return f"{parts[0]}/{parts[1]}" if len(parts) >= 2 else None

    @staticmethod
    def _weight(topic: str, payload: object) -> int:
        """A message's weight: its topic (a node may write 64 KiB ones, `events/{kind}`),
        its payload and `MESSAGE_WEIGHT`, alike when queued and when read."""
        return len(topic) + payload_size(payload) + MESSAGE_WEIGHT

    def over(self, message: mqtt.MQTTMessage) -> bool:
        """Whether `message` would take its node past its share (a node with nothing
        queued always gets one message in, however large). An alarm never is: a panic
        comes first in a node's burst after a dead zone, and must reach `edgectl watch`
        whatever that node sent before it (it still counts in the share)."""
        parts = _levels(self.prefix, message.topic)
        if len(parts) < 2 or (len(parts) == 3 and parts[2].startswith("alarm/")):
            return False
        held = self.held.get(f"{parts[0]}/{parts[1]}", 0)
        return held > 0 and held + self._weight(message.topic, message.payload) > MAX_NODE_QUEUED

    def queued(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        key = self._key(topic)
        if key is not None:
            self.held[key] = self.held.get(key, 0) + self._weight(topic, message.payload)

    def read(self, topic: str, payload: object) -> None:
        key = self._key(topic)
        if key is None or key not in self.held:
            return
        left = self.held[key] - self._weight(topic, payload)
        if left > 0:
            self.held[key] = left
        else:
            del self.held[key]


class ByName:
    """One connection's subscriptions by name to nodes' retained topics (see the module's
    docstring), beside its wildcard filters: both carry MQTT 5 subscription identifiers
    when the broker takes them, and `Copies` keeps each message once. `edgectl watch`, the
    fleet feed and `edgectl update` share it, so every tool hears a quiet node alike.

    A node is fetched once a connection: `named` ones at once (awaited: they are asked
    for), each one `seen` by a few workers beside the reading, which never waits on them:
    awaited there, each new node held the next message for two round trips (SUBACK,
    UNSUBACK), and a fleet came on screen one node per two round trips (100 nodes through
    a 40 ms link: 10.8 s)."""

    def __init__(self, client: ToolClient, prefix: str, names: Sequence[str] = RETAINED) -> None:
        self.client = client
        self.prefix = prefix
        self.names = tuple(names)
        self.identifiers = client.version == "5" and (
            client.connack_property("SubscriptionIdentifierAvailable") != 0
        )
        """Whether our subscriptions carry identifiers (MQTT 5, unless the broker says no)."""
        self.copies = Copies(prefix, self.identifiers)
        self.shares = Shares(prefix)
        client.skip, client.refuse, client.taken = self.copies.repeat, self.shares.over, self._taken
        self.nodes: set[str] = set()
        """Every node (`fleet/node`) seen or named on this connection."""
        self._waiting: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    def _taken(self, message: mqtt.MQTTMessage) -> None:
        self.copies.queued(message)
        self.shares.queued(message)

    async def __aenter__(self) -> "ByName":
        self._workers = [asyncio.create_task(self._work()) for _ in range(EXACT_AT_ONCE)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await worker

    async def subscribe(self, filters: Iterable[str]) -> bool:
        """Subscribe the wildcard `filters` (QoS 1); whether the broker refused one."""
        granted = await self.client.subscribe(
            [(f, 1) for f in filters],
            properties=subscription_id(WILDCARD_ID if self.identifiers else None),
        )
        return refused(granted)

    async def named(self, keys: Iterable[str]) -> None:
        """Fetch each node of `keys` (`fleet/node`) not fetched yet, now."""
        for key in keys:
            if key not in self.nodes and self._new(key):
                await self._fetch(key)

    def seen(self, key: str) -> None:
        """Node `key` was heard: the workers fetch it unless done already."""
        if key not in self.nodes and self._new(key):
            self._waiting.put_nowait(key)

    def check(self) -> None:
        """Raise the error that ended a worker, if any (a refusal or a lost link ends the
        session)."""
        for worker in self._workers:
            if worker.done():
                worker.result()

    async def settled(self) -> None:
        """Once every node seen so far was fetched: the retained values the broker sent for
        them are then in the client's queue (sent before its answer)."""
        joined = asyncio.ensure_future(self._waiting.join())
        try:
            await asyncio.wait([joined, *self._workers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        self.check()

    def _new(self, key: str) -> bool:
        """Note a node; whether it gets subscriptions by name (the first `MAX_EXACT_NODES`
        do: each costs the broker a round trip)."""
        self.nodes.add(key)
        return len(self.nodes) <= MAX_EXACT_NODES

    async def _work(self) -> None:
        while True:
            key = await self._waiting.get()
            try:
                await self._fetch(key)
            finally:
                self._waiting.task_done()

    async def _fetch(self, key: str) -> None:
        """Subscribe the node's retained topics by name for the retained values the broker
        sends for them, then unsubscribe: live messages come through the wildcard."""
        base = f"{self.prefix}/{key}"
        topics = [f"{base}/{name}" for name in self.names]
        identifier = EXACT_ID if self.identifiers else None
        granted = await self.client.subscribe(
            [(t, 1) for t in topics], properties=subscription_id(identifier)
        )
        if refused(granted):
            log.info("the broker refused exact subscriptions under %s", base)
        await self.client.unsubscribe(topics)


class FleetFeed:
    """Keep `view` fed from `{prefix}/#`; reconnect with backoff once it has worked once.

    The first connection failing raises `BrokerUnreachableError` (a typo in a URL should
    say so at once); a later loss shows in `status` while it reconnects.
    """

    def __init__(
        self,
        login: Login,
        view: FleetView,
        *,
        client_id: str | None = None,
        nodes: Iterable[str] = (),
        fleets: Iterable[str] = (),
        say: Say | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.login = login
        self.view = view
        self.client_id = client_id or f"edgectl-{uuid.uuid4().hex[:12]}"
        self.named = tuple(nodes)
        self.fleets = tuple(fleets)
        self.say = say
        self.on_change = on_change
        self.subscribed = asyncio.Event()
        self.connected = False
        self.status = "connecting"
        self.sessions = 0
        self.version: str | None = None
        self._client: ToolClient | None = None
        self._dropped_before = 0  # by the connections before this one
        self._unreadable_before = 0

    @property
    def dropped(self) -> int:
        """Messages the connections dropped because this reader lagged (a flood): what the
        view shows may be older than what the nodes sent."""
        client = self._client
        return self._dropped_before + (client.dropped if client is not None else 0)

    @property
    def unreadable(self) -> int:
        """Messages left out because they could not be read (`ToolClient.malformed`: a
        topic that is not UTF-8, a property paho refuses): a node sending them is shown
        from its other messages only."""
        client = self._client
        return self._unreadable_before + (client.malformed if client is not None else 0)

    @property
    def topic_filters(self) -> list[str]:
        """`{prefix}/#`, or one `{prefix}/{fleet}/#` per fleet named."""
        prefix = self.view.prefix
        return [f"{prefix}/{f}/#" for f in self.fleets] if self.fleets else [f"{prefix}/#"]

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                async with (
                    connect(self.login, self.client_id, say=self.say) as client,
                    ByName(client, self.view.prefix) as by_name,
                ):
                    self._client = client
                    if await by_name.subscribe(self.topic_filters):
                        raise BrokerUnreachableError(
                            f"the broker at {self.login.address} refused a subscription to "
                            f"{' '.join(self.topic_filters)}: check its ACL for this client"
                        )
                    self.connected = True
                    self.sessions += 1
                    self.version = client.version
                    failures = 0
                    self.status = "connected"
                    await by_name.named(self.named)
                    self.subscribed.set()
                    await self._read(client, by_name)
            except BrokerUnreachableError:
                if not self.subscribed.is_set():
                    raise
                self.status = "the broker refuses us now; retrying"
            except aiomqtt.MqttError as exc:
                if not self.subscribed.is_set():
                    raise BrokerUnreachableError(
                        f"lost the broker at {self.login.address} while subscribing: {exc}"
                    ) from None
                self.status = f"lost the broker ({exc}); reconnecting"
                log.info("lost the broker at %s: %s", self.login.address, exc)  # `status` shows it
            finally:
                self.connected = False
                if self._client is not None:
                    self._dropped_before += self._client.dropped
                    self._unreadable_before += self._client.malformed
                    self._client = None
            failures += 1
            await asyncio.sleep(min(5.0, 0.25 * 2**failures))

    async def _read(self, client: ToolClient, by_name: ByName) -> None:
        """Ingest each message; a node first seen gets its subscriptions by name."""
        async for message in client.messages:
            topic = str(message.topic)
            by_name.shares.read(topic, message.payload)
            if self.view.ingest(topic, message.payload) and self.on_change:
                self.on_change()
            key = self.view.node_key(topic)
            if key is not None:
                by_name.seen(key)
            by_name.check()


class DropReport:
    """A growing count of dropped messages as a few lines for an operator: one when dropping
    starts, one when none was dropped for `quiet_s` (how many, over how long), and the
    total at the end — a flood must show, but must not flood the terminal in turn."""

    def __init__(self, quiet_s: float = 3.0) -> None:
        self.quiet_s = quiet_s
        self._seen = 0
        self._last_at = 0.0
        self._since: tuple[int, float] | None = None  # count and time when dropping began

    def poll(self, dropped: int, now: float) -> str | None:
        """The line to say now, if any, given the total `dropped` so far (monotonic `now`)."""
        if dropped > self._seen:
            began = self._since is None
            if began:
                self._since = (self._seen, now)
            self._seen, self._last_at = dropped, now
            if began:
                return (
                    "dropping messages: they arrive faster than edgectl reads them (a flood "
                    "on the broker?); the table may miss some"
                )
            return None
        if self._since is not None and now - self._last_at >= self.quiet_s:
            before, at = self._since
            self._since = None
            return (
                f"stopped dropping: {dropped - before:,} messages dropped in "
                f"{max(1.0, self._last_at - at):.0f} s ({dropped:,} in all)"
            )
        return None

    @staticmethod
    def summary(dropped: int) -> str | None:
        """The line to end with: the total, when anything was dropped."""
        if not dropped:
            return None
        return (
            f"{dropped:,} messages dropped in all, while edgectl could not keep up: a node "
            "may show older values than it sent"
        )

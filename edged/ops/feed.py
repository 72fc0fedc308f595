"""The dispatch side of the wire: one MQTT subscriber on `{prefix}/#` feeding a `FleetView`.

The demo screen and `edgectl watch` both use it, so what they show is exactly what the
broker delivers to a subscriber, never what a node believes it sent.

Some brokers (RabbitMQ 3.10) hand retained messages only to a subscription naming the
exact topic, never to `{prefix}/#`: a node that is online but quiet would show "no state".
So each node seen (or named in `nodes`) also gets exact subscriptions to its retained
topics; on a broker that already sent them, the retained value simply arrives again.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable

import aiomqtt

from edged.ops.client import BrokerUnreachableError, Say, ToolClient, connect, refused
from edged.ops.fleet import FleetView
from edged.ops.login import Login
from edged.topics import ALARM, TOPICS

log = logging.getLogger(__name__)

ALARM_KINDS = ("panic", "outbox_full")
RETAINED = tuple(
    s.name for s in TOPICS.values() if s.retain and s.direction == "out" and "{" not in s.name
) + tuple(ALARM.suffix(kind) for kind in ALARM_KINDS)
"""A node's retained topics, each subscribed exactly (see the module's docstring)."""
MAX_EXACT_NODES = 2_000
"""Past this many nodes, no more exact subscriptions (each costs the broker one)."""


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
        self._exact: set[str] = set()
        self._client: ToolClient | None = None
        self._dropped_before = 0  # by the connections before this one

    @property
    def dropped(self) -> int:
        """Messages the connections dropped because this reader lagged (a flood): what the
        view shows may be older than what the nodes sent."""
        client = self._client
        return self._dropped_before + (client.dropped if client is not None else 0)

    @property
    def topic_filters(self) -> list[str]:
        """`{prefix}/#`, or one `{prefix}/{fleet}/#` per fleet named."""
        prefix = self.view.prefix
        return [f"{prefix}/{f}/#" for f in self.fleets] if self.fleets else [f"{prefix}/#"]

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                async with connect(self.login, self.client_id, say=self.say) as client:
                    self._client = client
                    granted = await client.subscribe([(f, 1) for f in self.topic_filters])
                    if refused(granted):
                        raise BrokerUnreachableError(
                            f"the broker at {self.login.address} refused a subscription to "
                            f"{' '.join(self.topic_filters)}: check its ACL for this client"
                        )
                    self._exact = set()
                    self.connected = True
                    self.sessions += 1
                    self.version = client.version
                    failures = 0
                    self.status = "connected"
                    for named in self.named:
                        await self._subscribe_exact(client, named)
                    self.subscribed.set()
                    async for message in client.messages:
                        topic = str(message.topic)
                        if self.view.ingest(topic, message.payload) and self.on_change:
                            self.on_change()
                        key = self.view.node_key(topic)
                        if key is not None and key not in self._exact:
                            await self._subscribe_exact(client, key)
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
                    self._client = None
            failures += 1
            await asyncio.sleep(min(5.0, 0.25 * 2**failures))

    async def _subscribe_exact(self, client: ToolClient, key: str) -> None:
        self._exact.add(key)
        if len(self._exact) > MAX_EXACT_NODES:
            return
        base = f"{self.view.prefix}/{key}"
        granted = await client.subscribe([(f"{base}/{name}", 1) for name in RETAINED])
        if refused(granted):
            log.info("the broker refused exact subscriptions under %s", base)


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

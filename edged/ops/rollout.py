"""`edgectl update FLEET`: a staged rollout over MQTT, stopped by the first bad node.

1. Who is there: each node's retained `state` (and `update`) under `{prefix}/{fleet}/+/`,
   gathered for a few seconds (`Hearing`). Nodes already on the version are left out;
   offline nodes are reported and left out (a command is not kept for them: run it again
   later).
2. Canaries first (`--canary N` or `P%` of the nodes to update), then waves twice the
   size of the one before (or `--wave-size N`), each one sent and then waited for.
3. Each node gets a signed `update.apply`; its reply gives the update's id, and its
   retained `update` topic with that id says how it goes. A wave is done when each of its
   nodes says `confirmed`. The first node that says `rolled_back` or `failed`, refuses
   the command, or stays silent past `--timeout`, stops the rollout: no further wave is
   sent, and the node and its reason are named.

Every message from the broker is treated as hostile (edged.ops.fleet's readers): a peer on
the broker can publish anything under any node's topics; it can make a rollout stop, never
make one go on, since only an `update` carrying the id the node answered counts.
"""

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.codec import PayloadError, decode
from edged.ops.client import BrokerUnreachableError, Say, ToolClient, connect
from edged.ops.commands import make_request, reply_of
from edged.ops.feed import ByName
from edged.ops.fleet import NAME, _text
from edged.ops.login import Login

DONE = "confirmed"
BAD = ("rolled_back", "failed")
MAX_NODES = 10_000
MAX_PAYLOAD = 64 * 1024
"""Bytes of a `state`, `update` or reply read at most, on the wire and decoded."""
BY_NAME = ("state", "update")
"""A node's retained topics a rollout reads, also subscribed by name (`Hearing`)."""
LIVE = ("health/#", "position")
"""What names a node that is online on a broker giving retained messages only to
subscriptions by name (RabbitMQ 3.10), beside a `state` or `update` it publishes: every node
sends `health` or `health/beat` at least every `[health] beat_s` (300 s) plus `interval_s`
(30 s), a vehicle on the move its `position` at least every `[services.position.moving]
max_period_s` (30 s), a stopped one every 300 s (docs/topics.md)."""


@dataclass
class NodeUpdate:
    node: str
    online: bool = False
    running: str | None = None
    state: str = "pending"
    update_id: str | None = None
    request_id: str | None = None
    percent: int | None = None
    code: str | None = None
    reason: str | None = None
    wave: int | None = None
    target: str | None = None
    since: float = field(default_factory=time.monotonic)
    last_update: dict[str, Any] | None = None


@dataclass
class Outcome:
    ok: bool
    nodes: dict[str, NodeUpdate]
    stopped_by: NodeUpdate | None = None
    why: str = ""
    skipped: dict[str, str] = field(default_factory=dict)


def parse_canary(text: str) -> Callable[[int], int]:
    """`3` or `10%`: how many canaries for a fleet of n to update (at least one)."""
    text = text.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return lambda n: max(1, math.ceil(n * share / 100))
        count = int(text)
        if count < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"--canary {text!r}: a count (3) or a share of the fleet (10%)") from None
    return lambda n: min(n, count)


def plan(nodes: list[str], canaries: int, wave_size: int | None) -> list[list[str]]:
    """Canaries, then waves doubling (or of `wave_size`), over `nodes` in order."""
    waves, i, size = [], 0, canaries
    while i < len(nodes):
        waves.append(nodes[i : i + size])
        i += size
        size = wave_size or size * 2
    return waves


def node_of(head: str, topic: str) -> tuple[str, str] | None:
    """`(node, rest)` of a topic under `head` (`{prefix}/{fleet}/`) whose level is a node id.

    Not `_replies`: every node of the fleet may write `{prefix}/{fleet}/_replies/+` (MQTT 5
    response topics), so `_replies/state` is some node's writing, not a node's birth."""
    if not topic.startswith(head):
        return None
    node, _, rest = topic[len(head) :].partition("/")
    return (node, rest) if NAME.fullmatch(node) else None


def _obj(payload: Any) -> dict[str, Any] | None:
    """The object a node's `state`, `update` or reply carries, in whichever encoding its
    fleet uses (`[broker] encoding`: the shipped vehicle configs deflate)."""
    if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_PAYLOAD:
        return None
    try:
        value = decode(payload, MAX_PAYLOAD)
    except PayloadError:
        return None
    return value if isinstance(value, dict) else None


class Hearing:
    """One connection hearing a fleet for a rollout or `update status`: wildcard filters
    under `{prefix}/{fleet}/+/`, and each node's `state` and `update` subscribed by name as
    `edgectl watch` does (`ByName`), so a broker that gives retained messages only to such
    subscriptions (RabbitMQ 3.10) still says who is there. Which nodes: those named, else
    each one heard within the wait (`LIVE`, or a `state` or `update` it publishes)."""

    def __init__(
        self, client: ToolClient, prefix: str, fleet: str, ingest: Callable[[str, Any, Any], None]
    ) -> None:
        self.client = client
        self.fleet = fleet
        self.head = f"{prefix}/{fleet}/"
        self.ingest = ingest
        self.by_name = ByName(client, prefix, BY_NAME)
        self._finding = False
        self._taken = 0  # messages ingested
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Hearing":
        await self.by_name.__aenter__()
        self._reader = asyncio.create_task(self._read(), name="hearing.reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        await self.by_name.__aexit__(*exc)

    async def subscribe(self, suffixes: Iterable[str]) -> None:
        """`{prefix}/{fleet}/+/{suffix}` for each suffix; a refusal names the ACL to check."""
        filters = [f"{self.head}+/{suffix}" for suffix in suffixes]
        if await self.by_name.subscribe(filters):
            raise BrokerUnreachableError(
                f"the broker refused a subscription under {self.head[:-1]}: check its ACL for "
                "this client"
            )

    async def find(self, named: list[str] | None, wait_s: float) -> None:
        """Hear the fleet for `wait_s`, then until each node's retained values are in."""
        live = [f"{self.head}+/{suffix}" for suffix in LIVE] if named is None else []
        self._finding = named is None
        if live and await self.by_name.subscribe(live):
            live = []  # an ACL without them: nodes are found by their retained state only
        for name in named or []:
            self.by_name.seen(f"{self.fleet}/{name}")
        await asyncio.sleep(wait_s)
        self._finding = False
        if live:
            await self.client.unsubscribe(live)
        await self.by_name.settled()
        await self._drained()

    async def _drained(self) -> None:
        """Once the reader ingested every message queued by now."""
        target = self._taken + len(self.client.messages)
        while self._taken < target:
            if self._reader is not None and self._reader.done():
                self._reader.result()  # the link was lost
                return
            await asyncio.sleep(0.01)

    async def _read(self) -> None:
        async for message in self.client.messages:
            topic = str(message.topic)
            correlation = getattr(message.properties, "CorrelationData", None)
            self.ingest(topic, message.payload, correlation)
            self._taken += 1
            if self._finding and (found := node_of(self.head, topic)) is not None:
                self.by_name.seen(f"{self.fleet}/{found[0]}")


class Rollout:
    def __init__(
        self,
        login: Login,
        prefix: str,
        fleet: str,
        *,
        version: str,
        args: dict[str, Any],
        key: Ed25519PrivateKey,
        kid: str | None,
        canary: Callable[[int], int],
        wave_size: int | None = None,
        timeout_s: float = 1800.0,
        discover_s: float = 3.0,
        nodes: list[str] | None = None,
        say: Say = lambda _: None,
    ) -> None:
        self.login = login
        self.prefix = prefix
        self.fleet = fleet
        self.version = version
        self.args = args
        self.key = key
        self.kid = kid
        self.canary = canary
        self.wave_size = wave_size
        self.timeout_s = timeout_s
        self.discover_s = discover_s
        self.named = nodes
        self.say = say
        self.nodes: dict[str, NodeUpdate] = {}
        self._requests: dict[str, Any] = {}
        self.unheard = 0
        """Births of nodes past MAX_NODES, not taken: a rollout that cannot hear every node
        of the fleet sends nothing (the nodes past the bound were left out without a word,
        and every message past it was ignored, the canary's reply too)."""
        self._changed = asyncio.Event()

    @property
    def fleet_base(self) -> str:
        return f"{self.prefix}/{self.fleet}"

    def _node_of(self, topic: str) -> tuple[str, str] | None:
        return node_of(f"{self.fleet_base}/", topic)

    def ingest(self, topic: str, payload: Any, correlation: Any = None) -> None:
        """One message from the broker (hostile until proven otherwise)."""
        found = self._node_of(topic)
        if found is None:
            return
        name, rest = found
        body = _obj(payload)
        if body is None:
            return
        node = self.nodes.get(name)
        if rest == "state" and node is None:
            if self.named is not None and name not in self.named:
                return  # a node not asked for
            if len(self.nodes) >= MAX_NODES:
                self.unheard += 1  # past the bound: the rollout will not start (`_roll`)
                return
        if rest == "state":
            node = node or self.nodes.setdefault(name, NodeUpdate(name))
            node.online = body.get("state") == "online"
            version = _text(body.get("version"), 64)
            if version is not None:
                node.running = version
        elif rest == "update" and node is not None:
            node.last_update = body  # the reply naming its id may come after it
            self._apply_update(node)
        elif rest.startswith("reply/") and node is not None and node.request_id is not None:
            self._reply(node, topic, payload, correlation)
        self._changed.set()

    def _apply_update(self, node: NodeUpdate) -> None:
        body = node.last_update
        if body is None or node.update_id is None or body.get("id") != node.update_id:
            return  # another update's news, or someone else's
        node.state = _text(body.get("state"), 32) or node.state
        percent = body.get("percent")
        node.percent = percent if isinstance(percent, int) and 0 <= percent <= 100 else None
        node.code = _text(body.get("code"), 64)
        node.reason = _text(body.get("reason"), 300)
        node.running = _text(body.get("running"), 64) or node.running

    def _reply(self, node: NodeUpdate, topic: str, payload: Any, correlation: Any) -> None:
        request = self._requests.get(node.node)
        if request is None:
            return
        found = reply_of(request, topic, payload, correlation)
        if found is None:
            return
        reply, _ = found
        if reply.get("ok") is True and isinstance(reply.get("result"), dict):
            update_id = reply["result"].get("id")
            if isinstance(update_id, str) and node.update_id is None:
                node.update_id = update_id
                node.state = "accepted"
                self._apply_update(node)
        elif reply.get("ok") is False:
            error = reply["error"] if isinstance(reply.get("error"), dict) else {}
            node.state = "refused"
            node.code = _text(error.get("code"), 64) or "error"
            node.reason = _text(error.get("message"), 300)

    async def run(self) -> Outcome:
        client_id = f"edgectl-{uuid.uuid4().hex[:12]}"
        try:
            async with (
                connect(self.login, client_id, say=self.say) as client,
                Hearing(client, self.prefix, self.fleet, self.ingest) as hearing,
            ):
                await hearing.subscribe(("state", "update", "reply/#"))
                await hearing.find(self.named, self.discover_s)
                return await self._roll(client)
        except aiomqtt.MqttError as exc:
            raise BrokerUnreachableError(
                f"lost the broker at {self.login.address}: {exc}"
            ) from None

    async def _roll(self, client: aiomqtt.Client) -> Outcome:
        if self.unheard:
            return Outcome(
                False, {},
                why=f"more than {MAX_NODES} nodes under {self.fleet_base}: this rollout cannot "
                "follow them all, nothing was sent; name the nodes to update with --node",
            )  # fmt: skip
        for name in self.named or []:
            self.nodes.setdefault(name, NodeUpdate(name))
        skipped: dict[str, str] = {}
        todo: list[str] = []
        for name in sorted(self.nodes):
            node = self.nodes[name]
            if self.named is not None and name not in self.named:
                continue
            if node.running == self.version:
                skipped[name] = f"already on {self.version}"
            elif not node.online:
                skipped[name] = "offline: run the rollout again once it is online"
            else:
                todo.append(name)
        if not todo:
            return Outcome(True, {}, why="no node to update", skipped=skipped)
        waves = plan(todo, self.canary(len(todo)), self.wave_size)
        for number, wave in enumerate(waves, 1):
            kind = "canary" if number == 1 else f"wave {number}"
            self.say(f"{kind}: {', '.join(wave)}")
            for name in wave:
                await self._send(client, self.nodes[name], number)
            stopped = await self._wait(wave)
            if stopped is not None:
                node, why = stopped
                rest = [n for w in waves[number:] for n in w]
                return Outcome(
                    False, self.nodes, stopped_by=node, why=why,
                    skipped=skipped | {n: "not sent: the rollout stopped" for n in rest},
                )  # fmt: skip
            self.say(f"{kind}: confirmed")
        return Outcome(True, self.nodes, why="every node confirmed", skipped=skipped)

    async def _send(self, client: aiomqtt.Client, node: NodeUpdate, wave: int) -> None:
        base = f"{self.fleet_base}/{node.node}"
        request = make_request(base, "update.apply", self.args, key=self.key, kid=self.kid)
        self._requests[node.node] = request
        node.request_id, node.wave, node.state = request.id, wave, "sent"
        node.since = time.monotonic()
        await client.publish(request.topic, request.payload, qos=1)

    async def _wait(self, wave: list[str]) -> tuple[NodeUpdate, str] | None:
        """None once every node of the wave confirmed; else the first bad node and why."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            for name in wave:
                node = self.nodes[name]
                if node.state in BAD or node.state == "refused":
                    what = {"refused": "refused the update"}.get(node.state, node.state)
                    return node, f"{node.node} {what}: {node.code or ''}: {node.reason or ''}"
            if all(self.nodes[n].state == DONE for n in wave):
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                late = next(self.nodes[n] for n in wave if self.nodes[n].state != DONE)
                return late, (
                    f"{late.node} did not confirm within {self.timeout_s:g} s (last: {late.state})"
                )
            self._changed.clear()
            try:
                async with asyncio.timeout(min(left, 1.0)):
                    await self._changed.wait()
            except TimeoutError:
                pass


async def fleet_status(
    login: Login,
    prefix: str,
    fleet: str,
    wait_s: float,
    say: Say | None = None,
    nodes: list[str] | None = None,
) -> dict[str, NodeUpdate]:
    """Each node's retained `state` and `update`: what `edgectl update status` shows (only
    the `nodes` named, when given: each has a row, heard or not)."""
    found: dict[str, NodeUpdate] = {name: NodeUpdate(name, state="-") for name in nodes or []}
    base = f"{prefix}/{fleet}/"

    def ingest(topic: str, payload: Any, _correlation: Any) -> None:
        at = node_of(base, topic)
        body = _obj(payload)
        if body is None or at is None or len(found) > MAX_NODES:
            return
        name, rest = at
        if nodes is not None and name not in found:
            return
        node = found.setdefault(name, NodeUpdate(name, state="-"))
        if rest == "state":
            node.online = body.get("state") == "online"
            node.running = _text(body.get("version"), 64) or node.running
        elif rest == "update":
            node.state = _text(body.get("state"), 32) or "-"
            node.target = _text(body.get("version"), 64)
            node.code = _text(body.get("code"), 64)
            node.reason = _text(body.get("reason"), 300)
            p = body.get("percent")
            node.percent = p if isinstance(p, int) and 0 <= p <= 100 else None
            node.running = _text(body.get("running"), 64) or node.running

    async with (
        connect(login, f"edgectl-{uuid.uuid4().hex[:12]}", say=say) as client,
        Hearing(client, prefix, fleet, ingest) as hearing,
    ):
        await hearing.subscribe(("state", "update"))
        await hearing.find(nodes, wait_s)
    return found

"""The outbox drained through a window of publishes awaiting PUBACK, with no task per message.

aiomqtt's `publish` costs a future, an `asyncio.wait_for` (a task and a timer) and a task
wake-up per message; measured here that was as much CPU as everything else the node does to
send a message (`bench.outbox`: a bare aiomqtt QoS 1 loop spends ~80 µs a message, paho's
`publish` called from the loop with a dict of message ids ~50 µs). So the drain publishes
on paho's own connection, the one aiomqtt runs on the same event loop, without a task per
message. A QoS 1 message goes past paho's per-message objects too (`edged.uplink.packets`:
its PUBLISH built here, the PUBLISHes of one loop turn queued as one write, its PUBACK taken
from the socket before paho reads it); QoS 0 and 2 through paho's `publish`, acknowledged by
paho's `on_publish` (written, for QoS 0):

- PUBACKs read in one socket wake-up are acknowledged there, and the slots they free are
  filled once, in the next turn of the loop, by publishing that many messages in one go;
- a read-ahead of up to READ_AHEAD windows is topped up from the outbox as soon as a
  window's worth has gone, so the trip to the outbox thread overlaps with the publishes
  ahead of it: that trip waits behind the outbox's commit in progress (one thread, one
  connection), and a commit that syncs the disk took tens of milliseconds here under load;
  with two windows read ahead the drain stalled on it and ran at half its rate;
- what a fetch brings that ranks before what is already read ahead (a higher priority
  class, or the live lane before the backlog: `Stored.rank`) goes before it, so a live tap
  does not wait behind the read-ahead's backlog;
- below the alarm class, what is written and not yet with the broker stays within about a
  second of what the link carries (`QUEUE_S`): an alarm put during a backlog drain goes
  past the budget (within the window) and waits only behind that (on a very slow link,
  behind QUEUE_MIN_BYTES and a batch let go just under it; on a link that just slowed,
  behind a second of its old rate); an alarm is read past a full read-ahead
  (`Outbox.next_alarms`);
- a message left unacknowledged for `timeout_s` ends the session, as aiomqtt's publish
  time-out did: the outbox sends it again in the next one;
- a message the broker cannot take (a packet over its Maximum Packet Size, announced or
  learned from the sessions it ended: `edged.uplink.ceiling`; a `BadPublish`) is not sent,
  and the session goes on: `_held_back`;
- a topic the broker refused (a PUBACK's failure code) is tried again with one message in
  the same session after a growing delay, its other messages held, while the others go
  on: `_refused`;
- a message of a retained topic older than one the broker already took
  (`Outbox.superseded`: refused, then overtaken) goes without the retain flag: every
  transition reaches the subscribers, and the broker keeps the newer as the topic's value.

Samples of one topic go several to a publish (`edged.uplink.batching`): a backlog at once,
a live sample after waiting at most `batch_s` for others.

What is acknowledged was on disk before it was sent (the outbox gives out only committed
rows), and the outbox deletes it only after its PUBACK (of the batch that carried it).
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.outbox import Outbox, Stored
from edged.topics import COPY_FROM, Priority
from edged.uplink.batching import Batch, Batcher
from edged.uplink.ceiling import PacketCeiling, Suspect, least
from edged.uplink.mqtt import MqttClient
from edged.uplink.packets import BadPublish, packed, publish_packet, publish_size

READ_AHEAD = 8
"""Windows of messages read ahead of the window in flight."""
QUEUE_S = 1.0
"""Below the alarm class, what is written and not yet with the broker's host (paho's write
queue and the socket's: `MqttClient.queued_bytes`) stays within what the link carried in
the last QUEUE_S, but at least QUEUE_MIN_BYTES (`Sender.budget`). Nothing overtakes bytes
written to the connection: a panic pressed during a day's backlog drain waited behind
every sample the kernel took (megabytes: 19.5 s at 64 kbit/s up, an EDGE link, and more
over GPRS). About a second of what the link carries keeps a fast link's drain at its
rate, and an alarm, which goes past the budget, waits about a second behind it."""
QUEUE_MIN_BYTES = 16 * 1024
"""The budget before the link has shown its rate: at a session's start, on a slow link."""
QUEUE_POLL_S = 0.02
"""While the budget holds the drain back, how long it waits at least before it looks at the
queue again: no event says the kernel sent a QoS 0 publish (`Sender.poll_s`)."""
QUEUE_POLL_MAX_S = 0.25
"""And at most: on a link that carried nothing in the last QUEUE_S (out of coverage, its TCP
connection not yet given up), or slowly. A fixed 20 ms poll woke the node 50 times a second
(100 turns of its loop) for as long as the budget held the drain back, and a link gone quiet
held it back until the session ended (`publish_timeout_s`, the keepalive): a Pi Zero's CPU
and a parked vehicle's battery, for nothing the link could carry. No more than the quarter
of QUEUE_S a look leaves the link (QUEUE_POLL_LEFT): no event says the link came back or
sped up, and until the next look it idles, and a reply the outbox holds behind a full
read-ahead of samples waits (1 s here: a reply put while the link carried nothing arrived
0.96-1.21 s after it came back, against 0.25 s with a 20 ms poll)."""
QUEUE_POLL_LEFT = 0.75
"""While held back, the drain looks at the queue again about when the link, at the rate it
carried in the last QUEUE_S, has brought it down to this share of the budget: it still has
work for a quarter of QUEUE_S then, so the link is not left idle, and about four wake-ups a
second keep a backlog's drain at the link's rate."""
ALIAS_PROPERTIES = 4
"""Bytes of a batch's MQTT 5 properties at most: their length, then a topic alias (a batch
carries no correlation data)."""
RESERVED = 2
"""Of the broker's Receive Maximum, the QoS 1 publishes left to those made outside the
drain, through paho: a republish, the outbox-full alarm, the state on shutdown. Each is
awaited before the next, and at most two run at once; a drain that took the broker's whole
allowance would put one of them over it. Under a small allowance the drain keeps RESERVED +
1 all the same (or all the broker allows: Mosquitto's `max_inflight_messages 1`:
`drain_share`), and such a publish that finds no room waits for it, the drain for it
(`Sender.beside`). (The birth and the restored retained messages go before the drain
starts.)"""
REFUSED = 0x80
"""A PUBACK's reason code from here up says the broker did not take the message."""
RETRY_S = 5.0
"""First delay before a refused publish is tried again in the same session; it doubles at
each refusal of the same rows, up to RETRY_MAX_S."""
RETRY_MAX_S = 300.0
OF_THE_MESSAGE = frozenset({0x95, 0x99})
"""PUBACK reasons that refuse the message, not its topic: packet too large (Mosquitto's
`message_size_limit`), payload format invalid. The topic's other messages go on."""
REFUSED_KEPT = 5000
"""Messages of a topic the broker refuses kept waiting for it, at most: beyond, the oldest
is deleted (`Sender.dropped`). An ACL that refuses a topic refuses all its messages until an
operator fixes it: kept without a bound, they filled the outbox to its hard cap, and then
the node's other events were refused too."""


@dataclass
class Parked:
    """A topic the broker refused: one publish of it (`probe`) is tried again after a delay
    that doubles at each refusal; the others are held, not sent, until the broker takes the
    probe."""

    probe: tuple[Stored, ...] | None = None  # None: the next message of the topic is
    held: deque[Stored] = field(default_factory=deque)
    times: int = 0  # refusals of the probe in this session
    due: bool = True  # the probe may go now
    early: int = 0  # of `held`, the first ones: in flight before the topic was refused


def drain_share(receive_max: int) -> int:
    """Of a broker's Receive Maximum, the publishes the drain keeps in flight: all but
    RESERVED, but a small allowance (up to RESERVED + 1) whole, the publishes beside it
    waiting for room (`Sender.beside`): one in flight where the broker allows two or three
    ran a backlog at half or a third of the rate it allows, for publishes that seldom come
    (at a 100 ms round trip, 10 messages a second instead of 20 or 30)."""
    return max(receive_max - RESERVED, min(receive_max, RESERVED + 1))


class PubackTimeout(aiomqtt.MqttError):
    """The broker left a message unacknowledged for too long: the session is over."""


Outgoing = Callable[[str, bytes, "Properties | None"], tuple[str, bytes, "Properties | None"]]
"""What one publish sends for a stored message (`Uplink.outgoing`): the topic or its alias,
the payload in the fleet's encoding. Called right before paho takes the publish."""
Unsent = Callable[[str], None]
"""Told the topic an `Outgoing` named in a publish that did not go (`TopicAliases.unsent`:
an alias it set up is not the broker's)."""
HeldBack = Callable[[str, int, "int | None", str], None]
"""Told (topic, messages, packet bytes, why) of each publish held back: bytes None when
the publish cannot be built at all (`BadPublish`, `why` says what)."""


class Sender:
    """Publishes the outbox's messages on one session's client until cancelled or failed."""

    def __init__(
        self,
        client: MqttClient,
        outbox: Outbox,
        *,
        window: int,
        timeout_s: float,
        v5: bool,
        outgoing: Outgoing | None = None,
        unsent: Unsent | None = None,
        batch_s: float = 0.0,
        batch_max: int = 1,
        retains: bool = True,
        ceiling: PacketCeiling | None = None,
        own: Callable[[str], bool] | None = None,
        node: str | None = None,
        parked: Iterable[str] = (),
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.client = client
        self.own = own
        """Whether a topic is the node's own (None: all are)."""
        self.keep = keep or own
        """Whether a refused publish on a topic is kept for the broker to take later (None:
        all are; default: the node's own topics); one that is not is deleted (`_refused`)."""
        self.copy_from = None if node is None or own is None else [(COPY_FROM, node)]
        """The user property naming this node on each copy to a response topic (MQTT 5)."""
        self.ceiling = ceiling  # told each QoS 1 publish acknowledged; what it learned holds
        self.retains = retains  # False: the broker keeps no retained messages (`Uplink.retains`)
        self.outgoing = outgoing
        self.unsent = unsent
        self.outbox = outbox
        self.window = window
        self.timeout_s = timeout_s
        self.v5 = v5
        self.sent = 0  # acknowledged by the broker in this session
        self.refused = 0  # refused by the broker (a PUBACK's failure code) in this session
        self.on_refused: Callable[[str, int, int], None] | None = None
        """Told (topic, reason code, messages) for each publish the broker refused."""
        self.retry_s = RETRY_S  # first delay before a refused publish goes again
        self.retry_max_s = RETRY_MAX_S
        self._refusals: dict[int, int] = {}  # row id -> refusals of it (`_retry_rows`)
        self.parked: dict[str, Parked] = {topic: Parked() for topic in parked}
        """The node's topics the broker refused (`_refused`): `parked` given, in an earlier
        session, whose first message goes at once as the probe."""
        self.refused_kept = REFUSED_KEPT
        self.dropped = 0  # messages of a refused topic deleted over `refused_kept`
        self.on_dropped: Callable[[str, int], None] | None = None
        self.on_taken_again: Callable[[str], None] | None = None
        """Told a refused topic whose probe the broker took (its held messages go)."""
        self._retries: set[asyncio.TimerHandle] = set()
        self.unretained = 0  # retained messages sent without the flag: `Outbox.superseded`
        self.held_back = 0  # messages not sent in this session: the broker cannot take them
        self.on_held_back: HeldBack | None = None
        # mid -> (rows, sent at, whether its PUBACK is read here: `edged.uplink.packets`,
        # bytes of its PUBLISH)
        self._inflight: dict[int, tuple[tuple[Stored, ...], float, bool, int]] = {}
        self._written = 0  # bytes of the publishes given to paho in this session
        self._drained: deque[tuple[float, int]] = deque()  # (loop time, bytes gone) QUEUE_S
        self._carried = (0, 0.0)  # (bytes, over seconds): the link, at the last `budget`
        self._poll: asyncio.TimerHandle | None = None  # `poll_s`
        self._turn = 0  # bytes given to paho in this turn of `_pump`
        self.max_packet: int | None = None  # set by `run`: the broker's limit, or a learned one
        self._batch_packet: int | None = None  # the same for a batch of samples
        self._out: list[bytes] = []  # PUBLISH packets of this loop turn, written as one
        self._batcher = Batcher(batch_s, batch_max)
        self._timer: asyncio.TimerHandle | None = None
        self._ahead: deque[Stored] = deque()
        self._low = asyncio.Event()
        self._scheduled = False
        self._done = False
        self._loop = asyncio.get_running_loop()
        self._failed: asyncio.Future[None] = self._loop.create_future()
        self._beside = 0  # QoS 1 publishes made beside the drain, in flight (`beside`)
        self._waiting: list[asyncio.Future[None]] = []  # `beside` calls waiting for room

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def budget(self, now: float) -> tuple[int, int]:
        """(bytes queued for the broker now, the budget of that below the alarm class): what
        left the queue in the last QUEUE_S, at least QUEUE_MIN_BYTES."""
        queued = self.client.queued_bytes()
        drained, gone = self._drained, max(0, self._written - queued)
        if drained and gone < drained[-1][1]:
            gone = drained[-1][1]  # another's publish (a birth, a ping) in the queue
        drained.append((now, gone))
        while len(drained) > 1 and drained[1][0] <= now - QUEUE_S:
            drained.popleft()
        since, before = drained[0]
        carried = gone - before
        self._carried = (carried, now - since)
        return queued, max(QUEUE_MIN_BYTES, carried)

    def poll_s(self, queued: int, budget: int, *, found: int) -> float:
        """While the budget holds the drain back with `queued` bytes queued, how long before
        it looks again (nothing says when the kernel has sent them): until the link, at the
        rate it carried lately, has them down to QUEUE_POLL_LEFT of the budget, within
        [QUEUE_POLL_S, QUEUE_POLL_MAX_S]. Nothing carried yet in a session younger than
        QUEUE_S: as long as the session has been measured, doubling from QUEUE_POLL_S (a
        fast link shows its rate within milliseconds); nothing carried for QUEUE_S (the
        link gone quiet): QUEUE_POLL_MAX_S.

        QUEUE_POLL_S when this look `found` less than a quarter of the budget queued: the
        link outran the rate it was measured at (it sped up, or came back from a quiet
        spell) and may have idled; looked at that rate, each look only doubled the budget
        (what it carried in QUEUE_S), and a link sped up from 8 to 300 KB/s idled 0.85 s of
        its first second."""
        if found < (1 - QUEUE_POLL_LEFT) * budget:
            return QUEUE_POLL_S
        carried, over_s = self._carried
        if carried > 0 and over_s > 0:
            wait = (queued - QUEUE_POLL_LEFT * budget) * over_s / carried
        else:
            wait = over_s if over_s < QUEUE_S else QUEUE_POLL_MAX_S
        return min(QUEUE_POLL_MAX_S, max(QUEUE_POLL_S, wait))

    async def run(self) -> None:
        """Drain for as long as the session lasts; raises the error that ends it."""
        # the broker's Receive Maximum (its CONNACK) bounds the QoS 1 publishes in flight,
        # the drain's and paho's own together: a broker that enforces it ends the session
        # of a client that sends more (0x93)
        receive_max = self.client.receive_max
        if receive_max is not None:
            self.window = min(self.window, drain_share(receive_max))
        self.max_packet = self._batch_packet = self.client.max_packet
        if self.ceiling is not None:
            now = time.monotonic()
            self.max_packet = least(self.max_packet, self.ceiling.limit(now))
            self._batch_packet = least(self.max_packet, self.ceiling.batch_limit(now))
        if self._batch_packet is not None:  # no batch of samples too large for it
            self._batcher.room = self._batch_room
        self.client.on_delivered = self._delivered
        self.client.on_puback = self._puback
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._fill(), name="uplink.fill")
                tg.create_task(self._watch(), name="uplink.watch")
                await self._failed
        finally:
            self._done = True
            self._room_freed()  # the publishes waiting beside it fail on the closed client
            self.client.on_delivered = None
            self.client.on_puback = None
            if self._timer is not None:
                self._timer.cancel()
            if self._poll is not None:
                self._poll.cancel()
            for handle in self._retries:
                handle.cancel()
            self._retries.clear()

    async def _fill(self) -> None:
        ahead, most = self._ahead, READ_AHEAD * self.window
        while True:
            self._take(await self.outbox.next_batch(most - len(ahead)))
            self._pump()
            while len(ahead) > most - self.window:
                self._low.clear()
                await self._low_or_alarm()
                if not self._low.is_set():  # an alarm goes past the full read-ahead
                    self._take(await self.outbox.next_alarms(self.window))
                    self._pump()

    async def _low_or_alarm(self) -> None:
        """Until the read-ahead runs low or an alarm can be fetched: a read-ahead full of
        samples the link carries slowly (`QUEUE_S`), or not at all, kept an alarm put
        meanwhile in the outbox, with room for it in the window."""
        waits = [
            asyncio.ensure_future(self._low.wait()),
            asyncio.ensure_future(self.outbox.alarm_data.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _take(self, batch: list[Stored]) -> None:
        """Into the read-ahead, in sending order (a batch is in it already)."""
        ahead = self._ahead
        if ahead and batch and batch[0].rank < ahead[-1].rank:
            merged = sorted([*ahead, *batch], key=_rank)  # stable: fetch order within a rank
            ahead.clear()
            ahead.extend(merged)
        else:
            ahead.extend(batch)

    async def _watch(self) -> None:
        """End the session when the oldest message in flight waited `timeout_s`."""
        inflight = self._inflight
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 4))
            if not inflight:
                continue
            msgs, sent_at, _, _ = next(iter(inflight.values()))  # in the order they were sent
            waited = self._loop.time() - sent_at
            if waited > self.timeout_s:
                raise PubackTimeout(
                    f"no PUBACK for {msgs[0].topic} after {waited:.0f} s "
                    f"([broker] publish_timeout_s = {self.timeout_s:g})"
                )

    @contextlib.asynccontextmanager
    async def beside(self, within_s: float) -> AsyncIterator[None]:
        """Room, within the broker's Receive Maximum, for one QoS 1 publish made beside the
        drain through paho (`RESERVED`), for the block. The drain leaves RESERVED of the
        allowance to these, but less under a small one (`drain_share`): there the publish
        may wait (at most `within_s`, then `PubackTimeout`) for a PUBACK of the drain's, and
        the drain sends no more until the block ends. Without it a broker allowing one or
        two ended the session of a node that sent a republish mid-drain (0x93, HiveMQ)."""
        allowed = self.client.receive_max
        try:
            async with asyncio.timeout(within_s):
                while (
                    allowed is not None
                    and not self._done
                    and len(self._inflight) + self._beside >= allowed
                ):
                    waiter = self._loop.create_future()
                    self._waiting.append(waiter)
                    await waiter
        except TimeoutError:
            raise PubackTimeout(
                f"no room within the broker's Receive Maximum of {allowed} after {within_s:g} s"
            ) from None
        self._beside += 1
        try:
            yield
        finally:
            self._beside -= 1
            self._room_freed()  # its slot: another publish beside may wait for it
            self._wake()

    def _room_freed(self) -> None:
        """A slot of the broker's allowance came free: the publishes waiting beside the
        drain look again, before the drain's next fill (their wake-ups are scheduled
        first)."""
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    def _delivered(self, mid: int, reason: int) -> bool:
        """paho's on_publish, in the loop: a message of ours is with the broker."""
        entry = self._inflight.get(mid)
        if entry is None or entry[2]:
            return False  # someone else's (birth, retained, a direct publish)
        self._done_with(mid, entry[0], reason)
        return True

    def _puback(self, mid: int, reason: int) -> bool:
        """A PUBACK read from the socket (`edged.uplink.packets`): one of the PUBLISHes
        built here is with the broker. Any other id is paho's to read."""
        entry = self._inflight.get(mid)
        if entry is None or not entry[2]:
            return False
        self._done_with(mid, entry[0], reason)
        return True

    def largest_unacked(self) -> Suspect | None:
        """The largest QoS 1 publish in flight (`edged.uplink.ceiling`); None: none."""
        entries = [e for e in self._inflight.values() if e[0][0].qos > 0]
        if not entries:
            return None
        msgs, _, _, size = max(entries, key=lambda e: e[3])
        return Suspect(msgs[0].id, msgs[0].topic, size, len(msgs) > 1)

    def _done_with(self, mid: int, msgs: tuple[Stored, ...], reason: int) -> None:
        size = self._inflight.pop(mid)[3]
        if self._waiting:
            self._room_freed()
        if reason >= REFUSED:
            self._refused(msgs, reason)
        else:
            for msg in msgs:
                self.outbox.ack(msg)
                self._refusals.pop(msg.id, None)
            self.sent += len(msgs)
            parked = self.parked.get(msgs[0].topic)
            if parked is not None and parked.probe is not None and parked.probe[0] is msgs[0]:
                self._unpark(msgs[0].topic, parked)
            if self.ceiling is not None and msgs[0].qos > 0:  # QoS 0: written, not taken
                self.ceiling.acknowledged(size)
        self._wake()

    def _refused(self, msgs: tuple[Stored, ...], reason: int) -> None:
        """The broker answered with a failure code (MQTT 5: not authorized, topic name
        invalid, quota exceeded...): it does not have the message. Not acknowledged, so
        not deleted. The topic is refused as a whole (`Parked`): this publish (the probe)
        goes again in this session after a delay that doubles at each refusal (RETRY_S up
        to RETRY_MAX_S: a quota frees up, an ACL is fixed and reloaded, and a session on a
        steady link may last for days), the topic's other messages wait for the broker to
        take it, and the others go on. Each refused row used to go again on its own timer:
        an ACL refusing a topic had all its messages sent again every few minutes, and at
        each session, for as long as the node ran. A refusal of the message itself
        (`OF_THE_MESSAGE`) holds nothing else back.

        Not so a copy of a reply on a commander's MQTT 5 response topic (not one of the
        node's own topics, `own`): refused, it is deleted. `reply/{name}` carries the reply,
        and a broker's ACL refuses such a topic for good (the shipped broker takes only
        `{prefix}/{fleet}/_replies/+`): kept, the copies of every such command piled up in
        the outbox, each sent again every few minutes for as long as the node ran. Nor the
        reply to a command the node does not know (`keep`): its topic is whatever name a
        commander wrote on `cmd/`, and a broker whose ACL lists the replies it takes parked
        each, a topic, a retry timer and a row kept for good per name made up."""
        self.refused += len(msgs)
        if self.keep is not None and not self.keep(msgs[0].topic):
            for msg in msgs:
                self.outbox.ack(msg)
            if self.on_refused is not None:
                self.on_refused(msgs[0].topic, reason, len(msgs))
            return
        topic = msgs[0].topic
        if reason in OF_THE_MESSAGE:
            self._retry_rows(msgs)
            if self.on_refused is not None:
                self.on_refused(topic, reason, len(msgs))
            return
        parked = self.parked.get(topic)
        if parked is None:
            parked = self.parked[topic] = Parked()
        if parked.probe is None or parked.probe[0] is msgs[0]:
            if parked.probe is not None:
                parked.times += 1
            parked.probe, parked.due = msgs, False
            self._retry(parked)
        else:  # in flight when its topic was refused: held behind the probe, before
            for msg in msgs:  # those held since, which came after them
                parked.held.insert(parked.early, msg)
                parked.early += 1
                self._hold(topic, parked, None)
        if self.on_refused is not None:
            self.on_refused(topic, reason, len(msgs))

    def _retry_rows(self, msgs: tuple[Stored, ...]) -> None:
        """A refusal of these messages, not of their topic (`OF_THE_MESSAGE`): they go
        again after a delay that doubles at each refusal of the same rows; their topic's
        other messages go on."""
        times = max(self._refusals.get(msg.id, 0) for msg in msgs)
        for msg in msgs:
            self._refusals[msg.id] = times + 1
        self._later(times, lambda: msgs)

    def _retry(self, parked: Parked) -> None:
        """The probe goes again after a delay that doubles at each refusal."""

        def again() -> tuple[Stored, ...] | None:
            if parked.probe is not None:
                parked.due = True
            return parked.probe

        self._later(parked.times, again)

    def _later(self, times: int, again: Callable[[], tuple[Stored, ...] | None]) -> None:
        """After the delay for a `times`-th refusal (RETRY_S, doubling up to RETRY_MAX_S),
        what `again()` returns then goes back into the sending order (None: nothing)."""
        delay = min(self.retry_max_s, self.retry_s * 2 ** min(times, 30))
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._retries.discard(handle)
            if self._done:
                return
            msgs = again()
            if msgs:
                self._take(sorted(msgs, key=_rank))
                self._wake()

        handle = self._loop.call_later(delay, fire)
        self._retries.add(handle)

    def _hold(self, topic: str, parked: Parked, msg: Stored | None) -> None:
        """Keep `msg` back until the broker takes its topic's probe; over `refused_kept`
        held, the oldest held is deleted, counted and told (`on_dropped`). Not a retained
        topic's: the outbox keeps only its latest messages, and a deletion would count as
        the broker's copy (`Outbox.retained`, what a broker's lost store is restored to).
        `msg` None: one was put in `held` already."""
        if msg is not None:
            parked.held.append(msg)
        if len(parked.held) > self.refused_kept and not parked.held[0].retain:
            self.outbox.ack(parked.held.popleft())
            parked.early = max(0, parked.early - 1)
            self.dropped += 1
            if self.on_dropped is not None:
                self.on_dropped(topic, 1)

    def _unpark(self, topic: str, parked: Parked) -> None:
        """The broker took the probe: the topic's held messages go, in sending order."""
        del self.parked[topic]
        if parked.held:
            self._take(sorted(parked.held, key=_rank))
        if self.on_taken_again is not None:
            self.on_taken_again(topic)

    def _no_probe(self, msg: Stored) -> None:
        """`msg`, its topic's probe, was held back, not sent (`_held_back`): the topic's
        next message is the probe. Left as the probe, nothing else of the topic went until
        the session ended, and in every session where it came first."""
        parked = self.parked.get(msg.topic)
        if parked is not None and parked.probe is not None and parked.probe[0] is msg:
            parked.probe, parked.due = None, True

    def _gated(self, msg: Stored) -> bool:
        """Whether `msg` waits behind its topic's probe (held now); False when it may go
        (the probe, due; or the first message of a topic refused in an earlier session,
        which becomes the probe)."""
        parked = self.parked.get(msg.topic)
        if parked is None:
            return False
        if parked.due and (parked.probe is None or parked.probe[0] is msg):
            parked.probe, parked.due = (msg,), False
            return False
        if parked.probe is not None and parked.probe[0] is msg:
            return True  # its retry is due later: `_retry` puts it back then
        self._hold(msg.topic, parked, msg)
        return True

    def _held_back(self, msgs: tuple[Stored, ...], size: int | None, why: str) -> None:
        """A publish the broker cannot take: not sent, and the session goes on (a broker
        ends the session of a client that sends a packet over its Maximum Packet Size, and
        then the same row came first again in every session: the node flapped, and what
        was behind it, an alarm too, hardly moved). As for a refused publish, the rows are
        not acknowledged, so not deleted: the outbox keeps them handed out until the next
        session, which tries again. For a packet too large that is what fixes it: a broker
        whose limit is raised meanwhile takes it. A `BadPublish` (a wildcard in the topic,
        a packet over MQTT's 256 MB) will not go in any session, and is kept all the same:
        the node cannot tell a row that is wrong from a fault of its own, and a deleted row
        is lost for good, while a kept one costs a skip and a warning per session, shows
        in `health.errors` and the outbox's depth and age, and can still be recovered."""
        self.held_back += len(msgs)
        if self.on_held_back is not None:
            self.on_held_back(msgs[0].topic, len(msgs), size, why)

    def _batch_room(self, topic: str, qos: int) -> int:
        """JSON bytes a batch of `topic` at `qos` may hold under the broker's Maximum Packet
        Size: the limit less the rest of its publish, its remaining length's 4 bytes at most
        (in JSON, the payload's bytes on the wire; a batch another encoding makes too large
        is split when sent: `_send`)."""
        limit = self._batch_packet or 0
        properties = bytes(ALIAS_PROPERTIES) if self.v5 else None
        try:
            return limit - publish_size(topic, 0, qos=qos, properties=properties) - 3
        except BadPublish:
            return 0  # alone: it is held back when sent

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def hurry(self) -> None:
        """Send the samples waiting for a batch now, and batch no more (`Batcher.hurry`)."""
        self._batcher.hurry()
        self._wake()

    def _due(self) -> None:
        self._timer = None
        self._wake()

    def _pump(self) -> None:
        """Fill the window from the read-ahead, all at once."""
        self._scheduled = False
        if self._done:
            return
        ahead, inflight, batcher = self._ahead, self._inflight, self._batcher
        room = self.window - len(inflight)
        allowed = self.client.receive_max
        if allowed is not None:  # what publishes made beside it hold (`beside`)
            room = min(room, allowed - self._beside - len(inflight))
        now = self._loop.time()
        queued, budget = self.budget(now)
        self._turn = 0
        held = False  # the budget holds something back
        try:
            while ahead:
                msg = ahead[0]
                if msg.priority > Priority.ALARM and queued + self._turn >= budget:
                    held = True  # what comes next waits for the link (an alarm still goes)
                    break
                if msg.topic in self.parked:  # refused: one probe goes, the rest is held
                    if room <= 0:
                        break
                    if self._gated(msg):
                        ahead.popleft()
                        continue
                    ahead.popleft()
                    sent = self._send((msg,), msg.payload, now, retain=self._flag(msg))
                    if not sent:  # held back (too large): the topic's next one probes
                        self._no_probe(msg)
                    room -= sent
                    continue
                if batcher.takes(msg):
                    if room <= 0 and batcher.ready:
                        break  # gathered enough to fill the window when it has room again
                    batcher.add(ahead.popleft(), now)
                    continue
                if room <= 0:
                    break
                ahead.popleft()
                room -= self._send((msg,), msg.payload, now, retain=self._flag(msg))
            while room > 0:  # one at a time: a batch split in two goes on with its half
                if queued + self._turn >= budget:
                    held = held or bool(batcher.ready) or batcher.next_due() is not None
                    break
                batches = batcher.take(now, 1)
                if not batches:
                    break
                room -= self._send(tuple(batches[0].messages), batches[0].payload(), now)
            self._write()
        except Exception as exc:  # the connection is gone: the session ends
            if not self._failed.done():
                self._failed.set_exception(exc)
            return
        poll = self._poll
        if not held:
            self._arm(batcher.next_due())
            if poll is not None:  # looked already: a wake-up for nothing
                poll.cancel()
                self._poll = None
        else:  # not a batch's due time: one already due would spin
            due = now + self.poll_s(queued + self._turn, budget, found=queued)
            if poll is None or poll.when() > due + QUEUE_POLL_S:  # the link carries faster
                if poll is not None:
                    poll.cancel()
                self._poll = self._loop.call_at(due, self._polled)
        if len(ahead) <= (READ_AHEAD - 1) * self.window:
            self._low.set()

    def _polled(self) -> None:
        self._poll = None
        self._wake()

    def _flag(self, msg: Stored) -> bool:
        """The retain flag of `msg`'s publish: on the wire only, the row stays a retained
        topic's message, so its PUBACK still makes it the topic's last delivered one (what a
        broker that lost its retained store gets back), unless it is superseded."""
        if not msg.retain:
            return False
        if not self.retains:
            return False  # the broker would end the session
        if self.outbox.superseded(msg):
            self.unretained += 1  # subscribers get it; the broker keeps the newer one
            return False
        return True

    def _send(
        self, msgs: tuple[Stored, ...], payload: bytes, now: float, *, retain: bool = False
    ) -> int:
        """One publish carrying `msgs` (one message, or a batch of one topic's samples,
        never retained); 1 when it is in flight, 0 when it was held back (`_held_back`).
        `retain`: the publish's flag."""
        first = msgs[0]
        properties = None
        if self.v5 and (first.correlation is not None or self._is_copy(first.topic)):
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if first.correlation is not None:
                properties.CorrelationData = first.correlation
            if self._is_copy(first.topic):
                properties.UserProperty = self.copy_from
        topic = first.topic
        if self.outgoing is not None:  # the fleet's encoding, topic aliases
            topic, payload, properties = self.outgoing(topic, payload, properties)
        client = self.client
        props = packed(properties, v5=self.v5)
        mid = packet = None
        try:
            if first.qos == 1:  # built here, written with the others of this turn
                mid = client.next_mid(self._inflight)
                packet = publish_packet(topic, payload, mid, retain=retain, properties=props)
                size = len(packet)
            else:
                size = publish_size(topic, len(payload), qos=first.qos, properties=props)
        except BadPublish as exc:
            self._unsent(topic)
            self._held_back(msgs, None, str(exc))
            return 0
        limit = self._batch_packet if len(msgs) > 1 else self.max_packet
        if limit is not None and size > limit:
            self._unsent(topic)
            if len(msgs) > 1:  # a batch its encoding made larger than its JSON: in halves
                half = len(msgs) // 2
                self._batcher.put_back(_batch(msgs[half:]))
                return self._send(msgs[:half], _batch(msgs[:half]).payload(), now)
            self._held_back(msgs, size, "")
            return 0
        if packet is not None and mid is not None:
            self._out.append(packet)
            self._inflight[mid] = (msgs, now, True, size)
        else:
            self._write()  # what was built before goes first: the one naming a topic alias
            mid = client.publish_nowait(topic, payload, first.qos, retain, properties)
            self._inflight[mid] = (msgs, now, False, size)
        self._turn += size  # the queue's budget (`budget`)
        self._written += size
        return 1

    def _is_copy(self, topic: str) -> bool:
        """Whether `topic` is a commander's response topic (a reply's copy goes there)."""
        own = self.own
        return self.copy_from is not None and own is not None and not own(topic)

    def _unsent(self, topic: str) -> None:
        """A publish naming `topic` did not go: a topic alias it set up is not set up."""
        if topic and self.unsent is not None:
            self.unsent(topic)

    def _write(self) -> None:
        """The PUBLISHes built in this turn, to paho's write queue as one write."""
        if self._out:
            packets = b"".join(self._out)
            self._out.clear()
            self.client.write(packets)

    def _arm(self, due: float | None) -> None:
        """Wake the drain when the earliest batch waiting for company is due."""
        timer = self._timer
        if due is None or (timer is not None and timer.when() <= due):
            return
        if timer is not None:
            timer.cancel()
        self._timer = self._loop.call_at(due, self._due)


def _rank(msg: Stored) -> tuple[int, bool]:
    return msg.rank


def _batch(msgs: tuple[Stored, ...]) -> Batch:
    """Messages of one batch, as a batch of their own (due at once)."""
    first = msgs[0]
    return Batch(first.topic, first.qos, first.live, 0.0, messages=list(msgs))

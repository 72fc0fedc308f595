"""The one MQTT connection: birth and will, commands in, the outbox drained out.

Each session: connect with the will (`state` offline, retained), subscribe to `cmd/#`,
publish the birth (not when a will delay proves the last birth still stands:
`_will_still_held`), restore retained topics (when the broker kept no session for the node,
so it may have lost them), then drain the outbox through a bounded window
of publishes awaiting PUBACK, while commands are handled as they arrive. Any MQTT error
ends the session; the next one starts after a jittered backoff (reset by a session that
worked). Nothing is lost on the way: a message leaves the outbox only when the broker
acknowledged it. Nothing a command carries ends a session: each incoming message is handled
on its own, and what goes wrong with one is logged and counted.

The session is persistent (MQTT 5 clean start off with a session expiry, 3.1.1 clean session
off), so the broker keeps the commands sent while the node is away. When the broker refuses
MQTT 5 the node falls back to 3.1.1 by itself (`[broker] protocol_fallback`), and tries
MQTT 5 again later (`protocol_retry_s`, doubled at each refusal); a refusal is logged with
its reason and what to do, and shows in `health.mqtt`.
"""

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal, TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.cancel import drop_stale_cancels
from core.counters import Counters
from core.errors import ConfigError
from core.logs import flood_key
from edged.clock import Clock
from edged.codec import to_wire
from edged.commands.router import IncomingCommand
from edged.config.models import BrokerConfig
from edged.outbox import Outbox
from edged.payloads import MqttHealth, State
from edged.topics import REPLY, STATE, Topics
from edged.uplink.aliases import TopicAliases
from edged.uplink.batching import outbox_share
from edged.uplink.ceiling import PacketCeiling, Suspect, least
from edged.uplink.incoming import Dropped, incoming
from edged.uplink.mqtt import (
    ClosedBeforeConnack,
    MalformedConnack,
    MqttClient,
    PublishRefused,
    reason_name,
)
from edged.uplink.packets import BadPublish, packed, publish_size
from edged.uplink.reasons import (
    RETAIN_NOT_SUPPORTED,
    SESSION_TAKEN_OVER,
    UNSUPPORTED_PROTOCOL,
    asks_for_room,
    reason_for,
)
from edged.uplink.reconnect import Reconnect, SessionEnd
from edged.uplink.sender import REFUSED_KEPT, PubackTimeout, Sender
from edged.uplink.tls import TlsSessions

log = logging.getLogger(__name__)

NOT_AUTHORIZED = 0x87
"""A PUBACK's reason code when the broker's ACL refuses the topic (MQTT 5)."""
PACKET_TOO_LARGE = 0x95
"""A PUBACK's reason code for a message over a size limit the CONNACK did not announce."""
ALARM_RETRY_S = 5.0
"""While a panic (`edged.topics.URGENT_ALARMS`) waits to be sent, the reconnect delay is at
most this (drawn from its upper half): a panic pressed in a dead zone reaches dispatch
within seconds of the link's return, not after a backoff grown to `reconnect_max_s` over
a day offline. Only after an attempt the broker did not answer (no network, no route, its
port closed: a few hundred bytes at most, nothing billed in a dead zone); not after one it
refused (a CONNACK refusal, a TLS alert, a close before the CONNACK): it is there and will
not take the node, each attempt costs a handshake (0.7-4.7 KB, docs/budget.md), some
20,000 a day, and trying sooner changes nothing."""
RESTORE_CUTS_TO_GIVE_UP = 3
"""Sessions in a row cut short with the same retained topic in flight in their restore
before it is given up in the next (not restored until the restore is due again). A restore
cut short is done again; but a broker that closes the connection at one topic whatever its
size (AWS IoT at a publish its policy denies; over 3.1.1 one too large for a broker the
node cannot tell changed, `session_expiry_s = 0`) cut every session's restore there: the
node never online, nothing drained. One more than `ceiling.LEARN_AFTER`: a limit the node
can learn is learned first (held back, said with its remedy); and a flaky link cutting
twice in a row at the panic alarm does not cost it its restore."""
GIVEN_UP_FIRST_S = 60.0
"""How long a retained message given up in a restore is first left out of the restores
that follow, unchanged: a node without kept sessions restores at every connection, and a
topic the broker closes the connection at (its policy) cost three short sessions at each.
Not at once the hour: three cuts in a row at one topic may be a flaky link's (the first
restored topic is in flight when a connection made in a poor signal dies), and that topic
may be `alarm/panic`, which a broker that lost its store would lack meanwhile for a
dispatcher subscribing anew. Given up again unchanged, twice as long each time, up to
GIVEN_UP_FOR_S; restored (or changed), it starts over."""
GIVEN_UP_FOR_S = 3600.0
"""The longest a message given up again and again is left out (the policy may have been
fixed since: `republish` sends it at once)."""
RESTORE_DUE_KEY = "uplink.restore_due"
"""The state store's key for a restore of the retained topics begun and not ended."""
UNKNOWN_REPLIES = "(replies to unknown commands)"
"""What `_say_once` keys the replies to commands the node does not know under: their names
are a commander's, one warning a session for all of them."""
RESPONSE_TOPICS = "(response topics)"
"""What `_say_once` keys every commander's response topic under: topics chosen by whoever
sends commands, one warning a session for all of them, not one remembered each."""

BirthFactory = Callable[[int], State]
CommandSink = Callable[[IncomingCommand], Awaitable[None]]
Protocol = Literal["5", "3.1.1"]
E = TypeVar("E", bound=BaseException)
MAX_INCOMING_BYTES = 8 * 1024 * 1024
"""MQTT 5 maximum packet size the node takes: twice the largest command (`access.update`,
4 MiB). A broker drops bigger messages for us: a 200 MB command would not reach a Pi Zero's
512 MB of memory."""
NO_CONNACK_BEFORE_PROBE = 2
RETAKE_AFTER_S = 10.0
"""How long a session has been online (its birth acknowledged) at least before the node ends
it for the broker to send again the commands it left unacknowledged (`Retake`): a flood
that goes on refills the queue at once in each new session, and retaken as soon as it
caught up, before its birth was acknowledged, the node was never online (the outbox not
drained) and reconnected again and again (the backoff growing to `reconnect_max_s`)."""
WILL_DELAY_MARGIN_S = 5.0
"""How long the broker's last bytes may have taken to reach the node: its will's delay
started no earlier than they left it."""
"""MQTT 5 CONNECTs closed without a CONNACK in a row before 3.1.1 is tried: one may be a
link lost at the wrong instant, and a wrong fallback lasts until MQTT 5 is tried again
(`[broker] protocol_retry_s`)."""


def read_password(config: BrokerConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            "broker.password_file", [f"cannot read {config.password_file}: {exc.strerror}"]
        ) from exc


class Retake(Exception):
    """The session ends for the broker to send again the commands left unacknowledged
    (`Uplink._receive`): it keeps them, and sends them again only in another connection."""

    def __init__(self, left_out: int, dropped: int = 0) -> None:
        super().__init__(f"{left_out} command(s) left unacknowledged")
        self.left_out = left_out
        self.dropped = dropped  # QoS 0 messages still waiting, lost with the connection


class RetryV5(Exception):
    """The 3.1.1 session of a fallback ends for MQTT 5 to be tried again
    (`Uplink._until_v5_retry`): a link up for weeks never reconnects by itself."""


class _Ack:
    """Acknowledges one message, once, on the session that read it (on one ended, nothing
    goes): holds its id, not the message."""

    __slots__ = ("client", "mid", "qos")

    def __init__(self, client: MqttClient, message: aiomqtt.Message) -> None:
        self.client: MqttClient | None = client
        self.mid = message.mid
        self.qos = message.qos

    def __call__(self) -> None:
        client, self.client = self.client, None
        if client is None or self.qos == 0:
            return
        try:
            client.acknowledge(self)
        except Exception:  # paho on a socket that closed: the broker sends it again
            log.debug("could not acknowledge message %s", self.mid, exc_info=True)


def _named(server: str | None) -> str:
    """The server a broker's refusal or DISCONNECT names (MQTT 5 Server Reference), for
    its remedy: "point [broker] host at the server the broker names"."""
    return f" (it names {server[:200]!r})" if server else ""


def _first(group: BaseExceptionGroup[E]) -> E:
    """The first exception of a (possibly nested) group: what ended the session."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc  # type: ignore[return-value]


class Uplink:
    def __init__(
        self,
        config: BrokerConfig,
        topics: Topics,
        outbox: Outbox,
        *,
        client_id: str,
        birth: BirthFactory,
        on_command: CommandSink,
        counters: Counters,
        on_link: Callable[[bool], None] | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`clock`: what a TLS failure says of the node's time (`_tls_failed`)."""
        self.config = config
        self.topics = topics
        self.outbox = outbox
        self.client_id = client_id
        self.birth = birth
        self.on_command = on_command
        self.counters = counters
        self.rng = rng or random.Random()
        self.on_link = on_link
        self.clock = clock
        self._connected = False
        self.sessions = 0
        self.sent = 0
        self._client: MqttClient | None = None
        self._sender: Sender | None = None  # this session's drain, while it runs
        self._outside = 0
        """Publishes in flight before the drain runs (a restored topic, a direct publish
        made meanwhile: `_before_drain`)."""
        self._outside_freed = asyncio.Condition()
        self._hurried = False  # stopping: no sample waits for a batch (`hurry`)
        self.protocol: Protocol = config.protocol
        self.fell_back = False  # on 3.1.1 because the broker refused MQTT 5
        self.retains = True
        """Whether publishes (the will among them) carry the retain flag: False once the broker
        said it keeps no retained messages (a CONNACK refusing the retained will, 0x9A, or
        saying Retain Available 0), until an MQTT 5 CONNACK no longer says so
        (`_retain_per_connack`) or edged restarts. A retained publish to such a broker ends
        the session (0x9A), so without this its alarms would never arrive."""
        self._retain_said_off = False  # an MQTT 5 CONNACK said Retain Available 0
        self._probing_311 = False  # MQTT 5 CONNECTs got no CONNACK: is it the version?
        self._retry_v5_s = config.protocol_retry_s
        """After a fallback, how long until MQTT 5 is tried again: doubled at each try the
        broker still refuses, up to `protocol_retry_max_s`; reset once it takes MQTT 5."""
        self._retry_v5_at: float | None = None  # when (monotonic), while fallen back
        self._retrying_v5 = False  # this attempt tries MQTT 5 again after a fallback
        self._reconnect_now = False  # the next attempt goes at once (`_until_v5_retry`)
        self._no_connack_v5 = 0
        self._probed_expired = False  # 3.1.1 fared no better with the certificate expired
        self.session_expiry_s: int | None = None
        self.session_present: bool | None = None
        self.last_error: str | None = None
        self._worked_at: float | None = None  # when this session's birth was acknowledged
        self._warned_expiry: int | None = None
        self.reconnect = Reconnect(config.reconnect_min_s, config.reconnect_max_s, self.rng)
        self.tls = TlsSessions(config) if config.tls is not None else None
        self.tls_resumed: bool | None = None
        self.aliases = TopicAliases(0)  # this connection's; set up at each CONNACK
        self.ceiling = PacketCeiling()  # a Maximum Packet Size the broker does not announce
        self._suspect: Suspect | None = None  # the largest publish left unacked (drain, restore)
        self._refused_now = False  # this attempt was answered with a refusal (`SessionEnd`)
        self._restore_due = False
        """The retained topics are to be restored: a session the broker did not keep was
        begun, and no restore has ended since. A connection lost in the restore left the
        broker a session for the node, made by that connection: the next one, resuming it,
        restored nothing, and the broker held none of the topics after the one cut short."""
        self._restored: set[str] = set()
        """Topics the due restore is done with (taken, refused, held back, a QoS 0 one
        handed on): not sent again while it is due, in a session the broker kept."""
        self._given_up: set[str] = set()
        """Topics given up (`_restore_cut_short`) since a restore last ended: not sent again
        until one ends, though a session the broker did not keep restores from the first
        (`session_expiry_s = 0`): else a second topic it closes the connection at restarted
        the count, at the first topic again in the next session, for ever."""
        self._kept_out: dict[str, tuple[int, float, float]] = {}
        """Topic -> (hash of the message, until when, for how long) of the retained messages
        given up in a restore: not restored again unchanged until then, whichever restore
        (GIVEN_UP_FIRST_S). Left when that time is gone, for a next give-up to double it;
        dropped once the topic is restored, changes, or is no longer retained."""
        self._restoring: str | None = None  # the restored topic in flight
        self._restore_cut: str | None = None
        """The topic in flight when the last restore was cut short, `_restore_cuts` times in
        a row; at RESTORE_CUTS_TO_GIVE_UP it is given up (`_restore_cut_short`)."""
        self._restore_cuts = 0
        self._online_heard_at: float | None = None
        """When the broker last spoke to the node on the last connection that went online
        (birth sent, or kept); None: unknown, or that connection did not go online. Its
        will's delay started no earlier (`_will_still_held`)."""
        self.refused_topics: set[str] = set()
        self._closed = False
        self._session_since = 0  # `since` of this session's birth and will (`_session`)
        self._offline_said = False  # by `say_offline`: a stop then needs no will
        self.stopping = False
        """The node stops (set by it): no session is taken up again for the commands left
        unacknowledged (`_receive`); the next start gets them."""
        self.answers: Callable[[str], bool] | None = None
        """Whether the node answers a command of this (dotted) name (set by the node once its
        router is built; None: every reply is kept when refused, `_kept_when_refused`)."""
        self._reply_head = self.topics.of(REPLY, "x")[:-1]
        """The node's topics the broker refused and has not taken since: the next session
        tries one message of each before the others (`Sender.parked`)."""
        self._said: set[tuple[str, str]] = set()
        """(topic, cause) of the publishes refused or held back that this session has
        logged (`_say_once`)."""
        self._too_large_ends = 0  # connections in a row a packet too large ended
        self._clean_next = False  # the next connection starts a clean session
        self._session_kept = False
        """A connection of this process got a CONNACK asking the broker to keep its session
        (`session_expiry_s` > 0): the next one that finds none tells a broker that lost it.
        Not told by `_subscribed`, which a refused subscription never sets."""
        self.hears_commands = False
        """The session's command subscription was granted (or kept by the broker): a
        node online and deaf (the broker's ACL refused it) cannot be sent a config.set
        again, so a config on probation is not committed on `connected` alone."""
        self._subscribed: str | None = None
        """The command filter this process subscribed to in a session the broker may keep:
        when it says it kept the session, the subscription is in it (not sent again). Not
        trusted across a restart: the session may hold another config's subscription."""
        self._subscribed_over: Protocol | None = None
        """The MQTT version `_subscribed` was made over: a subscription made over 3.1.1 has
        no retain-as-published, which a session resumed over MQTT 5 would keep."""

    @property
    def connected(self) -> bool:
        """A session is up (birth acknowledged); `on_link` hears each change."""
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value != self._connected:
            self._connected = value
            if self.on_link is not None:
                self.on_link(value)

    @property
    def reconnects(self) -> int:
        return max(0, self.sessions - 1)

    def link_health(self) -> MqttHealth:
        return MqttHealth(
            protocol=self.protocol,
            fallback=self.fell_back,
            mqtt5_retry_in_s=self._v5_retry_in(),
            session_expiry_s=self.session_expiry_s,
            session_present=self.session_present,
            last_error=self.last_error,
            tls_resumed=self.tls_resumed,
            topic_aliases=self.aliases.maximum if self.protocol == "5" else None,
            retain=self.retains,
        )

    def _v5_retry_in(self) -> int | None:
        """Seconds until MQTT 5 is tried again (0: at the next connection); None when the
        node is not on a fallback."""
        if not self.fell_back or self._retry_v5_at is None:
            return None
        return max(0, round(self._retry_v5_at - time.monotonic()))

    def wire(self, payload: bytes) -> bytes:
        """A stored (JSON) payload as the fleet's encoding puts it on the wire."""
        return to_wire(payload, self.config.encoding)

    def _kept_when_refused(self, topic: str) -> bool:
        """Whether a publish on `topic` the broker refused is kept, to go once it takes the
        topic: the node's own topics, not a copy on a response topic, nor the reply to a
        command the node does not know (`answers`: its name is a commander's)."""
        if not self.topics.owns(topic):
            return False
        if self.answers is None or self.topics.spec_name(topic) != REPLY.name:
            return True
        return self.answers(self._reply_name(topic))

    def _reply_name(self, topic: str) -> str:
        """The command name of a `reply/{name}` topic of this node, dotted."""
        return topic[len(self._reply_head) :].replace("/", ".")

    def _aliased(self, topic: str) -> bool:
        """Whether `topic` may have a topic alias: one of the node's own streams, not a reply
        nor a copy on a response topic (whose names a commander chooses: edged.uplink.aliases)."""
        return self.topics.spec_name(topic) not in (None, REPLY.name)

    def outgoing(
        self, topic: str, payload: bytes, properties: Properties | None
    ) -> tuple[str, bytes, Properties | None]:
        """What one publish of this connection sends for a stored message: the payload in
        the fleet's encoding, the topic by alias once it has one. Call it right before
        handing the publish to paho (the publish carrying a topic's name must go first)."""
        name, properties = self.aliases.apply(topic, properties)
        return name, self.wire(payload), properties

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def close(self) -> None:
        """The node's stop is about to say `offline` (`drain_and_say_offline`, and the node
        again after it, the budget gone or not), or the node ends on a failed task
        (`Node._task_ended`): no session is taken up after the one that runs. A link lost
        after it (the stop's last commit on a slow disk), or a cancel that comes as the
        session is lost (swallowed with the session's errors: core/cancel.py), had the
        uplink reconnect and say `online` after `offline`; the
        node's next cancel ended that session with a DISCONNECT, which drops the will:
        `online` stayed retained for a stopped node."""
        self._closed = True

    async def run(self) -> None:
        """Keep a session up for as long as the node runs (until `close`).

        A panic (`edged.topics.URGENT_ALARMS`, not the node's own alarms) does not wait out
        the backoff: put while the node waits to reconnect, it makes it try at once, and
        while one waits unsent after an attempt the broker did not answer, the delay is at
        most ALARM_RETRY_S, whatever `reconnect_min_s` says, so it goes within seconds of the
        link's return, not up to `reconnect_max_s` later. Not when the broker asked for room
        or another client holds the node's id, and no cap after a refusal: those delays
        stand."""
        while not self._closed:
            self.outbox.urgent_put.clear()
            end = await self._attempt()
            if self._closed:
                return
            if end.worked:  # what was put in a session went in it, or waits: the cap below
                self.outbox.urgent_put.clear()
            takeover = end.taken_over or self.reconnect.probable_takeover(end)
            if takeover:
                self._taken_over(end)
            if self._reconnect_now:  # MQTT 5 tried, or about to be: not a failure to back off
                self._reconnect_now = False
                continue
            delay = self.reconnect.delay(end, takeover=takeover)
            wake = not takeover and not end.pushed_back
            if wake and not end.refused and self.outbox.urgent_waiting():
                delay = min(delay, self.rng.uniform(ALARM_RETRY_S / 2, ALARM_RETRY_S))
                log.info("reconnecting to the broker in %.1f s: a panic waits", delay)
            else:
                log.info("reconnecting to the broker in %.1f s", delay)
            await self._backoff(delay, woken_by_alarm=wake)

    async def _backoff(self, delay: float, *, woken_by_alarm: bool) -> None:
        """Wait `delay` before the next attempt; `woken_by_alarm`: a panic put meanwhile
        (or during the attempt that failed) ends the wait: one attempt a put, even at a
        broker that refused the last one (it may have been fixed)."""
        if not woken_by_alarm:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.outbox.urgent_put.wait()
                log.info("a panic to send: trying the broker now")

    async def _attempt(self) -> SessionEnd:
        """One connection and session, to its end; says how it ended, never raises."""
        self._worked_at = None
        self._suspect = None
        self._refused_now = False
        taken_over = closed_under_us = pushed_back = False
        self._retry_v5_if_due()
        probe = self._probing_311  # this attempt is the 3.1.1 probe
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            try:
                await self._session()
            except* Retake as group:
                self._retaken(_first(group))
            except* RetryV5:
                self._reconnect_now = True
                log.info("ending the MQTT 3.1.1 session to try MQTT 5 again at %s", self.where)
            except* ClosedBeforeConnack as group:
                self._refused_now = True  # the broker (or a front) answered, then hung up
                self._closed_before_connack(_first(group))
            except* MqttConnectError as group:
                self._refused_now = True
                self._refused(_first(group))
            except* (aiomqtt.MqttError, OSError) as group:
                taken_over, closed_under_us, pushed_back = self._lost(_first(group))
            except* Exception as group:  # a bug here must not end the node: log, retry
                log.error("uplink session failed", exc_info=_first(group))
                self.counters.inc("uplink.internal_error")
            finally:
                client = self._client
                if client is not None:
                    self._count_too_large(client)
                if client is not None and client.session_present is not None:  # a CONNACK
                    # over 3.1.1 the will has no delay: nothing to count on back on MQTT 5
                    online_v5 = self.connected and self.protocol == "5"
                    self._online_heard_at = client.heard_at if online_v5 else None
                self.connected = False
                self._client = None
                if self._retrying_v5:  # no answer either way: 3.1.1, which worked, next
                    # (after the backoff: the link may be down). Left due, every attempt
                    # tried MQTT 5 again, and a front that holds an MQTT 5 CONNECT without
                    # a word kept the node offline for good, its panics unsent
                    self._v5_still_refused("no answer to it", at_once=False)
                if probe and self._probing_311:
                    if client is None or client.session_present is None:  # no answer, no close
                        self._end_probe()
                    else:  # answered, the connection ended with its CONNACK (`_ended_at_once`)
                        self._fall_back("no CONNACK to MQTT 5, an answer to 3.1.1")
        except Exception as exc:
            # telling how the session ended failed: the advice's lazy import (tlsfail) in a
            # process out of descriptors (EMFILE), the very cause the connection failed
            # for, cannot open its file. Retried as any failure, not the uplink's end (the
            # node's: its TaskGroup), as when the advice was loaded at start
            log.error("uplink: the end of a session could not be told: %r", exc)
            self.counters.inc("uplink.internal_error")
        drop_stale_cancels(cancels)  # the session's TaskGroup, failing, left one (3.11)
        worked = self._worked_at is not None
        lasted = time.monotonic() - self._worked_at if self._worked_at is not None else 0.0
        return SessionEnd(
            worked, lasted, taken_over, closed_under_us, pushed_back, refused=self._refused_now
        )

    def _count_too_large(self, client: MqttClient) -> None:
        """A packet over MAX_INCOMING_BYTES ended this connection as it ended the last one:
        the broker keeps it in the node's session (a QoS 1 command over 3.1.1, which cannot
        announce the limit) and sends it first at every connection, which it ended for good
        (backoff or not). The next connection starts a clean session: the broker drops it,
        and the commands queued behind it, which it held back all the same. One that came
        in place of the CONNACK is no session's (`MalformedConnack` tells it): a clean
        session dropped the commands queued for the node, for nothing."""
        if client.session_present is None:  # no CONNACK
            return
        too_large = client.too_large
        if too_large is None:
            self._too_large_ends = 0  # a CONNACK, and no such packet
            return
        self._too_large_ends += 1
        if self._too_large_ends < 2 or self.config.session_expiry_s == 0:
            return
        self._clean_next = True
        self._session_kept = False  # dropped on purpose: not a broker that lost it
        self.counters.inc("uplink.session_cleaned")
        log.warning(
            "the broker at %s sent a packet of %d bytes again (over the %d the node takes), "
            "kept in the node's session: the next connection starts a clean session, which "
            "drops it and the commands queued for the node; set the broker's "
            "max_packet_size, or use MQTT 5",
            self.where,
            too_large.size,
            MAX_INCOMING_BYTES,
        )

    def _refused(self, exc: BaseException) -> None:
        """A CONNACK refusal: its reason and the remedy, not a time-out."""
        rc = getattr(exc, "rc", None)
        code = int(getattr(rc, "value", rc)) if rc is not None else 0x80
        if self._retrying_v5:
            # whatever the reason, 3.1.1 at once: it worked a moment ago. Taken for MQTT 5
            # spoken, a refusal that holds for MQTT 5 only (a listener set apart: 0x87)
            # ended the fallback, and every attempt after was MQTT 5, refused: offline for
            # good. A refusal that holds for both is told by the 3.1.1 attempt
            self._v5_still_refused(f"{rc}, code 0x{code:02X}")
            return
        if self._probing_311:  # refused, but answered: the broker speaks 3.1.1, not 5
            self._fall_back("no CONNACK to MQTT 5, an answer to 3.1.1")
        if code == UNSUPPORTED_PROTOCOL and self.protocol == "5" and self._fall_back(str(rc)):
            return
        if code == RETAIN_NOT_SUPPORTED and self.retains:
            self._without_retain(f"it refused the retained will: {rc} (code 0x{code:02X})")
            return
        reason = reason_for(code)
        client = self._client
        todo = reason.todo + _named(client.server_reference if client is not None else None)
        self.counters.inc(f"uplink.refused.{reason.key}")
        self.last_error = f"connection refused: {rc} (code 0x{code:02X}): {todo}"
        log.error(
            "the broker at %s refused the connection of client id %s: %s (MQTT reason 0x%02X): %s",
            self.where,
            self.client_id,
            rc,
            code,
            todo,
        )

    def _closed_before_connack(self, exc: ClosedBeforeConnack) -> None:
        """No CONNACK at all: a broker without MQTT 5 (RabbitMQ 3.10) does this to an MQTT 5
        client; so does TLS on a plain port, or a link lost at the wrong instant. Twice in
        a row over MQTT 5, the next attempt tries 3.1.1; if that one is answered, 3.1.1 it
        is (see `_session`).

        With the node's own certificate expired by its clock, the close is said as that
        certificate's refusal, and 3.1.1 is tried once at most while it stays expired: a
        broker that never asked for it (one taking passwords) or took it (its clock right,
        the node's ahead) may still be one without MQTT 5, which only 3.1.1 reaches."""
        malformed = isinstance(exc, MalformedConnack)
        expired = not malformed and self._own_certificate_expired(exc.reason)
        if malformed:
            self.counters.inc("uplink.malformed_connack")
        elif not expired:
            self.counters.inc("uplink.no_connack")
        if self._retrying_v5:  # the close that made it fall back: not two more, nor a probe
            self._v5_still_refused(f"it closed the connection without a CONNACK: {exc.reason}")
            return
        if self._probing_311:  # 3.1.1 fared no better: the version was not the problem
            self._probing_311 = False
            self.protocol = "5"
            self._probed_expired = expired
        elif (
            self.protocol == "5"
            and self.config.protocol_fallback
            and not (expired and self._probed_expired)
        ):
            self._no_connack_v5 += 1
            if self._no_connack_v5 >= NO_CONNACK_BEFORE_PROBE:
                self._no_connack_v5 = 0
                self._probing_311 = True
                self.protocol = "3.1.1"
                log.warning(
                    "the broker at %s %s our MQTT 5 CONNECT (%s), %d times in a row: "
                    "trying MQTT 3.1.1%s",
                    self.where,
                    "answered with a malformed CONNACK to"
                    if malformed
                    else "closed the connection without answering",
                    exc.reason,
                    NO_CONNACK_BEFORE_PROBE,
                    " once, in case the certificate is not what it refuses" if expired else "",
                )
                return
        if expired:
            return
        if malformed:
            self.last_error = (
                f"the broker answered with a malformed CONNACK ({exc.reason}), which the "
                "node cannot read: a broken MQTT server, or not the broker it should be. "
                "See its version and log"
                + (
                    '; [broker] protocol = "3.1.1" if its MQTT 5 is at fault'
                    if self.protocol == "5"
                    else ""
                )
            )
            log.error("%s at %s", self.last_error, self.where)
            return
        if self.protocol == "5":
            also = 'A broker without MQTT 5 does this too: [broker] protocol = "3.1.1"'
        else:  # a 3.1.1 broker refuses a CONNECT so: the node's will may be the cause
            also = (
                "An MQTT 3.1.1 broker also does this to a CONNECT it refuses, without a "
                "reason: Mosquitto to the node's will (QoS 1, retained) when it allows only "
                "QoS 0 (max_qos 0: edged needs QoS 1, allow it) or keeps no retained "
                "messages (retain_available false: enable them, or use MQTT 5, over which "
                "the node goes on without the retain flag)"
            )
        self.last_error = (
            f"the broker closed the connection without a CONNACK ({exc.reason}): is "
            f"[broker] port an MQTT port, with TLS where [broker.tls] says so? {also}. "
            "See its log"
        )
        log.error("%s at %s", self.last_error, self.where)

    def _end_probe(self) -> None:
        """The 3.1.1 attempt ended without a CONNACK in another way than a close (a TLS
        alert, a refused or unreachable port): it says nothing for 3.1.1, so MQTT 5 it is
        again. Left on, the node stayed on 3.1.1, and the first CONNACK after the cause
        was fixed (a renewed certificate) was taken for the broker refusing MQTT 5: the
        fallback said so in health and lasted until edged restarted. A TLS refusal with
        the node's certificate expired by its clock counts as the probe made
        (`_probed_expired`): 3.1.1 is not tried again while it stays expired."""
        self._probing_311 = False  # first: the import below may fail (`_attempt`)
        self.protocol = "5"
        from edged.uplink import tlsfail  # the advice on a failure, not at every start

        tls = self.config.tls
        cert = tls.cert_file if tls is not None else None
        self._probed_expired = bool(tlsfail.expired_own_certificate(cert))
        log.info("the MQTT 3.1.1 attempt ended before a CONNACK too: back to MQTT 5")

    def _fall_back(self, why: str) -> bool:
        """Use 3.1.1, if allowed, until MQTT 5 is tried again (`_retry_v5_if_due`): a front
        that closes connections while the broker behind it restarts looks like a broker
        without MQTT 5, and the node stayed on 3.1.1 until edged restarted (weeks, in a
        vehicle). Says so in the log and in health."""
        if not self.config.protocol_fallback:
            return False
        self._probing_311 = False
        self.protocol = "3.1.1"
        self.fell_back = True
        self._retry_v5_at = time.monotonic() + self._retry_v5_s
        self.counters.inc("uplink.protocol_fallback")
        self.last_error = f"the broker refused MQTT 5 ({why}): using MQTT 3.1.1"
        log.warning(
            "the broker at %s refuses MQTT 5 (%s): using MQTT 3.1.1, and MQTT 5 again in "
            "%.0f s ([broker] protocol_fallback, protocol_retry_s); without MQTT 5 there are "
            "no response topics, will delay nor topic aliases, and the broker's own setting "
            "decides how long it keeps the node's session",
            self.where,
            why,
            self._retry_v5_s,
        )
        return True

    def _retry_v5_if_due(self) -> None:
        """On a fallback, this attempt tries MQTT 5 again once its time has come."""
        at = self._retry_v5_at
        if not self.fell_back or at is None or time.monotonic() < at:
            return
        self._retrying_v5 = True
        self.protocol = "5"
        self.counters.inc("uplink.protocol_retry")
        log.info("on MQTT 3.1.1 by a fallback: trying MQTT 5 again at %s", self.where)

    def _v5_again(self) -> None:
        """The broker answered MQTT 5 again: the fallback ends."""
        self._retrying_v5 = False
        self.fell_back = False
        self._retry_v5_at = None
        self._retry_v5_s = self.config.protocol_retry_s
        self.counters.inc("uplink.protocol_restored")
        log.warning("the broker at %s answers MQTT 5 again: using MQTT 5", self.where)

    def _v5_still_refused(self, why: str, *, at_once: bool = True) -> None:
        """The try of MQTT 5 was refused as before (or not answered): 3.1.1 again, at once
        (`run`) unless `at_once` is off, MQTT 5 tried again after twice the wait, up to
        `protocol_retry_max_s`."""
        self._retrying_v5 = False
        self.protocol = "3.1.1"
        self._retry_v5_s = min(self._retry_v5_s * 2, self.config.protocol_retry_max_s)
        self._retry_v5_at = time.monotonic() + self._retry_v5_s
        self._reconnect_now = at_once
        self.counters.inc("uplink.protocol_retry_refused")
        log.info(
            "the broker at %s still refuses MQTT 5 (%s): MQTT 3.1.1 again, MQTT 5 again in %.0f s",
            self.where,
            why,
            self._retry_v5_s,
        )

    async def _until_v5_retry(self) -> None:
        """On a fallback, end the 3.1.1 session once MQTT 5 is due again (`RetryV5`): not
        while the session is still being set up, nor while the node stops, and in a moment
        with no publish awaiting its PUBACK (for `publish_timeout_s` at most), which the
        next session would send again (a copy dispatch drops by its seq, but bytes)."""
        busy_since: float | None = None
        while not self.stopping and not self._closed:
            at = self._retry_v5_at
            if at is None:
                return
            now = time.monotonic()
            if at <= now and self.connected:
                sender = self._sender
                busy_since = now if busy_since is None else busy_since
                idle = sender is None or sender.in_flight == 0
                if idle or now - busy_since >= self.config.publish_timeout_s:
                    raise RetryV5
            await asyncio.sleep(min(max(at - now, 0.02), 1.0))  # a stop seen within 1 s

    def _retain_per_connack(self, available: bool) -> None:
        """An MQTT 5 CONNACK says whether the broker keeps retained messages (absent: it
        does). Off when it says not; on again when a broker that said not no longer does
        (its setting changed, or a balancer sent the node to another broker): only then,
        as a broker that refuses a retained will (0x9A) without saying so in its CONNACK
        would have the node refused at every other connection."""
        if not available:
            self._retain_said_off = True
            if self.retains:
                self._without_retain("its CONNACK says Retain Available 0")
        elif not self.retains and self._retain_said_off:
            self.retains = True
            self.counters.inc("uplink.retain_available_again")
            log.warning(
                "the broker at %s keeps retained messages again (its CONNACK no longer says "
                "Retain Available 0): publishing with the retain flag from now on",
                self.where,
            )

    def _without_retain(self, why: str) -> None:
        """The broker keeps no retained messages: publish without the flag from now on."""
        self.retains = False
        self.counters.inc("uplink.retain_unavailable")
        todo = reason_for(RETAIN_NOT_SUPPORTED).todo
        self.last_error = f"the broker keeps no retained messages ({why}): {todo}"
        log.warning(
            "the broker at %s keeps no retained messages (%s): %s. Until its CONNACK says "
            "otherwise (MQTT 5) or edged restarts, every message goes without the retain "
            "flag: dispatch hears each one live, but "
            "a subscriber that comes later gets no last state, health or occupancy",
            self.where,
            why,
            todo,
        )

    def _lost(self, exc: BaseException) -> tuple[bool, bool, bool]:
        """A session or a connection attempt ended; (taken over, closed under us, the
        broker asked for room: `asks_for_room`)."""
        from edged.uplink import tlsfail  # the advice on a failure, not at every start

        self.counters.inc("uplink.disconnect")
        client = self._client
        ended = client.ended if client is not None else None
        if ended is not None and ended.by_broker:
            reason = reason_for(ended.code)
            todo = reason.todo + _named(ended.server)
            self.last_error = f"disconnected by the broker: {ended.reason}: {todo}"
            if ended.code == SESSION_TAKEN_OVER:
                return True, False, False
            self.counters.inc(f"uplink.disconnected.{reason.key}")
            log.warning(
                "the broker at %s ended the session: %s (MQTT reason 0x%02X%s): %s",
                self.where,
                ended.reason,
                ended.code,
                f", {ended.text!r}" if ended.text else "",
                todo,
            )
            return False, False, asks_for_room(ended.code)
        too_large = client.too_large if client is not None else None
        if too_large is not None:
            # the node ended it, at the broker's packet (`_count_too_large`): not a link
            # lost, nor the broker's close at a publish of ours (no limit to learn), nor one
            # more short session lost without a word (another client with our id)
            self.last_error = f"ended the connection: {too_large}"
            log.warning("ended the connection to the broker at %s: %s", self.where, too_large)
            return False, False, False
        if self.connected or self._worked_at is not None:
            # the birth acknowledged: a session, lost under us, even while the retained
            # topics were still being restored (before `connected`): taken for a broker
            # we cannot reach, a client with our id throwing us off in that moment (most
            # sessions, on a loaded node) was never counted short, and the backoff began
            # again from the shortest delay
            self.last_error = f"lost the broker: {exc}"
            log.warning("lost the broker at %s: %s", self.where, exc)
            if not isinstance(exc, PubackTimeout) and self._too_large_at_close():
                return False, False, False  # not another client with our id
            return False, True, False
        tls = tlsfail.tls_error(exc)
        if tls is not None:
            self._refused_now = True  # a TLS alert: the broker is there, and says no
            self._tls_failed(tls)
            return False, False, False
        hint = ""
        if self.config.tls is not None and tlsfail.reset_in_handshake(exc):
            # a reset in the handshake is a plain port's, most often; never a TLS 1.3
            # broker's refusal of the node's certificate, which comes after the node's
            # handshake ended (`_closed_before_connack`): an expired one is said beside it
            hint = tlsfail.plain_port_hint(self.config.port)
            expired = tlsfail.expired_own_certificate(self.config.tls.cert_file, refused=False)
            if expired:
                hint += f"; and {expired}"
        self.last_error = f"cannot reach the broker: {exc}{hint}"
        log.warning("cannot reach the broker at %s: %s%s", self.where, exc, hint)
        return False, False, False

    def _too_large_at_close(self) -> bool:
        """The broker closed the connection under a session that worked: whether it did
        for the size of a publish in flight (`edged.uplink.ceiling`). True when that taught
        a limit: the end is then not one more sign of another client with our id (three
        short sessions in a row), which a broker closing at the same large message in every
        session looked like."""
        suspect, self._suspect = self._suspect, None
        if self.protocol != "3.1.1":
            # an MQTT 5 broker says its limit in its CONNACK (none said: none), and that it
            # refused a packet for its size (DISCONNECT 0x95): a bare close is a lost link
            return False
        ceiling = self.ceiling
        acked = ceiling.acked
        if not ceiling.ended(suspect, time.monotonic()) or suspect is None:
            return False
        self.counters.inc("uplink.packet_limit_learned")
        if not suspect.batch:
            held = f"publishes of {suspect.size} bytes or more are held back (kept in the outbox)"
        elif acked:
            held = f"batches of samples are kept to {acked} bytes, the largest publish it took"
        else:
            held = "samples go one to a publish"
        took = f"larger than any it took ({acked} bytes)" if acked else "before it took any"
        self.last_error = (
            f"the broker closed the connection with a publish of {suspect.size} bytes on "
            f"{suspect.topic} in flight, {took}, in sessions in a row: taken for a packet "
            "over its maximum packet size, which it did not announce (an MQTT 3.1.1 broker "
            "cannot)"
        )
        log.warning(
            "%s; %s for an hour (or until edged restarts), then tried again: raise the "
            "broker's max_packet_size (Mosquitto) above the node's largest message, or use "
            "MQTT 5, whose CONNACK says the limit",
            self.last_error,
            held,
        )
        return True

    def _own_certificate_expired(self, how: str) -> bool:
        """A TLS connection ended before its CONNACK with no TLS alert read: when the node's
        own certificate has expired, that is the likely reason
        (`tlsfail.expired_own_certificate`), not the port: said, and True."""
        from edged.uplink import tlsfail  # the advice on a failure, not at every start

        tls = self.config.tls
        advice = tlsfail.expired_own_certificate(tls.cert_file if tls is not None else None)
        if not advice:
            return False
        self.counters.inc("uplink.tls_refused.expired")
        self.last_error = f"TLS: the broker ended the connection before a CONNACK ({how}): {advice}"
        log.error("cannot connect to the broker at %s: %s", self.where, self.last_error)
        return True

    def _tls_failed(self, err: ssl.SSLError) -> None:
        """TLS refused the connection: which side refused what, and what to do. A broker
        certificate that looks expired or not yet valid is said with what the node's clocks
        say: after a cold boot without network time, the clock is the usual fault."""
        from edged.uplink import tlsfail  # the advice on a failure, not at every start

        tls = self.config.tls
        clock = self.clock
        self.counters.inc(f"uplink.tls_refused.{tlsfail.kind(err)}")
        self.last_error = tlsfail.explain(
            err,
            host=self.config.host,
            port=self.config.port,
            ca_file=tls.ca_file if tls is not None else None,
            cert_file=tls.cert_file if tls is not None else None,
            clock=clock.describe() if clock is not None else None,
            clock_right=clock.system_clock_right() if clock is not None else None,
        )
        log.error("cannot connect to the broker at %s: %s", self.where, self.last_error)

    def _taken_over(self, end: SessionEnd) -> None:
        self.counters.inc("uplink.takeover")
        certain = end.taken_over
        todo = reason_for(SESSION_TAKEN_OVER).todo
        # short sessions cut while the same retained topic was restored: another client
        # with our id, or a broker that closes the connection at that topic, which the next
        # restore gives up (`_restore_cut_short`); the log says both, not a takeover alone,
        # and how many were cut there (the first may have been cut in the drain)
        at = self._restoring if not certain and self._restoring == self._restore_cut else None
        short = self.reconnect.short_in_a_row
        cut_at = min(short, self._restore_cuts + 1)  # this one and the restores cut before it
        where = "each" if cut_at == short else f"the last {cut_at}"
        self.last_error = (
            f"another client uses our client id: {todo}"
            if at is None
            else f"another client may use our client id, or the broker closes the "
            f"connection at {at}: {todo}"
        )
        log.error(
            "another client %s our client id %r: the broker %s (%s); %s",
            "uses" if certain else "probably uses" if at is None else "may use",
            self.client_id,
            "gave it our session (MQTT 5 reason 0x8E, session taken over)"
            if certain
            else f"closed {short} sessions in a row within a second of "
            "their start, without a reason"
            + ("" if at is None else f", {where} while {at} was restored: or it closes at it"),
            self.where,
            todo,
        )

    def _client_for(self, will_payload: bytes) -> MqttClient:
        cfg = self.config
        v5 = self.protocol == "5"
        persistent = cfg.session_expiry_s > 0
        clean = not persistent or self._clean_next  # `_count_too_large`
        properties = will_properties = None
        if v5 and cfg.will_delay_s > 0:
            will_properties = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
            will_properties.WillDelayInterval = cfg.will_delay_s
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.MaximumPacketSize = MAX_INCOMING_BYTES
            if persistent:
                properties.SessionExpiryInterval = cfg.session_expiry_s
        return MqttClient(
            hostname=cfg.host,
            port=cfg.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            username=cfg.username,
            password=read_password(cfg),
            keepalive=cfg.keepalive_s,
            tls_context=self.tls.context() if self.tls is not None else None,
            will=aiomqtt.Will(
                self.topics.of(STATE),
                self.wire(will_payload),
                qos=1,
                retain=self.retains,
                properties=will_properties,
            ),
            clean_session=None if v5 else clean,
            clean_start=clean if v5 else MQTT_CLEAN_START_FIRST_ONLY,  # 5 only
            properties=properties,
            timeout=cfg.publish_timeout_s,
            max_inflight_messages=cfg.window,
            max_incoming=MAX_INCOMING_BYTES,  # over 3.1.1 too, which cannot announce it
        )

    async def _session(self) -> None:
        since, _ = self.outbox.clock.now()
        self._session_since = since
        # the birth is stamped before the will, so the will's seq is above the birth's:
        # dispatch ordering by seq keeps "offline" after a crash. No flush before connecting:
        # a disk that refuses writes must not keep the node off the broker, and the epoch
        # keeps (epoch, seq) unique whether or not these seqs reach the disk
        birth, _, _ = self.outbox.stamp(STATE.name, self.birth(since))
        will, _, _ = self.outbox.stamp(STATE.name, State(state="offline", since=since))
        client = self._client_for(will)
        self._client = client
        client.on_unreadable = lambda: self.counters.inc("cmd.unreadable")
        client.on_flooded = lambda: self.counters.inc("cmd.flooded")
        client.ack_when_handed()  # a command is acknowledged once the node took it (`_take`)
        async with client:
            ending = False
            try:
                await self._connected_session(client, birth)
            except asyncio.CancelledError:
                # the uplink's end without the stop's `close()`: another of the node's tasks
                # failed and its TaskGroup cancels the rest. The process is about to end:
                # the will says so. A DISCONNECT dropped it, `online` stayed retained for a
                # node that was gone (until a next start; one failing at each start showed
                # `online` throughout: systemd restarts it for ever)
                ending = True
                raise
            finally:
                # a stop that could not say `offline` (no answer in time, refused): the
                # will says it, where aiomqtt's DISCONNECT would drop it and leave `online`.
                # Closed, not only stopping: a session the stop's drain ends (a PUBACK timed
                # out) is followed by another, and its will said `offline` before `online`
                client.keep_will = (self._closed or ending) and not self._offline_said

    async def _connected_session(self, client: MqttClient, birth: bytes) -> None:
        client.pending_calls_threshold = self.config.window + 16
        self._no_connack_v5 = 0
        self._probed_expired = False
        if self._retrying_v5:
            self._v5_again()
        if self._probing_311:
            self._fall_back("no CONNACK to MQTT 5, an answer to 3.1.1")
        # reading first: a connection lost while we subscribe or publish the birth ends
        # the session now (aiomqtt would wait out its time-out on the SUBACK or PUBACK),
        # and the commands a resumed session holds for us come in at once
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._receive(client), name="uplink.receive")
            tg.create_task(self._start(client, birth), name="uplink.start")
            if self.fell_back:
                tg.create_task(self._until_v5_retry(), name="uplink.retry_v5")

    async def _start(self, client: MqttClient, birth: bytes) -> None:
        """Subscribe, birth, retained topics again, then drain the outbox for good."""
        use_aliases = self.protocol == "5" and self.config.topic_aliases
        self.aliases = TopicAliases(client.topic_alias_max if use_aliases else 0, self._aliased)
        if self.protocol == "5":
            self._retain_per_connack(client.retain_available)
        self._said.clear()
        if self.tls is not None:
            self.tls_resumed = self.tls.connected()
            self.counters.inc(f"uplink.tls.{'resumed' if self.tls_resumed else 'full'}")
        if not client.session_present and self._session_kept:
            self.ceiling.broker_changed()  # it had kept one: restarted without it, or another
        # a clean session over 3.1.1 ends with its connection: the next finds none, rightly
        cleaned_311 = self._clean_next and self.protocol == "3.1.1"
        self._clean_next = False
        self._session_kept = self.config.session_expiry_s > 0 and not cleaned_311
        self.hears_commands = False
        if (
            client.session_present
            and self._subscribed == self.topics.commands
            and self._subscribed_over == self.protocol
        ):
            self.counters.inc("uplink.subscription_kept")  # the broker kept it with the session
            self.hears_commands = True
        else:
            # none until the broker granted it: a connection lost before that (or a refusal)
            # left a session without it, which the next connection resumes
            self._subscribed = None
            self.hears_commands = await self._subscribe(client)
            if self.hears_commands and self.config.session_expiry_s > 0:
                self._subscribed = self.topics.commands
                self._subscribed_over = self.protocol
        if self._will_still_held(client):
            self.counters.inc("uplink.birth_kept")  # `online` is still the retained state
        else:
            await self._publish_acked(client, self.topics.of(STATE), self.wire(birth), 1)
        self._worked_at = time.monotonic()
        self.outbox.begin_session()
        await self._restore_retained(client)
        async with self._outside_freed:  # the drain counts none of theirs in flight
            await self._outside_freed.wait_for(lambda: self._outside == 0)
        self.connected = True
        self.sessions += 1
        self._connected_as(client)
        await self._drain(client)

    @contextlib.asynccontextmanager
    async def _before_drain(
        self, client: MqttClient, within_s: float | None
    ) -> AsyncIterator[None]:
        """Room within the broker's Receive Maximum for a publish made before the drain
        runs, which keeps a share of it for them (`Sender.beside`): the restore's, and a
        direct publish beside it (a stop's `offline`), which under an allowance of one
        went over it (HiveMQ ends the session: 0x93). Waits at most `within_s`, then
        `PubackTimeout`."""
        allowed = client.receive_max
        try:
            async with asyncio.timeout(within_s), self._outside_freed:
                await self._outside_freed.wait_for(
                    lambda: allowed is None or self._outside < allowed
                )
                self._outside += 1
        except TimeoutError:
            raise PubackTimeout(
                f"no room within the broker's Receive Maximum of {allowed} after {within_s:g} s"
            ) from None
        try:
            yield
        finally:
            async with self._outside_freed:
                self._outside -= 1
                self._outside_freed.notify_all()

    async def _restore_retained(self, client: MqttClient) -> None:
        """The retained topics again, when the broker kept no session for the node, or the
        last restore was cut short (by a lost link, or a restart of edged: the state store)."""
        cut, self._restoring = self._restoring, None
        if not client.session_present:
            # the broker kept no session for us: it may have lost its retained store too
            # (a restart without persistence). Restored messages are the ones delivered
            # before, byte for byte: the same (topic, epoch, seq)
            self._set_restore_due(True)
            self._restored.clear()
        elif self.sessions == 0 and self.outbox.get_state(RESTORE_DUE_KEY, False):
            self._restore_due = True  # the last process's restore was cut short
        if self._restore_due and self.retains:
            given_up = self._restore_cut_short(cut)
            if given_up is not None:
                self._given_up.add(given_up)
            retained = await self.outbox.retained()
            for topic in self._kept_out.keys() - {topic for topic, _, _ in retained}:
                del self._kept_out[topic]  # no longer retained (cleared)
            for topic, payload, qos in retained:
                if topic in self._restored:
                    continue
                wire = self.wire(payload)
                size = self._fits(client, topic, topic, wire, qos, None)
                if size is not None and topic in self._given_up:
                    if topic == given_up:
                        self._keep_out(topic, wire)
                elif size is not None and not self._kept_out_still(topic, wire):
                    async with self._before_drain(client, None):
                        self._restoring = topic
                        await self._restore(client, topic, wire, qos, size)
                        self._restoring = None
                    self._kept_out.pop(topic, None)  # not cut: a next give-up starts over
                self._restored.add(topic)
            self._set_restore_due(False)
            self._restored.clear()
            self._given_up.clear()
            self._restore_cut, self._restore_cuts = None, 0

    def _set_restore_due(self, due: bool) -> None:
        """In the state store too, where the broker keeps the node's session: the next
        process, finding the session kept, restored nothing after a restore cut short by a
        restart (an ignition cut, the watchdog)."""
        if due != self._restore_due and self.config.session_expiry_s > 0:
            self.outbox.set_state(RESTORE_DUE_KEY, due)
        self._restore_due = due

    def _restore_cut_short(self, cut: str | None) -> str | None:
        """The last restore was cut short with `cut` in flight (None: none was); the topic
        to give up in this one: the same in flight at RESTORE_CUTS_TO_GIVE_UP cuts in a
        row."""
        same = cut is not None and cut == self._restore_cut
        self._restore_cut, self._restore_cuts = cut, self._restore_cuts + 1 if same else 1
        if cut is None or self._restore_cuts < RESTORE_CUTS_TO_GIVE_UP:
            return None
        self._restore_cut, self._restore_cuts = None, 0
        return cut

    def _kept_out_still(self, topic: str, wire: bytes) -> bool:
        """`topic`'s message, unchanged, is still left out of restores (`_keep_out`)."""
        kept = self._kept_out.get(topic)
        if kept is None:
            return False
        if kept[0] != hash(wire):  # changed: tried again, a next give-up starts over
            del self._kept_out[topic]
            return False
        return time.monotonic() < kept[1]

    def _keep_out(self, topic: str, wire: bytes) -> None:
        """`topic` given up in this restore: left out of the next ones, unchanged, for
        GIVEN_UP_FIRST_S, twice as long as last time if it was given up before unchanged
        (up to GIVEN_UP_FOR_S)."""
        digest = hash(wire)
        kept = self._kept_out.get(topic)
        again = kept is not None and kept[0] == digest
        for_s = min(GIVEN_UP_FOR_S, kept[2] * 2) if kept is not None and again else GIVEN_UP_FIRST_S
        self._kept_out[topic] = (digest, time.monotonic() + for_s, for_s)
        self.counters.inc("uplink.restore_given_up")
        log.warning(
            "the connection to %s was lost %d times in a row while %s was restored: it is not "
            "restored again for %d s unless it changes (longer each time it is given up "
            "again, up to %d min; `republish` sends it): the broker may close the connection "
            "at it (its ACL or policy, its packet size), or the link was flaky. The other "
            "retained topics are restored",
            self.where,
            RESTORE_CUTS_TO_GIVE_UP,
            topic,
            for_s,
            GIVEN_UP_FOR_S // 60,
        )

    async def _restore(
        self, client: MqttClient, topic: str, wire: bytes, qos: int, size: int
    ) -> None:
        """A retained message again: in flight, it is the session's suspect as the drain's
        are (`edged.uplink.ceiling`). Over 3.1.1 a broker closing the connection at one too
        large for it ended every session there (never online, nothing behind it restored
        or drained): two such sessions in a row teach the limit, and `_fits` holds it back."""
        if qos > 0:
            self._suspect = Suspect(topic, topic, size, batch=False)
        if await self._publish_acked(client, topic, wire, qos) and qos > 0:
            self.ceiling.acknowledged(size)
        self._suspect = None

    async def _publish_acked(self, client: MqttClient, topic: str, wire: bytes, qos: int) -> bool:
        """A retained publish of the session's start (the birth, a restored topic); one the
        broker refuses (an ACL without `state`, a quota) is counted and logged, and the
        session goes on: the outbox's messages, an alarm among them, still go."""
        try:
            await client.publish_acked(topic, wire, qos=qos, retain=self.retains)
        except PublishRefused as exc:
            self._publish_refused(topic, exc.code, 1, kept=False)
            return False
        return True

    def _will_still_held(self, client: MqttClient) -> bool:
        """Whether the broker surely still holds the last session's will, unpublished, so
        the retained `state` is still that session's birth and need not be sent again.
        Over MQTT 5 with a will delay, the broker publishes the will only once the delay has
        passed since it lost the connection, and not at all when the session is taken up
        again before. It lost it no earlier than the last bytes it sent us, so less than the
        delay (less a margin for their transit) since then, with the session kept, proves
        it, on one more condition: the broker did not restart meanwhile (Mosquitto
        publishes every will when it stops, and keeps the session; a restart from its disk
        may bring back an older retained store). A TLS session resumed from the last
        connection proves that: a broker's ticket keys and session cache are its process's
        own (OpenSSL makes them at start; Mosquitto sets none). Anything else (no TLS, a full
        handshake, 3.1.1, a restart of edged, a lost session, a connection that did not go
        online) sends the birth."""
        delay = self.config.will_delay_s
        heard = self._online_heard_at
        if self.protocol != "5" or delay <= 0 or heard is None or not client.session_present:
            return False
        if not self.retains:  # no retained `state`: subscribers hear `online` only live
            return False
        if self.tls is None or self.tls_resumed is not True:
            return False
        return time.monotonic() - heard < delay - WILL_DELAY_MARGIN_S

    async def _subscribe(self, client: MqttClient) -> bool:
        """Commands, QoS 1; over MQTT 5 with "retain as published", so a retained command
        is seen as such even when it arrives live (it is never run). False: refused."""
        if self.protocol == "5":
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            granted = await client.subscribe(self.topics.commands, options=options)
        else:
            granted = await client.subscribe(self.topics.commands, qos=1)
        refused = [rc for rc in granted if getattr(rc, "is_failure", False)]
        if refused:
            self.counters.inc("uplink.subscribe_refused")
            log.error(
                "the broker refused our subscription to %s (%s): commands will not reach this "
                "node; check the broker's ACL for client id %s",
                self.topics.commands,
                refused[0],
                self.client_id,
            )
        return not refused

    def _connected_as(self, client: MqttClient) -> None:
        """Log the session, and what the broker keeps of it while we are away."""
        cfg = self.config
        first = self.sessions == 1
        self.session_present = client.session_present
        asked = cfg.session_expiry_s
        granted = client.granted_expiry_s if client.granted_expiry_s is not None else asked
        self.session_expiry_s = granted if self.protocol == "5" else None
        log.info(
            "connected to %s as %s (MQTT %s%s, session %s)",
            self.where,
            self.client_id,
            self.protocol,
            ", fallback" if self.fell_back else "",
            "resumed" if client.session_present else "new",
        )
        shorter = self.protocol == "5" and asked > 0 and granted < asked
        if shorter and granted != self._warned_expiry:
            self._warned_expiry = granted
            self.counters.inc("uplink.short_session_expiry")
            log.warning(
                "the broker at %s keeps our session %d s after we leave (we asked %d s): "
                "commands sent while the node is offline %s are lost",
                self.where,
                granted,
                asked,
                "at all" if granted == 0 else f"longer than {granted} s",
            )
        if asked > 0 and not first and not client.session_present:
            log.warning(
                "the broker at %s had no session for us (it restarted without persistence, "
                "or the session expired): commands sent while we were away are lost",
                self.where,
            )

    async def _receive(self, client: MqttClient) -> None:
        """Each incoming message on its own: whatever one does, the next is read. Once the
        node has taken every QoS 1 command read before those it left unacknowledged (past
        the bound of those waiting), the session ends (`Retake`): the broker sends those
        again only in another connection, and meanwhile they held a `door.unlock` sent
        behind a flood for as long as the connection lasted (days), and each one of the
        broker's slots for the node (Receive Maximum: on a broker keeping to it, after 16
        no QoS 1 command came at all)."""
        async for message in client.messages:
            await self._handle(client, message)
            if self.stopping or not client.left_out or not client.caught_up():
                continue
            # left out only in a session the broker keeps; not taken up again at once:
            # `RETAKE_AFTER_S`
            if not await self._retake_due():
                continue
            for waiting in client.waiting():  # QoS 0 ones read meanwhile: handled, not lost
                await self._handle(client, waiting)
            if not self.stopping:
                raise Retake(client.left_out, client.queued_qos0())

    async def _handle(self, client: MqttClient, message: aiomqtt.Message) -> None:
        ack = _Ack(client, message)
        try:
            await self._take(ack, message)
        except Exception:
            ack()  # a bug: not again at every connection
            self.counters.inc("cmd.unhandled")
            log.exception("an incoming message on %s could not be handled", message.topic)

    async def _retake_due(self) -> bool:
        """Wait until the session has been online `RETAKE_AFTER_S`; False if the node stops
        first. Meanwhile nothing is read: every QoS 1 command is left out until then all
        the same, and QoS 0 ones wait in their bounded queue."""
        while not self.stopping:
            worked = self._worked_at
            due = RETAKE_AFTER_S if worked is None else worked + RETAKE_AFTER_S - time.monotonic()
            if worked is not None and due <= 0:
                return True
            await asyncio.sleep(min(due, 1.0))
        return False

    def _retaken(self, retake: "Retake") -> None:
        self.counters.inc("uplink.retaken")
        if retake.dropped:
            self.counters.inc("cmd.flooded", retake.dropped)
        log.warning(
            "%d command(s) came past the bound of those waiting and were left "
            "unacknowledged: taking the session up again, for the broker to send them%s",
            retake.left_out,
            f" ({retake.dropped} QoS 0 message(s) that came meanwhile are dropped with the "
            "connection, counted cmd.flooded)"
            if retake.dropped
            else "",
        )

    async def _take(self, ack: "_Ack", message: aiomqtt.Message) -> None:
        """Hand a command on (`on_command`), which acknowledges it (`IncomingCommand.ack`)
        once it is the node's to answer: one the node does not take (it stops) stays
        unacknowledged, for the broker to send again at the next connection."""
        item = incoming(message, self.topics)
        if isinstance(item, Dropped):
            ack()
            self.counters.inc(f"cmd.{item.counter}")
            log.warning("ignored: %s", item.why, extra=flood_key(item.counter))
            return
        # the broker sends it again if not acknowledged: QoS 1, in a session it keeps
        client = ack.client
        again = ack.qos > 0 and (client is None or client.session_kept())
        await self.on_command(replace(item, ack=ack, sent_again=again))

    async def _drain(self, client: MqttClient) -> None:
        """Keep `window` publishes awaiting PUBACK, in outbox order; each acks on PUBACK
        (`edged.uplink.sender`)."""
        sender = Sender(
            client,
            self.outbox,
            window=self.config.window,
            timeout_s=self.config.publish_timeout_s,
            v5=self.protocol == "5",
            outgoing=self.outgoing,
            unsent=self.aliases.unsent,
            batch_s=0.0 if self._hurried else self._drain_batch_s,
            batch_max=self.config.batch_max,
            retains=self.retains,
            ceiling=self.ceiling,
            own=self.topics.owns,
            node=self.topics.base,
            parked=self.refused_topics,
            keep=self._kept_when_refused,
        )
        sender.on_refused = self._publish_refused
        sender.on_held_back = self._held_back
        sender.on_dropped = self._refused_dropped
        sender.on_taken_again = self._taken_again
        self._sender = sender
        try:
            await sender.run()
        finally:
            self._sender = None
            self.refused_topics = set(sender.parked)
            self.sent += sender.sent
            self._suspect = sender.largest_unacked()

    def _fits(
        self,
        client: MqttClient,
        topic: str,
        name: str,
        wire: bytes,
        qos: int,
        properties: Properties | None,
    ) -> int | None:
        """The size of a publish on `topic` (`name`: by alias, "") made outside the drain
        (a restored retained message, `publish_direct`), or None when the broker cannot
        take it: held back as the drain does, not sent to end the session."""
        try:
            props = packed(properties, v5=self.protocol == "5")
            size = publish_size(name, len(wire), qos=qos, properties=props)
        except BadPublish as exc:
            self._held_back(topic, 1, None, str(exc))
            return None
        limit = self._max_packet(client)
        if limit is not None and size > limit:
            self._held_back(topic, 1, size, "")
            return None
        return size

    def _max_packet(self, client: MqttClient) -> int | None:
        """The largest publish the broker takes: what its CONNACK says (MQTT 5), or what
        the node learned (`edged.uplink.ceiling`), the smaller."""
        return least(client.max_packet, self.ceiling.limit(time.monotonic()))

    def _publish_refused(
        self, topic: str, reason: int, messages: int, *, kept: bool = True
    ) -> None:
        """Publishes the broker answered with a failure code (`Sender._refused`; `kept`
        False: one made beside the outbox, the birth, a restored or direct one)."""
        self.counters.inc("uplink.publish_refused", messages)
        code = f"PUBACK {reason_name(reason)}, 0x{reason:02x}"
        if self.topics.owns(topic) and not self._kept_when_refused(topic):
            self._say_once(
                UNKNOWN_REPLIES,
                f"0x{reason:02x}",
                f"the broker refused the reply to a command this node does not know on "
                f"{topic[:120]!r} ({code}): not kept (it says only `unknown_command`); "
                "commanders get such answers only where the broker's ACL lets this node write",
            )
            return
        if not self.topics.owns(topic):  # a copy of a reply: said once a session for all of them
            self._say_once(
                RESPONSE_TOPICS,
                f"0x{reason:02x}",
                f"the broker refused the copy of a reply on response topic {topic[:80]!r} "
                f"({code}): not kept (reply/... carries the reply); commanders get copies "
                "only on response topics the broker's ACL lets this node write (the "
                "shipped broker: {prefix}/{fleet}/_replies/+); set [broker] "
                "response_topic_prefix to refuse commands that name another",
            )
            return
        then = (
            "kept in the outbox; one message of it is tried again after 5 s, then up to "
            "every 5 minutes and at each session, the others wait for the broker to take "
            f"it (beyond {self._refused_kept()} waiting, the oldest are dropped, counted "
            "as uplink.publish_refused_dropped)"
            if kept
            else "not delivered (it goes again at the next session)"
        )
        fix = (
            f"the broker's ACL does not let client id {self.client_id} (its user: the "
            f"certificate's name, or [broker] username) publish it: allow it (the shipped "
            "broker: `fleet-certs.sh DIR acl`), then reload the broker (SIGHUP)"
            if reason == NOT_AUTHORIZED
            else "raise the broker's message_size_limit (Mosquitto) above this message's size, "
            "or set max_packet_size instead, which MQTT 5 announces"
            if reason == PACKET_TOO_LARGE
            else "check the broker's ACL and limits for it"
        )
        self._say_once(
            topic, f"0x{reason:02x}", f"the broker refused {topic} ({code}): {then}; {fix}"
        )
        if kept and reason == NOT_AUTHORIZED:
            self.counters.inc(f"uplink.acl_refused.{self.topics.spec_name(topic)}", messages)

    def _refused_kept(self) -> int:
        sender = self._sender
        return sender.refused_kept if sender is not None else REFUSED_KEPT

    def _refused_dropped(self, topic: str, messages: int) -> None:
        """Messages of a refused topic deleted over the bound kept (`Sender._hold`)."""
        self.counters.inc("uplink.publish_refused_dropped", messages)
        self._say_once(
            topic,
            "dropped",
            f"dropping the oldest messages of {topic}: the broker refuses the topic and "
            f"{self._refused_kept()} of them already wait for it (uplink.publish_refused_dropped "
            "counts them); fix the broker's ACL for it",
        )

    def _taken_again(self, topic: str) -> None:
        log.warning("the broker takes %s again: the messages of it kept go now", topic)

    def _held_back(self, topic: str, messages: int, size: int | None, why: str) -> None:
        """A publish the broker cannot take, not sent (`Sender._held_back`): counted, and
        said once a session per topic and cause, with what to do."""
        client = self._client
        limit = self._max_packet(client) if client is not None else None
        announced = client is not None and limit == client.max_packet
        key = topic if self.topics.owns(topic) else RESPONSE_TOPICS
        if size is None:
            self.counters.inc("uplink.publish_unsendable", messages)
            self._say_once(
                key,
                "unsendable",
                f"cannot publish {topic!r}: {why}; no broker can take it. Kept in the outbox "
                "and skipped in each session: a bug to report, with the node's log",
            )
        else:
            self.counters.inc("uplink.publish_too_large", messages)
            what, again = (
                (f"the broker's Maximum Packet Size of {limit} bytes", "at the next session")
                if announced
                else (
                    f"the {limit} bytes the broker is taken to accept, having closed the "
                    "connection at a larger one",
                    "once that is an hour old",
                )
            )
            self._say_once(
                key,
                "too_large",
                f"not sent {topic}: a publish of {size} bytes, over {what} (it would end the "
                f"session). Kept in the outbox and tried again {again}: raise the broker's "
                f"max_packet_size (Mosquitto) to at least {size}, or the payload is too large",
            )

    def _say_once(self, topic: str, cause: str, text: str) -> None:
        """A warning once a session per topic and cause: an ACL or a size limit meets every
        message of the topic, and the log must not fill with them. Their one template
        ("%s") is counted per kind of topic and cause in the log's flood guard: as one, a
        broker refusing every reply, said again each session, held back the first word of
        a tap too large to send."""
        if (topic, cause) not in self._said:
            self._said.add((topic, cause))
            kinds = (RESPONSE_TOPICS, UNKNOWN_REPLIES)
            kind = topic if topic in kinds else self.topics.spec_name(topic)
            why = "refused" if cause.startswith("0x") else cause  # not a code a broker chose
            log.warning("%s", text, extra=flood_key(f"uplink {kind} {why}"))

    @property
    def _drain_batch_s(self) -> float:
        """What a live sample waits for company in the drain: the outbox took its share of
        `batch_s` before the commit (`outbox_share`)."""
        return self.config.batch_s - outbox_share(self.config.batch_s)

    def hurry(self) -> None:
        """The node stops: samples waiting for company (`[broker] batch_s`, 20 s in a
        vehicle's config) go now, not after the stop waited its whole budget for them."""
        self._hurried = True
        self.outbox.hurry()
        if self._sender is not None:
            self._sender.hurry()

    @property
    def _session_works(self) -> bool:
        """A session whose birth was acknowledged is up: connected, or its retained topics
        still being restored (the drain starts right after)."""
        return self._client is not None and (self.connected or self._worked_at is not None)

    async def wait_idle(self, within_s: float) -> bool:
        """Wait (bounded) until everything stored has been acknowledged, samples waiting
        for a batch sent at once (`hurry`); for a stop. A session still restoring the
        retained topics is waited for too: its drain follows (a stop then left the queued
        messages on the node until its next start)."""
        self.hurry()
        deadline = time.monotonic() + within_s
        while self._session_works and time.monotonic() < deadline:
            if self.outbox.depth == 0 and not self.outbox.uncommitted:
                return True
            await asyncio.sleep(0.05)
        return self.outbox.depth == 0 and not self.outbox.uncommitted

    async def publish_direct(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, within_s: float = 2.0
    ) -> bool:
        """Publish outside the outbox (state offline on shutdown); False when no session
        works: one whose birth was acknowledged does, while its retained topics are still
        being restored too (a stop then said no offline, and its DISCONNECT dropped the
        will: dispatch kept `online`)."""
        client = self._client
        if client is None or not self._session_works:
            return False
        sender = self._sender
        try:
            async with (
                sender.beside(within_s)
                if sender is not None and qos > 0
                else self._before_drain(client, within_s)
                if qos > 0
                else contextlib.nullcontext()
            ):
                name, wire, properties = self.outgoing(topic, payload, None)
                if self._fits(client, topic, name, wire, qos, properties) is None:
                    self.aliases.unsent(name)
                    return False
                await client.publish_acked(
                    name,
                    wire,
                    qos=qos,
                    retain=retain and self.retains,
                    properties=properties,
                    timeout=within_s,
                )
        except PublishRefused as exc:
            self._publish_refused(topic, exc.code, 1, kept=False)
            return False
        except aiomqtt.MqttError as exc:
            log.warning("could not publish %s: %s", topic, exc)
            return False
        return True

    async def say_offline(self) -> bool:
        since, _ = self.outbox.clock.now()
        payload, _, _ = self.outbox.stamp(STATE.name, State(state="offline", since=since))
        said = await self.publish_direct(self.topics.of(STATE), payload, qos=1, retain=True)
        self._offline_said = self._offline_said or said
        return said

    async def republish(self) -> dict[str, Any]:
        """Birth and retained topics again (the `republish` command)."""
        if self._client is None or not self.connected:
            return {"birth": False, "retained": 0}
        # `since` is when this session began (docs/topics.md), as its first birth said: a
        # later one would pass a will of this session that a broker cluster delivers late
        birth, _, _ = self.outbox.stamp(STATE.name, self.birth(self._session_since))
        ok = await self.publish_direct(self.topics.of(STATE), birth, qos=1, retain=True)
        n = 0
        for topic, payload, qos in await self.outbox.retained():
            n += await self.publish_direct(topic, payload, qos=qos, retain=True)
        return {"birth": ok, "retained": n}

"""aiomqtt's client, told what the broker said.

aiomqtt keeps the CONNACK (session present, the session expiry the broker granted) and the
reason a broker gave for ending a session to itself, and when a broker closes the connection
before any CONNACK (RabbitMQ 3.10 does to an MQTT 5 client, a 3.1.1 client refused with
"unacceptable protocol version" sees the same) it waits for its timeout and says only
"Operation timed out". This subclass keeps both and turns an early close into an error at
once. It also lets the outbox's sender publish through paho directly (`publish_nowait`,
`on_delivered`: see `edged.uplink.sender`) or past paho's per-message objects (`next_mid`,
`write`, and its PUBACKs taken from the socket before paho reads them:
`edged.uplink.packets`), and reads paho's socket in chunks (`edged.uplink.readahead`).
Its waits keep a cancel that comes with their answer (`edged.uplink.cancellable`). It
overrides aiomqtt's callbacks and uses its paho client (and paho's message-id counter and
write queue), hence the pins `aiomqtt>=2.5,<3` and `paho-mqtt>=2.1,<2.3`.
"""

import asyncio
import contextlib
import fcntl
import logging
import ssl
import sys
import termios
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.logs import flood_key
from edged.uplink.cancellable import CancellableClient
from edged.uplink.packets import PacketTooLarge, PubackFilter
from edged.uplink.readahead import ReadAhead
from edged.uplink.reasons import KEEP_ALIVE_TIMEOUT
from edged.uplink.unreadable import leave_out_unreadable

log = logging.getLogger(__name__)


def reason_name(code: int) -> str:
    """A PUBACK reason code's name in MQTT 5 ("Not authorized"), or the number."""
    try:
        return str(ReasonCode(PacketTypes.PUBACK, identifier=code))
    except (KeyError, ValueError):  # not a PUBACK code: a broker's own
        return f"code {code}"


def _text(properties: Any, name: str) -> str | None:
    """A string property of a CONNACK or DISCONNECT (MQTT 5), when the broker sent it."""
    value = getattr(properties, name, None)
    return value if isinstance(value, str) else None


def code_of(reason_code: "ReasonCode | int") -> int:
    """paho gives a reason code as a `ReasonCode`, or as a bare int in some paths."""
    return int(reason_code.value) if isinstance(reason_code, ReasonCode) else int(reason_code)


class ClosedBeforeConnack(aiomqtt.MqttError):
    """The broker closed the connection without answering CONNECT."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the broker closed the connection without a CONNACK ({reason})")
        self.reason = reason


class MalformedConnack(ClosedBeforeConnack):
    """The broker answered CONNECT with a CONNACK paho cannot read (a property it does not
    know or that runs past the packet, a string that is not UTF-8, a packet too short, one
    over the size the node takes, ended at its header: `max_incoming`),
    and the node closed the connection: paho says it only in a debug line, and it was told
    as "closed the connection without a CONNACK (Protocol error)", the broker's port or
    TLS blamed. Still a CONNECT without a CONNACK that works, for the MQTT 3.1.1 fallback
    (a broker whose MQTT 5 is broken may speak 3.1.1)."""

    def __init__(self, why: str) -> None:
        aiomqtt.MqttError.__init__(self, f"the broker answered with a malformed CONNACK ({why})")
        self.reason = why


class NoConnackInTime(aiomqtt.MqttError):
    """No CONNACK within the keepalive: paho ended the attempt itself (its keepalive check
    runs before the CONNACK too) at a broker, or a front, that took the connection and
    said nothing. Told as the broker closing the connection unanswered, two of them made
    the node try MQTT 3.1.1: a mute front that recovered by then had the node on 3.1.1
    until edged restarted (no will delay, no session expiry, no topic aliases), when
    `keepalive_s` is under `publish_timeout_s` (past it, aiomqtt's own time-out ends the
    attempt first, as a broker out of reach: this is that)."""

    def __init__(self, keepalive_s: float) -> None:
        super().__init__(f"no CONNACK within the keepalive ({keepalive_s:g} s): nothing said")


class TlsEnded(aiomqtt.MqttError):
    """The broker ended the connection with a TLS alert before its CONNACK: it refused the
    node's certificate (over TLS 1.3 the alert comes after the handshake). Not a question
    of the MQTT version: no fallback to 3.1.1 follows it."""

    def __init__(self, tls: ssl.SSLError) -> None:
        from edged.uplink.tlsfail import reason_of  # a refusal's words, not at every start

        super().__init__(f"the broker ended the TLS session: {reason_of(tls) or tls}")
        self.tls = tls


class PublishRefused(aiomqtt.MqttError):
    """The broker answered a publish with a PUBACK failure code: it does not have it."""

    def __init__(self, topic: str, code: int) -> None:
        super().__init__(f"the broker refused {topic}: PUBACK {reason_name(code)} (0x{code:02x})")
        self.topic = topic
        self.code = code


@dataclass(frozen=True)
class Ended:
    """How a session ended: a DISCONNECT from the broker (MQTT 5, with its reason code), or
    the connection closed under us."""

    by_broker: bool
    code: int
    reason: str  # the reason code's name
    text: str | None  # MQTT 5 reason string, when the broker sent one
    server: str | None = None
    """MQTT 5 Server Reference: the server to use instead (0x9C use another server, 0x9D
    server moved)."""


MAX_QUEUED = 1000
"""Incoming QoS 0 messages read and not yet handled, at most (Mosquitto's own default bound
on a client's queued messages): the node handles commands one at a time, a few hundred a
second on a Pi Zero, and anyone allowed on `cmd/#` can send tens of thousands a second."""
MAX_QUEUED_BYTES = 16 * 1024 * 1024
"""And their payloads' bytes, at most (then one more message): two of the largest commands
(`access.update`, 4 MiB; the node takes packets of up to 8 MiB)."""
RECEIVE_MAXIMUM = 16
"""QoS 1 and 2 messages the broker may send the node before it acknowledges one (MQTT 5's
Receive Maximum in CONNECT; over 3.1.1 the broker's own in-flight bound, Mosquitto's
`max_inflight_messages`, 20 by default). The node acknowledges such a message only when it
takes it from the queue (`Incoming`): the rest wait at the broker, in the node's session.
Dropped after paho acknowledged it, a `door.unlock`, `alarm.ack` or `access.update` from
dispatch was lost for good, unanswered, when another commander flooded `cmd/` or when the
broker handed a resumed session its backlog (Mosquitto keeps up to `max_queued_messages` for
a node away, 100,000 in the shipped config). Mosquitto 2.0.11 keeps to it loosely once
acknowledgements flow (it sent a reader taking one at a time 1,000 ahead): past the
queue's bounds a QoS 1 message is left unacknowledged, for the broker to send again at the
next connection, not lost."""


class Incoming(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's queue of incoming messages, bounded by count and by bytes (`refuses`):
    without a bound it held every message a flood on `cmd/` sent faster than the node
    handled them (50,000 `ping`s sent in a second were 300 MB queued, a Pi Zero's memory).
    QoS 0 messages and QoS 1 or 2 ones are bounded apart, so a QoS 0 flood leaves room for
    dispatch's QoS 1 commands; the latter are acknowledged as they are taken (`taken`)."""

    def __init__(self, maxsize: int = MAX_QUEUED, max_bytes: int = MAX_QUEUED_BYTES) -> None:
        super().__init__()  # the bounds are `refuses`, by QoS
        self.max_messages = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        self.unacked = 0
        """QoS 1 and 2 messages waiting, not yet acknowledged, and their bytes."""
        self.unacked_bytes = 0
        self.taken: Callable[[aiomqtt.Message], object] | None = None
        """Told of each QoS 1 or 2 message as it is taken (to acknowledge it)."""

    def refuses(self, qos: int) -> bool:
        """Whether a message of this QoS does not go in: the bounds, for QoS 0 messages
        and for the others apart."""
        if qos > 0:
            return self.unacked >= self.max_messages or self.unacked_bytes >= self.max_bytes
        queued, queued_bytes = self.qsize() - self.unacked, self.bytes - self.unacked_bytes
        return queued >= self.max_messages or queued_bytes >= self.max_bytes

    def _put(self, item: aiomqtt.Message) -> None:
        super()._put(item)
        size = _size(item)
        self.bytes += size
        if item.qos > 0:
            self.unacked += 1
            self.unacked_bytes += size

    def _get(self) -> aiomqtt.Message:
        item: aiomqtt.Message = super()._get()
        size = _size(item)
        self.bytes -= size
        if item.qos > 0:
            self.unacked -= 1
            self.unacked_bytes -= size
            if self.taken is not None:
                self.taken(item)
        return item


def _size(message: aiomqtt.Message) -> int:
    payload = message.payload
    return len(payload) if isinstance(payload, bytes | bytearray | str) else 0


DISCONNECT_WITH_WILL = 0x04
"""MQTT 5's DISCONNECT reason "Disconnect with Will Message": the broker sends the will."""


class MqttClient(CancellableClient):
    def __init__(self, *args: Any, max_incoming: int | None = None, **kwargs: Any) -> None:
        """`max_incoming`: the largest packet taken from the broker (None: any); a larger
        one ends the connection at its header (`PacketTooLarge`)."""
        self.max_incoming = max_incoming
        kwargs.setdefault("queue_type", Incoming)
        kwargs.setdefault("max_queued_incoming_messages", MAX_QUEUED)  # Incoming's QoS 0 bound
        super().__init__(*args, **kwargs)
        # QoS 1 and 2 messages are acknowledged as they are taken from the queue, not as
        # they are read: the broker holds those the node has not taken (`RECEIVE_MAXIMUM`)
        self._client.manual_ack_set(True)
        if isinstance(self._queue, Incoming):
            self._queue.taken = self.acknowledge
        if self._client.protocol == paho.MQTTv5:  # 3.1.1: the broker's in-flight bound
            if self._properties is None:
                self._properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if getattr(self._properties, "ReceiveMaximum", None) is None:
                self._properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self.keep_will = False
        """End the connection so that the broker sends the will (`__aexit__`): set by the
        uplink for the last session of a stop (the uplink closed) without `offline` said."""
        self.flooded = 0
        """Incoming messages dropped: the queue of those not yet handled was full (`Incoming`)."""
        self.on_flooded: Callable[[], None] | None = None
        """Told of each one at once (the health counter `cmd.flooded`)."""
        self.left_out = 0
        """QoS 1 messages left unacknowledged in this connection (past the bound, or behind
        one that was): the broker sends them again only in another connection, and holds
        each in one of the node's `RECEIVE_MAXIMUM` slots meanwhile (edged.uplink.client
        takes the session up again once the node has caught up: `caught_up`)."""
        self.session_present: bool | None = None
        self.granted_expiry_s: int | None = None  # CONNACK's session expiry (MQTT 5)
        self.topic_alias_max = 0  # CONNACK's Topic Alias Maximum (MQTT 5; absent: none)
        self.receive_max: int | None = None  # CONNACK's Receive Maximum (absent: 65,535)
        self.max_packet: int | None = None
        """CONNACK's Maximum Packet Size (MQTT 5; absent, or 3.1.1: no limit). A broker ends
        the session of a client that sends a bigger packet (0x95, packet too large)."""
        self.retain_available = True  # CONNACK's Retain Available (MQTT 5; absent: yes)
        self.server_reference: str | None = None
        """CONNACK's Server Reference (MQTT 5): the server a refusal (0x9C use another
        server, 0x9D server moved) sends the node to."""
        self.ended: Ended | None = None
        self._checked: dict[int, int] = {}  # publish_acked's mids -> PUBACK reason (0: none)
        self.unreadable = 0
        """Commands left out: aiomqtt could not make a message of them, or paho could not
        read their packet (`edged.uplink.unreadable`: one QoS 1 command with U+FEFF in a
        user property kept the node offline for good, sent again at each reconnection)."""
        self.on_unreadable: Callable[[], None] | None = None
        """Told of each one at once: the session goes on, so its end is no time to count."""
        leave_out_unreadable(self._client, self._left_out)
        self._client.loop_read = self._read_or_end  # type: ignore[method-assign]
        self.reader: ReadAhead | None = None  # this connection's socket, once open
        self.on_delivered: Callable[[int, int], bool] | None = None
        """Told each message id paho reports published (PUBACK; QoS 0: written) and its
        reason code (>= 0x80: the broker refused it); True when the id was its own, else
        aiomqtt's `publish` is told."""
        self.on_puback: Callable[[int, int], bool] | None = None
        """Told each PUBACK's message id and reason code before paho reads it; True when
        the id was one of the packets given to `write` (paho is not shown that PUBACK)."""

    def _read_or_end(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's read, in aiomqtt's reader; an error out of it (a defect in what reads the
        packets, the drain's PUBACKs among them: paho turns only a malformed packet into a
        protocol error) ends the connection as a protocol error does. aiomqtt only ended
        the session with it: the socket stayed open, read and kept alive by paho, the
        broker holding the node online on it, until the next connection took the session
        over (for good after a stop), and no DISCONNECT or will ended it."""
        client = self._client
        try:
            return paho.Client.loop_read(client, max_packets)
        except Exception:
            log.exception("reading from the broker failed: the connection is closed")
            return client._loop_rc_handle(paho.MQTT_ERR_PROTOCOL)

    @property
    def too_large(self) -> PacketTooLarge | None:
        """The packet over `max_incoming` that ended this connection (None: none did)."""
        pubacks = self.reader.pubacks if self.reader is not None else None
        return pubacks.too_large if pubacks is not None else None

    @property
    def heard_at(self) -> float | None:
        """time.monotonic() when the broker's last bytes came in (None: none yet)."""
        return self.reader.heard_at if self.reader is not None else None

    def publish_nowait(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties | None = None,
    ) -> int:
        """Hand a message to paho now, without a future; returns its message id, which
        `on_delivered` is given once the broker has it. Raises when not connected."""
        return int(self._handed(topic, payload, qos, retain, properties).mid)

    def _handed(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> paho.MQTTMessageInfo:
        """paho's publish, raising (as aiomqtt does) when paho did not take the message."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        return info

    async def publish_acked(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Properties | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """aiomqtt's `publish`, which takes a PUBACK with a failure code (MQTT 5: 0x87 not
        authorized by an ACL, 0x97 quota exceeded...) for a delivery: the birth refused
        counted as sent and the node as online while the broker kept `offline`. This one
        raises `PublishRefused` then."""
        info = self._handed(topic, payload, qos, retain, properties)
        if qos == 0:
            return
        mid = int(info.mid)
        self._checked[mid] = 0
        try:
            if not info.is_published():
                confirmation = asyncio.Event()
                with self._pending_call(mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=timeout)
            code = self._checked.get(mid, 0)
        finally:
            self._checked.pop(mid, None)
        if code >= 0x80:
            raise PublishRefused(topic, code)

    def next_mid(self, taken: "Container[int]" = ()) -> int:
        """A message id from paho's own counter, for a packet built outside paho; never
        one in `taken` (still in flight: at ~20,000 messages a second the 16-bit counter
        comes round in seconds, and a reused id would hide the older message's PUBACK)."""
        mid = int(self._client._mid_generate())
        while mid in taken:
            mid = int(self._client._mid_generate())
        return mid

    def write(self, packets: bytes) -> None:
        """Queue PUBLISH packets built outside paho (`edged.uplink.packets`) behind what
        paho has queued, as one write. Raises when not connected."""
        client = self._client
        if client._sock is None:
            raise aiomqtt.MqttCodeError(paho.MQTT_ERR_NO_CONN, "Could not publish message")
        # QoS 1 for paho's queue: it reports nothing when the bytes are written
        client._packet_queue(paho.PUBLISH, packets, 0, 1)

    def queued_bytes(self) -> int:
        """Bytes written for the broker that its host has not received yet: paho's write
        queue and the socket's send queue (SIOCOUTQ: sent or not, not acknowledged by the
        broker's TCP), what a publish written now waits behind (`edged.uplink.sender`)."""
        client = self._client
        queued = sum(int(p["to_process"]) for p in client._out_packet)
        sock = client._sock
        if sock is None:
            return queued
        try:
            out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4))
        except (OSError, ValueError, AttributeError):  # closed meanwhile; not a socket
            return queued
        return queued + int.from_bytes(out, sys.byteorder, signed=True)

    def _claim(self, mid: int, reason: int) -> bool:
        """A PUBACK read from the socket: the drain's own, or paho's to read."""
        hook = self.on_puback
        return hook is not None and hook(mid, reason)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        """paho's new socket, read in chunks from now on (`edged.uplink.readahead`), the
        drain's PUBACKs taken out (`edged.uplink.packets`)."""
        wrapped = ReadAhead(sock, PubackFilter(self._claim, self.max_incoming))
        self.reader = wrapped
        client._sock = wrapped
        super()._on_socket_open(client, userdata, wrapped)

    def _on_publish(
        self,
        client: Any,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        hook = self.on_delivered
        code = code_of(reason_code)
        if hook is not None and hook(mid, code):
            return
        if mid in self._checked:
            self._checked[mid] = code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def _on_connect(
        self,
        client: Any,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        self.session_present = bool(getattr(flags, "session_present", False))
        expiry = getattr(properties, "SessionExpiryInterval", None)
        self.granted_expiry_s = expiry if isinstance(expiry, int) else None
        aliases = getattr(properties, "TopicAliasMaximum", 0)
        self.topic_alias_max = aliases if isinstance(aliases, int) else 0
        receive = getattr(properties, "ReceiveMaximum", None)
        self.receive_max = receive if isinstance(receive, int) and receive > 0 else None
        largest = getattr(properties, "MaximumPacketSize", None)  # 0 is a protocol error
        self.max_packet = largest if isinstance(largest, int) and largest > 0 else None
        self.retain_available = getattr(properties, "RetainAvailable", 1) != 0
        self.server_reference = _text(properties, "ServerReference")
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _left_out(self, exc: Exception) -> None:
        self.unreadable += 1
        log.warning("dropped a message the MQTT client cannot read: %s", exc)
        if self.on_unreadable is not None:
            self.on_unreadable()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """aiomqtt raises here on a topic it finds invalid, which would end the session;
        a broker that forwards such a topic loses us one message, not the link. A message
        past the bound of those waiting (`Incoming`) is dropped, counted and said."""
        queue = self._queue
        qos = getattr(message, "qos", 0)
        full = queue.refuses(qos) if isinstance(queue, Incoming) else queue.full()
        # once one QoS 1 message is left out, every later one is too: the broker sends
        # them again in their order (`left_out`), none taken ahead of an earlier one. Only
        # in a session the broker keeps: in another it never sends them again
        if full or (qos == 1 and self.left_out):
            self.flooded += 1
            kept = qos == 1 and self.session_kept()
            if kept:
                self.left_out += 1
            log.warning(
                "incoming messages come faster than the node handles them: %d (%d bytes) "
                "wait; %s on %.120s (cmd.flooded counts them)",
                queue.qsize(),
                getattr(queue, "bytes", 0),
                "dropped one at QoS 0"
                if qos == 0
                else "left one unacknowledged, for the broker to send again once the node "
                "has caught up (it takes its session up again),"
                if kept
                else f"dropped one at QoS {qos}, lost: the broker keeps no session for the "
                "node, so it would not send it again (set [broker] session_expiry_s)",
                getattr(message, "topic", "?"),
                extra=flood_key("cmd.flooded"),
            )
            if self.on_flooded is not None:
                self.on_flooded()
            if not kept:
                # QoS 2: its PUBREC went, unacknowledged it would never complete; QoS 1 in
                # a session not kept: it would hold one of the broker's slots for the node
                # (`RECEIVE_MAXIMUM`) as long as the connection lasts, and never come again
                self.acknowledge(message)
            return
        try:
            super()._on_message(client, userdata, message)
        except Exception as exc:
            self.acknowledge(message)
            self._left_out(exc)

    def acknowledge(self, message: Any) -> None:
        """Acknowledge a QoS 1 or 2 message (PUBACK, PUBCOMP; QoS 0: nothing): as it is
        taken from the queue, or by whoever took over that (`ack_when_handed`); now, one
        that will never be taken (unacknowledged, it would hold one of the broker's
        in-flight slots, and come again at each reconnection)."""
        qos = getattr(message, "qos", 0)
        if qos > 0:
            self._client.ack(message.mid, qos)

    def session_kept(self) -> bool:
        """Whether the broker keeps this session, with the messages the node has not
        acknowledged, once the connection ends (and sends those again in the next one):
        MQTT 5, a session expiry asked (none: 0) that the CONNACK did not cut to 0; 3.1.1,
        clean session off."""
        if self._client.protocol == paho.MQTTv5:
            asked = getattr(self._properties, "SessionExpiryInterval", 0)
            granted = self.granted_expiry_s if self.granted_expiry_s is not None else asked
            return isinstance(granted, int) and granted > 0
        return not self._client._clean_session

    def waiting(self) -> list[aiomqtt.Message]:
        """Every message waiting in the queue now, taken from it (not acknowledged: the
        reader's to hand on, as `messages` gives them)."""
        taken: list[aiomqtt.Message] = []
        while not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    def queued_qos0(self) -> int:
        """QoS 0 messages waiting in the queue (lost if the connection ends now)."""
        queue = self._queue
        return queue.qsize() - queue.unacked if isinstance(queue, Incoming) else 0

    def caught_up(self) -> bool:
        """No QoS 1 or 2 message waits in the queue to be taken."""
        queue = self._queue
        return queue.unacked == 0 if isinstance(queue, Incoming) else queue.empty()

    def ack_when_handed(self) -> None:
        """QoS 1 and 2 messages are no longer acknowledged as they are taken from the queue:
        the reader calls `acknowledge` once it has handed one on for good (edged.uplink.client:
        once the node's command lanes took it). One read and not handed on (the node stops,
        the reader is cancelled as it took it) stays unacknowledged, in the session, and the
        broker sends it again at the next connection."""
        if isinstance(self._queue, Incoming):
            self._queue.taken = None

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Disconnect. aiomqtt's DISCONNECT (reason 0) tells the broker to drop the will:
        with `keep_will`, MQTT 5 says 0x04 instead, and over 3.1.1, which has no reason, the
        connection is closed without a DISCONNECT, as a lost link is; the broker then sends
        the will (`offline`, after its delay if it has one)."""
        if self.keep_will and not self._disconnected.done():
            try:
                if self._client.protocol == paho.MQTTv5:
                    reason = ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL)
                    if self._client.disconnect(reasoncode=reason) == paho.MQTT_ERR_SUCCESS:
                        # within the client's time-out; not raised: a broker that does not
                        # take the DISCONNECT in time gets the connection closed under it,
                        # which sends the will too (a MqttError here would replace the
                        # cancel of a node that is ending, and its uplink would go on).
                        # Shielded: a time-out cancels what it waits for, and a cancelled
                        # `_disconnected` reads as done, the socket then left open and the
                        # will dropped
                        with contextlib.suppress(aiomqtt.MqttError):
                            await self._wait_for(asyncio.shield(self._disconnected), timeout=None)
            finally:
                # closed on a second cancel too (the stop's `cancel_and_wait`, 1.6 s on):
                # left open, the broker never sent the will, and an in-process restart
                # kept the old connection and its descriptor
                if not self._disconnected.done():
                    self._client._sock_close()  # paho 2.1/2.2's own close (pinned: pyproject)
                    self._disconnected.set_result(None)
        await super().__aexit__(exc_type, exc, tb)

    def _on_disconnect(
        self,
        client: Any,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        by_broker = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        self.ended = Ended(
            by_broker,
            code_of(reason_code),
            str(reason_code),
            _text(properties, "ReasonString"),
            _text(properties, "ServerReference"),
        )
        if not self._connected.done():
            tls = self.reader.tls_error if self.reader is not None else None
            malformed = self.malformed_connack()
            too_large = self.too_large
            if too_large is not None:  # in place of a CONNACK, ended at its header
                size, limit = too_large.size, self.max_incoming
                malformed = f"a packet of {size} bytes, over the {limit} the node takes"
            self._fail_connect(
                TlsEnded(tls)
                if tls is not None
                else MalformedConnack(malformed)
                if malformed is not None
                else NoConnackInTime(self._client.keepalive)
                if not by_broker and code_of(reason_code) == KEEP_ALIVE_TIMEOUT
                else ClosedBeforeConnack(str(reason_code))
            )
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _fail_connect(self, exc: BaseException) -> None:
        def fail() -> None:
            if not self._connected.done():
                self._connected.set_exception(exc)
                self._connected.exception()  # no "never retrieved" if nobody waits any more

        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if here:
            fail()
        else:
            self._loop.call_soon_threadsafe(fail)

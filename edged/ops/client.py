"""The tools' MQTT connection: MQTT 5 first, 3.1.1 when the broker will not speak 5.

Brokers refuse MQTT 5 in three ways, all met in the field: a CONNACK "unsupported protocol
version" (aedes, amqtt), a hang-up before any CONNACK (RabbitMQ 3.10), or silence. Each
makes `connect` try MQTT 3.1.1 with the same login and say so through `say`; a refusal of
the login itself (not authorised, bad password) is not retried under another version, it is
reported with what to check.

`ToolClient` keeps what aiomqtt drops: the CONNACK's properties and session-present flag
(broker-check reads the broker's limits from them), and a hang-up before CONNACK raises at
once instead of after the whole time-out.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import EdgedError
from edged.ops.login import Login, LoginError, Protocol
from edged.uplink.cancellable import CancellableClient
from edged.uplink.unreadable import leave_out_unreadable

Say = Callable[[str], None]

V311_TO_V5 = {1: 132, 2: 133, 3: 136, 4: 134, 5: 135}
"""MQTT 3.1.1 CONNACK return codes as their MQTT 5 reason codes."""
UNSUPPORTED_PROTOCOL = 132
BAD_CLIENT_ID = 133
BAD_LOGIN = 134
NOT_AUTHORISED = 135


class BrokerUnreachableError(EdgedError):
    """The broker could not be reached or refused us; the message says what to check."""


class ClosedBeforeConnackError(aiomqtt.MqttError):
    """The broker closed the connection before answering the CONNECT."""


class MalformedConnackError(ClosedBeforeConnackError):
    """The broker answered the CONNECT with a CONNACK the tool cannot read (paho ended the
    connection): said as it was, not as a broker that hung up without answering."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the broker answered with a malformed CONNACK ({why})")
        self.why = why


MAX_QUEUED_MESSAGES = 50_000
"""Messages received and not yet read: a fleet's retained topics arriving at once."""
MAX_QUEUED_BYTES = 128 * 1024 * 1024
"""Their bytes, topic and payload: 50,000 of a few kB each, but never 50,000 of the 4 MiB a
peer may publish (a stolen node key on a fast link filled 4 GB of `edgectl watch` in 20 s),
nor of the 64 KiB topic names it may write with empty payloads (`events/{kind}`)."""


class _Queue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, counting the payload bytes it holds."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.bytes = 0

    def _put(self, item: aiomqtt.Message) -> None:
        super()._put(item)
        self.bytes += _size(item)

    def _get(self) -> aiomqtt.Message:
        item: aiomqtt.Message = super()._get()
        self.bytes -= _size(item)
        return item


def _size(message: aiomqtt.Message) -> int:
    return len(message.topic.value) + payload_size(message.payload)


def payload_size(payload: object) -> int:
    return len(payload) if isinstance(payload, bytes | bytearray | str) else 8


def wire_size(message: mqtt.MQTTMessage) -> int:
    """What a received message will hold in the queue: its topic and its payload."""
    return len(message._topic) + payload_size(message.payload)


class ToolClient(CancellableClient):
    """aiomqtt, keeping the CONNACK and failing fast when the broker hangs up on CONNECT; its
    waits end at a cancel (Ctrl-C, a feed service's stop) that comes with their answer."""

    def __init__(
        self,
        *args: Any,
        version: Protocol,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("max_queued_incoming_messages", MAX_QUEUED_MESSAGES)
        super().__init__(*args, queue_type=_Queue, **kwargs)
        self.version: Protocol = version
        self.connack: Properties | None = None
        self.session_present = False
        self.max_queued_bytes = max_queued_bytes
        self.dropped = 0
        """Messages discarded because the reader was `max_queued_bytes` or
        `max_queued_incoming_messages` behind."""
        self.malformed = 0
        """Messages left out because their topic is not UTF-8, or paho could not read them
        (`_unreadable`)."""
        self.skip: Callable[[mqtt.MQTTMessage], bool] | None = None
        """Messages never to queue nor count as dropped: a copy of one already queued."""
        self.refuse: Callable[[mqtt.MQTTMessage], bool] | None = None
        """Messages to drop, counted in `dropped`: a node over its share of the queue."""
        self.taken: Callable[[mqtt.MQTTMessage], None] | None = None
        """Told of each message queued."""
        leave_out_unreadable(self._client, self._unreadable)

    def _unreadable(self, _exc: Exception) -> None:
        """A message paho or aiomqtt cannot read (`edged.uplink.unreadable`): one node's
        retained `state` with U+FEFF in a user property kept every MQTT 5 reader of the
        fleet from reading anything."""
        self.malformed += 1

    @property
    def paho(self) -> mqtt.Client:
        """The paho client underneath (manual acks, the raw socket for an abrupt close)."""
        return self._client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        self.connack = properties
        self.session_present = bool(flags.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Drop what arrives while the reader is `max_queued_bytes` or the count bound
        behind: a flood costs messages (counted in `dropped`, without a log line each —
        aiomqtt's own drop at the count bound logs a warning per message, tens of
        thousands of lines on an operator's terminal), never all the memory.

        A topic that is not UTF-8 (a broker that passes a publisher's bytes on unchecked)
        is left out and counted in `malformed`: read, it raised here, paho read the same
        packet again and again (tens of thousands of log lines a second), and the
        connection it then lost brought the same retained message back at each reconnection
        (MQTT-1.5.4-1 says close; a message no one can name is better dropped)."""
        try:
            message.topic  # noqa: B018 - decodes the topic, as every reader does after
        except UnicodeDecodeError:
            self.malformed += 1
            return
        if self.skip is not None and self.skip(message):
            return
        if self.refuse is not None and self.refuse(message):
            self.dropped += 1
            return
        queue = self._queue  # one message, however large, when the reader has caught up
        held = queue.bytes if isinstance(queue, _Queue) else 0
        if queue.full() or (held and held + wire_size(message) > self.max_queued_bytes):
            self.dropped += 1
            return
        super()._on_message(client, userdata, message)
        if self.taken is not None:
            self.taken(message)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if not self._connected.done():
            why = self.malformed_connack()
            self._connected.set_exception(
                MalformedConnackError(why)
                if why is not None
                else ClosedBeforeConnackError("the broker closed the connection before its CONNACK")
            )
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        if self._disconnected.done() and not self._disconnected.cancelled():
            self._disconnected.exception()  # reported by the reader; marks it seen for asyncio

    def connack_property(self, name: str) -> Any:
        return getattr(self.connack, name, None) if self.connack is not None else None


def client_for(
    login: Login,
    version: Protocol,
    client_id: str,
    *,
    clean: bool = True,
    session_expiry_s: int | None = None,
    will: aiomqtt.Will | None = None,
    timeout: float = 10.0,
    keepalive: int = 30,
) -> ToolClient:
    """A client on `login` speaking `version`; clean by default: a tool leaves no session."""
    v5 = version == "5"
    properties = None
    if v5 and session_expiry_s is not None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
    return ToolClient(
        hostname=login.address.host,
        port=login.address.port,
        version=version,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else clean,
        clean_start=clean if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
        username=login.username,
        password=login.password(),
        tls_context=login.tls_context(),
        will=will,
        timeout=timeout,
        keepalive=keepalive,
    )


@contextlib.asynccontextmanager
async def connect(
    login: Login, client_id: str, *, say: Say | None = None, **options: Any
) -> AsyncIterator[ToolClient]:
    """Connected to the broker with the first protocol version it accepts (see the module).

    Raises `BrokerUnreachableError` (what to check) when no version gets in."""
    tried: list[str] = []
    for version in login.versions:
        client = client_for(login, version, client_id, **options)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            why = protocol_refusal(exc, client.timeout)
            if why is not None and version == "5" and len(login.versions) > 1:
                tried.append(f"MQTT 5: {why}")
                if say is not None:
                    say(f"the broker refused MQTT 5 ({why}); trying MQTT 3.1.1")
                continue
            raise refusal(login, version, exc, tried) from None
        try:
            if say is not None:
                say(f"connected to {login.address.url} with MQTT {version} as {client_id}")
            yield client
        finally:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)
        return
    raise AssertionError("unreachable: the last version raises")  # pragma: no cover


def reason_code(exc: BaseException) -> int | None:
    """A CONNACK refusal in MQTT 5 numbering (3.1.1 return codes mapped), else None."""
    if not isinstance(exc, MqttConnectError):
        return None
    rc = exc.rc
    if isinstance(rc, ReasonCode):
        return int(rc.value)
    if isinstance(rc, int):
        return V311_TO_V5.get(rc, rc)
    return None


def protocol_refusal(exc: BaseException, timeout: float) -> str | None:
    """Why an MQTT 5 CONNECT failed when the failure says "not this version"; else None."""
    code = reason_code(exc)
    if code == UNSUPPORTED_PROTOCOL:
        return "CONNACK: unsupported protocol version"
    if isinstance(exc, MalformedConnackError):
        return f"its CONNACK was malformed ({exc.why})"
    if isinstance(exc, ClosedBeforeConnackError):
        return "it closed the connection without a CONNACK"
    if code is None and "timed out" in str(exc):
        return f"no CONNACK within {timeout:g} s"
    return None


def refusal(
    login: Login, version: Protocol, exc: BaseException, tried: Sequence[str] = ()
) -> BrokerUnreachableError:
    """The error a tool prints when it cannot get in: what happened, then what to check."""
    where = login.address
    before = f" (after {'; '.join(tried)})" if tried else ""
    code = reason_code(exc)
    if code in (BAD_LOGIN, NOT_AUTHORISED):
        what = "bad username or password" if code == BAD_LOGIN else "not authorised"
        who = f"user {login.username!r}" if login.username else "no username"
        cert = f", certificate {login.cert}" if login.cert else ""
        return BrokerUnreachableError(
            f"the broker at {where} refused the login: {what} (MQTT {version} reason "
            f"{code}; {who}{cert}){before}. Check --username and --password-file (or "
            "$EDGECTL_USERNAME, $EDGECTL_PASSWORD_FILE), the client certificate (--cert, "
            "--key), and the broker's users and ACL; some brokers (ejabberd) refuse any "
            "client without a username"
        )
    if code == UNSUPPORTED_PROTOCOL:
        return BrokerUnreachableError(
            f"the broker at {where} does not speak MQTT {version}{before}: use "
            "--protocol auto (tries 5, then 3.1.1)"
        )
    if code == BAD_CLIENT_ID:
        return BrokerUnreachableError(
            f"the broker at {where} refused the client id (MQTT {version} reason {code})"
            f"{before}: its client-id rules may tie ids to users or certificates"
        )
    if code is not None:
        return BrokerUnreachableError(
            f"the broker at {where} refused the connection: {exc}{before}; see its log"
        )
    if isinstance(exc, MalformedConnackError):
        return BrokerUnreachableError(
            f"the broker at {where} answered with a malformed CONNACK ({exc.why}){before}: "
            "a broken MQTT server, or not the broker meant; its version and log say more"
        )
    if isinstance(exc, ClosedBeforeConnackError):
        hint = (
            "it may refuse this client certificate (--cert must be issued by the CA the "
            "broker trusts) or require a username"
            if where.tls
            else "if it is a TLS listener use mqtts://; some brokers hang up on a login they refuse"
        )
        return BrokerUnreachableError(
            f"the broker at {where} closed the connection before answering{before}: {hint}; "
            "its log says why"
        )
    text = str(exc) or type(exc).__name__
    hint = "Check that it is running and that the host and port are right"
    if where.tls or "SSL" in text.upper() or "CERTIFICATE" in text.upper():
        hint = (
            "Check the TLS files: --cafile must be the CA that signed the broker's certificate, "
            "the URL's host a name in that certificate, and --cert/--key a client "
            "certificate the broker trusts"
        )
    return BrokerUnreachableError(
        f"cannot reach the MQTT broker at {where}: {text}{before}. {hint} "
        "(the URL looks like mqtt://host:1883 or mqtts://host:8883)."
    )


def refused(granted: Sequence[Any]) -> bool:
    """Whether a SUBACK refused the subscription (3.1.1: 0x80; MQTT 5: a failure reason)."""
    for code in granted:
        if isinstance(code, int):
            if code >= 0x80:
                return True
        elif getattr(code, "is_failure", False):
            return True
    return False


def abrupt_close(client: ToolClient) -> None:
    """Drop the TCP connection without DISCONNECT, as a power cut or a lost modem does: the
    broker must publish the will and keep the session."""
    sock = client.paho.socket()
    if not isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # no TLS close_notify, no MQTT DISCONNECT


__all__ = [
    "BrokerUnreachableError",
    "ClosedBeforeConnackError",
    "LoginError",
    "MalformedConnackError",
    "ToolClient",
    "abrupt_close",
    "client_for",
    "connect",
    "refusal",
    "refused",
]

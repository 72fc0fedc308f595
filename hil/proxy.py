"""A TCP proxy in front of a real broker that plays other brokers' quirks and a bad link.

What it can do, each on demand:
- `cut()` every open connection, or be `down` for a while (a link that flaps);
- `blackhole()` every open connection, as a dead zone does: the client's side ends, the
  broker's hears nothing more (no FIN, no TLS close_notify) until the broker ends it;
- refuse MQTT 5 as aedes does (a 3.1.1 CONNACK "unacceptable protocol version") or as
  RabbitMQ 3.10 does (close without a CONNACK);
- rewrite `.` to `/` in every PUBLISH topic, both ways, as RabbitMQ's MQTT plugin does;
- answer an MQTT 5 CONNACK with a session expiry of its choosing (ejabberd answers 0), or a
  Maximum Packet Size of its choosing (a hostile or odd broker announcing 1 byte);
- tell an MQTT 5 client thrown off by another with its client id why (DISCONNECT 0x8E,
  "session taken over", as EMQX, HiveMQ and newer Mosquitto do; Mosquitto 2.0.11 just
  closes the connection);
- withhold the broker's PUBACKs from the client (`withhold_pubacks`, on and off at any
  time): the broker has the messages, the client never hears it;
- swallow the client's SUBSCRIBEs (`swallow_subscribes`): a link lost before one reached
  the broker;
- refuse every subscription in the broker's SUBACKs (`refuse_subscribes`: 0x80 over 3.1.1,
  0x87 not authorized over MQTT 5), as a broker whose ACL denies it (Mosquitto's ACL file
  grants every subscription and filters what it delivers);
- hold an MQTT 5 client to the Receive Maximum of the broker's CONNACK
  (`enforce_receive_max`), as HiveMQ does: a QoS 1 or 2 publish beyond it ends the session
  with DISCONNECT 0x93 (Mosquitto 2.0 announces its `max_inflight_messages` but takes more).

Everything else passes byte for byte to the real broker behind it. The packets are parsed
only as far as a quirk needs: the fixed header, a CONNECT's protocol level, a PUBLISH's
topic, a CONNACK's properties. With `raw=True` nothing is parsed (TLS passes through: no
quirks then), and every connection's bytes are counted both ways, as they cross the
socket (`Connection`): what a cellular link would bill.
"""

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Literal

from edged.uplink.packets import varint

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 5, 8, 9
SESSION_EXPIRY_INTERVAL = 0x11
MAXIMUM_PACKET_SIZE = 0x27
RETAIN_AVAILABLE = 0x25
RECEIVE_MAXIMUM = 0x21
RECEIVE_MAXIMUM_EXCEEDED = 0x93


@dataclass
class Connection:
    """One client connection through the proxy: bytes each way, as they crossed the socket.
    `chunks` holds (time.monotonic(), to_broker, bytes) of each read when kept; `head` the
    first bytes each way (to_broker: True) when the proxy keeps them (`keep_bytes`)."""

    opened: float
    up: int = 0  # client -> broker
    down: int = 0  # broker -> client
    closed: float | None = None
    chunks: list[tuple[float, bool, int]] = field(default_factory=list)
    head: dict[bool, bytearray] = field(
        default_factory=lambda: {True: bytearray(), False: bytearray()}
    )

    holed: int = 0  # broker -> nowhere, after a blackhole: sent into a dead zone, not billed

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass
class Quirks:
    refuse_v5: Literal["connack", "close", "mute", "denied"] | None = None
    rewrite_dots: bool = False
    session_expiry_s: int | None = None  # put in every MQTT 5 CONNACK
    max_packet_size: int | None = None  # put in every MQTT 5 CONNACK
    retain_available: bool | None = None  # put in every MQTT 5 CONNACK
    announce_takeover: bool = False
    withhold_pubacks: bool = False
    withhold_after: int = 0  # PUBACKs passed on (across connections) before withholding
    enforce_receive_max: bool = False  # DISCONNECT 0x93 past the CONNACK's Receive Maximum
    swallow_subscribes: bool = False  # the client's SUBSCRIBEs never reach the broker
    refuse_subscribes: bool = False  # every SUBACK's codes a refusal (0x80; 0x87 over MQTT 5)
    close_at: bytes | None = None  # close the connection at a PUBLISH whose topic ends so
    # (as AWS IoT at a publish its policy denies, a 3.1.1 broker at one over its limit)


@dataclass
class _InFlight:
    """One MQTT 5 connection's QoS 1 and 2 publishes from the client that the broker has
    not acknowledged to it yet (`enforce_receive_max`), and what the broker allows."""

    client: asyncio.StreamWriter
    allowed: int = 65_535  # the CONNACK's Receive Maximum; absent: 65,535
    ids: set[int] = field(default_factory=set)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, offset after it)"""
    value, shift = 0, 0
    while True:
        byte = data[at]
        value += (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT packet (fixed header included); IncompleteReadError at the end."""
    head = await reader.readexactly(1)
    length_bytes = b""
    length, shift = 0, 0
    while True:
        b = await reader.readexactly(1)
        length_bytes += b
        length += (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
    return head + length_bytes + await reader.readexactly(length)


def body_offset(packet: bytes) -> int:
    _, at = read_varint(packet, 1)
    return at


def publish_with_slashes(packet: bytes) -> bytes:
    """The same PUBLISH with `.` turned into `/` in its topic (same length)."""
    at = body_offset(packet)
    n = int.from_bytes(packet[at : at + 2], "big")
    topic = packet[at + 2 : at + 2 + n].replace(b".", b"/")
    return packet[: at + 2] + topic + packet[at + 2 + n :]


def publish_topic(packet: bytes) -> bytes:
    at = body_offset(packet)
    n = int.from_bytes(packet[at : at + 2], "big")
    return packet[at + 2 : at + 2 + n]


def suback_refused(packet: bytes, level: int) -> bytes:
    """The same SUBACK with each of its return codes a refusal: 0x80 (MQTT 3.1.1's only
    one), 0x87 not authorized (MQTT 5)."""
    at = body_offset(packet) + 2  # the packet id
    if level == 5:
        plen, props_at = read_varint(packet, at)
        at = props_at + plen
    return packet[:at] + bytes([0x87 if level == 5 else 0x80]) * (len(packet) - at)


def connect_level(packet: bytes) -> int:
    """The protocol level of a CONNECT (4: 3.1.1, 5: MQTT 5)."""
    at = body_offset(packet)
    n = int.from_bytes(packet[at : at + 2], "big")
    return packet[at + 2 + n]


def connect_client_id(packet: bytes) -> bytes:
    at = body_offset(packet)
    n = int.from_bytes(packet[at : at + 2], "big")
    level = packet[at + 2 + n]
    at += 2 + n + 1 + 1 + 2  # name, level, flags, keepalive
    if level == 5:
        plen, at = read_varint(packet, at)
        at += plen
    size = int.from_bytes(packet[at : at + 2], "big")
    return packet[at + 2 : at + 2 + size]


def connack_with(packet: bytes, ident: int, value: int, width: int = 4) -> bytes:
    """An MQTT 5 CONNACK with its integer property `ident` of `width` bytes (four: session
    expiry, maximum packet size; one: retain available) set to `value`."""
    at = body_offset(packet)
    flags, code = packet[at], packet[at + 1]
    plen, props_at = read_varint(packet, at + 2)
    props = packet[props_at : props_at + plen]
    kept, i = bytearray(), 0
    while i < len(props):  # drop the property if there: the others kept
        here = props[i]
        size = _property_size(props, i + 1, here)
        if here != ident:
            kept += props[i : i + 1 + size]
        i += 1 + size
    kept += bytes([ident]) + value.to_bytes(width, "big")
    body = bytes([flags, code]) + varint(len(kept)) + kept
    return bytes([CONNACK << 4]) + varint(len(body)) + body


def _property_size(props: bytes, at: int, ident: int) -> int:
    """Bytes of a CONNACK property's value (MQTT 5, 2.2.2.2)."""
    if ident in (0x24, 0x25, 0x28, 0x29, 0x2A, 0x01, 0x17, 0x19):  # bytes
        return 1
    if ident in (0x13, 0x21, 0x22, 0x23):  # two-byte integers
        return 2
    if ident in (0x11, 0x27, 0x02, 0x18):  # four-byte integers
        return 4
    if ident == 0x0B:
        _, end = read_varint(props, at)
        return end - at
    if ident == 0x26:  # user property: two strings
        n1 = int.from_bytes(props[at : at + 2], "big")
        n2 = int.from_bytes(props[at + 2 + n1 : at + 4 + n1], "big")
        return 4 + n1 + n2
    return 2 + int.from_bytes(props[at : at + 2], "big")  # a string or binary data


class MqttProxy:
    def __init__(
        self,
        upstream_port: int,
        quirks: Quirks | None = None,
        *,
        raw: bool = False,
        keep_chunks: bool = False,
        keep_bytes: int = 0,
    ) -> None:
        self.upstream_port = upstream_port
        self.quirks = quirks or Quirks()
        self.raw = raw
        self.keep_chunks = keep_chunks
        self.keep_bytes = keep_bytes
        self.connections: list[Connection] = []
        self.down = False  # refuse connections (close them at once) while set
        self.accepted = 0
        self.accepted_at: list[float] = []  # monotonic time of each connection accepted
        self.cuts = 0
        self.cut_at: list[float] = []  # monotonic time of each cut (`cut`, `blackhole`)
        self.withheld = 0  # PUBACKs not passed on
        self.pubacks = 0  # PUBACKs passed on
        self.swallowed = 0  # SUBSCRIBEs not passed on
        self.refused_subscribes = 0  # SUBACKs made refusals (`refuse_subscribes`)
        self.most_in_flight = 0  # QoS 1 and 2 publishes unacknowledged at once, at most
        self.over_receive_max = 0  # sessions ended for exceeding it (`enforce_receive_max`)
        self.closed_at = 0  # connections closed at a publish (`close_at`)
        self.connects: list[tuple[float, int]] = []
        """(time.monotonic(), protocol level: 5 or 4 for 3.1.1) of each client CONNECT read."""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._by_id: dict[bytes, asyncio.StreamWriter] = {}
        self._levels: dict[asyncio.StreamWriter, int] = {}
        self._pairs: dict[asyncio.StreamWriter, asyncio.StreamWriter] = {}  # client -> broker
        self._holed: set[asyncio.StreamWriter] = set()  # broker sides a blackhole left open
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> "MqttProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def cut(self) -> int:
        """Close every connection now, as a lost link would; returns how many."""
        n = len(self._open)
        for writer in list(self._open):
            _abort(writer)
        self._open.clear()
        self._count_cut(n)
        return n

    def _count_cut(self, n: int) -> None:
        if n:
            self.cuts += 1
            self.cut_at.append(time.monotonic())

    def reconnect_delays(self, since_cut: int = 0) -> list[float]:
        """Seconds from each cut (from the `since_cut`-th) to the next connection accepted:
        the client's reconnect delay as the link sees it (its own wait, plus noticing the
        cut and connecting). A cut not followed by a connection yet is left out."""
        out = []
        for cut in self.cut_at[since_cut:]:
            after = [t for t in self.accepted_at if t > cut]
            if after:
                out.append(after[0] - cut)
        return out

    def blackhole(self) -> int:
        """Lose the link as a dead zone does; returns how many connections it took.

        The client's side of each connection ends now (its modem lost the network); the
        broker's side hears nothing more, neither a FIN nor a TLS close_notify, and stays open
        until the broker ends it itself: at its keepalive, or when the client's next
        connection takes the session over. What the broker sends meanwhile goes nowhere.
        `cut()` instead ends both sides at once, as a NAT or a proxy that gave up would, and
        the broker sees a bare FIN."""
        n = 0
        for client, broker in list(self._pairs.items()):
            self._holed.add(broker)
            self._open.discard(client)
            _abort(client)
            n += 1
        self._count_cut(n)
        return n

    async def to_clients(self, packet: bytes) -> int:
        """Send `packet` to every client as if its broker had (a DISCONNECT with a reason the
        real broker would not give); returns to how many (a client gone meanwhile is
        skipped)."""
        clients = list(self._pairs)
        for client in clients:
            client.write(packet)
            with contextlib.suppress(OSError, ConnectionError):
                await client.drain()
        return len(clients)

    async def flap(self, up_s: float, down_s: float = 0.0) -> None:
        """Cut every `up_s` seconds, then stay down `down_s`, until cancelled."""
        while True:
            await asyncio.sleep(up_s)
            self.cut()
            if down_s:
                self.down = True
                await asyncio.sleep(down_s)
                self.down = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            _abort(writer)
            return
        self.accepted += 1
        self.accepted_at.append(time.monotonic())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _abort(writer)
            return
        self._open.update((writer, up_writer))
        self._pairs[writer] = up_writer
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        if self.raw:
            await self._serve_raw(reader, writer, up_reader, up_writer, task)
            return
        try:
            level = await self._connect(reader, writer, up_writer)
            if level is not None:
                flight = _InFlight(writer)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._pump(reader, up_writer, level, flight, to_broker=True))
                    tg.create_task(self._pump(up_reader, writer, level, flight, to_broker=False))
        except* (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._pairs.pop(writer, None)
            for w in (writer, up_writer):
                self._levels.pop(w, None)
            await self._end(writer, up_reader, up_writer, None)
            self._tasks.discard(task)

    async def _serve_raw(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        task: "asyncio.Task[None]",
    ) -> None:
        conn = Connection(time.monotonic())
        self.connections.append(conn)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_broker: bool
        ) -> None:
            while data := await src.read(65536):
                if up_writer in self._holed:  # into the dead zone
                    if not to_broker:
                        conn.holed += len(data)
                    continue
                if to_broker:
                    conn.up += len(data)
                else:
                    conn.down += len(data)
                if self.keep_chunks:
                    conn.chunks.append((time.monotonic(), to_broker, len(data)))
                head = conn.head[to_broker]
                if len(head) < self.keep_bytes:
                    head += data[: self.keep_bytes - len(head)]
                dst.write(data)
                await dst.drain()
            raise ConnectionError("closed")

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(pump(reader, up_writer, True))
                tg.create_task(pump(up_reader, writer, False))
        except* (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._pairs.pop(writer, None)
            await self._end(writer, up_reader, up_writer, conn)
            conn.closed = time.monotonic()
            self._tasks.discard(task)

    async def _end(
        self,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        conn: Connection | None,
    ) -> None:
        """Close both sides; a side a blackhole left open stays until the broker ends it,
        what it sends meanwhile dropped (and counted as `holed`)."""
        self._open.discard(writer)
        _abort(writer)
        if up_writer in self._holed:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await up_reader.read(65536):
                    if conn is not None:
                        conn.holed += len(data)
            self._holed.discard(up_writer)
        self._open.discard(up_writer)
        _abort(up_writer)

    async def _connect(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_writer: asyncio.StreamWriter,
    ) -> int | None:
        """The client's CONNECT: refused here (a broker without MQTT 5) or passed on; the
        protocol level when passed on."""
        packet = await read_packet(reader)
        level = connect_level(packet) if packet[0] >> 4 == CONNECT else 0
        self.connects.append((time.monotonic(), level))
        if level == 5 and self.quirks.refuse_v5 == "connack":
            writer.write(bytes([CONNACK << 4, 2, 0, 1]))  # 3.1.1: unacceptable version
            await writer.drain()
            return None
        if level == 5 and self.quirks.refuse_v5 == "close":
            return None
        if level == 5 and self.quirks.refuse_v5 == "denied":  # an MQTT 5 CONNACK: 0x87
            writer.write(bytes([CONNACK << 4, 3, 0, 0x87, 0]))
            await writer.drain()
            return None
        if level == 5 and self.quirks.refuse_v5 == "mute":  # no answer, no close
            with contextlib.suppress(OSError, ConnectionError):
                await reader.read()
            return None
        if self.quirks.announce_takeover and level in (4, 5):
            client_id = connect_client_id(packet)
            old = self._by_id.get(client_id)
            if old is not None and old in self._open and self._levels.get(old) == 5:
                old.write(bytes([0xE0, 2, 0x8E, 0]))  # DISCONNECT: session taken over
                with contextlib.suppress(OSError, ConnectionError):
                    await old.drain()
                _abort(old)
            self._by_id[client_id] = writer
        self._levels[writer] = level
        up_writer.write(packet)
        await up_writer.drain()
        return level

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        level: int,
        flight: _InFlight,
        *,
        to_broker: bool,
    ) -> None:
        q = self.quirks
        enforce = q.enforce_receive_max and level == 5
        closing = q.close_at is not None and to_broker
        # PUBACKs may be withheld, SUBSCRIBEs swallowed, at any time
        parse = q.rewrite_dots or enforce or closing or not to_broker or q.swallow_subscribes
        if not parse:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            raise ConnectionError("closed")
        while True:
            packet = await read_packet(reader)
            kind = packet[0] >> 4
            if kind == PUBLISH and q.rewrite_dots:
                packet = publish_with_slashes(packet)
            if kind == PUBLISH and closing and publish_topic(packet).endswith(q.close_at or b""):
                self.closed_at += 1
                raise ConnectionError("closed at a publish")
            if kind == PUBLISH and to_broker and enforce and await self._over(packet, flight):
                raise ConnectionError("receive maximum exceeded")
            if kind == CONNACK and level == 5:
                flight.allowed = receive_maximum(packet)
                if q.session_expiry_s is not None:
                    packet = connack_with(packet, SESSION_EXPIRY_INTERVAL, q.session_expiry_s)
                if q.max_packet_size is not None:
                    packet = connack_with(packet, MAXIMUM_PACKET_SIZE, q.max_packet_size)
                if q.retain_available is not None:
                    packet = connack_with(packet, RETAIN_AVAILABLE, int(q.retain_available), 1)
            elif kind == SUBACK and not to_broker and q.refuse_subscribes:
                self.refused_subscribes += 1
                packet = suback_refused(packet, level)
            elif kind == SUBSCRIBE and to_broker and q.swallow_subscribes:
                self.swallowed += 1
                continue
            elif kind == PUBACK and not to_broker:
                if q.withhold_pubacks and self.pubacks >= q.withhold_after:
                    self.withheld += 1
                    continue
                self.pubacks += 1
            if kind in (PUBACK, PUBREC) and not to_broker:  # the client's allowance back
                flight.ids.discard(int.from_bytes(packet[body_offset(packet) :][:2], "big"))
            if writer in self._holed:
                continue  # into the dead zone
            writer.write(packet)
            await writer.drain()

    async def _over(self, packet: bytes, flight: _InFlight) -> bool:
        """Count a QoS 1 or 2 PUBLISH from the client; past the broker's Receive Maximum,
        tell the client so (DISCONNECT 0x93) and say True: the session ends."""
        if not (packet[0] >> 1) & 0x03:
            return False
        at = body_offset(packet)
        at += 2 + int.from_bytes(packet[at : at + 2], "big")
        flight.ids.add(int.from_bytes(packet[at : at + 2], "big"))
        self.most_in_flight = max(self.most_in_flight, len(flight.ids))
        if len(flight.ids) <= flight.allowed:
            return False
        self.over_receive_max += 1
        flight.client.write(bytes([0xE0, 2, RECEIVE_MAXIMUM_EXCEEDED, 0]))
        with contextlib.suppress(OSError, ConnectionError):
            await flight.client.drain()
        return True


def receive_maximum(connack: bytes) -> int:
    """The Receive Maximum an MQTT 5 CONNACK announces (absent: 65,535)."""
    at = body_offset(connack)
    plen, i = read_varint(connack, at + 2)
    end = i + plen
    while i < end:
        ident = connack[i]
        if ident == RECEIVE_MAXIMUM:
            return int.from_bytes(connack[i + 1 : i + 3], "big")
        i += 1 + _property_size(connack, i + 1, ident)
    return 65_535


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once; a FIN the peer sees now, not after a keepalive period."""
    with contextlib.suppress(OSError, RuntimeError):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        writer.close()

"""A TCP proxy in front of a real Mosquitto that behaves like the quirky brokers met in the
field (issue #22), so edgectl and broker-check meet each quirk in CI:

- `dots_to_slashes`: RabbitMQ 3.10 turns `.` into `/` in the topic names clients publish and
  subscribe (`cmd/config.get` reaches subscribers as `cmd/config/get`);
- `refuse_v5="connack"`: an MQTT 3.1.1-only broker answering an MQTT 5 CONNECT with return
  code 1 (aedes, amqtt); `refuse_v5="close"`: one that hangs up on it (RabbitMQ 3.10);
- `retained_exact_only`: retained messages only to a subscription naming the exact topic
  (RabbitMQ 3.10), never to a wildcard one;
- `connack_refusal`: every CONNECT refused with this MQTT 5 reason code (3.1.1 code mapped),
  as a broker refuses an unknown user (ejabberd without a username);
- `hold_exact_s`: a SUBSCRIBE naming only exact topics reaches the broker this many seconds
  late (its answer as late: a far or busy broker), the rest of the connection's packets not;
- `raw_topics`: a broker that passes a topic's bytes on unchecked (Mosquitto refuses a
  topic that is not UTF-8 from its publisher; not every broker does): `%ff` in a topic
  published reaches subscribers as the byte 0xFF, `%2b` as a `+` (a wildcard, which no
  PUBLISH may carry).

It parses MQTT framing (fixed header, remaining length) and only the fields it rewrites; it
runs its own event loop in a thread so sync tests can call `edgectl`'s `main()`.
"""

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Literal

from edged.uplink.packets import read_varint, varint

V5_TO_V311 = {132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return first, await reader.readexactly(length)


def _write_unless_closed(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


def _frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def _string(data: bytes, at: int) -> tuple[str, int]:
    n = int.from_bytes(data[at : at + 2])
    return data[at + 2 : at + 2 + n].decode(), at + 2 + n


def _encode(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2) + raw


@dataclass
class Quirks:
    dots_to_slashes: bool = False
    refuse_v5: Literal["connack", "close"] | None = None
    retained_exact_only: bool = False
    connack_refusal: int | None = None
    hold_exact_s: float = 0.0
    raw_topics: bool = False


@dataclass
class _Conn:
    version: int = 4
    exact: set[str] = field(default_factory=set)


class QuirkProxy:
    def __init__(self, upstream_port: int, quirks: Quirks) -> None:
        self.upstream = upstream_port
        self.quirks = quirks
        self.port = 0
        self.connects: list[int] = []
        """Protocol level of every CONNECT seen (4: 3.1.1, 5: MQTT 5)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "QuirkProxy":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn()
        try:
            first, body = await _packet(reader)
            if first >> 4 != 1:
                return
            level = body[6]
            conn.version = level
            self.connects.append(level)
            if self._refuse(level, writer):
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            up_writer.write(_frame(first, body))
            pumps = [
                asyncio.create_task(self._up(reader, up_writer, conn)),
                asyncio.create_task(self._down(up_reader, writer, up_writer, conn)),
            ]
            try:
                done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pumps:
                    task.cancel()
                up_writer.close()
            # each read here: a side hanging up ends its pump (IncompleteReadError, caught
            # below), which unread was a "Task exception was never retrieved" at every
            # connection's end; any other failure of a pump (a bug in a rewrite) is raised
            for exc in [task.exception() for task in done]:
                if exc is not None:
                    raise exc
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _refuse(self, level: int, writer: asyncio.StreamWriter) -> bool:
        q = self.quirks
        if level == 5 and q.refuse_v5 == "close":
            return True
        if level == 5 and q.refuse_v5 == "connack":
            writer.write(b"\x20\x02\x00\x01")  # 3.1.1 CONNACK: unacceptable protocol version
            return True
        if q.connack_refusal is not None:
            if level == 5:
                writer.write(b"\x20\x03\x00" + bytes([q.connack_refusal]) + b"\x00")
            else:
                writer.write(b"\x20\x02\x00" + bytes([V5_TO_V311[q.connack_refusal]]))
            return True
        return False

    async def _up(
        self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        """Client to broker: PUBLISH topics and SUBSCRIBE filters, rewritten as asked."""
        while True:
            first, body = await _packet(reader)
            kind = first >> 4
            if kind == 3 and self.quirks.dots_to_slashes:
                topic, at = _string(body, 0)
                body = _encode(topic.replace(".", "/")) + body[at:]
            elif kind == 8:
                body, exact = self._subscribe(body, conn)
                if exact and self.quirks.hold_exact_s:
                    asyncio.get_running_loop().call_later(
                        self.quirks.hold_exact_s, _write_unless_closed, up, _frame(first, body)
                    )
                    continue
            up.write(_frame(first, body))
            await up.drain()

    def _subscribe(self, body: bytes, conn: _Conn) -> tuple[bytes, bool]:
        """The SUBSCRIBE rewritten as asked, and whether it names only exact topics."""
        exact = True
        at = 2
        if conn.version == 5:
            n, after = read_varint(body, at)
            at = after + n
        out = bytearray(body[:at])
        while at < len(body):
            topic, at = _string(body, at)
            options = body[at]
            at += 1
            if self.quirks.dots_to_slashes:
                topic = topic.replace(".", "/")
            if "+" not in topic and "#" not in topic:
                conn.exact.add(topic)
            else:
                exact = False
            out += _encode(topic) + bytes([options])
        return bytes(out), exact

    async def _down(
        self,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_writer: asyncio.StreamWriter,
        conn: _Conn,
    ) -> None:
        """Broker to client: retained PUBLISHes only to exact subscribers when asked."""
        while True:
            first, body = await _packet(up_reader)
            if first >> 4 == 3 and self.quirks.raw_topics:
                n = int.from_bytes(body[:2])
                raw = body[2 : 2 + n].replace(b"%ff", b"\xff").replace(b"%2b", b"+")
                body = len(raw).to_bytes(2) + raw + body[2 + n :]
            if first >> 4 == 3 and first & 0x01 and self.quirks.retained_exact_only:
                topic, at = _string(body, 0)
                if topic not in conn.exact:
                    if (first >> 1) & 0x03:  # QoS 1: acknowledge it for the client we hide it from
                        up_writer.write(b"\x40\x02" + body[at : at + 2])
                        await up_writer.drain()
                    continue
            writer.write(_frame(first, body))
            await writer.drain()

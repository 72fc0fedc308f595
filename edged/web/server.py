"""The connection loop: h11 parses, this reads and writes, within limits.

What each limit protects against (a visitor on the riders' hotspot is the adversary):

- `Limits.max_head_bytes` (h11's `max_incomplete_event_size`): a request line and headers
  larger than this are refused (431 or 400) before they are buffered: memory per
  connection is bounded whatever is sent, and a slow header trickle cannot grow it.
- `Limits.head_timeout_s`: a request head must be complete this long after the connection
  opens or the previous answer was sent, however the bytes trickle in (a deadline, not an
  idle timer: slowloris). The same limit closes an idle keep-alive connection, so a held
  connection costs its holder a request every `head_timeout_s`.
- the body: `Request.read(limit, within_s)` stops at `limit` bytes (413, chunked or not;
  a declared Content-Length is for the handler to check first) and at `within_s` (408: a body
  dripped in). A body no handler read is not read at all: the answer says
  `Connection: close`.
- `Limits.write_timeout_s`: an answer (or one piece of a stream) the peer does not take in
  this time ends the connection: a page that stops reading cannot pile up the node's memory.
  Data the peer's TCP does not acknowledge in this time ends it too (TCP_USER_TIMEOUT): a
  phone gone from the hotspot without a FIN does not keep its live page for minutes.
- framing: h11 refuses what it cannot frame exactly (bad chunk sizes, two Content-Lengths,
  a bad request line or header name, NUL, two Host headers; obs-fold it unfolds, as RFC
  9112 5.2 allows); this server refuses too a request with both Content-Length and
  Transfer-Encoding (request smuggling), an HTTP/1.0 request with Transfer-Encoding (RFC
  9112 6.1: its framing is faulty), control characters in a header value, an HTTP
  version other than 1.0 or 1.1 (505), a Host that is not a host[:port] (RFC 9112 3.2;
  read loosely, "localhost:80@evil.example" was "localhost"), and a target that is
  neither a path nor an absolute `http(s)://host/path` (RFC 9112 3.2.2: accepted, its
  host used instead of Host). After such a refusal the connection is closed, the peer's
  unread bytes drained briefly so the answer arrives.
- pipelining: requests are answered one at a time in order, the loop given a turn between
  two (a long pipeline must not hold the node's loop); what is read ahead stays in
  h11's buffer, at most one read (`READ_BYTES`) beyond the request being answered.
- connections: the gate (`gate.Gate`) counts every connection before it is read; over the
  limits it is aborted at once.
- requests: a peer past its budget (`Admission.refuse_request`) gets 429 and the
  connection is closed; the gate closes its new connections at once until the budget has a
  request again (one peer pipelining on all its connections kept the loop busy).
- stopping: `stop` closes the listener, closes idle connections at once and gives the ones
  answering `Limits.stop_grace_s` before cancelling them; streams end when their producer
  returns (the app wakes them first).
"""

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import h11

from core.counters import Counters
from edged.web.accept import Listener
from edged.web.gate import Admission, peer_of
from edged.web.message import (
    Headers,
    HttpError,
    Request,
    Response,
    StreamResponse,
    host_of,
    split_target,
)
from edged.web.tcp import bound_unacknowledged

log = logging.getLogger(__name__)

READ_BYTES = 16384
LINGER_BYTES = 65536
"""After a refusal, at most this much of what the peer still sends is read and dropped."""


@dataclass(frozen=True)
class Limits:
    """A listener's time and size limits (see the module's docstring for what each stops)."""

    head_timeout_s: float
    write_timeout_s: float
    max_head_bytes: int = 16384
    stop_grace_s: float = 0.5
    linger_s: float = 1.0
    max_stream_input_bytes: int = 4096
    """What a peer may send while it reads a stream (nothing, in HTTP/1.1; a few bytes
    of a client that closes): past it, the stream and connection end."""


class App(Protocol):
    """What a listener serves: every request and every refusal go through it (so both carry
    its headers and are counted)."""

    async def handle(self, request: Request) -> Response:
        """The answer to `request`; may raise HttpError."""

    def refuse(self, error: HttpError, method: str, path: str) -> Response:
        """The answer for a refused request (`method` and `path` are '-' when the request
        could not be parsed)."""


class Closed(ConnectionError):
    """The peer went away in the middle of a request or a stream."""


def status_line_reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def head_of(response: Response, streamed: bool) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
    if response.content_type is not None:
        headers.insert(0, ("Content-Type", response.content_type))
    if not streamed:
        headers.append(("Content-Length", str(len(response.body))))
    return headers


class HttpServer:
    """One listener: `start` binds (raising OSError when it cannot), `stop` ends it."""

    def __init__(
        self,
        app: App,
        admission: Admission,
        limits: Limits,
        *,
        names_peers: bool = True,
        counters: Counters | None = None,
        name: str = "http",
    ) -> None:
        """`counters` and `name`: where failed accepts are counted (`<name>.accept_error`)."""
        self.app = app
        self.counters = counters if counters is not None else Counters()
        self.name = name
        self.admission = admission
        self.limits = limits
        self.names_peers = names_peers
        """Whether its log lines may name a peer's address (never a phone's on the portal:
        docs/wifi.md, Privacy)."""
        self.port: int | None = None
        self._listener: Listener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self, host: str, port: int, backlog: int = 128) -> int:
        """Listen on `host`:`port` (0: any free port); the port bound. Accepted by a
        `Listener`, not asyncio's loop: out of descriptors, that one armed a retry per
        queued accept and spun (measured: 640 failed accepts in 1.1 s, growing)."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            reader = asyncio.StreamReader(limit=READ_BYTES, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._connection_task, loop=loop)

        self._stopping = False
        listener = Listener(protocol, self.admission, counters=self.counters, name=self.name)
        self.port = await listener.start(host, port, backlog)
        self._listener = listener
        return self.port

    async def stop(self) -> None:
        """Stop listening; close idle connections now, the others after the grace."""
        self._stopping = True
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None
        for task in list(self._idle):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.limits.stop_grace_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.limits.stop_grace_s)

    # -- one connection ----------------------------------------------------------------------

    async def _connection_task(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One connection's task, ending without an error when cancelled (`stop`, the
        node's shutdown): its connection is closed by then (`_close`), and Python 3.11's
        stream server logs a cancelled one as "Exception in callback ... CancelledError"
        with a traceback (fixed in 3.12), an ERROR in the journal at each stop."""
        try:
            await self._connection(reader, writer)
        except asyncio.CancelledError:
            return

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        peer = peer_of(writer.transport)
        bound_unacknowledged(writer.get_extra_info("socket"), self.limits.write_timeout_s)
        linger = abort = False
        try:
            while not self._stopping:
                self._idle.add(task)
                try:
                    async with asyncio.timeout(self.limits.head_timeout_s):
                        event = await self._next(conn, reader)
                except TimeoutError:
                    return  # slowloris, or an idle keep-alive: nothing to say
                finally:
                    self._idle.discard(task)
                if not isinstance(event, h11.Request):
                    return  # closed by the peer between requests
                if not await self._answer(conn, reader, writer, event, peer):
                    linger = conn.their_state is not h11.DONE
                    return
                conn.start_next_cycle()
                # pipelined requests already read, and an answer the kernel takes at once,
                # never make this task wait: without a turn given here one peer's pipeline
                # kept the node's loop (taps, the broker, the other pages) for seconds
                await asyncio.sleep(0)
        except h11.RemoteProtocolError as exc:
            linger = True
            await self._refuse_unparsed(conn, writer, exc)
        except (Closed, ConnectionError, TimeoutError):
            abort = True  # gone, or not reading what it is sent: nothing more to say
        except Exception:
            abort = True
            log.exception(
                "http: a connection from %s failed", peer if self.names_peers else "a peer"
            )
        finally:
            try:
                await self._close(reader, writer, linger, abort)
            finally:
                self._tasks.discard(task)

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> object:
        """h11's next event, reading more while it needs more."""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(READ_BYTES))

    async def _refuse_unparsed(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, exc: h11.RemoteProtocolError
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # mid-answer: nothing more can be said on this connection
        status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
        code = "too_large" if status == 431 else "bad_request"
        message = (
            f"the request head is over {self.limits.max_head_bytes} bytes"
            if status == 431
            else f"the request is not valid HTTP/1.1 ({str(exc)[:80]})"
        )
        response = self.app.refuse(HttpError(status, code, message), "-", "-")
        with contextlib.suppress(Exception):
            await self._write_whole(conn, writer, response, head_only=False, close=True)

    async def _answer(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        event: h11.Request,
        peer: str,
    ) -> bool:
        """Answer one request; whether the connection may carry another."""
        method = event.method.decode("ascii")
        path, query, authority = split_target(event.target.decode("latin-1"))
        headers = Headers(list(event.headers))
        if authority is not None:
            headers = headers.with_host(authority)
        body_read = False

        async def read_body(limit: int, within_s: float) -> bytes:
            nonlocal body_read
            if body_read:
                raise RuntimeError("a request's body is read once")
            body_read = True
            return await self._read_body(conn, reader, writer, limit, within_s)

        request = Request(
            method=method,
            path=path,
            query=query,
            headers=headers,
            peer=peer,
            http_version=event.http_version.decode("ascii"),
            reader=read_body,
        )
        try:
            self._check(request)
            self._within_budget(peer)
            refused = False
        except HttpError as exc:
            response, refused = self.app.refuse(exc, method, path[:100]), True
        else:
            response = await self._respond(request)
        try:
            finished = self._finish_request(conn) and not refused
            head_only = method == "HEAD"
            if isinstance(response, StreamResponse) and response.produce is not None:
                if head_only:  # the head a GET would get: no Content-Length (RFC 9110 8.6)
                    await self._write_whole(
                        conn, writer, response, head_only=True, close=True, streamed=True
                    )
                else:
                    await self._write_stream(conn, reader, writer, response)
                return False  # a stream's connection carries nothing after it
            await self._write_whole(conn, writer, response, head_only, close=not finished)
        finally:
            if isinstance(response, StreamResponse) and response.on_close is not None:
                response.on_close()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def _within_budget(self, peer: str) -> None:
        """A peer past its budget of requests (`Admission.refuse_request`) gets 429, and
        the connection is closed after it (its pipeline is not read)."""
        wait = self.admission.refuse_request(peer)
        if wait > 0:  # counted and logged as the app's refusals are (its 429)
            raise HttpError(
                429,
                "too_many_requests",
                "too many requests from this device; wait a moment",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )

    @staticmethod
    def _check(request: Request) -> None:
        """What h11 lets through and this server does not: the connection is closed after
        the refusal (what follows may be a smuggled request)."""
        if request.http_version not in ("1.0", "1.1"):
            raise HttpError(505, "bad_version", "this server speaks HTTP/1.1 (and 1.0)")
        if request.headers.count("content-length") and request.headers.count("transfer-encoding"):
            raise HttpError(
                400, "bad_request", "send Content-Length or Transfer-Encoding, not both"
            )
        if request.http_version == "1.0" and "transfer-encoding" in request.headers:
            # RFC 9112 6.1: its framing is faulty (an HTTP/1.0 hop may have passed the
            # chunks on unparsed)
            raise HttpError(400, "bad_request", "HTTP/1.0 has no Transfer-Encoding")
        if not request.path.startswith("/"):
            raise HttpError(400, "bad_request", "the request target must be a path")
        if request.headers.has_controls():
            raise HttpError(400, "bad_request", "a header holds control characters")
        host = request.headers.get("host")
        if host is not None and host_of(host) is None:
            # RFC 9112 3.2: MUST be 400
            raise HttpError(400, "bad_request", "the Host header is not a host[:port]")

    async def _respond(self, request: Request) -> Response:
        try:
            return await self.app.handle(request)
        except HttpError as exc:
            return self.app.refuse(exc, request.method, request.path[:100])
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            raise
        except Exception:
            log.exception("http: %s %s failed", request.method, request.path[:100])
            error = HttpError(500, "internal", "the server failed; see the node's logs")
            return self.app.refuse(error, request.method, request.path[:100])

    @staticmethod
    def _finish_request(conn: h11.Connection) -> bool:
        """Take what is left of the request from h11's buffer, reading nothing more: True
        if the whole request is in (the connection can carry another one)."""
        if conn.their_state is h11.DONE:
            return True
        if conn.their_state is not h11.SEND_BODY:
            return False
        try:
            while True:
                event = conn.next_event()
                if isinstance(event, h11.EndOfMessage):
                    return True
                if not isinstance(event, h11.Data):
                    return False  # NEED_DATA: a body nobody read
        except h11.RemoteProtocolError:
            return False

    async def _read_body(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limit: int,
        within_s: float,
    ) -> bytes:
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(within_s):
                while True:
                    event = await self._next(conn, reader)
                    if isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > limit:
                            raise HttpError(413, "too_large", f"the body is over {limit} bytes")
                        parts.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        return b"".join(parts)
                    else:
                        raise Closed("the peer closed before its body was in")
        except TimeoutError:
            raise HttpError(408, "too_slow", "the body did not arrive in time") from None
        except h11.RemoteProtocolError as exc:
            raise HttpError(400, "bad_request", f"the body is not well framed ({exc})") from None

    async def _write_whole(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        response: Response,
        head_only: bool,
        close: bool,
        streamed: bool = False,
    ) -> None:
        headers = head_of(response, streamed)
        if close:
            headers.append(("Connection", "close"))
        data = self._head(conn, response.status, headers)
        if not head_only and response.body:
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        writer.write(data)
        async with asyncio.timeout(self.limits.write_timeout_s):
            await writer.drain()

    def _head(self, conn: h11.Connection, status: int, headers: list[tuple[str, str]]) -> bytes:
        encoded = [(k.encode("ascii"), v.encode("latin-1")) for k, v in headers]
        head = h11.Response(status_code=status, headers=encoded, reason=status_line_reason(status))
        return conn.send(head) or b""

    async def _write_stream(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: StreamResponse,
    ) -> None:
        """The head, then what `produce` sends, chunk by chunk, until it returns, the peer
        goes away or stops reading, or the server stops."""
        assert response.produce is not None
        headers = [*head_of(response, streamed=True), ("Connection", "close")]
        writer.write(self._head(conn, response.status, headers))

        async def send(chunk: bytes) -> None:
            if writer.transport.is_closing():
                raise ConnectionResetError("the peer went away")
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            async with asyncio.timeout(self.limits.write_timeout_s):
                await writer.drain()

        producer = asyncio.ensure_future(response.produce(send))
        watcher = asyncio.ensure_future(self._until_gone(reader))
        try:
            done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if producer not in done:
                raise Closed("the peer went away during a stream")
            producer.result()
        finally:
            for task in (producer, watcher):
                task.cancel()
            await asyncio.gather(producer, watcher, return_exceptions=True)
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        async with asyncio.timeout(self.limits.write_timeout_s):
            await writer.drain()

    async def _until_gone(self, reader: asyncio.StreamReader) -> None:
        """Returns when the peer closes (or sends more than a stream's reader may)."""
        seen = 0
        while seen <= self.limits.max_stream_input_bytes:
            data = await reader.read(READ_BYTES)
            if not data:
                return
            seen += len(data)

    async def _close(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        linger: bool,
        abort: bool,
    ) -> None:
        """Close. After a refusal, first let the peer's unread bytes in (briefly) so the
        kernel does not reset the connection before the answer is read. What is still
        unsent after `write_timeout_s` is dropped with the connection: a peer that does not
        read cannot keep it (and its descriptor) open."""
        transport = writer.transport
        if abort:
            transport.abort()
            return
        try:
            if linger and not transport.is_closing() and writer.can_write_eof():
                writer.write_eof()
                left = LINGER_BYTES
                async with asyncio.timeout(self.limits.linger_s):
                    while left > 0 and (data := await reader.read(READ_BYTES)):
                        left -= len(data)
        except (TimeoutError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            transport.abort()
            raise
        writer.close()
        try:
            async with asyncio.timeout(self.limits.write_timeout_s):
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, OSError):
            transport.abort()
        except asyncio.CancelledError:
            transport.abort()
            raise

"""aiomqtt's client, made to end when it is cancelled, and to leave nothing behind.

aiomqtt's every wait (CONNACK, SUBACK, PUBACK, DISCONNECT) goes through Python 3.11's
`asyncio.wait_for`, which returns the answer and drops the cancel when both come in the same
turn of the loop (CPython gh-86296, fixed in 3.12). A task publishing at QoS 1 that is
cancelled as a PUBACK comes in then goes on: the node's uplink after SIGTERM (it never
stopped), a tool after Ctrl-C, a simulator at a test's teardown (CI waited 180 s for one).
Every client of the node, its tools and its test rigs is this one.

aiomqtt also leaves two things behind. A connection attempt that ends without its CONNACK
(cancelled by a stop, or timed out at a broker that took the TCP connection and says
nothing) kept its socket open, read and kept alive by paho, until paho's keepalive closed
it (`keepalive_s`, up to an hour) or the process ended: one more socket each attempt at a
mute front. And a connection the broker closes sets the client's `_disconnected` future
with the error; read by nobody when the session's reader was cancelled before it (its
TaskGroup ending on another error, the stop), it said "Future exception was never
retrieved: MqttCodeError('Unexpected disconnection')" when collected.

And its TCP connect ran in that thread too (paho's `socket.create_connection`), which a
cancel cannot reach: at an address whose SYNs get no answer (a dead cellular link, a
firewall that drops) a stopped node kept the thread and its half-open socket for paho's
`connect_timeout` (5 s) per address the broker's name has; an in-process restart started
beside them. The connection is made on the loop here (`_open_tcp`), cancelled with the
attempt and its socket closed at once; the thread is handed it, connected, for the rest of
paho's connect (the CONNECT, the TLS handshake).
"""

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Self, TypeVar

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

T = TypeVar("T")


def unreadable_because(exc: MalformedPacket) -> str:
    """paho's reason a packet cannot be read, in words: for an unknown property id or
    reason code it says only the number ("127")."""
    key = exc.__cause__.args[0] if isinstance(exc.__cause__, KeyError) else None
    return f"unknown property or code 0x{key:02x}" if isinstance(key, int) else str(exc)


class _Attempt:
    """One connection attempt, seen from the loop and from aiomqtt's connect thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connect_ended = False  # the thread is done with paho's connect
        self.given_up = False  # `__aenter__` failed: the socket is to be closed
        self.sock: object = None  # the socket it opened (paho's, once wrapped)
        self.handshaking: ssl.SSLSocket | None = None
        """The TLS socket whose handshake the thread runs (`_tls_wrap`), until it ends."""
        self.on_loop = False  # the TCP connection is made on the loop (`_open_tcp`)
        self.tcp: socket.socket | None = None
        """That connection, made, until the thread takes it (`_tcp_handed`)."""


class _Recording:
    """An `SSLContext` as paho's TLS wrap sees it, which hands the socket it wraps to the
    attempt before paho starts its handshake (paho keeps it in a local until then)."""

    def __init__(self, context: ssl.SSLContext, attempt: _Attempt) -> None:
        self._context = context
        self._attempt = attempt

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = self._context.wrap_socket(*args, **kwargs)
        attempt = self._attempt
        with attempt.lock:
            attempt.handshaking = wrapped
            given_up = attempt.given_up
        if given_up:  # cancelled while the TCP connection was made: no handshake
            socket.socket.shutdown(wrapped, socket.SHUT_RDWR)
        return wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class CancellableClient(aiomqtt.Client):
    """aiomqtt's client whose waits keep a cancel that comes with their answer, whose
    failed connection attempts close their socket, and whose end is always read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._attempt = _Attempt()
        self._client._ssl_wrap_socket = self._tls_wrap  # type: ignore[method-assign]
        self._client._create_socket_connection = self._tcp_handed  # type: ignore[method-assign]
        self._client._packet_handle = self._packet_handled  # type: ignore[method-assign]
        self.unreadable_packet: tuple[int, str] | None = None
        """The last packet paho could not read: its type, and why (`_packet_handled`)."""

    def _tls_wrap(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        """paho's TLS wrap and handshake, in the connect thread, with the socket known to
        the attempt while the handshake runs: a stop then shuts it down (`_give_up`), and
        the handshake ends at once, not at paho's `connect_timeout` (5 s). And a failed
        handshake's socket is closed now: paho leaves it to the collector, and the uplink's
        TLS context (`edged.uplink.tls.ResumingContext.last`) kept it open until the next
        attempt, for ever after a stop."""
        client = self._client
        context = client._ssl_context
        assert context is not None  # paho wraps only when TLS is set
        attempt = self._attempt  # this thread's, whatever a next attempt sets meanwhile
        client._ssl_context = _Recording(context, attempt)  # type: ignore[assignment]
        try:
            return paho.Client._ssl_wrap_socket(client, tcp_sock)
        except BaseException:
            with attempt.lock:
                failed, attempt.handshaking = attempt.handshaking, None
            if failed is not None:
                failed.close()
            raise
        finally:
            client._ssl_context = context
            with attempt.lock:
                attempt.handshaking = None

    def _connects_on_loop(self) -> bool:
        """Not over a Unix socket (which never waits on a network), nor through a proxy:
        paho's own way, in the thread, as paho itself decides it (`_get_proxy`: one set on
        the client, `mqtt_proxy` in the environment unless `no_proxy` names the host, or
        PySocks' default; none without PySocks, which the node does not install)."""
        client = self._client
        return client._transport != "unix" and client._get_proxy() is None

    async def _open_tcp(self) -> socket.socket:
        """A TCP connection to the broker, as `socket.create_connection` makes it in paho
        (each address of the name in turn, `connect_timeout` each, the last one's error),
        but on the loop: a cancel ends it at once, the socket closed. The name is looked
        up in the loop's executor (a lookup cannot be cut short; a cancelled one ends in
        its own time, holding no socket of ours). An ASCII host goes to getaddrinfo as
        bytes: as a str, CPython encodes it with the idna codec, whose first import
        (stringprep, unicodedata) cost 16 ms of a 0.36 s start here (~0.1 s at
        bench.pizero's sixth of a core) and 0.3 MB, for the same bytes."""
        timeout = self._client._connect_timeout
        loop = asyncio.get_running_loop()
        host = self._hostname
        name: str | bytes = host.encode("ascii") if host.isascii() else host
        infos = await loop.getaddrinfo(name, self._port, type=socket.SOCK_STREAM)
        source = (self._bind_address, self._bind_port)
        failed: OSError = OSError(f"getaddrinfo gave no address for {host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                if source != ("", 0):
                    sock.bind(source)
                try:
                    async with asyncio.timeout(timeout):
                        await loop.sock_connect(sock, address)
                except TimeoutError:
                    raise TimeoutError("timed out") from None  # create_connection's words
                except OSError as exc:  # asyncio says "Connect call failed (address)"
                    if exc.errno is None:
                        raise
                    raise OSError(exc.errno, os.strerror(exc.errno)) from None  # the system's
            except OSError as exc:
                sock.close()
                failed = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise failed

    def _packet_handled(self) -> MQTTErrorCode:
        """paho's handling of a packet read whole. One it cannot read (`MalformedPacket`)
        ends the connection as a protocol error, said by paho in a debug line only: kept
        here (`unreadable_packet`), so that a CONNACK's is told as what it was, not as a broker
        that closed the connection unanswered (edged.uplink.mqtt, edged.ops.client)."""
        client = self._client
        kind = int(client._in_packet["command"]) & 0xF0
        try:
            return paho.Client._packet_handle(client)
        except MalformedPacket as exc:
            self.unreadable_packet = (kind, unreadable_because(exc))
            raise

    def malformed_connack(self) -> str | None:
        """Why the CONNACK could not be read, when that ended the connection attempt."""
        packet = self.unreadable_packet
        return packet[1] if packet is not None and packet[0] == paho.CONNACK else None

    def _tcp_handed(self) -> socket.socket:
        """paho's `_create_socket_connection`, in the connect thread: the connection the
        loop made for this attempt (`_open_tcp`), taken; paho's own where none is made
        on the loop."""
        attempt = self._attempt  # this thread's, whatever a next attempt sets meanwhile
        if not attempt.on_loop:
            return paho.Client._create_socket_connection(self._client)
        with attempt.lock:
            sock, attempt.tcp = attempt.tcp, None
        if sock is None:  # given up before the thread ran: closed already
            raise ConnectionAbortedError("the connection attempt was given up")
        sock.settimeout(self._client._connect_timeout)  # as create_connection's, for TLS
        return sock

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
        """The task still counts a cancel that `asyncio.wait_for` dropped
        (`Task.cancelling`), so it is raised here."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        result = await super()._wait_for(fut, timeout)
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
        return result

    def _client_connect(self) -> None:
        """paho's connect, in aiomqtt's executor thread. An attempt given up while it ran
        (cancelled) has the socket it opened closed, on the loop."""
        attempt = self._attempt
        try:
            super()._client_connect()
        finally:
            sock = self._client._sock
            with attempt.lock:
                attempt.sock = sock
                attempt.connect_ended = True
                given_up = attempt.given_up
            if given_up:
                with contextlib.suppress(RuntimeError):  # the loop closed: the process ends
                    self._loop.call_soon_threadsafe(self._close_socket, attempt)

    async def __aenter__(self) -> Self:
        if not self._lock.locked():  # else aiomqtt refuses it: the connection is in use
            self._close_failed(self._attempt)
            self._attempt = _Attempt()
            self.unreadable_packet = None  # a last attempt's CONNACK is not this one's
        attempt = self._attempt
        end = self._disconnected
        ended_before = end.done()
        try:
            if not self._lock.locked() and self._connects_on_loop():
                attempt.on_loop = True
                try:
                    sock = await self._open_tcp()
                except OSError as exc:  # as aiomqtt says a failed connect
                    raise aiomqtt.MqttError(str(exc)) from None
                with attempt.lock:
                    attempt.tcp = sock
            entered = await super().__aenter__()
            if not ended_before and end.done() and end is not self._disconnected:
                self._ended_at_once(end)
            return entered
        except aiomqtt.MqttReentrantError:
            raise  # the socket is that of the `async with` in use
        except BaseException:
            self._give_up(attempt)
            raise

    def _ended_at_once(self, end: "asyncio.Future[None]") -> None:
        """The connection ended before `__aenter__` resumed from its CONNACK (the broker
        sent a DISCONNECT with it, or a packet that ends the connection, in one read):
        aiomqtt replaced that end with a fresh future and returned, and the session went
        on with no socket, said online, its reader waiting for an end that never came
        (until a publish failed), and "Future exception was never retrieved" logged. The
        attempt fails with that end instead, the client left reusable (as aiomqtt's own
        failed attempt)."""
        self._connected = asyncio.Future()
        if self._lock.locked():
            self._lock.release()
        exc = end.exception() if not end.cancelled() else None
        if isinstance(exc, BaseException):
            raise exc
        raise aiomqtt.MqttError("the broker ended the connection right after its CONNACK")

    def _close_failed(self, attempt: _Attempt) -> None:
        """The last attempt's socket, if it failed, closes before the next attempt's thread
        starts. Left to the loop's turn, paho's reconnect in that thread closed it first (4
        times in 10 at a retry at once), aiomqtt then changing the loop's selector from that
        thread, and the loop's close raced it. Safe now: its thread ended and the loop ran
        what that thread handed it before the attempt's `__aenter__` went on."""
        with attempt.lock:
            due = attempt.given_up and attempt.connect_ended
        if due:
            self._close_socket(attempt)  # the turn's own close then finds it gone

    def _give_up(self, attempt: _Attempt) -> None:
        """The attempt failed (cancelled, no CONNACK in time, refused): its socket closes.
        Without a DISCONNECT, as a lost link: no session was made, so there is no will to
        keep or drop; a broker that made one, its CONNACK unread, sends the will, which
        says what is true of a node that gave up. The close comes after the loop has run
        what the connect thread handed it (aiomqtt's reader and keepalive task for that
        socket): closed before, the reader was added for a descriptor already closed."""
        with attempt.lock:
            attempt.given_up = True
            ended = attempt.connect_ended
            handshaking = attempt.handshaking
            untaken, attempt.tcp = attempt.tcp, None
            if untaken is not None:  # made on the loop, the thread never ran to take it
                untaken.close()
            if handshaking is not None:  # the thread's handshake ends now, failed
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(handshaking, socket.SHUT_RDWR)
        if ended:  # else the thread hands the close over once it has the socket
            self._loop.call_soon(self._close_socket, attempt)

    def _on_disconnect(self, *args: Any, **kwargs: Any) -> None:
        """A connection lost after its attempt was cancelled ends no session. aiomqtt asks
        `self._connected.exception()`, which `asyncio.wait_for` cancelled with the attempt:
        the CancelledError it raised went out of paho's callback to the loop, logged as
        "Exception in callback" when the broker closed the connection as the node stopped
        (read before the attempt's own close)."""
        if self._connected.cancelled():
            return
        super()._on_disconnect(*args, **kwargs)

    def _close_socket(self, attempt: _Attempt) -> None:
        """paho's own close (pinned: pyproject), which has aiomqtt drop its reader and
        cancel its keepalive task; of that attempt's socket only (not a later one's)."""
        if attempt.sock is not None and self._client._sock is attempt.sock:
            self._client._sock_close()
        self._read_end()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            self._read_end()

    def _read_end(self) -> None:
        """The connection's end is read: the session's owner learned it otherwise (a
        message iteration, a publish, paho's reason code) or no longer cares, and an
        error left unread is logged as "never retrieved" when the future is collected."""
        end = self._disconnected
        if end.done() and not end.cancelled():
            end.exception()

"""Listening sockets whose connections pass the gate at accept(): `edgectl feed`'s, open to
the internet, and the kiosk's and the portal's (`edged/web/server.py`).

Not asyncio's `create_server`, for two reasons. A connection over a limit is closed as soon
as it is accepted: no transport, no protocol, no task, its descriptor freed before the next
accept. And running out of descriptors does not spin: on EMFILE (ENFILE, ENOBUFS, ENOMEM)
asyncio 3.11 logs a traceback and arms a 1 s retry for every one of the up to `backlog`
accepts it tries in one wake-up, and each retry wakes it again for as many more (measured:
a feed with 160 descriptors held by 200 silent connections logged `Too many open files`
about 400 times a second, growing, and answered no one). Here one such error stops
accepting on that socket for `pause_s`, once, counted and logged (the log's flood guard
bounds the lines), and accepting resumes by itself.
"""

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

from core.counters import Counters
from core.logs import flood_key
from edged.web.gate import Admission, Gate, count_out, peer_text

log = logging.getLogger(__name__)

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PAUSE_S = 1.0
"""How long a listening socket is left alone after an accept ran out of descriptors."""
BURST = 128
"""Accepts tried per wake-up at most: others' turns come between bursts."""
UNAVAILABLE = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL})
"""Why an address a host name gives cannot be listened on that no one can change but the
host's set-up: its family is not in the kernel (`ipv6.disable=1`: socket() fails), or the
address is not the host's (::1 with IPv6 disabled, the only address lo lacks; a name whose
address is stale). Such an address is left out while another of the name's binds:
`localhost` names ::1 and 127.0.0.1 on Debian, and a kiosk on `localhost` never served on a
Pi with IPv6 off, retrying for ever."""
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
"""One of getaddrinfo's answers: family, type, protocol, canonical name, address."""
RETRY_LEFT_OUT_S = 30.0
"""How often an address left out is tried again: one the host gains later (wlan0's, up
after edged started) is then listened on too."""


class Listener:
    """Accepts on `host`:`port`; each admitted connection gets a `make()` protocol behind a
    `Gate` (which counts it in and out)."""

    def __init__(
        self,
        make: Callable[[], asyncio.Protocol],
        admission: Admission,
        *,
        counters: Counters,
        name: str,
        peer: Callable[[object], str] = peer_text,
        pause_s: float = PAUSE_S,
        burst: int = BURST,
        advice: str = "raise LimitNOFILE",
    ) -> None:
        """`advice`: what the log line of an accept out of descriptors tells the operator."""
        self.advice = advice
        self.make = make
        self.admission = admission
        self.counters = counters
        self.name = name
        self.peer = peer
        self.pause_s = pause_s
        self.burst = burst
        self.sockets: list[socket.socket] = []
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._left_out: list[AddrInfo] = []  # `infos` not bound yet, tried again
        self._retry: asyncio.TimerHandle | None = None
        self._backlog = 128

    async def start(self, host: str, port: int, backlog: int = 128) -> int:
        """Bind every address `host` names that this host has (`listening_sockets`), listen,
        and accept; the port bound (0: a free one, the same on every address). An address
        left out is said in a warning."""
        loop = self._loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self.sockets, left_out = listening_sockets(port, infos, backlog)
        if left_out:
            log.warning(
                "%s: listening on %s only, not on %s: not an address of this host (yet: "
                "tried again every %.0f s)",
                self.name,
                ", ".join(str(s.getsockname()[0]) for s in self.sockets),
                ", ".join(f"{address} ({exc.strerror or exc})" for address, exc in left_out),
                RETRY_LEFT_OUT_S,
            )
            names = {address for address, _ in left_out}
            self._left_out = [info for info in infos if str(info[4][0]) in names]
            self._backlog = backlog
            self._retry = loop.call_later(RETRY_LEFT_OUT_S, self._bind_left_out)
        for sock in self.sockets:
            self._serve(sock)
        return int(self.sockets[0].getsockname()[1])

    def _serve(self, sock: socket.socket) -> None:
        assert self._loop is not None
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._ready, sock)

    def _bind_left_out(self) -> None:
        """The addresses left out at the start, tried again: an address the host gained
        since (an interface up after edged) is listened on from now, on the same port.
        Retried quietly while the host lacks it; given up, said once, on another error
        (its port taken there: another program's page)."""
        self._retry = None
        if not self.sockets:  # closed
            return
        port = int(self.sockets[0].getsockname()[1])
        still: list[AddrInfo] = []
        for family, kind, proto, canon, address in self._left_out:
            address = (address[0], port, *address[2:])
            try:
                sock = _bound(family, kind, proto, address, self._backlog)
            except OSError as exc:
                if exc.errno in UNAVAILABLE:
                    still.append((family, kind, proto, canon, address))
                else:
                    log.warning(
                        "%s: not listening on %s: %s", self.name, address[0], exc.strerror or exc
                    )
                continue
            self.sockets.append(sock)
            self._serve(sock)
            log.info("%s: now listening on %s too", self.name, address[0])
        self._left_out = still
        if still and self._loop is not None:
            self._retry = self._loop.call_later(RETRY_LEFT_OUT_S, self._bind_left_out)

    async def aclose(self) -> None:
        """Stop accepting, and wait until the connections accepted last are their server's
        (a task each, an iteration or two): a server shut down before that never saw them,
        and they stayed open, counted, their handlers' tasks left behind."""
        self.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        """Stop accepting; the connections already open are their server's to end (those
        accepted a moment ago too only after `aclose`)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._left_out = []
        for sock in self.sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()

    def _ready(self, sock: socket.socket) -> None:
        for _ in range(self.burst):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the peer gave up while it waited in the backlog
            except OSError as exc:
                self._failed(sock, exc)
                return
            peer = self.peer(address)
            why = self.admission.refuse_connection(peer)
            if why is not None:
                self.admission.refused("connection", peer, why)
                conn.close()
                continue
            self._open(conn, peer)

    def _open(self, conn: socket.socket, peer: str) -> None:
        """Count `conn` in now, not when its transport is made (a task later): a burst of
        accepts from one peer would all pass the caps before any of them was counted."""
        assert self._loop is not None
        conn.setblocking(False)
        self.admission.connections[peer] += 1
        task = self._loop.create_task(self._attach(conn, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, conn: socket.socket, peer: str) -> None:
        assert self._loop is not None
        gate = Gate(self.admission, self.make, admitted=peer)
        try:
            await self._loop.connect_accepted_socket(lambda: gate, conn)
        except BaseException as exc:
            if gate.inner is None:  # never made: counted out here, not by the gate
                count_out(self.admission, peer)
                conn.close()
            if not isinstance(exc, Exception):
                raise  # cancelled
            self.counters.inc(f"{self.name}.accept_error")

    def _failed(self, sock: socket.socket, exc: OSError) -> None:
        self.counters.inc(f"{self.name}.accept_error")
        log.warning(
            "%s: accept() failed: %s; %s",
            self.name,
            exc.strerror or exc,
            f"not accepting for {self.pause_s:g} s ({self.advice})"
            if exc.errno in OUT_OF_RESOURCES
            else "accepting on",
            extra=flood_key(f"{self.name}.accept"),
        )
        if exc.errno not in OUT_OF_RESOURCES or self._loop is None:
            return
        fd = sock.fileno()
        self._loop.remove_reader(fd)
        self._timers[fd] = self._loop.call_later(self.pause_s, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        self._timers.pop(sock.fileno(), None)
        if self._loop is not None and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), self._ready, sock)


def listening_sockets(
    port: int, infos: Sequence[AddrInfo], backlog: int = 128
) -> tuple[list[socket.socket], list[tuple[str, OSError]]]:
    """A listening socket on each of `infos` (a host name's addresses) that this host has, and
    the addresses left out with why (`UNAVAILABLE`). Raises OSError, nothing left open,
    when none is left, naming each address and why, and at once when one cannot be bound
    for another reason (its port taken, not ours to bind: served elsewhere, the page would
    be another program's there). Port 0: the port the first gets, on every address.
    What the listener binds, and `edged doctor` tries."""
    sockets: list[socket.socket] = []
    left_out: list[tuple[str, OSError]] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            if port == 0 and sockets:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sockets.append(_bound(family, kind, proto, address, backlog))
            except OSError as exc:
                if exc.errno not in UNAVAILABLE:
                    raise
                left_out.append((str(address[0]), exc))
        if not sockets:
            raise _none_bound(left_out)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets, left_out


def _bound(
    family: int, kind: int, proto: int, address: tuple[Any, ...], backlog: int
) -> socket.socket:
    """A listening socket on `address`, or OSError (nothing left open)."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _none_bound(left_out: list[tuple[str, OSError]]) -> OSError:
    """The error of a host none of whose addresses can be listened on: the one address's
    own (the caller names the host), or one naming each address and why."""
    if len(left_out) == 1:
        return left_out[0][1]
    why = "; ".join(f"{address}: {exc.strerror or exc}" for address, exc in left_out)
    return OSError(left_out[0][1].errno, why)

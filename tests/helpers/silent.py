"""Links that say nothing, on the loopback: a dead cellular link, a server that hangs.

`unanswered_port`: a port whose SYNs get no answer, as an address behind a dead link: a
listener with a backlog of 0 whose queue is filled by connections it never accepts; Linux
drops the SYNs that come next (tcp_abort_on_overflow is off by default), so a connect waits
for its own time-out. `mute_port`: a port that takes the TCP connection (the kernel does)
and never says a word, as a TLS server that hangs before its ServerHello. `SilentServer`:
one that accepts and never says a word, and counts the connections still open to it."""

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    server = socket.socket()
    fillers: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        for _ in range(3):  # more than the queue holds, whatever the kernel rounds 0 up to
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        _check_unanswered(port)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def _check_unanswered(port: int) -> None:
    probe = socket.socket()
    probe.settimeout(0.3)
    started = time.monotonic()
    try:
        probe.connect(("127.0.0.1", port))
    except TimeoutError:
        return
    finally:
        probe.close()
    raise RuntimeError(
        f"port {port} answered a SYN after {time.monotonic() - started:.2f} s: this kernel "
        "does not drop SYNs to a full accept queue (net.ipv4.tcp_abort_on_overflow?)"
    )


@contextlib.contextmanager
def mute_port() -> Iterator[int]:
    server = socket.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])
    finally:
        server.close()


class SilentServer:
    """Accepts, reads and never answers: a broker whose CONNACK never comes. `open`: the
    connections the other side has not closed; `accepted`: all it took."""

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self.port = 0

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    silent = SilentServer()
    server = await asyncio.start_server(silent._take, "127.0.0.1", 0)
    silent.port = int(server.sockets[0].getsockname()[1])
    try:
        yield silent
    finally:
        server.close()

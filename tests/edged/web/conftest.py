"""An HTTP listener of `edged.web` on a real port, in its own thread and loop, with a small
app; the tests talk to it with plain sockets, byte for byte, as a hostile client would."""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.counters import Counters
from edged.kiosk.limits import ConnectionLimits
from edged.web import sse
from edged.web.message import HttpError, Request, Response, Send, json_response
from edged.web.router import Router
from edged.web.server import HttpServer, Limits


class App:
    """Answers /hello, echoes a POST to /echo (64 bytes at most, within a second) and
    streams /stream; counts refusals by status, as the kiosk does."""

    def __init__(self) -> None:
        self.router = Router()
        self.router.get("/hello", self.hello)
        self.router.post("/echo", self.echo)
        self.router.get("/stream", self.stream)
        self.refused: list[int] = []
        self.failed = 0
        self.streams_open = 0
        self.pad = 4000  # bytes of each tick: a test that fills the socket's buffers sends more
        self.wake = asyncio.Event()
        self.ending = False

    async def handle(self, request: Request) -> Response:
        handler, request.params = self.router.resolve(request.method, request.path)
        return await handler(request)

    def refuse(self, error: HttpError, method: str, path: str) -> Response:
        self.refused.append(error.status)
        if error.status >= 500:
            self.failed += 1
        return json_response({"error": error.code}, status=error.status, headers=error.headers)

    async def hello(self, request: Request) -> Response:
        return Response(200, b"hello", "text/plain")

    async def echo(self, request: Request) -> Response:
        return Response(200, await request.read(64, 1.0), "application/octet-stream")

    async def stream(self, request: Request) -> Response:
        self.streams_open += 1

        def release() -> None:
            self.streams_open -= 1

        async def produce(send: Send) -> None:
            await send(sse.event("state", {"n": 0}))
            n = 0
            while not self.ending:
                self.wake.clear()
                try:
                    async with asyncio.timeout(0.05):
                        await self.wake.wait()
                except TimeoutError:
                    n += 1
                    await send(sse.event("tick", {"n": n, "pad": "x" * self.pad}))

        return sse.event_stream(produce, on_close=release)


class Served:
    """The listener and its app, running in a thread until `close`."""

    def __init__(self, **limits: Any) -> None:
        self.app = App()
        self.counters = Counters()
        self.admission = ConnectionLimits(
            max_connections=limits.pop("max_connections", 64),
            per_peer=limits.pop("per_peer", 32),
            max_streams=8,
            streams_per_peer=8,
            screens=frozenset(),
            counters=self.counters,
            fd_limit=1 << 20,
        )
        settings = {"head_timeout_s": 1.0, "write_timeout_s": 1.0, "max_head_bytes": 4096}
        settings.update(limits)
        names_peers = settings.pop("names_peers", True)
        self.server = HttpServer(
            self.app, self.admission, Limits(**settings), names_peers=names_peers
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self.server.start("127.0.0.1", 0))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def connections(self) -> int:
        return sum(self.admission.connections.values())

    def settle(self, what: Any, timeout: float = 5.0) -> None:
        ends = time.monotonic() + timeout
        while not what():
            if time.monotonic() > ends:
                raise TimeoutError("the server did not settle")
            time.sleep(0.01)

    def close(self) -> None:
        async def stop() -> None:
            self.app.ending = True
            self.app.wake.set()
            await self.server.stop()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.close()


def connect(served: Served, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=timeout)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (or a reset)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def exchange(served: Served, raw: bytes) -> bytes:
    """Send `raw`, half-close, and read all the server answers."""
    with connect(served) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)

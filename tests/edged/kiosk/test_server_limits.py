"""The kiosk on a real port against a visitor who wants to hold it: raw sockets from several
loopback addresses (127.0.0.2, … stand for other phones on the hotspot; 127.0.0.1 is the
screen)."""

import asyncio
import contextlib
import time

from edged.config.kiosk import KioskConfig
from edged.kiosk.server import KioskServer
from edged.node import Node
from tests.helpers.kiosk import Serve


class Conn:
    """A raw TCP connection from a chosen local address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: KioskServer, source: str = "127.0.0.2") -> "Conn":
        assert server.port is not None
        r, w = await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))
        return cls(r, w)

    async def closed_within(self, seconds: float) -> bool:
        """The server closed it (EOF or reset) within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def request(self, path: str, body: bytes = b"", method: str = "GET") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)

    def close(self) -> None:
        self.writer.close()


async def test_one_visitor_cannot_open_more_than_its_share_of_connections(
    serve: Serve, node: Node
) -> None:
    server = await serve(max_connections_per_peer=4)
    conns = [await Conn.open(server) for _ in range(6)]
    try:
        held = [not await c.closed_within(0.3) for c in conns]
        assert held == [True] * 4 + [False] * 2
        assert node.counters["kiosk.refused_connection.per_peer"] == 2
    finally:
        for c in conns:
            c.close()


async def test_visitors_cannot_crowd_the_screen_out(serve: Serve) -> None:
    server = await serve(max_connections=12, max_connections_per_peer=4)
    visitors = [
        await Conn.open(server, f"127.0.0.{2 + i // 4}") for i in range(12)
    ]  # 3 visitors x 4
    try:
        extra = await Conn.open(server, "127.0.0.9")
        assert await extra.closed_within(0.5), "a visitor got into the screen's share"
        screen = await Conn.open(server, "127.0.0.1")
        head = await screen.request("/api/state")
        assert head.startswith(b"HTTP/1.1 200"), head
        screen.close()
    finally:
        for c in visitors:
            c.close()


async def test_a_request_head_that_never_ends_is_closed_after_the_timeout(
    serve: Serve,
) -> None:
    server = await serve(header_timeout_s=1)
    slow = await Conn.open(server)
    slow.writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 0.8:  # trickling bytes does not keep it open
            slow.writer.write(b"a")
            await asyncio.sleep(0.1)
        assert await slow.closed_within(3)
        assert time.monotonic() - t0 < 3
    finally:
        slow.close()


async def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(
    serve: Serve,
) -> None:
    server = await serve(header_timeout_s=1)
    idle = await Conn.open(server)
    try:
        assert await idle.closed_within(3)
    finally:
        idle.close()


async def test_a_body_that_never_arrives_is_refused_after_the_timeout(serve: Serve) -> None:
    server = await serve(header_timeout_s=1)
    slow = await Conn.open(server)
    try:
        slow.writer.write(
            b"POST /api/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"
        )
        head = await asyncio.wait_for(slow.reader.readuntil(b"\r\n\r\n"), 4)
        assert head.startswith(b"HTTP/1.1 408"), head
    finally:
        slow.close()


async def test_held_streams_of_visitors_do_not_lock_the_screen_out(
    serve: Serve, node: Node
) -> None:
    server = await serve(max_clients=8, max_streams_per_peer=2)
    held: list[Conn] = []
    answers: list[bytes] = []
    try:
        for i in range(8):  # eight streams from four visitors: the eight
            c = await Conn.open(server, f"127.0.0.{2 + i // 2}")
            held.append(c)
            answers.append((await c.request("/api/events")).split(b"\r\n")[0])
        assert answers.count(b"HTTP/1.1 200 OK") == 6  # the screen's two are kept
        screen = await Conn.open(server, "127.0.0.1")
        held.append(screen)
        assert (await screen.request("/api/events")).startswith(b"HTTP/1.1 200")
        assert node.counters["kiosk.refused_stream.total"] == 2
    finally:
        for c in held:
            c.close()


async def test_a_stream_ends_after_its_longest_life_and_frees_its_place(
    node: Node,
) -> None:
    now = [1000.0]
    from edged.services.kiosk import KioskService

    config = KioskConfig(port=0, heartbeat_s=1, stream_max_s=30, max_streams_per_peer=1)
    service = KioskService(node.host, config)
    server = KioskServer(service, config, node.counters, clock=lambda: now[0])
    task = asyncio.create_task(server.run())
    try:
        await asyncio.wait_for(server.listening.wait(), 5)
        first = await Conn.open(server)
        assert (await first.request("/api/events")).startswith(b"HTTP/1.1 200")
        second = await Conn.open(server)
        assert (await second.request("/api/events")).startswith(b"HTTP/1.1 503")
        now[0] += 31
        # ended at the next tick: the last (empty) chunk of the response
        await asyncio.wait_for(first.reader.readuntil(b"\r\n0\r\n\r\n"), 3)
        third = await Conn.open(server)
        assert (await third.request("/api/events")).startswith(b"HTTP/1.1 200")
        for c in (first, second, third):
            c.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_closed_connections_give_their_place_back(serve: Serve) -> None:
    server = await serve(max_connections_per_peer=2)
    for _ in range(5):  # open and close, many times over the share
        c = await Conn.open(server)
        assert (await c.request("/api/state")).startswith(b"HTTP/1.1 200")
        c.close()
        await c.writer.wait_closed()
    await asyncio.sleep(0.1)
    assert sum(server.limits.connections.values()) == 0


async def test_a_visitor_pipelining_requests_is_cut_off_at_its_budget_and_the_screen_is_not(
    serve: Serve, node: Node
) -> None:
    """One peer pipelining `GET /api/state` on its connections had 2,500 answers a second
    and kept the node's loop 94 % busy; past its budget a request gets 429 and the
    connection is closed, and the peer's next connection is closed at once. Another
    visitor, and the screen however many requests it sends, are served."""
    server = await serve()
    server.limits.request_burst, server.limits.requests_per_s = 20, 1 / 60
    one = b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def pipeline(source: str, n: int) -> bytes:
        conn = await Conn.open(server, source)
        conn.writer.write(one * n)
        await conn.writer.drain()
        answers = bytearray()
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(5):
                while chunk := await conn.reader.read(65536):
                    answers += chunk
                    if answers.count(b"HTTP/1.1 ") >= n:
                        break
        conn.close()
        return bytes(answers)

    answers = await pipeline("127.0.0.2", 30)
    assert answers.count(b"HTTP/1.1 200 OK") == 20
    assert answers.count(b"HTTP/1.1 429 ") == 1 and b"Retry-After: " in answers
    assert answers.count(b"HTTP/1.1 ") == 21  # closed after the 429: the rest never read
    again = await Conn.open(server, "127.0.0.2")
    assert await again.closed_within(0.5)
    assert node.counters["kiosk.refused_connection.requests"] == 1
    other = await Conn.open(server, "127.0.0.3")
    assert (await other.request("/api/state")).startswith(b"HTTP/1.1 200")
    other.close()
    screen = await pipeline("127.0.0.1", 60)
    assert screen.count(b"HTTP/1.1 200 OK") == 60

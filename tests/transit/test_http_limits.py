"""A client of the feed's HTTP side cannot hold a connection: a head must come within
`head_timeout_s` (a client that sends nothing, or trickles its header bytes: slowloris),
and an answer the client does not take is ended by the kernel (TCP_USER_TIMEOUT). Through
the runner `edgectl feed` serves with, on a real port, with real sockets."""

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web

from edged.ops.login import Login
from edged.ops.urls import BrokerAddress
from edged.transit.run import FeedOptions, RunningFeed
from edged.transit.server import HEAD_TIMEOUT_S, FeedServer
from tests.transit.support import NOW, Clock, feed, vehicle


@contextlib.asynccontextmanager
async def _serving(server: FeedServer) -> AsyncIterator[tuple[web.AppRunner, int]]:
    port = await server.start("127.0.0.1", 0)
    try:
        assert server._runner is not None
        yield server._runner, port
    finally:
        await server.stop()


async def _connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closed `sock` (EOF or reset) within `seconds`, reading what comes."""
    loop = asyncio.get_running_loop()
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.2)
        except TimeoutError:
            continue
        except ConnectionError:
            return True
        if not data:
            return True
    return False


async def test_a_client_that_sends_no_head_or_trickles_it_is_closed_and_others_served() -> None:
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "shuttle-07")
    server = FeedServer(service, head_timeout_s=0.5)
    async with _serving(server) as (_, port):
        silent = await _connect(port)
        trickle = await _connect(port)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(trickle, b"GET /health HTTP/1.1\r\nHost: feed\r\n")

        async def drip() -> None:
            for _ in range(40):  # a header line every 0.1 s: 4 s of head if let
                await asyncio.sleep(0.1)
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(trickle, b"X-Slow: 1\r\n")

        dripping = asyncio.create_task(drip())
        try:
            started = time.monotonic()
            silent_closed, trickle_closed = await asyncio.gather(
                _closed_within(silent, 3.0), _closed_within(trickle, 3.0)
            )
            assert silent_closed, "a connection that sent nothing was kept"
            assert trickle_closed, "a head trickled in byte by byte was waited for"
            assert time.monotonic() - started < 3.0
            async with ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/gtfs-rt/vehicle-positions"
            ) as r:
                assert r.status == 200 and len(await r.read()) > 0
        finally:
            dripping.cancel()
            silent.close()
            trickle.close()


async def test_a_poller_that_never_reads_its_answer_loses_the_connection() -> None:
    # 3,000 vehicles: the JSON feed is about 1 MB, far more than the shut window takes
    service = feed(Clock(NOW), schedule=False)
    for i in range(3000):
        vehicle(service, f"shuttle-{i:04d}")
    server = FeedServer(service, answer_timeout_s=0.5)
    async with _serving(server) as (runner, port):
        stuck = [await _connect(port, rcvbuf=4096) for _ in range(4)]
        try:
            for sock in stuck:
                await asyncio.get_running_loop().sock_sendall(
                    sock, b"GET /gtfs-rt/vehicle-positions.json HTTP/1.1\r\nHost: feed\r\n\r\n"
                )
            ends = time.monotonic() + 8.0
            while runner.server is not None and runner.server.connections:
                assert time.monotonic() < ends, "pollers that never read kept their connections"
                await asyncio.sleep(0.1)
        finally:
            for sock in stuck:
                sock.close()


async def test_a_live_page_stream_outlives_the_head_deadline() -> None:
    # the head deadline is aiohttp's keep-alive timer: it must not end a stream being served
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "shuttle-07")
    server = FeedServer(service, head_timeout_s=0.3, stream_max_s=1.5)
    async with _serving(server) as (_, port), ClientSession() as http:
        started = time.monotonic()
        async with http.get(f"http://127.0.0.1:{port}/api/events") as page:
            assert page.status == 200
            body = await asyncio.wait_for(page.content.read(), 10)  # until the server ends it
        assert time.monotonic() - started >= 1.5, "the stream was cut at the head deadline"
        assert body.startswith(b"retry: ") and b"event: fleet\n" in body


async def test_a_poller_that_stops_reading_for_longer_than_a_page_stream_may_gets_its_answer() -> None:
    # the page's stream is cut after write_timeout_s of unacknowledged data (it reconnects);
    # a document is not: its client on a lossy link goes that long without an ACK at times
    service = feed(Clock(NOW), schedule=False)
    for i in range(3000):
        vehicle(service, f"shuttle-{i:04d}")
    server = FeedServer(service, write_timeout_s=0.2)
    async with _serving(server) as (_, port):
        sock = await _connect(port, rcvbuf=4096)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(
                sock, b"GET /gtfs-rt/vehicle-positions.json HTTP/1.1\r\nHost: feed\r\n"
                b"Connection: close\r\n\r\n"
            )
            await asyncio.sleep(1.0)  # its window shut five times the stream's bound
            got = bytearray()
            while data := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
                got += data
        finally:
            sock.close()
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert len(body) == length > 500_000


async def test_edgectl_feed_serves_with_the_runner_that_carries_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the limits live in FeedServer.runner(); a RunningFeed (edgectl feed) that made its own
    # AppRunner would serve with aiohttp's hour and no test above would see it
    made: list[web.AppRunner] = []
    runner = FeedServer.runner

    def recorded(self: FeedServer) -> web.AppRunner:
        made.append(runner(self))
        return made[-1]

    monkeypatch.setattr(FeedServer, "runner", recorded)
    login = Login(BrokerAddress("127.0.0.1", 1))  # not reached: serve() is the HTTP side only
    running = RunningFeed(login, FeedOptions(prefix="rnst/v1", port=0))
    serving = asyncio.create_task(running.serve())
    try:
        await asyncio.wait_for(running.listening.wait(), 5)
        assert running.port is not None
        sock = await _connect(running.port)
        try:
            for _ in range(100):
                if made and made[0].server is not None and made[0].server.connections:
                    break
                await asyncio.sleep(0.01)
            assert len(made) == 1 and made[0].server is not None
            assert made[0].server.connections[0].keepalive_timeout == HEAD_TIMEOUT_S
        finally:
            sock.close()
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)

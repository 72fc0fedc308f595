"""The live page's streams cannot be held: a page that stops reading loses its stream and
its slot, every stream ends after `stream_max_s` (the page reconnects), and past
`max_pages` a page is told to come back. Through aiohttp's real server on a port, the
page's reader a real socket that stops reading."""

import argparse
import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, UnixConnector, web
from aiohttp.test_utils import TestServer

from edged.transit import cli
from edged.transit.server import MAX_PAGES, STREAM_MAX_S, FeedServer
from edged.transit.service import FeedService
from tests.transit.support import NOW, PREFIX, Clock, feed, vehicle


def _fleet(vehicles: int) -> FeedService:
    s = feed(Clock(NOW), schedule=False)
    s.status.connected = lambda: True
    for i in range(vehicles):
        vehicle(s, f"shuttle-{i:04d}")
    return s


@contextlib.asynccontextmanager
async def _serve(server: FeedServer) -> AsyncIterator[TestServer]:
    test_server = TestServer(server.app)
    await test_server.start_server()
    try:
        yield test_server
    finally:
        server.closing.set()
        await test_server.close()


async def _until(check: object, within_s: float) -> bool:
    ends = time.monotonic() + within_s
    while time.monotonic() < ends:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def _a_page_that_never_reads(port: int) -> socket.socket:
    """A page that asks for the stream and then reads nothing, with a small window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    request = f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    await asyncio.get_running_loop().sock_sendall(sock, request)
    return sock


async def test_a_page_that_stops_reading_loses_its_stream_and_its_slot() -> None:
    # 3,000 vehicles: the whole fleet, the stream's first piece, is 1.2 MB; the page's
    # window closes at once. On TCP the kernel ends it (TCP_USER_TIMEOUT: the window stays
    # shut) or the write timeout does, whichever comes first
    server = FeedServer(_fleet(3000), max_pages=1, write_timeout_s=0.5)
    async with _serve(server) as test_server:
        stuck = await _a_page_that_never_reads(test_server.port)
        try:
            assert await _until(lambda: server.pages == 1, 5)
            assert await _until(lambda: server.pages == 0, 10), "the stuck page kept its slot"
            async with (
                ClientSession() as http,
                http.get(test_server.make_url("/api/events")) as next_page,
            ):
                assert next_page.status == 200
                assert (await next_page.content.readuntil(b"\n\n")).startswith(b"retry:")
        finally:
            stuck.close()


async def test_a_piece_the_page_does_not_take_in_time_ends_the_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the write timeout alone: on a Unix socket there is no TCP_USER_TIMEOUT to end it first
    caplog.set_level(logging.INFO, logger="edged.transit.server")
    server = FeedServer(_fleet(3000), max_pages=1, write_timeout_s=0.5)
    runner = web.AppRunner(server.app)
    await runner.setup()
    path = str(tmp_path / "feed.sock")
    await web.UnixSite(runner, path).start()
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stuck.setblocking(False)
        await asyncio.get_running_loop().sock_connect(stuck, path)
        await asyncio.get_running_loop().sock_sendall(
            stuck, b"GET /api/events HTTP/1.1\r\nHost: feed\r\n\r\n"
        )
        assert await _until(lambda: server.pages == 1, 5)
        assert await _until(lambda: server.pages == 0, 10), "the stuck page kept its slot"
        assert "a live page that stopped reading was dropped" in caplog.text
        async with (
            ClientSession(connector=UnixConnector(path)) as http,
            http.get("http://feed/api/events") as next_page,
        ):
            assert next_page.status == 200
    finally:
        stuck.close()
        server.closing.set()
        await runner.cleanup()


async def test_a_stream_ends_after_its_longest_time_and_frees_its_slot() -> None:
    server = FeedServer(_fleet(3), max_pages=1, stream_max_s=1.0)
    async with _serve(server) as test_server, ClientSession() as http:
        started = time.monotonic()
        async with http.get(test_server.make_url("/api/events")) as page:
            body = await asyncio.wait_for(page.content.read(), 10)  # until the server ends it
        took = time.monotonic() - started
        assert body.startswith(b"retry: ") and b"event: fleet\n" in body
        assert 1.0 <= took < 5.0
        assert await _until(lambda: server.pages == 0, 2)


async def test_a_page_over_the_limit_is_told_to_retry_while_the_others_stream() -> None:
    server = FeedServer(_fleet(3), max_pages=2)
    async with _serve(server) as test_server, ClientSession() as http:
        url = test_server.make_url("/api/events")
        async with http.get(url) as first, http.get(url) as second:
            assert first.status == second.status == 200
            async with http.get(url) as third:
                assert third.status == 503 and third.headers["Retry-After"] == "10"
                assert "--max-pages" in (await third.json())["error"]
            assert (await first.content.readuntil(b"\n\n")).startswith(b"retry:")
        assert await _until(lambda: server.pages == 0, 5)
        async with http.get(url) as again:
            assert again.status == 200


async def test_a_streams_unacknowledged_data_is_bounded_by_the_write_timeout() -> None:
    # a peer gone without a FIN: the kernel gives up after write_timeout_s, not ~15 min
    server = FeedServer(_fleet(3), write_timeout_s=2.5)
    async with (
        _serve(server) as test_server, ClientSession() as http,
        http.get(test_server.make_url("/api/events")) as page,
    ):
        await page.content.readuntil(b"\n\n")
        assert test_server.runner is not None and test_server.runner.server is not None
        (handler,) = test_server.runner.server.connections
        assert handler.transport is not None
        sock = handler.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2500


def _feed_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    return parser.parse_args(["feed", *argv])


def argparse_help() -> str:
    sub = argparse.ArgumentParser().add_subparsers()
    cli.add_parser(sub, argparse.ArgumentParser(add_help=False))
    return sub.choices["feed"].format_help()


def test_the_feed_takes_a_number_of_pages_and_refuses_one_it_cannot_serve() -> None:
    assert cli.options(_feed_args("--max-pages", "200"), PREFIX, []).max_pages == 200
    # the CLI's default and help are written without importing the server (aiohttp): the
    # same numbers as the server's
    assert cli.options(_feed_args(), PREFIX, []).max_pages == MAX_PAGES == 64
    help_text = " ".join(argparse_help().split())
    assert f"default: {MAX_PAGES};" in help_text and f"after {STREAM_MAX_S / 60:g} min" in help_text
    for wrong in ("0", "-3", "1000000"):
        with pytest.raises(ValueError, match="--max-pages: between 1 and 10000"):
            cli.options(_feed_args("--max-pages", wrong), PREFIX, [])

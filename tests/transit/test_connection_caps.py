"""The feed caps its connections, in all and per peer: past a cap a connection is closed as
soon as it is accepted, counted in `/health`, and the feed goes on answering others; out of
descriptors it pauses accepting instead of spinning. Real servers on free ports, real
sockets from several loopback addresses (127.0.0.x)."""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession

from edged import logs
from edged.ops.login import Login
from edged.ops.urls import BrokerAddress, parse_broker_url
from edged.transit import cli
from edged.transit.run import FeedOptions, RunningFeed
from edged.transit.server import FeedServer, feed_peer
from tests.helpers.broker import Mosquitto
from tests.transit.support import NOW, Clock, feed, vehicle

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def _serving(**caps: int) -> AsyncIterator[tuple[FeedServer, int]]:
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "shuttle-07")
    server = FeedServer(service, page=False, **caps)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.stop()


async def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _closed(sock: socket.socket, seconds: float = 0.5) -> bool:
    """Whether the server ended `sock` (EOF or reset) within `seconds`."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1024), seconds)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return not data


async def _served(port: int) -> bool:
    async with (
        ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/gtfs-rt/vehicle-positions") as r,
    ):
        return r.status == 200 and len(await r.read()) > 0


async def _health(port: int) -> dict[str, object]:
    async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
        return dict(await r.json())


async def test_connections_over_the_per_peer_cap_are_closed_at_once_and_others_served() -> None:
    async with _serving(max_connections=20, max_connections_per_peer=4) as (_, port):
        held = [await _connect(port, "127.0.0.2") for _ in range(10)]
        try:
            closed = await asyncio.gather(*(_closed(s) for s in held))
            assert closed == [False] * 4 + [True] * 6
            assert await _served(port)
            health = await _health(port)
            assert health["connections"] == {
                "open": 5,  # the 4 held and the health check's own
                "max": 20,
                "max_per_peer": 4,
                "refused": {"per_peer": 6},
                "accept_errors": 0,
            }
        finally:
            for sock in held:
                sock.close()


async def test_connections_over_the_total_cap_from_several_peers_are_closed_at_once() -> None:
    async with _serving(max_connections=9, max_connections_per_peer=3) as (server, port):
        held = [await _connect(port, f"127.0.0.{2 + i // 3}") for i in range(9)]
        try:
            late = await _connect(port, "127.0.0.9")
            assert await _closed(late)
            assert not any(await asyncio.gather(*(_closed(s, 0.2) for s in held)))
            assert server.counters.snapshot() == {"feed.refused_connection.total": 1}
            held.pop().close()  # a place comes free: a well-behaved client has it
            for _ in range(50):
                if server.limits is not None and sum(server.limits.connections.values()) < 9:
                    break
                await asyncio.sleep(0.01)
            assert await _served(port)
        finally:
            for sock in held:
                sock.close()


async def test_a_peer_of_one_ipv6_slash_64_shares_one_cap_whatever_its_addresses() -> None:
    assert feed_peer(("2001:db8:1:2::1", 80, 0, 0)) == feed_peer(("2001:db8:1:2:ffff::9", 80))
    assert feed_peer(("2001:db8:1:3::1", 80, 0, 0)) != feed_peer(("2001:db8:1:2::1", 80, 0, 0))
    assert feed_peer(("::ffff:192.0.2.7", 80, 0, 0)) == "192.0.2.7"


CHILD = """
import asyncio, json, logging, os, resource, sys
from edged.transit.server import FeedServer
from tests.transit.support import NOW, Clock, feed, vehicle

lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())

async def main():
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    logging.getLogger().addHandler(Keep())
    logging.getLogger().setLevel(logging.INFO)
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "shuttle-07")
    server = FeedServer(service, page=False)
    port = await server.start("127.0.0.1", 0)
    print(json.dumps({"port": port, "max": server.limits.max_connections}), flush=True)
    filler = []
    while command := (await asyncio.to_thread(sys.stdin.readline)).strip():
        if command == "fill":  # every descriptor taken: accept() fails with EMFILE
            try:
                while True:
                    filler.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                pass
        elif command == "free":
            for fd in filler:
                os.close(fd)
            filler.clear()
        await asyncio.sleep(float(command) if command[0].isdigit() else 0)
        print(json.dumps({"counters": server.counters.snapshot(), "lines": len(lines),
                          "emfile": sum("Too many open files" in x for x in lines),
                          "accept": sum("accept" in x for x in lines)}), flush=True)
    await server.stop()

asyncio.run(main())
"""


class _Child:
    """A feed in a process of its own, with its own descriptor limit."""

    def __init__(self, limit: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", CHILD, str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.hello = self._read()

    def _read(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        return dict(json.loads(self.proc.stdout.readline()))

    async def ask(self, command: str) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return await asyncio.to_thread(self._read)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def test_with_160_descriptors_200_silent_connections_of_one_peer_leave_the_feed_answering() -> (
    None
):
    # before the caps: no answer to anyone, and `Too many open files` logged ~400 times a second
    child = _Child(160)
    try:
        port = int(str(child.hello["port"]))
        assert child.hello["max"] == 80  # 160 less two reserves of 40
        silent = [await _connect(port, "127.0.0.2") for _ in range(200)]
        try:
            for _ in range(20):  # until the child has accepted them all
                state = await child.ask("0.1")
                if state["counters"] == {"feed.refused_connection.per_peer": 200 - 64}:
                    break
            assert state["counters"] == {"feed.refused_connection.per_peer": 200 - 64}
            assert await _served(port)
            assert state["emfile"] == 0
        finally:
            for sock in silent:
                sock.close()
    finally:
        child.close()


async def test_out_of_descriptors_the_feed_pauses_accepting_instead_of_spinning() -> None:
    child = _Child(160)
    try:
        port = int(str(child.hello["port"]))
        await child.ask("fill")
        waiting = [await _connect(port) for _ in range(50)]  # queued in the backlog
        started = time.monotonic()
        state = await child.ask("1.1")
        spent = time.monotonic() - started
        counters = state["counters"]
        assert isinstance(counters, dict)
        # one failed accept per pause (1 s), not one per queued connection and retry
        assert 1 <= state["accept"] <= 2 + int(spent)
        assert counters["feed.accept_error"] == state["accept"]
        await child.ask("free")
        for sock in waiting:
            sock.close()
        assert await asyncio.wait_for(_served(port), 3)
    finally:
        child.close()


def _feed_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    return parser.parse_args(["feed", *argv])


def test_edgectl_feed_takes_its_caps_from_the_flags_and_serves_with_them() -> None:
    args = _feed_args("--max-connections", "300", "--max-connections-per-peer", "300")
    options = cli.options(args, "rnst/v1", [])
    running = RunningFeed(Login(BrokerAddress("127.0.0.1", 1)), options)
    assert (running.server.max_connections, running.server.max_connections_per_peer) == (300, 300)


def test_edgectl_feed_refuses_a_per_peer_cap_above_the_total_saying_which() -> None:
    args = _feed_args("--max-connections", "10", "--max-connections-per-peer", "11")
    with pytest.raises(ValueError, match="--max-connections-per-peer: between 1 and"):
        cli.options(args, "rnst/v1", [])
    with pytest.raises(ValueError, match="--max-connections: between"):
        cli.options(_feed_args("--max-connections", "0"), "rnst/v1", [])


async def test_connections_accepted_just_before_stop_are_ended_by_it_and_leave_no_task() -> None:
    # before: the runner shut down before the last accepted reached it; they stayed open,
    # counted, with aiohttp's handler tasks left behind
    service = feed(Clock(NOW), schedule=False)
    server = FeedServer(service, page=False)
    port = await server.start("127.0.0.1", 0)
    assert server.limits is not None
    clients = []
    for _ in range(20):  # the kernel completes each; the feed accepts them in one go
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        clients.append(sock)
    try:
        while sum(server.limits.connections.values()) < 20:
            await asyncio.sleep(0)  # accepted and counted; their transports a task away
        await server.stop()
        assert sum(server.limits.connections.values()) == 0
        assert all(await asyncio.gather(*(_closed(s) for s in clients)))
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    finally:
        for sock in clients:
            sock.close()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_edgectl_feed_says_how_many_refusals_it_did_not_log_without_waiting_for_a_line(
    broker: Mosquitto,
) -> None:
    # before: the guard's count of a flood waited for the next line logged, maybe never
    handler = _Lines()
    logs.guard(handler, burst=1, interval_s=0.3)
    logging.getLogger("edged").addHandler(handler)
    options = FeedOptions(
        prefix="rnst/v1", port=0, page=False, max_connections=20, max_connections_per_peer=1
    )
    running = RunningFeed(Login(parse_broker_url(broker.url)), options)
    running.log_sweep_s = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    held: list[socket.socket] = []
    try:
        await asyncio.wait_for(running.listening.wait(), 5)
        assert running.port is not None
        held = [await _connect(running.port, "127.0.0.2") for _ in range(4)]
        for _ in range(100):
            if any("more like this" in line for line in handler.lines):
                break
            await asyncio.sleep(0.02)
        assert [line[:34] for line in handler.lines] == [
            "feed: connection from 127.0.0.2 re",  # the first of 3
            "2 more like this in the last 0 s, ",
        ]
    finally:
        logging.getLogger("edged").removeHandler(handler)
        for sock in held:
            sock.close()
        stop.set()
        await asyncio.wait_for(task, 5)

"""A real node (outbox on disk, router, its services) with no broker: the kiosk runs
against it as it will inside the daemon, offline. The fixtures are used by the kiosk
service's tests and the kiosk server's (each conftest imports them)."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.events import Fix
from edged.config import load_config
from edged.config.kiosk import KioskConfig
from edged.kiosk.server import KioskServer
from edged.node import Node
from edged.services.kiosk import KioskService
from tests.helpers.broker import free_port
from tests.helpers.disk import rows_on_disk
from tests.helpers.nodes import write_config

FELLETIN = (45.8833, 2.1744)
AUBUSSON = (45.9558, 2.1683)
FENCES = f"""
[services.geofences]
dwell_s = 0
[[services.geofences.fences]]
id = "felletin"
name = "Felletin – place Courtaud"
kind = "stop"
center = [{FELLETIN[0]}, {FELLETIN[1]}]
radius_m = 80
[[services.geofences.fences]]
id = "aubusson"
name = "Aubusson – gare routière"
kind = "stop"
center = [{AUBUSSON[0]}, {AUBUSSON[1]}]
radius_m = 80
"""
T0 = int(datetime(2026, 11, 25, 9, 0, tzinfo=UTC).timestamp() * 1000)


class FakeTime:
    """Node time for the kiosk, moved by the test."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class Nodes:
    """Starts nodes on one config (same outbox file: a second start is a restart)."""

    def __init__(self, path: Path, base_dir: Path) -> None:
        self.path = path
        self.base_dir = base_dir
        self._running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    async def start(self) -> Node:
        node = Node(load_config(self.path), base_dir=self.base_dir)
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        self._running[id(node)] = (stop, task)
        await asyncio.wait_for(node.ready.wait(), 5)
        return node

    async def stop(self, node: Node) -> None:
        stop, task = self._running.pop(id(node))
        stop.set()
        await asyncio.wait_for(task, 10)

    async def stop_all(self) -> None:
        for stop, task in self._running.values():
            stop.set()
            await asyncio.wait_for(task, 10)
        self._running.clear()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    n = Nodes(write_config(tmp_path, free_port(), gps=False, extra=FENCES), tmp_path)
    yield n
    await n.stop_all()


@pytest.fixture
async def node(nodes: Nodes) -> Node:
    return await nodes.start()


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def kiosk(node: Node, clock: FakeTime) -> KioskService:
    config = KioskConfig(buttons=["pickup", "mediator", "service"])
    return KioskService(node.host, config, now_ms=clock)


def at(node: Node, lat: float, lon: float, fix_time: datetime | None = None) -> None:
    """A valid fix, as the GPS driver would emit it (`fix_time`: now); a fix farther from
    the one before than a bus goes in between is suspect (a jump), and arrives nowhere."""
    when = datetime.now(UTC) if fix_time is None else fix_time
    node.bus.emit(Fix(fix_time=when, lat=lat, lon=lon, speed=0.0, hdop=1.0))


async def stored(node: Node, suffix: str) -> list[dict[str, Any]]:
    """Payloads durable in the node's outbox on `{base}/{suffix}`, in write order."""
    await node.outbox.flush()
    rows = rows_on_disk(
        node.config.outbox.path,
        "SELECT payload FROM msg WHERE topic = ? ORDER BY id",
        (f"{node.topics.base}/{suffix}",),
    )
    return [json.loads(r[0]) for r in rows]


Serve = Callable[..., Awaitable[KioskServer]]


@pytest.fixture
async def serve(node: Node) -> AsyncIterator[Serve]:
    tasks: list[asyncio.Task[None]] = []

    async def start(**config: Any) -> KioskServer:
        """A kiosk service on the node, its commands routed, its page served."""
        config.setdefault("port", 0)
        config.setdefault("buttons", ["pickup", "mediator", "service"])
        service = KioskService(node.host, KioskConfig(**config))
        for spec in service.commands():
            node.router.add(spec)
        tasks.append(asyncio.create_task(service.run()))
        await asyncio.wait_for(service.server.listening.wait(), 5)
        return service.server

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""The kiosk page in a real headless Chromium, against a node running in the test's loop.

The node is the real `Node` with the simulated GPS parked at Felletin (a stop geofence),
talking to a real Mosquitto; its kiosk service is built on the node's host, its commands
in the node's router, as the services table builds it in the daemon (here beside the node,
so a test can stop and start its server).
Screenshots of the main states go to test-artifacts/kiosk/.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.events import Fix
from edged.config import load_config
from edged.config.kiosk import KioskConfig
from edged.kiosk.server import KioskServer
from edged.node import Node
from edged.services.events import OccupancyChanged
from edged.services.geofences import GeofenceService
from edged.services.kiosk import KioskService
from edged.services.occupancy import OccupancyService
from edged.services.position import PositionService
from hil.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.mqtt import publish
from tests.helpers.nodes import ROOT, write_config

SHOTS = ROOT / "test-artifacts" / "kiosk"
VIEWPORT = {"width": 1280, "height": 800}
FELLETIN = """
[services.geofences]
dwell_s = 0
[[services.geofences.fences]]
id = "felletin"
name = "Felletin – place Courtaud"
kind = "stop"
center = [45.8833, 2.1744]
radius_m = 80
"""

if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Debian's chromium at /usr/bin/chromium: apt-get install -y chromium",
        allow_module_level=True,
    )


@dataclass
class Kiosk:
    node: Node
    server: KioskServer
    broker: Mosquitto
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base(self) -> str:
        return self.node.topics.base

    @property
    def geofences(self) -> GeofenceService:
        service = self.node.services["geofences"]
        assert isinstance(service, GeofenceService)
        return service

    @property
    def fix(self) -> Fix:
        """The node's last valid fix (the simulated GPS, parked)."""
        position = self.node.services["position"]
        assert isinstance(position, PositionService) and position.last_valid is not None
        return position.last_valid[0]

    def show_seats(self, count: int, capacity: int = 30) -> None:
        """The gauge as an occupancy service with a capacity would have it."""
        self.node.bus.emit(OccupancyChanged(count, capacity))

    def node_seats(self) -> None:
        """Back to what the node's own occupancy service says (no capacity: no gauge)."""
        occupancy = self.node.services["occupancy"]
        assert isinstance(occupancy, OccupancyService)
        self.node.bus.emit(OccupancyChanged(occupancy.count, occupancy.capacity))

    async def command(self, name: str, args: dict[str, Any], cmd_id: str) -> None:
        """What dispatch does: a command on `cmd/{name}` through the broker."""
        payload = json.dumps({"id": cmd_id, "args": args}).encode()
        await publish(self.broker.port, f"{self.base}/cmd/{name}", payload)

    async def restart_server(self) -> None:
        """The daemon's kiosk goes away and comes back on the same port."""
        port = self.server.port
        self.tasks[-1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.tasks[-1]
        config = self.server.config.model_copy(update={"port": port})
        self.server = KioskServer(self.server.service, config, self.node.counters)
        self.tasks.append(asyncio.create_task(self.server.run()))
        await asyncio.wait_for(self.server.listening.wait(), 5)


def start_broker(tmp: Path) -> Mosquitto:
    """With persistence: a dispatch subscriber's session survives a broker restart, so what
    the node sends when the broker is back reaches it whatever the reconnect order."""
    store = tmp / "mosquitto-store"
    store.mkdir()
    return Mosquitto(tmp, extra=f"persistence true\npersistence_location {store}/\n").start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = start_broker(tmp_path)
    yield m
    m.stop()


@contextlib.asynccontextmanager
async def running_kiosk(broker: Mosquitto, tmp: Path, **kiosk: Any) -> AsyncIterator[Kiosk]:
    """The real node parked at Felletin with its kiosk server; `kiosk` sets KioskConfig."""
    # parked: at 0.01 the route's 120 s stop at Felletin lasts 3 h, longer than any module
    path = write_config(tmp, broker.port, gps=True, speed_factor=0.01, extra=FELLETIN)
    node = Node(load_config(path), base_dir=tmp)
    stop = asyncio.Event()
    run = asyncio.create_task(node.run(stop))
    await asyncio.wait_for(node.ready.wait(), 5)
    config = KioskConfig(
        port=free_port(), buttons=["pickup", "mediator", "service"], **kiosk
    )
    service = KioskService(node.host, config)
    for spec in service.commands():
        node.router.add(spec)
    server = service.server
    tasks = [asyncio.create_task(service.tick()), asyncio.create_task(server.run())]
    k = Kiosk(node, server, broker, tasks)
    await asyncio.wait_for(server.listening.wait(), 5)
    for _ in range(100):  # connected, and parked at the stop
        if node.uplink.connected and k.geofences.inside():
            break
        await asyncio.sleep(0.05)
    try:
        yield k
    finally:
        for task in k.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stop.set()
        await asyncio.wait_for(run, 10)


@pytest_asyncio.fixture(loop_scope="module")
async def kiosk(
    broker: Mosquitto, tmp_path: Path
) -> AsyncIterator[Kiosk]:
    async with running_kiosk(broker, tmp_path) as k:
        yield k


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    m = start_broker(tmp_path_factory.mktemp("broker"))
    yield m
    m.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_kiosk(
    module_broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Kiosk]:
    """One node and kiosk for a whole module (layout and accessibility checks do not need a
    fresh node each); riders may press often (many buttons are pressed in turn)."""
    async with running_kiosk(
        module_broker, tmp_path_factory.mktemp("node"), rate_burst=100, global_burst=200
    ) as k:
        yield k


@dataclass
class Browser:
    page: Any
    errors: list[str]

    async def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    """One Chromium per module (each test gets a fresh context: its own profile in memory,
    no cookies or storage shared); Playwright gives it a fresh temporary user-data-dir."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(
            "playwright is not installed: pip install -e '.[test]' (never `playwright install`: "
            "the tests use /usr/bin/chromium)"
        )
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def open_browser(
    chromium: Any, viewport: dict[str, int] | None = None, **context: Any
) -> AsyncIterator[Browser]:
    """A fresh context (own profile in memory) and page in the module's Chromium."""
    ctx = await chromium.new_context(
        viewport=viewport or VIEWPORT, locale="fr-FR", timezone_id="Europe/Paris", **context
    )
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield Browser(page, errors)
    finally:
        await ctx.close()


@pytest_asyncio.fixture(loop_scope="module")
async def browser(chromium: Any) -> AsyncIterator[Browser]:
    async with open_browser(chromium) as b:
        yield b

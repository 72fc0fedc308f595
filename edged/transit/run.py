"""`edgectl feed`: the broker subscription and the HTTP server, until Ctrl-C or SIGTERM."""

import asyncio
import gc
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edged import logs
from edged.ops.client import Say
from edged.ops.feed import FleetFeed
from edged.ops.fleet import FleetView
from edged.ops.login import Login
from edged.ops.loop import run_until, stop_on_signals
from edged.transit.schedule import Schedule
from edged.transit.server import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER,
    MAX_PAGES,
    FeedServer,
)
from edged.transit.service import FeedService, FeedSettings

log = logging.getLogger(__name__)

LOG_SWEEP_S = 5.0
"""How often the log's flood guard is told to write the counts of floods that are over
(`edged/logs.py`; the node does the same): otherwise a count waits for the next line logged,
and after a flood of refused connections that may be never."""


@dataclass(frozen=True)
class FeedOptions:
    prefix: str
    fleets: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    settings: FeedSettings = field(default_factory=FeedSettings)
    gtfs: Path | None = None
    page: bool = True
    max_pages: int = MAX_PAGES
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_peer: int = MAX_CONNECTIONS_PER_PEER
    tile_url: str | None = None
    tile_attribution: str | None = None
    client_id: str | None = None


class RunningFeed:
    """The parts of a running feed, for tests and the benchmark to look into."""

    def __init__(self, login: Login, options: FeedOptions, *, say: Say | None = None) -> None:
        schedule = Schedule.load(options.gtfs) if options.gtfs is not None else None
        if schedule is not None:
            log.info(
                "static GTFS %s: %d routes, %d trips",
                options.gtfs,
                len(schedule.routes),
                len(schedule.trips),
            )
        self.view = FleetView(options.prefix, max_nodes=options.settings.max_vehicles)
        self.service = FeedService(self.view, options.settings, schedule=schedule)
        self.feed = FleetFeed(
            login,
            self.view,
            client_id=options.client_id or f"edged-feed-{uuid.uuid4().hex[:12]}",
            fleets=options.fleets,
            say=say,
            on_change=self._changed,
        )
        self.service.status.connected = lambda: self.feed.connected
        self.service.status.broker = lambda: self.feed.status
        self.service.status.dropped = lambda: self.feed.dropped
        self.service.status.unreadable = lambda: self.feed.unreadable
        self.server = FeedServer(
            self.service,
            page=options.page,
            max_pages=options.max_pages,
            tile_url=options.tile_url,
            tile_attribution=options.tile_attribution,
            max_connections=options.max_connections,
            max_connections_per_peer=options.max_connections_per_peer,
        )
        self.options = options
        self.log_sweep_s = LOG_SWEEP_S
        self.port: int | None = None
        self.listening = asyncio.Event()

    def _changed(self) -> None:
        self.service.status.last_message = time.time()

    async def serve(self) -> None:
        self.port = await self.server.start(self.options.host, self.options.port)
        try:
            self.listening.set()
            log.info("feed serving on http://%s:%s/", self.options.host, self.port)
            await asyncio.Event().wait()
        finally:
            await self.server.stop()

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> str:
        feed = asyncio.create_task(self.feed.run(), name="feed.mqtt")
        http = asyncio.create_task(self.serve(), name="feed.http")
        sweep = asyncio.create_task(self._sweep_logs(), name="feed.logs")
        try:
            return await run_until(stop, duration, feed, http)
        finally:
            for task in (feed, http, sweep):
                task.cancel()
            await asyncio.gather(feed, http, sweep, return_exceptions=True)
            logs.flush()  # a flood's count is said before the process goes

    async def _sweep_logs(self) -> None:
        while True:
            await asyncio.sleep(self.log_sweep_s)
            logs.sweep()


GC_THRESHOLDS = (50_000, 20, 100)
"""The feed's collector, for a heap of many long-lived objects (a vehicle's state each) and
a stream of short-lived ones (a message each): the defaults (700, 10, 10) ran a full
collection over the whole fleet every few thousand messages, about half of a drain's time
at 5,000 vehicles (py-spy). `python -m bench.feed`: CPU per message 182 -> 110 us."""


def tune_gc_for_a_long_running_feed() -> None:
    """Freeze what start-up made (modules, config: never garbage) and collect the young
    generation far less often. For the `edgectl feed` process only, not for a library user."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_feed(
    login: Login, options: FeedOptions, *, duration: float | None = None, say: Say | None = None
) -> None:
    running = RunningFeed(login, options, say=say)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await running.run(stop, duration)

"""Contract messages for the feed's tests, as nodes publish them, and a feed on a fixed clock."""

import json
import time
from datetime import UTC, datetime
from typing import Any

from edged.ops.fleet import FleetView
from edged.transit.schedule import Schedule
from edged.transit.service import FeedService, FeedSettings
from tests.helpers.gtfsrt import STATIC

PREFIX = "rnst/v1"
NOW = float(int(time.time()))  # the validator judges times against its own clock


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def msg(seq: int = 1, ts: float = NOW, **body: Any) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "ts": int(ts * 1000), "clock": "ntp", **body}).encode()


def birth(name: str = "Navette 7") -> bytes:
    return msg(state="online", version="0.1.0", profile="shuttle", name=name, since=1)


def position(lat: float = 45.9558, lon: float = 2.1683, at: float = NOW, seq: int = 1,
             **extra: Any) -> bytes:
    fix = datetime.fromtimestamp(at, UTC).isoformat()
    body = {"fix_time": fix, "lat": lat, "lon": lon, "speed": 11.5, "course": 271.5, "mode": "3D",
            "quality": 1, "satellites": 9, "hdop": 0.8, "odometer_m": 12345.6, **extra}
    return msg(seq=seq, ts=at, **body)


def occupancy(count: int = 12, capacity: int = 30, status: str = "MANY_SEATS_AVAILABLE",
              percent: int = 40) -> bytes:
    return msg(count=count, capacity=capacity, percent=percent, status=status, entries=count,
               exits=0, reset_at=1)


SCHEDULED = {"route_id": "creuse-shuttle", "trip_id": "creuse-shuttle-0800",
             "schedule_relationship": "SCHEDULED", "line": "1", "headsign": "Guéret"}
ADDED = {"route_id": "gueret-la-souterraine", "schedule_relationship": "ADDED",
         "start_date": "20270115", "start_time": "14:30:00", "direction_id": 0, "line": "TAD"}


def journey(mode: str = "on-demand", **run: Any) -> bytes:
    return msg(mode=mode, assigned=bool(run), **run)


def feed(clock: Clock, *, schedule: bool = True, max_vehicles: int = 10_000) -> FeedService:
    view = FleetView(PREFIX, clock=clock, max_nodes=max_vehicles)
    return FeedService(
        view,
        FeedSettings(max_vehicles=max_vehicles),
        schedule=Schedule.load(STATIC) if schedule else None,
        clock=clock,
    )


def put(service: FeedService, node: str, suffix: str, payload: bytes, fleet: str = "creuse") -> bool:
    return service.view.ingest(f"{PREFIX}/{fleet}/{node}/{suffix}", payload)


def vehicle(service: FeedService, node: str, *, run: dict[str, Any] | None = None,
            fleet: str = "creuse", **pos: Any) -> None:
    put(service, node, "state", birth(f"Navette {node}"), fleet)
    put(service, node, "position", position(**pos), fleet)
    put(service, node, "occupancy", occupancy(), fleet)
    if run is not None:
        put(service, node, "journey", journey(**run), fleet)

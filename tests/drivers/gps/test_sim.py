import asyncio
import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.geo import haversine_m
from drivers.gps.route import Route
from drivers.gps.sim import SimGps, SimGpsOptions
from tests.helpers.drivers import Recorder

ROUTE = Path(__file__).resolve().parents[3] / "config" / "routes" / "creuse-shuttle.json"


def test_shipped_route_has_stops_and_a_service_market() -> None:
    route = Route.load(ROUTE)
    stops = [w for w in route.waypoints if w.stop]
    assert len(stops) >= 3
    assert any(w.market for w in stops)
    total_km = sum(leg[2] for leg in route.legs()) / 1000
    assert 60 < total_km < 150


async def test_sim_emits_valid_fixes_that_move_along_the_route() -> None:
    gps = SimGps(SimGpsOptions(route=ROUTE, speed_factor=1000, rate_hz=20, seed=1))
    rec = Recorder("gps")
    task = asyncio.create_task(gps.run(rec.ctx))
    await asyncio.sleep(0.6)
    task.cancel()
    fixes = rec.fixes
    assert rec.is_ready and len(fixes) >= 8
    assert all(f.valid for f in fixes)
    first, last = fixes[0], fixes[-1]
    assert haversine_m(first.lat, first.lon, last.lat, last.lon) > 100


def test_track_dwells_at_the_first_stop() -> None:
    gps = SimGps(SimGpsOptions(route=ROUTE, seed=1))
    points = [p for _, p in zip(range(200), gps.track(1.0), strict=False)]
    assert points[0][2] == 0.0 and points[100][2] == 0.0  # 120 s dwell at Felletin
    assert points[-1][2] > 0


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        json.dumps({"name": "x", "waypoints": []}),
        json.dumps({"name": "x", "waypoints": [{"lat": 91, "lon": 0}, {"lat": 0, "lon": 0}]}),
    ],
)
def test_broken_route_is_a_config_error(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "route.json"
    bad.write_text(content)
    with pytest.raises(ConfigError):
        Route.load(bad)


async def test_start_s_skips_into_the_route() -> None:
    gps = SimGps(SimGpsOptions(route=ROUTE, speed_factor=10, rate_hz=20, start_s=120, seed=1))
    rec = Recorder("gps")
    task = asyncio.create_task(gps.run(rec.ctx))
    await asyncio.sleep(0.2)
    task.cancel()
    assert rec.fixes[0].speed > 5, "should have left the first stop already"

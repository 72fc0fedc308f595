import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from edged.clock import Clock, ClockSource
from edged.config.models import PositionServiceConfig
from edged.events import Fix, FixMode
from edged.geo import offset
from edged.services.position import ODOMETER_KEY, PositionService
from edged.topics import TopicSpec


class FakeNode:
    """Records publications; the service under test is real."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.published: list[tuple[str, BaseModel, int | None]] = []
        self.state = state or {}
        self.handlers: list[Any] = []

    def publish(
        self, spec: TopicSpec, body: BaseModel, *, name: str | None = None, qos: int | None = None
    ) -> "asyncio.Future[Any]":
        self.published.append((spec.name, body, qos))
        return asyncio.Future()

    def subscribe(self, event_type: type, handler: Any) -> None:
        self.handlers.append(handler)

    def get_state(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        self.state[key] = value


def fix(lat: float, lon: float, **kw: Any) -> Fix:
    return Fix(fix_time=datetime.now(UTC), lat=lat, lon=lon, hdop=1.0, **kw)


def service(node: FakeNode, **cfg: Any) -> PositionService:
    return PositionService(node, PositionServiceConfig(**{"min_period_s": 0, **cfg}))  # type: ignore[arg-type]


async def test_first_valid_fix_is_published_at_once() -> None:
    node = FakeNode()
    service(node).on_fix(fix(46.0, 2.0))
    ((name, body, qos),) = node.published
    assert name == "position" and qos == 0
    assert body.lat == 46.0  # type: ignore[attr-defined]


async def test_void_fix_is_never_published() -> None:
    node = FakeNode()
    svc = service(node)
    svc.on_fix(fix(46.0, 2.0, mode=FixMode.NONE))
    svc.on_fix(fix(46.0, 2.0, quality=0))
    assert node.published == [] and svc.void_fixes == 2


@pytest.mark.parametrize("speed", [None, 0.1], ids=["speed-unknown", "speed-near-zero"])
async def test_parked_vehicle_with_jitter_neither_floods_nor_grows_its_odometer(
    speed: float | None,
) -> None:
    node = FakeNode()
    svc = service(node, min_distance_m=25, max_period_s=3600)
    rng = random.Random(3)
    for _ in range(3600):  # an hour parked at 1 Hz, 1.5 m noise per axis
        svc.on_fix(fix(*offset(46.0, 2.0, rng.gauss(0, 1.5), rng.gauss(0, 1.5)), speed=speed))
    assert len(node.published) == 1
    assert svc.odometer_m == 0


async def test_moving_vehicle_is_reported_by_distance_and_odometer_follows() -> None:
    node = FakeNode()
    svc = service(node, min_distance_m=50)
    for i in range(101):  # 1 km north in 10 m steps at 10 m/s
        svc.on_fix(fix(*offset(46.0, 2.0, i * 10.0, 0), speed=10.0))
    assert 19 <= len(node.published) <= 21
    assert abs(svc.odometer_m - 1000) < 15


async def test_odometer_continues_from_persisted_state() -> None:
    node = FakeNode({ODOMETER_KEY: 12_345.0})
    svc = service(node)
    svc.on_fix(fix(46.0, 2.0))
    assert node.published[0][1].odometer_m == 12_345.0  # type: ignore[attr-defined]


async def test_valid_fix_disciplines_the_clock() -> None:
    node = FakeNode()
    service(node).on_fix(fix(46.0, 2.0))
    assert node.clock.source in {ClockSource.GPS, ClockSource.NTP}


async def test_configured_qos_is_used() -> None:
    node = FakeNode()
    service(node, qos=1).on_fix(fix(46.0, 2.0))
    assert node.published[0][2] == 1

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Fix
from core.geo import offset
from edged.config.geofences import Geofence
from edged.config.services import GeofenceServiceConfig, PositionServiceConfig
from edged.errors import CommandError
from edged.services.events import GeofencesChanged
from edged.services.geofences import (
    DYNAMIC_KEY,
    INSIDE_KEY,
    LABELS_KEY,
    REMOVED_KEY,
    GeofenceService,
    signed_distance,
)
from edged.services.position import PositionService
from tests.drivers.gps.fakes import nmea, through_driver
from tests.helpers.host import TestHost

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
MARKET = Geofence(
    id="gueret-market",
    name="Guéret – marché",
    kind="market",
    center=(46.1714, 1.8717),
    radius_m=100,
)
SQUARE = Geofence(id="square", points=[(46.0, 2.0), (46.0, 2.01), (46.01, 2.01), (46.01, 2.0)])


def at(
    seconds: float,
    north_m: float,
    lat: float = 46.1714,
    lon: float = 1.8717,
    hdop: float | None = None,
) -> Fix:
    """A fix `north_m` north of the market centre, `seconds` after T0. Without `hdop` it is
    a receiver's that gives none (gpsd without SKY reports): the tests that do not set it
    show such a receiver still arrives and departs."""
    la, lo = offset(lat, lon, north_m, 0)
    return Fix(fix_time=T0 + timedelta(seconds=seconds), lat=la, lon=lo, speed=5.0, hdop=hdop)


def service(node: TestHost, *fences: Geofence, **cfg: Any) -> GeofenceService:
    return GeofenceService(node, GeofenceServiceConfig(fences=list(fences) or [MARKET], **cfg))


def on_a_node(node: TestHost, *fences: Geofence, **cfg: Any) -> GeofenceService:
    """The geofences as on a node: behind the position service, whose judged fixes they take."""
    PositionService(node, PositionServiceConfig(), watch_fix=False)
    return service(node, *fences, **cfg)


def events(node: TestHost) -> list[Any]:
    return [b for name, b, _ in node.published if name == "events/geofence"]


def test_circle_distance_is_negative_inside_and_positive_outside() -> None:
    inside, outside = at(0, 50), at(0, 150)
    assert signed_distance(MARKET, inside.lat, inside.lon) == pytest.approx(-50, abs=0.5)
    assert signed_distance(MARKET, outside.lat, outside.lon) == pytest.approx(50, abs=0.5)


def test_polygon_distance_is_negative_inside_and_positive_outside() -> None:
    # the centre is nearest the east and west edges: 0.005° of longitude at 46° N
    # = 0.005 × π/180 × 6,371,009 m × cos 46° ≈ 386.2 m
    assert signed_distance(SQUARE, 46.005, 2.005) == pytest.approx(-386.2, abs=0.5)
    la, lo = offset(46.0, 2.005, -30, 0)  # 30 m south of the southern edge
    assert signed_distance(SQUARE, la, lo) == pytest.approx(30, abs=0.5)


async def test_arrival_is_reported_after_the_dwell_time_inside() -> None:
    node = TestHost()
    svc = service(node, dwell_s=10)
    for s in range(0, 30):
        svc.on_fix(at(s, 300 - s * 20))  # drives in at 20 m/s, then sits at the centre
    (arrive,) = events(node)
    assert arrive.event == "arrive" and arrive.geofence == "gueret-market"
    assert arrive.kind == "market"
    assert (arrive.fix_time - T0).total_seconds() == 20  # entered at 10 s, +10 s dwell


async def test_departure_carries_the_time_spent_inside() -> None:
    node = TestHost()
    svc = service(node, dwell_s=5, hysteresis_m=20)
    for s in range(0, 60):
        svc.on_fix(at(s, 0))
    for s in range(60, 80):
        svc.on_fix(at(s, 200))
    arrive, depart = events(node)
    assert (arrive.event, depart.event) == ("arrive", "depart")
    assert depart.dwell_s == 60  # arrived at 0 s (entered), left at 60 s


async def test_a_fix_dated_a_year_ahead_does_not_hold_back_the_departure() -> None:
    # one fix out of the market dated a year ahead (a spoofer, a receiver's glitch), then
    # the receiver's true time again: the dwell out counted from that fix never ended
    node = TestHost()
    svc = service(node, dwell_s=5, hysteresis_m=20)
    for s in range(0, 30):
        svc.on_fix(at(s, 0))
    svc.on_fix(at(30 + 365 * 86400, 200))
    for s in range(31, 60):
        svc.on_fix(at(s, 200))
    arrive, depart = events(node)
    assert (arrive.event, depart.event) == ("arrive", "depart")
    assert (depart.fix_time - T0).total_seconds() == 36  # out from 31 s, +5 s dwell


async def test_a_fix_dated_a_year_before_does_not_cut_the_dwell_short() -> None:
    # one fix inside dated a year before (a receiver's glitch, gpsd's year-1 date), then the
    # receiver's true time again, each fix arriving a second after the last as a driver says
    # (`received`): the dwell restarted at that fix must not count the year back to it
    node = TestHost()
    svc = service(node, dwell_s=10)

    def fix(s: float, north_m: float, dated: float | None = None) -> Fix:
        f = at(s if dated is None else dated, north_m)
        return replace(f, received=1000.0 + s)

    for s in range(0, 12):
        svc.on_fix(fix(s, 300 - s * 20))  # inside from 10 s
    svc.on_fix(fix(12, 0, dated=12 - 365 * 86400))
    for s in range(13, 40):
        svc.on_fix(fix(s, 0))
    (arrive,) = events(node)
    assert arrive.event == "arrive"
    assert (arrive.fix_time - T0).total_seconds() >= 20  # not before a whole dwell inside
    assert arrive.fix_time.year == T0.year


async def test_idling_on_the_border_does_not_chatter() -> None:
    node = TestHost()
    svc = service(node, dwell_s=5, hysteresis_m=20)
    for s in range(0, 20):
        svc.on_fix(at(s, 0))
    for s in range(20, 600):  # jitter across the edge: 95 m to 115 m from the centre
        svc.on_fix(at(s, 95 + (s % 3) * 10))
    assert [e.event for e in events(node)] == ["arrive"]


async def test_a_pass_shorter_than_the_dwell_is_not_an_arrival() -> None:
    node = TestHost()
    svc = service(node, dwell_s=30)
    for s in range(0, 20):
        svc.on_fix(at(s, -200 + s * 20))  # crosses the 200 m wide circle in 10 s
    assert events(node) == []


async def test_geofences_set_replaces_the_dynamic_set_and_persists_it() -> None:
    node = TestHost()
    svc = service(node)
    result = await svc.command_set(
        {"geofences": [{"id": "stop-ahun", "center": [46.0861, 2.0419], "radius_m": 60}]}
    )
    assert result == {"dynamic": 1, "static": 1}
    assert {g.id for g in svc.fences} == {"gueret-market", "stop-ahun"}
    again = GeofenceService(node, GeofenceServiceConfig(fences=[MARKET]))
    assert {g.id for g in again.fences} == {"gueret-market", "stop-ahun"}
    assert node.state[DYNAMIC_KEY][0]["id"] == "stop-ahun"


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"geofences": "all"},
        {"geofences": [{"id": "x"}]},
        {"geofences": [{"id": "x", "center": [46, 2]}]},
        {"geofences": [{"id": "x", "center": [95, 2], "radius_m": 5}]},
        {"geofences": [{"id": "x", "points": [[46, 2], [46, 3]]}]},
        {"geofences": [{"id": "x", "center": [46, 2], "radius_m": 5, "points": [[1, 1]] * 3}]},
        {"geofences": [{"id": "a b", "center": [46, 2], "radius_m": 5}]},
        {"geofences": [{"id": "x", "center": [46, 2], "radius_m": 5}] * 2},
        {"geofences": [{"id": "x", "center": [46, 2], "radius_m": 5}], "extra": 1},
    ],
)
async def test_a_bad_geofence_set_is_refused_and_changes_nothing(args: dict[str, Any]) -> None:
    node = TestHost()
    svc = service(node)
    await svc.command_set({"geofences": [{"id": "keep", "center": [46, 2], "radius_m": 50}]})
    with pytest.raises(CommandError) as info:
        await svc.command_set(args)
    assert info.value.code == "bad_args"
    assert [g.id for g in svc.dynamic] == ["keep"]


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(-89.9, 89.9), lon=st.floats(-179.9, 179.9))
def test_any_position_gets_a_finite_distance(lat: float, lon: float) -> None:
    for fence in (MARKET, SQUARE):
        d = signed_distance(fence, lat, lon)
        assert d == d and abs(d) < 2.1e7


def test_the_fences_and_the_one_the_vehicle_is_in_go_on_the_bus() -> None:
    node = TestHost()
    svc = service(node, dwell_s=0)
    svc.on_fix(at(0, 20))  # inside the market
    svc.on_fix(at(1, 20))
    svc.on_fix(at(2, 500))  # gone
    svc.on_fix(at(3, 500))
    seen = [(tuple(f.id for f in e.fences), e.inside) for e in node.of_type(GeofencesChanged)]
    market = ("gueret-market",)
    assert seen == [(market, ()), (market, market), (market, ())]


async def test_a_new_set_from_dispatch_goes_on_the_bus() -> None:
    node = TestHost()
    svc = service(node)
    await svc.command_set({"geofences": [SQUARE.model_dump(mode="json")]})
    (last,) = node.of_type(GeofencesChanged)[-1:]
    assert [f.id for f in last.fences] == ["gueret-market", "square"]


async def test_a_stray_far_fix_then_parked_within_the_hysteresis_is_no_departure() -> None:
    # docs/topics.md `events/geofence`: it "departs after being more than `hysteresis_m`
    # outside for `dwell_s`"; a dwell counts the time the position stays in the condition
    # (Windows.Devices.Geolocation.Geofencing Geofence.DwellTime: "the minimum time that a
    # position has to be inside or outside of the geofence"). A truck parked at the market
    # with its antenna 10 m past the edge, one multipath fix 200 m away: still at the market.
    node = TestHost()
    svc = service(node, dwell_s=5, hysteresis_m=20)
    for s in range(0, 20):
        svc.on_fix(at(s, 50))  # drives in, parks
    for s in range(20, 40):
        svc.on_fix(at(s, 110))  # backs up: 10 m outside the 100 m circle, within 20 m
    svc.on_fix(at(40, 300))  # a reflected fix 200 m out
    for s in range(41, 600):
        svc.on_fix(at(s, 110))  # parked there all along
    assert [e.event for e in events(node)] == ["arrive"]
    assert [f.id for f in svc.inside()] == ["gueret-market"]


async def test_a_stray_fix_inside_then_waiting_just_outside_is_no_arrival() -> None:
    # docs/topics.md `events/geofence`: it "arrives after being inside for `dwell_s`"; a
    # dwell counts the time the position stays in the condition (Windows.Devices.Geolocation.
    # Geofencing Geofence.DwellTime: "the minimum time that a position has to be inside or
    # outside of the geofence"). A bus held at lights 10 m past a stop it does not serve,
    # one reflected fix inside the circle: it never was at the stop.
    node = TestHost()
    svc = service(node, dwell_s=5, hysteresis_m=20)
    for s in range(0, 20):
        svc.on_fix(at(s, 110))  # waiting at the lights, 10 m outside the 100 m circle
    svc.on_fix(at(20, 50))  # one fix 60 m off, inside
    for s in range(21, 120):
        svc.on_fix(at(s, 110))
    assert events(node) == []
    assert svc.inside() == []


def _arrived(node: TestHost, **cfg: Any) -> GeofenceService:
    svc = service(node, **cfg)
    for s in range(0, 30):
        svc.on_fix(at(s, 0))  # parked at the market's centre
    assert [e.event for e in events(node)] == ["arrive"]
    return svc


async def test_a_node_restarted_at_the_market_does_not_arrive_there_again() -> None:
    node = TestHost()
    _arrived(node, dwell_s=5)
    again = TestHost(state=node.state)
    svc = service(again, dwell_s=5)
    assert [g.id for g in svc.inside()] == ["gueret-market"]  # the kiosk shows it at once
    for s in range(100, 130):
        svc.on_fix(at(s, 0))
    assert events(again) == []


async def test_a_vehicle_that_left_while_the_node_was_down_departs_after_the_start() -> None:
    node = TestHost()
    _arrived(node, dwell_s=5, hysteresis_m=20)
    again = TestHost(state=node.state)
    svc = service(again, dwell_s=5, hysteresis_m=20)
    for s in range(600, 620):
        svc.on_fix(at(s, 2000))  # 2 km away when the node comes back
    (depart,) = events(again)
    assert depart.event == "depart" and depart.geofence == "gueret-market"
    assert depart.dwell_s == 600  # entered at 0 s, seen out at 600 s: the time down counts
    assert svc.inside() == []


@pytest.mark.parametrize(
    "stored",
    [
        {"gueret-market": "yesterday"},
        {"gueret-market": 12},
        {"gueret-market": "2026-11-25T09:00:00"},  # no zone: not a fix time
        {"a-fence-gone-from-the-config": "2026-11-25T09:00:00+00:00"},
        ["gueret-market"],
        "gueret-market",
    ],
)
async def test_a_stored_presence_that_cannot_be_used_is_left_out(stored: Any) -> None:
    node = TestHost(state={INSIDE_KEY: stored})
    svc = service(node, dwell_s=5)
    assert svc.inside() == []
    for s in range(0, 30):
        svc.on_fix(at(s, 0))
    assert [e.event for e in events(node)] == ["arrive"]


async def test_a_spell_of_poor_hdop_fixes_inside_is_no_arrival() -> None:
    # a truck parked 50 m past the market's edge; under a flyover for 30 s its receiver has
    # HDOP 20 (±100 m) and puts it 40 m inside: it never was at the market
    node = TestHost()
    svc = service(node, dwell_s=10, hysteresis_m=20)
    for s in range(0, 20):
        svc.on_fix(at(s, 150, hdop=1.2))
    for s in range(20, 50):
        svc.on_fix(at(s, 60, hdop=20.0))
    for s in range(50, 80):
        svc.on_fix(at(s, 150, hdop=1.2))
    assert events(node) == []
    assert node.counters.snapshot()["geofences.poor_hdop"] == 30


async def test_a_spell_of_poor_hdop_fixes_outside_is_no_departure() -> None:
    # parked at the market's centre; 30 s of HDOP 20 fixes 250 m north: it never left
    node = TestHost()
    svc = service(node, dwell_s=10, hysteresis_m=20)
    for s in range(0, 30):
        svc.on_fix(at(s, 0, hdop=1.2))
    for s in range(30, 60):
        svc.on_fix(at(s, 250, hdop=20.0))
    for s in range(60, 90):
        svc.on_fix(at(s, 0, hdop=1.2))
    assert [e.event for e in events(node)] == ["arrive"]
    assert [f.id for f in svc.inside()] == ["gueret-market"]


VENUE = {"id": "fair-hall", "kind": "venue", "name": "Parc des expositions"}


async def _at_the_venue(node: TestHost) -> GeofenceService:
    """Dispatch puts a venue fence round the market square; the vehicle arrives there."""
    svc = service(node, dwell_s=5)
    await svc.command_set({"geofences": [{**VENUE, "center": [46.1714, 1.8717], "radius_m": 80}]})
    for s in range(0, 30):
        svc.on_fix(at(s, 0))
    assert [(e.geofence, e.event) for e in events(node)] == [
        ("gueret-market", "arrive"),
        ("fair-hall", "arrive"),
    ]
    return svc


async def test_a_fence_dispatch_removes_while_the_vehicle_is_in_it_departs_marked_removed() -> None:
    # docs/topics.md `events/geofence`: one message when the vehicle arrives at or departs
    # from a geofence; a venue manager counts the vehicles at the venue from them, and a
    # fence that vanishes with the vehicle in it must not keep it there for good
    node = TestHost()
    svc = await _at_the_venue(node)
    await svc.command_set({"geofences": []})  # the fair is over
    depart = events(node)[-1]
    assert (depart.geofence, depart.kind, depart.event) == ("fair-hall", "venue", "depart")
    assert depart.to_json_dict()["removed"] is True
    assert depart.dwell_s == 29  # arrived at 0 s (entered), last fix at 29 s
    assert (depart.fix_time - T0).total_seconds() == 29
    assert "removed" not in events(node)[1].to_json_dict()  # the arrival: no such field
    assert [f.id for f in svc.inside()] == ["gueret-market"]


async def test_a_removed_fence_the_vehicle_was_in_is_not_back_after_a_restart() -> None:
    node = TestHost()
    svc = await _at_the_venue(node)
    await svc.command_set({"geofences": []})
    again = service(TestHost(state=node.state), dwell_s=5)
    assert [f.id for f in again.inside()] == ["gueret-market"]
    assert set(node.state[INSIDE_KEY]) == {"gueret-market"}


async def test_a_fence_removed_before_any_fix_departs_at_the_first_fix_even_after_a_restart() -> (
    None
):
    node = TestHost()
    await _at_the_venue(node)
    second = TestHost(state=node.state)  # restarted in the depot's garage: no fix
    await service(second, dwell_s=5).command_set({"geofences": []})
    assert events(second) == []  # no fix to say where it was
    third = TestHost(state=second.state)  # restarted again, still before any fix
    svc = service(third, dwell_s=5)
    svc.on_fix(at(600, 0))
    (depart,) = events(third)
    assert (depart.geofence, depart.event, depart.removed) == ("fair-hall", "depart", True)
    assert depart.dwell_s == 600
    svc.on_fix(at(601, 0))
    assert len(events(third)) == 1  # owed once


async def test_a_departure_owed_for_a_fence_dispatch_removed_is_read_by_the_release_before() -> (
    None
):
    """The release before reads an owed departure as a whole fence
    (`Geofence.model_validate(entry["fence"])`, an entry that is not one skipped): an update
    rolled back before the first fix made it must still depart, as that release would."""
    node = TestHost()
    await _at_the_venue(node)
    second = TestHost(state=node.state)  # restarted: no fix yet
    await service(second, dwell_s=5).command_set({"geofences": []})
    entry = second.state[REMOVED_KEY]["fair-hall"]
    fence = Geofence.model_validate(entry["fence"])
    assert (fence.id, fence.kind, fence.radius_m) == ("fair-hall", "venue", 80)


async def test_a_fence_removed_before_the_vehicle_had_arrived_makes_no_event() -> None:
    node = TestHost()
    svc = service(node, dwell_s=30)
    await svc.command_set({"geofences": [{**VENUE, "center": [46.1714, 1.8717], "radius_m": 80}]})
    for s in range(0, 10):
        svc.on_fix(at(s, 0))  # inside, the dwell not over
    await svc.command_set({"geofences": []})
    assert events(node) == []


# A fence taken out of the config file: `config.set` writes the new file and restarts the
# node (edged/commands/admin.py, edged/cli/main.py `run`), so the service starts again from
# the state store with the new `[services.geofences]` (tests/integration/test_remote_config.py
# drives it through a real node and broker).


def restarted(node: TestHost, *fences: Geofence, **cfg: Any) -> tuple[TestHost, GeofenceService]:
    """The node started again on its state store with a config holding `fences`."""
    again = TestHost(state=node.state)
    return again, GeofenceService(again, GeofenceServiceConfig(fences=list(fences), **cfg))


async def test_a_config_fence_taken_out_with_the_vehicle_in_it_departs_marked_removed() -> None:
    node = TestHost()
    _arrived(node, dwell_s=5)
    again, svc = restarted(node, SQUARE, dwell_s=5)  # the new file has no market
    assert events(again) == [] and svc.inside() == []  # no fix yet to say where it was
    svc.on_fix(at(100, 0))
    (depart,) = events(again)
    assert (depart.geofence, depart.name, depart.kind) == (
        "gueret-market",
        "Guéret – marché",
        "market",
    )
    assert (depart.event, depart.to_json_dict()["removed"]) == ("depart", True)
    assert depart.dwell_s == 100  # entered at 0 s, the first fix after the start at 100 s


async def test_a_config_fence_taken_out_departs_once_across_restarts() -> None:
    node = TestHost()
    _arrived(node, dwell_s=5)
    second, _ = restarted(node, SQUARE, dwell_s=5)
    third, svc = restarted(second, SQUARE, dwell_s=5)  # restarted again before any fix
    svc.on_fix(at(100, 0))
    svc.on_fix(at(101, 0))
    fourth, svc = restarted(third, SQUARE, dwell_s=5)
    svc.on_fix(at(200, 0))
    assert [(e.geofence, e.event) for e in events(third)] == [("gueret-market", "depart")]
    assert events(second) == events(fourth) == []
    assert node.state.get(REMOVED_KEY, {}) == fourth.state[REMOVED_KEY] == {}


async def test_a_config_fence_taken_out_before_the_vehicle_had_arrived_makes_no_event() -> None:
    node = TestHost()
    svc = service(node, dwell_s=30)
    for s in range(0, 10):
        svc.on_fix(at(s, 0))  # inside, the dwell not over
    again, svc = restarted(node, SQUARE, dwell_s=30)
    for s in range(10, 60):
        svc.on_fix(at(s, 0))
    assert events(node) == events(again) == []


async def test_a_config_fence_renamed_with_the_vehicle_in_it_makes_no_event() -> None:
    node = TestHost()
    _arrived(node, dwell_s=5)
    renamed = MARKET.model_copy(update={"name": "Guéret – place Bonnyaud"})
    again, svc = restarted(node, renamed, dwell_s=5)
    for s in range(100, 130):
        svc.on_fix(at(s, 0))
    assert events(again) == []
    assert [f.name for f in svc.inside()] == ["Guéret – place Bonnyaud"]


async def test_a_renamed_fence_taken_out_later_departs_under_its_new_name() -> None:
    node = TestHost()
    _arrived(node, dwell_s=5)
    renamed = MARKET.model_copy(update={"name": "Guéret – place Bonnyaud"})
    second, _ = restarted(node, renamed, dwell_s=5)  # no fix in this run: no event to save
    third, svc = restarted(second, SQUARE, dwell_s=5)
    svc.on_fix(at(100, 0))
    (depart,) = events(third)
    assert (depart.name, depart.removed) == ("Guéret – place Bonnyaud", True)


async def test_a_config_fence_whose_shape_moved_off_the_vehicle_departs_as_usual() -> None:
    # same id, another circle 300 m north: not removed, so judged by its new shape at the
    # next fixes: out for the dwell, an ordinary departure
    node = TestHost()
    _arrived(node, dwell_s=5, hysteresis_m=20)
    moved = Geofence(
        id=MARKET.id, name=MARKET.name, kind="market", center=(46.1741, 1.8717), radius_m=50
    )
    again, svc = restarted(node, moved, dwell_s=5, hysteresis_m=20)
    assert [f.id for f in svc.inside()] == ["gueret-market"]
    for s in range(100, 110):
        svc.on_fix(at(s, 0))  # parked where it was: ~250 m outside the new circle
    (depart,) = events(again)
    assert (depart.geofence, depart.event, depart.removed) == ("gueret-market", "depart", None)
    assert depart.dwell_s == 100  # arrived at 0 s, out from the first fix after the start


async def test_a_config_fence_taken_out_that_dispatch_also_defines_does_not_depart() -> None:
    node = TestHost()
    svc = service(node, dwell_s=5)
    same = {"id": MARKET.id, "kind": "market", "center": [46.1714, 1.8717], "radius_m": 100}
    await svc.command_set({"geofences": [same]})
    for s in range(0, 30):
        svc.on_fix(at(s, 0))
    again, svc = restarted(node, SQUARE, dwell_s=5)
    for s in range(100, 130):
        svc.on_fix(at(s, 0))
    assert events(again) == []
    assert [f.id for f in svc.inside()] == ["gueret-market"]


async def test_a_presence_kept_without_labels_departs_when_a_later_config_drops_its_fence() -> None:
    # an older release kept the arrival alone: the first start of this one labels it
    node = TestHost(state={INSIDE_KEY: {MARKET.id: T0.isoformat()}})
    service(node, dwell_s=5)
    assert node.state[LABELS_KEY][MARKET.id]["kind"] == "market"
    again, svc = restarted(node, SQUARE, dwell_s=5)
    svc.on_fix(at(100, 0))
    (depart,) = events(again)
    assert (depart.geofence, depart.name, depart.removed) == (MARKET.id, MARKET.name, True)


async def test_a_departure_owed_by_an_older_release_is_still_made() -> None:
    # it stored the whole fence: read as its label
    fence = Geofence(id="fair-hall", kind="venue", center=(46.1714, 1.8717), radius_m=80)
    owed = {"fair-hall": {"fence": fence.model_dump(mode="json"), "arrived": T0.isoformat()}}
    node = TestHost(state={REMOVED_KEY: owed})
    svc = service(node, dwell_s=5)
    svc.on_fix(at(60, 500))
    (depart,) = events(node)
    assert (depart.geofence, depart.kind, depart.removed, depart.dwell_s) == (
        "fair-hall",
        "venue",
        True,
        60,
    )


async def test_config_and_dispatch_changes_without_a_fix_owe_one_departure() -> None:
    # a garage with no sky: the market and dispatch's venue taken out and put back, again
    # and again, by config.set (each a restart) and geofences.set
    node = TestHost()
    await _at_the_venue(node)
    venue = [{**VENUE, "center": [46.1714, 1.8717], "radius_m": 80}]
    for n in range(200):
        node, svc = restarted(node, *([MARKET] if n % 2 else []), dwell_s=5)
        await svc.command_set({"geofences": venue if n % 3 else []})
        assert len(node.state.get(REMOVED_KEY, {})) <= 2
    node, svc = restarted(node, dwell_s=5)
    await svc.command_set({"geofences": []})  # both gone for good
    svc.on_fix(at(600, 0))
    svc.on_fix(at(601, 0))
    assert sorted((e.geofence, e.event, e.dwell_s) for e in events(node)) == [
        ("fair-hall", "depart", 600),
        ("gueret-market", "depart", 600),
    ]


async def test_a_config_fence_put_back_before_any_fix_makes_no_event() -> None:
    # config.set took the market out, and its probation rolled it back (no broker) before
    # the receiver had a fix: nothing said the vehicle left, so it is still there
    node = TestHost()
    _arrived(node, dwell_s=5, hysteresis_m=20)
    second, _ = restarted(node, SQUARE, dwell_s=5, hysteresis_m=20)
    third, svc = restarted(second, MARKET, dwell_s=5, hysteresis_m=20)
    assert [f.id for f in svc.inside()] == ["gueret-market"]
    for s in range(100, 130):
        svc.on_fix(at(s, 0))
    assert events(third) == []
    for s in range(130, 150):
        svc.on_fix(at(s, 2000))
    (depart,) = events(third)
    assert (depart.event, depart.removed, depart.dwell_s) == ("depart", None, 130)


async def test_a_fence_dispatch_puts_back_before_any_fix_makes_no_event() -> None:
    # restarted in the garage, dispatch sends a set without the venue, then corrects it
    node = TestHost()
    await _at_the_venue(node)
    again, svc = restarted(node, MARKET, dwell_s=5)
    await svc.command_set({"geofences": []})
    await svc.command_set({"geofences": [{**VENUE, "center": [46.1714, 1.8717], "radius_m": 80}]})
    for s in range(600, 630):
        svc.on_fix(at(s, 0))
    assert events(again) == []
    assert {f.id for f in svc.inside()} == {"gueret-market", "fair-hall"}


async def test_a_flood_of_config_and_dispatch_changes_departs_no_more_than_it_arrived() -> None:
    # with fixes between the changes and no dwell, every change that takes a fence away
    # departs and every one that puts it back arrives: a departure ends one arrival, and
    # the state stays the size of the fences in force
    node = TestHost()
    venue = [{**VENUE, "center": [46.1714, 1.8717], "radius_m": 80}]
    made: list[Any] = []
    for n in range(300):
        node, svc = restarted(node, *([MARKET] if n % 2 else []), dwell_s=0)
        await svc.command_set({"geofences": venue if n % 3 else []})
        svc.on_fix(at(n, 0))
        await svc.command_set({"geofences": [] if n % 3 else venue})
        svc.on_fix(at(n + 0.5, 0))
        made += events(node)
        assert (
            set(node.state[INSIDE_KEY])
            == set(node.state[LABELS_KEY])
            <= {
                "gueret-market",
                "fair-hall",
            }
        )
        assert len(node.state.get(REMOVED_KEY, {})) <= 2
    for fence_id in ("gueret-market", "fair-hall"):
        kinds = [e.event for e in made if e.geofence == fence_id]
        assert kinds[::2] == ["arrive"] * len(kinds[::2])  # strictly alternating
        assert kinds[1::2] == ["depart"] * len(kinds[1::2])


# Taveuni, Fiji: the 180th meridian runs across the island by Waiyevo, its buses cross it.
# A stop 220 m wide from 179.999° E to 179.999° W (-179.999), as a map tool writes it.
MERIDIAN_STOP = Geofence(
    id="waiyevo",
    points=[(-16.799, 179.999), (-16.799, -179.999), (-16.801, -179.999), (-16.801, 179.999)],
)


async def test_a_bus_at_a_stop_across_the_180th_meridian_arrives(tmp_path: Path) -> None:
    """An NMEA receiver on a pty, through the real driver: a bus parked 20 m east of the
    meridian (W longitude) inside a stop whose corners lie both sides of it. Read the
    long way round, the fence was the rest of the world but its 220 m: never an arrival
    there, and one anywhere else."""
    raw = [
        nmea(f"GNRMC,2300{s:02d}.00,A,1648.00000,S,17959.98874,W,0.0,,071226,,,A")
        + nmea(f"GNGGA,2300{s:02d}.00,1648.00000,S,17959.98874,W,1,09,1.1,12.0,M,55.1,M,,")
        for s in range(8)
    ]
    node = TestHost()
    on_a_node(node, MERIDIAN_STOP, dwell_s=3)
    await through_driver(raw, tmp_path / "gps0", node, fixes=8, burst_s=0.1, what="8 fixes")
    assert [round(f.lon, 5) for f in node.of_type(Fix)][:1] == [-179.99981]
    (arrive,) = events(node)
    assert arrive.event == "arrive" and arrive.geofence == "waiyevo"


def test_a_fence_across_the_180th_meridian_is_the_small_area_it_encloses() -> None:
    for lon in (180.0, -180.0):  # on the meridian: 0.001° of longitude from either edge
        assert signed_distance(MERIDIAN_STOP, -16.8, lon) == pytest.approx(-106.6, abs=1)
    for lon in (179.9995, -179.9995):
        assert signed_distance(MERIDIAN_STOP, -16.8, lon) == pytest.approx(-53.3, abs=1)
    assert signed_distance(MERIDIAN_STOP, -16.8, 0.0) > 1e6  # Greenwich: half a world away
    assert signed_distance(MERIDIAN_STOP, -16.8, 179.998) == pytest.approx(106.6, abs=1)
    # and a fence anywhere else is not inside out for a position half a world east of it
    assert signed_distance(SQUARE, 46.005, 2.005 - 180) > 1e6


def _depot_epoch(second: int, north_m: float, knots: float) -> bytes:
    """RMC and GGA at 22:30:`second` UTC, `north_m` north of the depot stop's reference, at
    `knots` (Doppler)."""
    lat, lon = offset(46.1714, 1.8717, north_m, 0)
    t = f"2230{second:02d}.00"
    where = f"{int(lat):02d}{(lat % 1) * 60:08.5f},N,{int(lon):03d}{(lon % 1) * 60:08.5f},E"
    return nmea(f"GNRMC,{t},A,{where},{knots:.3f},0.0,071226,,,A") + nmea(
        f"GNGGA,{t},{where},1,09,1.1,452.0,M,49.2,M,,"
    )


async def test_a_bus_parked_on_the_border_whose_fix_drifts_out_does_not_depart(
    tmp_path: Path,
) -> None:
    """An NMEA receiver on a pty, through the real driver. A bus parks at a stop with its
    antenna 10 m inside the edge; in a covered depot its position then drifts 25-45 m out,
    beyond the 20 m hysteresis, for longer than the dwell (such drift lasts minutes), its
    Doppler speed 0 all along. It departed 4 s into the drift, standing at the stop (and
    arrived again at each drift back, all night). It is still there; it departs once it
    drives off."""

    norths = [130, 120, 110, 100, 90, 90, 90, 90]  # drives in at 10 m/s, parks 10 m inside
    norths += [125, 135, 145, 140, 130, 125, 135, 145, 140, 130, 125, 135]  # the drift
    norths += [95, 95, 95]
    moving = {0, 1, 2, 3, 4}
    norths += [105, 115, 125, 135, 145, 155, 165]  # drives off north at 10 m/s
    moving |= set(range(23, 30))
    raw = [_depot_epoch(s, n, 19.438 if s in moving else 0.0) for s, n in enumerate(norths)]
    node = TestHost()
    on_a_node(node, dwell_s=3, hysteresis_m=20)
    await through_driver(raw, tmp_path / "gps0", node, fixes=30, burst_s=0.03, what="30 fixes")
    assert [e.event for e in events(node)] == ["arrive", "depart"]
    depart = events(node)[1]  # 25 m out at 25 s, driving: out for the 3 s dwell at 28 s
    assert depart.fix_time == datetime(2026, 12, 7, 22, 30, 28, tzinfo=UTC)


def test_a_region_wider_than_half_the_world_holds_what_it_was_drawn_around() -> None:
    from tests.edged.config.test_geofences import RUSSIA_WITH_ALASKA

    region = Geofence(id="fleet", points=RUSSIA_WITH_ALASKA)
    assert signed_distance(region, 61.2, -149.9) < 0  # Anchorage, 220° east of the Baltic
    assert signed_distance(region, 55.75, 37.6) < 0  # Moscow
    assert signed_distance(region, 64.7, 177.5) < 0  # Anadyr, by the meridian
    assert signed_distance(region, 48.85, 2.35) > 0  # Paris
    assert signed_distance(region, 40.7, -74.0) > 0  # New York


async def test_a_parked_bus_whose_doppler_flickers_once_while_drifting_out_does_not_depart(
    tmp_path: Path,
) -> None:
    """As above, through the real driver: parked 10 m inside the stop's edge, the fix
    drifting 25-45 m out, but one fix of the drift with a Doppler speed of 0.6 m/s (a parked
    receiver's speed flickers so in a covered depot). That one fix started the departure,
    and the still fixes after it, out beyond the hysteresis, completed it: the margin for a
    vehicle standing still held only while no fix said otherwise (8 h simulated, one such
    fix in a thousand: 12 events instead of 1). A lone moving fix is no departure; it
    departs once it drives off."""

    norths = [130, 120, 110, 100, 90, 90, 90, 90]  # drives in at 10 m/s, parks 10 m inside
    norths += [125, 135, 145, 140, 130, 125, 135, 145]  # the drift, the flicker at its start
    norths += [95, 95]
    norths += [105, 115, 125, 135, 145, 155, 165]  # drives off north at 10 m/s
    knots = {s: 19.438 for s in [0, 1, 2, 3, 4, *range(18, 25)]} | {8: 1.166}
    raw = [_depot_epoch(s, n, knots.get(s, 0.0)) for s, n in enumerate(norths)]
    node = TestHost()
    on_a_node(node, dwell_s=3, hysteresis_m=20)
    await through_driver(raw, tmp_path / "gps0", node, fixes=25, burst_s=0.03, what="25 fixes")
    assert [e.event for e in events(node)] == ["arrive", "depart"]
    depart = events(node)[1]  # 25 m out at 20 s, driving: out for the 3 s dwell at 23 s
    assert depart.fix_time == datetime(2026, 12, 7, 22, 30, 23, tzinfo=UTC)

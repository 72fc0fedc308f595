"""Occupancy: counts from beams and doors, never below zero, coarse percent, GTFS status."""

import asyncio
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.events import Crossing, DoorInput
from edged.config.access import OccupancyServiceConfig
from edged.errors import CommandError
from edged.payloads import Trip
from edged.services.events import AccessDecided, OccupancyChanged, OccupancyReset, TripEnded
from edged.services.occupancy import OccupancyService
from tests.helpers.host import TestHost

PARIS = ZoneInfo("Europe/Paris")


def make(node: TestHost | None = None, **cfg: Any) -> tuple[TestHost, OccupancyService, Any]:
    node = node or TestHost()
    cfg.setdefault("capacity", 10)
    service = OccupancyService(node, OccupancyServiceConfig(**cfg))
    return node, service, node.counters


def cross(node: TestHost, direction: str, door: str = "front") -> None:
    node.emit(Crossing(door=door, direction=direction, ts=0.0))  # type: ignore[arg-type]


def test_beam_crossings_count_in_and_out() -> None:
    node, service, _ = make(count_from=["beams"])
    for d in ("in", "in", "in", "out"):
        cross(node, d)
    assert service.count == 2 and (service.entries, service.exits) == (3, 1)


def test_beams_do_not_count_when_not_configured() -> None:
    node, service, _ = make(count_from=["taps"])
    cross(node, "in")
    assert service.count == 0


def test_the_count_never_goes_below_zero_and_the_underflow_is_counted() -> None:
    node, service, counted = make(count_from=["beams"])
    cross(node, "in")
    cross(node, "out")
    cross(node, "out")
    assert service.count == 0 and counted.snapshot() == {"occupancy.underflow": 1}
    assert service.exits == 1


def test_a_door_cycle_counts_one_person_per_opening() -> None:
    node, service, _ = make(door_cycles={"entrance": "in"})
    node.emit(DoorInput("entrance", False, 0.0))  # the start state: not an opening
    for _ in range(3):
        node.emit(DoorInput("entrance", True, 0.0))
        node.emit(DoorInput("entrance", True, 0.0))  # a repeated report is not a new cycle
        node.emit(DoorInput("entrance", False, 0.0))
    node.emit(DoorInput("other", True, 0.0))
    assert service.count == 3


@pytest.mark.parametrize(
    ("count", "percent", "status"),
    [
        (0, 0, "EMPTY"),
        (1, 10, "MANY_SEATS_AVAILABLE"),
        (4, 40, "MANY_SEATS_AVAILABLE"),
        (5, 50, "FEW_SEATS_AVAILABLE"),
        (9, 90, "STANDING_ROOM_ONLY"),
        (10, 100, "FULL"),
        (13, 130, "FULL"),
    ],
)
def test_percent_and_status_follow_the_thresholds(count: int, percent: int, status: str) -> None:
    _, service, _ = make()
    service.add(count, "beam")
    snap = service.snapshot()
    assert (snap.percent, snap.status) == (percent, status)


def test_percent_is_rounded_to_the_step_so_one_person_does_not_show() -> None:
    _, service, _ = make(capacity=57, percent_step=25)
    service.add(20, "beam")  # 35 %
    assert service.snapshot().percent == 25


def test_without_a_capacity_there_is_no_percent() -> None:
    _, service, _ = make(capacity=None)
    service.add(3, "beam")
    snap = service.snapshot()
    assert (snap.capacity, snap.percent, snap.status) == (None, None, "NO_DATA_AVAILABLE")


def test_the_count_survives_a_restart() -> None:
    node, service, _ = make()
    service.add(7, "tap")
    _, again, _ = make(TestHost(state=node.state))
    assert again.count == 7 and again.entries == 7


def test_every_change_publishes_occupancy() -> None:
    node, service, _ = make()
    service.add(1, "tap")
    service.add(-1, "tap")
    assert [b.count for b in node.bodies("occupancy")] == [1, 0]


def test_end_of_trip_resets_to_zero_and_says_so_on_the_bus() -> None:
    node, service, _ = make()
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    assert service.count == 0 and service.entries == 0
    assert len(node.of_type(OccupancyReset)) == 1


def test_end_of_trip_reset_can_be_turned_off() -> None:
    node, service, _ = make(reset_on_trip_end=False)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    assert service.count == 4 and node.of_type(OccupancyReset) == []


def test_granted_taps_count_only_where_taps_are_a_source() -> None:
    node, counting, _ = make(count_from=["taps"])
    elsewhere = make(TestHost(), count_from=["beams"])[1]
    node.emit(AccessDecided("board", 1))
    node.emit(AccessDecided("login", 0))
    assert counting.count == 1 and elsewhere.count == 0


def test_each_count_goes_on_the_bus_with_who_boarded_and_the_restored_one_first() -> None:
    node = TestHost(state={"occupancy": {"count": 3, "entries": 3, "exits": 0, "reset_at": 1}})
    _, service, _ = make(node, capacity=4)
    service.add(1, "beam")
    service.add(-2, "beam")
    changes = [(e.count, e.boarded, e.full) for e in node.of_type(OccupancyChanged)]
    assert changes == [(3, 0, False), (4, 1, True), (2, 0, False)]


def test_reset_command_sets_the_count_ops_give() -> None:
    _, service, _ = make()
    service.add(4, "tap")
    result = asyncio.run(service.command_reset({"count": 2}))
    assert (result["count"], result["before"], service.count) == (2, 4, 2)


@pytest.mark.parametrize(
    "args", [{"count": -1}, {"count": "3"}, {"count": True}, {"n": 1}, {"count": 10**9}]
)
def test_reset_command_refuses_bad_counts(args: dict[str, Any]) -> None:
    _, service, _ = make()
    with pytest.raises(CommandError) as info:
        asyncio.run(service.command_reset(args))
    assert info.value.code == "bad_args"


def test_the_daily_reset_is_next_at_the_local_time() -> None:
    _, service, _ = make(reset_at="03:00")
    due = service.next_reset(datetime(2026, 11, 25, 10, 0, tzinfo=PARIS))
    assert due == datetime(2026, 11, 26, 3, 0, tzinfo=PARIS)
    early = service.next_reset(datetime(2026, 11, 25, 2, 59, tzinfo=PARIS))
    assert early == datetime(2026, 11, 25, 3, 0, tzinfo=PARIS)


def test_the_daily_reset_keeps_its_wall_time_across_a_dst_change() -> None:
    _, service, _ = make(reset_at="04:00")
    due = service.next_reset(datetime(2026, 10, 24, 12, 0, tzinfo=PARIS))  # DST ends on the 25th
    assert due is not None and (due.day, due.hour, due.minute) == (25, 4, 0)


def test_no_daily_reset_when_unset() -> None:
    _, service, _ = make(reset_at=None)
    assert service.next_reset(datetime(2026, 11, 25, tzinfo=PARIS)) is None


def test_no_daily_reset_when_never() -> None:
    _, service, _ = make(reset_at="never")
    service.add(4, "tap")
    assert service.next_reset(datetime(2026, 11, 25, 2, 59, tzinfo=PARIS)) is None
    # the service's loop publishes the retained state once and ends: nothing is due, ever
    asyncio.run(asyncio.wait_for(service.run(), 2))
    assert service.count == 4


@pytest.mark.parametrize("bad", ["3:00", "24:00", "12:60", "noon", "", "Never", "none"])
def test_a_malformed_reset_time_is_a_config_error(bad: str) -> None:
    with pytest.raises(ValueError, match='HH:MM \\(24 h\\) or "never"'):
        OccupancyServiceConfig(reset_at=bad)


def test_thresholds_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        OccupancyServiceConfig(
            thresholds=[
                {"below_pct": 80, "status": "FEW_SEATS_AVAILABLE"},
                {"below_pct": 50, "status": "MANY_SEATS_AVAILABLE"},
            ]
        )

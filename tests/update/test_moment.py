"""A vehicle switches releases only when parked: ignition off, no trip, doors closed and
left alone for a while. `Parked` keeps its view from the node's bus, as services do."""

import time

import pytest

from core.bus import Bus
from core.counters import Counters
from core.events import Crossing, DoorInput, Tap, Unlock
from edged.services.events import VehicleStatus
from edged.update.moment import Parked

TRIP = "20261204T080000Z-abcdef"


def parked(idle_s: float = 0.2, *before: object) -> tuple[Bus, Parked]:
    """A bus with `before` already emitted on it (a retained `VehicleStatus` reaches a
    `Parked` built later), and the `Parked` on it."""
    bus = Bus(Counters())
    for event in before:
        bus.emit(event)
    return bus, Parked(bus, idle_s=idle_s)


def test_a_quiet_parked_vehicle_is_a_safe_moment() -> None:
    _, p = parked(0, VehicleStatus(ignition=False, open_doors=(), trip_id=None))
    assert p.waiting_for() == []


def test_a_venue_without_ignition_or_trips_needs_only_quiet_doors() -> None:
    assert parked(0)[1].waiting_for() == []


def test_right_after_a_start_the_doors_count_as_just_used() -> None:
    _, p = parked(0.3)
    assert len(p.waiting_for()) == 1
    time.sleep(0.35)
    assert p.waiting_for() == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (VehicleStatus(ignition=True, open_doors=(), trip_id=None), "ignition on"),
        (VehicleStatus(ignition=False, open_doors=(), trip_id=TRIP), f"trip {TRIP} open"),
        (VehicleStatus(ignition=False, open_doors=("front",), trip_id=None), "door front open"),
    ],
)
def test_each_reason_to_wait_is_said(status: VehicleStatus, reason: str) -> None:
    _, p = parked(0, status)
    assert p.waiting_for() == [reason]


def test_what_the_vehicle_says_later_counts_too() -> None:
    bus, p = parked(0)
    bus.emit(VehicleStatus(ignition=True, open_doors=(), trip_id=TRIP))
    assert p.waiting_for() == ["ignition on", f"trip {TRIP} open"]
    bus.emit(VehicleStatus(ignition=False, open_doors=(), trip_id=None))
    assert p.waiting_for() == []


def test_a_door_sensor_left_open_is_waited_for_until_it_closes() -> None:
    bus, p = parked(0)
    bus.emit(DoorInput("rear", True, 0.0))
    assert p.waiting_for() == ["door rear open"]
    bus.emit(DoorInput("rear", False, 0.0))
    assert p.waiting_for() == []


@pytest.mark.parametrize(
    "event",
    [
        DoorInput("rear", False, 0.0),
        Tap(b"\x01\x02\x03\x04", "reader", 0.0),
        Unlock(3.0, 0.0),
        Crossing("rear", "in", 0.0),
    ],
)
def test_a_door_tap_unlock_or_crossing_waits_for_quiet_again(event: object) -> None:
    bus, p = parked(0.3)
    time.sleep(0.35)
    bus.emit(event)
    waiting = p.waiting_for()
    assert len(waiting) == 1 and "used" in waiting[0]
    time.sleep(0.35)
    assert p.waiting_for() == []

"""A vehicle switches releases only when parked: ignition off, no trip, doors closed and
left alone for a while."""

import time
from collections.abc import Callable
from typing import Any

import pytest

from edged.events import DoorInput, Tap, Unlock
from edged.update.moment import Parked


class Bus:
    def __init__(self) -> None:
        self.handlers: dict[type, list[Callable[[Any], None]]] = {}
        self.ignition: bool | None = None
        self.trip: str | None = None
        self.doors: list[str] = []

    def subscribe(self, kind: type, handler: Callable[[Any], None]) -> None:
        self.handlers.setdefault(kind, []).append(handler)

    def emit(self, event: object) -> None:
        for handler in self.handlers.get(type(event), []):
            handler(event)

    def parked(self, idle_s: float = 0.2) -> Parked:
        return Parked(
            self.subscribe, idle_s=idle_s, ignition=lambda: self.ignition,
            open_trip=lambda: self.trip, open_doors=lambda: self.doors,
        )  # fmt: skip


def test_a_quiet_parked_vehicle_is_a_safe_moment() -> None:
    bus = Bus()
    bus.ignition = False
    assert bus.parked(idle_s=0).waiting_for() == []


def test_a_venue_without_ignition_or_trips_needs_only_quiet_doors() -> None:
    assert Bus().parked(idle_s=0).waiting_for() == []


def test_right_after_a_start_the_doors_count_as_just_used() -> None:
    parked = Bus().parked(idle_s=0.3)
    assert len(parked.waiting_for()) == 1
    time.sleep(0.35)
    assert parked.waiting_for() == []


@pytest.mark.parametrize(
    ("ignition", "trip", "doors", "reason"),
    [
        (True, None, [], "ignition on"),
        (False, "20261204T080000Z-abcdef", [], "trip 20261204T080000Z-abcdef open"),
        (False, None, ["front"], "door front open"),
    ],
)
def test_each_reason_to_wait_is_said(
    ignition: bool, trip: str | None, doors: list[str], reason: str
) -> None:
    bus = Bus()
    bus.ignition, bus.trip, bus.doors = ignition, trip, doors
    assert bus.parked(idle_s=0).waiting_for() == [reason]


@pytest.mark.parametrize(
    "event",
    [DoorInput("rear", False, 0.0), Tap(b"\x01\x02\x03\x04", "reader", 0.0), Unlock(3.0, 0.0)],
)
def test_a_door_tap_or_unlock_waits_for_quiet_again(event: object) -> None:
    bus = Bus()
    parked = bus.parked(idle_s=0.3)
    bus.emit(event)
    waiting = parked.waiting_for()
    assert len(waiting) == 1 and "used" in waiting[0]
    time.sleep(0.35)
    assert parked.waiting_for() == []

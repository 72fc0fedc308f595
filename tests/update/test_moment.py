"""A vehicle switches releases only when parked: ignition off, no trip, doors closed and
left alone for a while. `Parked` keeps its view from the node's bus, as services do."""

import asyncio
import time
from pathlib import Path

import pytest

from core.bus import Bus
from core.counters import Counters
from core.events import Crossing, DoorInput, Tap, Unlock
from edged.services.events import VehicleStatus
from edged.update.moment import Parked
from tests.release.support import KEYS
from tests.update.test_revoked_keys import node, staged
from tests.update.test_work_dir_faults import recording

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


@pytest.mark.parametrize("switch", ["now", "parked"])
async def test_a_node_cut_off_from_the_broker_waits_to_switch_until_it_is_back(
    tmp_path: Path, switch: str
) -> None:
    """The trial wants the broker within `trial_s`: a switch made offline (ignition off,
    which can power the modem down; a depot without coverage; someone on the path
    blocking the broker) was rolled back whatever the release, so a vehicle whose link
    drops when parked never kept an update, and one who controls the path kept a node on
    its old release without ever showing it offline outside the switch."""
    staged(tmp_path, switch)
    m, stops, _ = node(tmp_path, KEYS)
    link = {"up": False}
    m.host.checks.connected = lambda: link["up"]
    said = recording(m)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(1.5)
        assert stops == [], "switched with no broker to come online on"
        assert said and said[-1].state == "staged"
        assert said[-1].waiting_for == ["not connected to the broker"]
        link["up"] = True
        for _ in range(100):
            if stops:
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
    assert stops == [0] and said[-1].state == "switching", [s.state for s in said]

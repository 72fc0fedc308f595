"""Occupancy: counts from beams and doors, never below zero, coarse percent, GTFS status."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given
from hypothesis import strategies as st

from core.events import Crossing, DoorInput
from edged.clock import Clock, ClockSource
from edged.config.access import OccupancyServiceConfig
from edged.errors import CommandError
from edged.payloads import Trip
from edged.services.events import (
    AccessDecided,
    OccupancyChanged,
    OccupancyReset,
    TripEnded,
    TripStarted,
)
from edged.services.occupancy import OccupancyService, coarse_percent
from tests.drivers.gpio.fakes import SupervisedBoard, wait_until
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


@pytest.mark.parametrize(("capacity", "count"), [(50, 1), (57, 1), (100, 4), (200, 9)])
def test_percent_is_never_0_with_someone_aboard(capacity: int, count: int) -> None:
    """1 of 50 is 2 %: rounded to the 10 % step it read 0 %, an empty bus to dispatch."""
    _, service, _ = make(capacity=capacity)
    service.add(count, "beam")
    assert service.snapshot().percent == 10


@pytest.mark.parametrize(("capacity", "count", "percent"), [(50, 48, 90), (50, 49, 90)])
def test_percent_is_100_only_when_full(capacity: int, count: int, percent: int) -> None:
    """48 of 50 (96 %) read 100 %, a full bus, with two places left."""
    _, service, _ = make(capacity=capacity)
    service.add(count, "beam")
    assert service.snapshot().percent == percent
    service.add(capacity - count, "beam")
    assert service.snapshot().percent == 100


@pytest.mark.parametrize(("capacity", "count", "percent"), [(50, 51, 110), (50, 52, 110)])
def test_percent_over_capacity_is_above_100(capacity: int, count: int, percent: int) -> None:
    """51 of 50 (102 %) read 100 %: an overcrowded bus looked exactly full."""
    _, service, _ = make(capacity=capacity)
    service.add(count, "beam")
    assert service.snapshot().percent == percent


def test_percent_with_a_step_that_does_not_divide_100_is_100_when_full() -> None:
    """With steps of 30 a full bus (100 %) rounded to 90."""
    _, service, _ = make(capacity=10, percent_step=30)
    service.add(10, "beam")
    assert service.snapshot().percent == 100


def test_percent_rounds_halves_up() -> None:
    """Python's round() goes to the even step: 25 % read 20 % but 35 % read 40 %."""
    _, service, _ = make(capacity=40)
    service.add(10, "beam")  # 25 %
    assert service.snapshot().percent == 30
    service.add(4, "beam")  # 35 %
    assert service.snapshot().percent == 40


@given(capacity=st.integers(1, 100_000), step=st.integers(1, 50), share=st.floats(0, 2))
def test_percent_says_empty_full_and_over_capacity_exactly(
    capacity: int, step: int, share: float
) -> None:
    count = round(share * capacity)
    percent = coarse_percent(count, capacity, step)
    assert (percent == 0) == (count == 0)
    assert (percent == 100) == (count == capacity)
    assert (percent > 100) == (count > capacity)
    assert percent == 100 or percent % step == 0


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


def test_a_count_saved_with_a_larger_capacity_starts_at_twice_the_new_one() -> None:
    """The node moved from a 30-place shuttle to an 8-place truck (or the room was
    re-rated) with 40 counted: the count is never above twice the capacity, from the start."""
    node, service, _ = make(capacity=30)
    service.add(40, "tap")
    _, again, counted = make(TestHost(state=node.state), capacity=8)
    assert again.count == 16 and counted.snapshot() == {"occupancy.overflow": 24}
    again.add(1, "tap")
    assert again.count == 16


def test_every_change_publishes_occupancy() -> None:
    node, service, _ = make()
    service.add(1, "tap")
    service.add(-1, "tap")
    assert [b.count for b in node.bodies("occupancy")] == [1, 0]


def test_end_of_trip_without_a_grace_resets_to_zero_at_once_and_says_so_on_the_bus() -> None:
    node, service, _ = make(trip_end_grace_s=0)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    assert service.count == 0 and service.entries == 0
    assert len(node.of_type(OccupancyReset)) == 1


GRACE_S = 0.05


async def test_end_of_trip_resets_to_zero_once_its_grace_passes_with_no_trip_started() -> None:
    node, service, _ = make(trip_end_grace_s=GRACE_S)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    assert service.count == 4, "not before the grace"
    await asyncio.sleep(3 * GRACE_S)
    assert service.count == 0 and len(node.of_type(OccupancyReset)) == 1


async def test_a_trip_started_within_the_grace_keeps_the_riders_on_board() -> None:
    # a stop-start engine stopped past ignition_off_after_s at a stop: the trip ends, the
    # engine starts again and opens the next one, with the same riders aboard
    node, service, counted = make(trip_end_grace_s=GRACE_S)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    node.emit(TripStarted("t2", "ignition"))
    await asyncio.sleep(3 * GRACE_S)
    assert service.count == 4 and node.of_type(OccupancyReset) == []
    assert counted.snapshot()["occupancy.trip_end_reset_called_off"] == 1


async def test_a_reset_by_ops_within_the_grace_is_not_undone_by_the_trip_end() -> None:
    node, service, _ = make(trip_end_grace_s=GRACE_S)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    await service.command_reset({"count": 3})
    await asyncio.sleep(3 * GRACE_S)
    assert service.count == 3


async def test_a_second_trip_end_within_the_grace_resets_once_after_its_own_grace() -> None:
    node, service, _ = make(trip_end_grace_s=GRACE_S)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    node.emit(TripStarted("t2", "command"))
    node.emit(TripEnded(Trip.model_construct()))
    await asyncio.sleep(3 * GRACE_S)
    assert service.count == 0 and len(node.of_type(OccupancyReset)) == 1


async def test_riders_boarding_within_the_grace_stay_counted_by_the_trip_end_reset() -> None:
    # the trip ends at the terminus (engine off), the next run's riders board while the
    # driver waits with the engine off: the reset drops the last trip's count, not them
    node, service, _ = make(trip_end_grace_s=GRACE_S)
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    service.add(3, "tap")
    await asyncio.sleep(3 * GRACE_S)
    assert service.count == 3 and len(node.of_type(OccupancyReset)) == 1


async def test_the_last_trips_riders_leaving_within_the_grace_do_not_uncount_new_ones() -> None:
    node, service, _ = make(count_from=["beams"], trip_end_grace_s=GRACE_S)
    for _ in range(10):  # 8 really aboard: two crossings missed on the way out earlier
        cross(node, "in")
    node.emit(TripEnded(Trip.model_construct()))
    for d in ["out"] * 8 + ["in"] * 5:
        cross(node, d)
    await asyncio.sleep(3 * GRACE_S)
    assert service.count == 5


async def test_a_trip_end_reset_pending_when_the_node_stops_is_done_at_its_next_start() -> None:
    # the Pi is powered with the ignition: the key turned off ends the trip, and the node
    # is off before the grace is over; the riders are long gone when it starts again
    node, service, _ = make(trip_end_grace_s=GRACE_S, reset_at="never")
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    again_node, again, _ = make(
        TestHost(state=node.state), trip_end_grace_s=GRACE_S, reset_at="never"
    )
    await again.run()
    assert again.count == 0 and len(again_node.of_type(OccupancyReset)) == 1


async def test_a_trip_end_pending_at_a_restart_is_done_when_a_trip_starts_first() -> None:
    # the engine started (the Pi booted with the key) before the service looked: how long the
    # node was off is not known, so the trip is not taken for the same riders' next one
    node, service, _ = make(trip_end_grace_s=GRACE_S, reset_at="never")
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    again_node, again, _ = make(
        TestHost(state=node.state), trip_end_grace_s=GRACE_S, reset_at="never"
    )
    again_node.emit(TripStarted("t2", "ignition"))
    assert again.count == 0


async def test_a_restart_within_the_grace_on_a_trusted_clock_leaves_it_to_a_trip() -> None:
    # `config.set` restarts the node at a stop where a stop-start engine ended the trip
    at = datetime(2026, 11, 25, 10, 0, tzinfo=PARIS)
    clock, node = on_clock(at)
    _, service, _ = make(node, trip_end_grace_s=600, reset_at="never")
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    clock.t += timedelta(seconds=20)
    again_node = TestHost(state=node.state, clock=clock)
    _, again, _ = make(again_node, trip_end_grace_s=600, reset_at="never")
    await again.run()
    assert again.count == 4, "not before the grace is over"
    again_node.emit(TripStarted("t2", "ignition"))
    assert again._trip_end_reset is None and again.count == 4


async def test_a_reset_by_ops_after_a_restart_is_not_undone_by_the_trip_end_pending() -> None:
    node, service, _ = make(trip_end_grace_s=GRACE_S, reset_at="never")
    service.add(4, "tap")
    node.emit(TripEnded(Trip.model_construct()))
    _, again, _ = make(TestHost(state=node.state), trip_end_grace_s=GRACE_S, reset_at="never")
    await again.command_reset({"count": 3})
    await again.run()
    assert again.count == 3


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


# -- the daily reset on a simulated clock -------------------------------------------------


class SimClock(Clock):
    """The node's clock at a wall time the test moves, trusted (NTP) or not."""

    def __init__(self, at: datetime, *, trusted: bool = True) -> None:
        super().__init__(kernel_synced=lambda: False)
        self.t = at.astimezone(UTC)
        self.trusted = trusted

    @property
    def source(self) -> ClockSource:
        return ClockSource.NTP if self.trusted else ClockSource.UNSYNCED

    def now(self) -> tuple[int, ClockSource]:
        return int(self.t.timestamp() * 1000), self.source


def on_clock(at: datetime, *, trusted: bool = True, zone: str = "Europe/Paris", **saved: Any):
    """A node whose clock reads `at`, with the occupancy it saved (if any)."""
    clock = SimClock(at, trusted=trusted)
    state = {"occupancy": saved} if saved else None
    return clock, TestHost(state=state, clock=clock, timezone=zone)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class Sim:
    """The service's loop run on simulated time: each sleep moves the clock, nothing waits."""

    def __init__(self, service: OccupancyService, clock: SimClock) -> None:
        self.service, self.clock = service, clock
        self.resets: list[datetime] = []
        service.host.bus.subscribe(OccupancyReset, lambda _: self.resets.append(clock.t))
        self.task: asyncio.Task[None] | None = None

        async def sleep(seconds: float) -> None:
            clock.t += timedelta(seconds=seconds)
            await asyncio.sleep(0)

        service._sleep = sleep

    async def until(self, end: datetime) -> list[datetime]:
        if self.task is None:
            self.task = asyncio.create_task(self.service.run())
        idle = 0
        while self.clock.t < end and not self.task.done() and idle < 1000:
            before = self.clock.t
            await asyncio.sleep(0)
            idle = idle + 1 if self.clock.t == before else 0  # a loop not sleeping on it
        return self.resets

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def sims() -> Any:
    running: list[Sim] = []

    def start(service: OccupancyService, clock: SimClock) -> Sim:
        sim = Sim(service, clock)
        running.append(sim)
        return sim

    yield start
    for sim in running:
        await sim.stop()


PARKED = datetime(2026, 11, 24, 21, 0, tzinfo=PARIS)
YESTERDAY = {"count": 9, "entries": 40, "exits": 31, "reset_at": ms(PARKED)}


async def test_a_daily_reset_missed_while_the_node_was_off_is_made_up_at_start(sims: Any) -> None:
    """Parked at 21:00 with 9 counted, off through 03:00, powered again at 06:30."""
    clock, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    await sims(service, clock).until(clock.t + timedelta(seconds=1))
    assert service.count == 0 and (service.entries, service.exits) == (0, 0)
    assert node.bodies("occupancy")[0].count == 0  # yesterday's count is never published


async def test_no_reset_is_made_up_when_none_fell_since_the_last(sims: Any) -> None:
    clock, node = on_clock(datetime(2026, 11, 25, 2, 0, tzinfo=PARIS), **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    sim = sims(service, clock)
    await sim.until(datetime(2026, 11, 25, 2, 59, tzinfo=PARIS))
    assert service.count == 9 and node.bodies("occupancy")[0].count == 9
    resets = await sim.until(datetime(2026, 11, 25, 3, 10, tzinfo=PARIS))
    assert [r.astimezone(PARIS).strftime("%H:%M") for r in resets] == ["03:00"]


async def test_a_missed_reset_waits_for_a_trusted_clock(sims: Any) -> None:
    clock, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), trusted=False, **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    sim = sims(service, clock)
    await sim.until(clock.t + timedelta(minutes=10))
    assert service.count == 9  # an unsynced Pi may be hours off: no reset on a guess
    clock.trusted = True  # GPS gave the time
    await sim.until(clock.t + timedelta(minutes=2))
    assert service.count == 0 and len(sim.resets) == 1


async def test_riders_counted_before_the_clock_was_trusted_are_kept_by_the_made_up_reset(
    sims: Any,
) -> None:
    clock, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), trusted=False, **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    sim = sims(service, clock)
    await sim.until(clock.t + timedelta(seconds=30))
    service.add(3, "tap")  # three board
    service.add(-1, "tap")  # one of them, or a phantom of yesterday, gets off
    clock.trusted = True
    await sim.until(clock.t + timedelta(minutes=2))
    assert (service.count, service.entries, service.exits) == (2, 3, 1)


async def test_a_last_reset_stamped_by_an_untrusted_clock_makes_up_nothing(sims: Any) -> None:
    saved = YESTERDAY | {"due_after": None}  # the trip ended while the clock was a guess
    clock, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), **saved)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    sim = sims(service, clock)
    await sim.until(datetime(2026, 11, 26, 2, 0, tzinfo=PARIS))
    assert service.count == 9
    resets = await sim.until(datetime(2026, 11, 26, 3, 10, tzinfo=PARIS))
    assert len(resets) == 1 and service.count == 0  # the next one is kept


async def test_a_reset_made_up_after_a_restart_is_not_made_up_again(sims: Any) -> None:
    clock, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    await sims(service, clock).until(clock.t + timedelta(seconds=1))
    service.add(4, "tap")
    clock.t += timedelta(hours=1)
    again_node = TestHost(state=node.state, clock=clock)
    _, again, _ = make(again_node, capacity=30, reset_at="03:00")
    await sims(again, clock).until(clock.t + timedelta(seconds=1))
    assert again.count == 4 and again_node.of_type(OccupancyReset) == []


async def test_no_daily_reset_while_the_clock_is_not_trusted(sims: Any) -> None:
    clock, node = on_clock(datetime(2026, 11, 25, 2, 0, tzinfo=PARIS), trusted=False, **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    resets = await sims(service, clock).until(datetime(2026, 11, 25, 4, 0, tzinfo=PARIS))
    assert resets == [] and service.count == 9


def test_a_saved_occupancy_from_before_due_after_makes_up_from_its_last_reset() -> None:
    _, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), **YESTERDAY)
    _, service, _ = make(node, reset_at="03:00")
    assert service.due_after == ms(PARKED)


@pytest.mark.parametrize("junk", ["soon", [1], {"x": 1}, 1e400])
def test_an_unreadable_saved_reset_reference_counts_from_zero(junk: Any) -> None:
    _, node = on_clock(datetime(2026, 11, 25, 6, 30, tzinfo=PARIS), **YESTERDAY, due_after=junk)
    _, service, _ = make(node, reset_at="03:00")
    assert service.count == 0


# Exactly one reset per local date, where the reset time is skipped (spring) or happens
# twice (autumn), in both hemispheres.
DST_DAYS = [
    ("Europe/Helsinki", (2026, 3, 29), "03:30"),  # 03:00-04:00 does not exist
    ("Europe/Helsinki", (2026, 10, 25), "03:30"),  # 03:00-04:00 twice
    ("Europe/Paris", (2026, 3, 29), "02:30"),
    ("Europe/Paris", (2026, 10, 25), "02:30"),
    ("America/New_York", (2026, 3, 8), "02:30"),
    ("America/New_York", (2026, 11, 1), "01:30"),
    ("Australia/Sydney", (2026, 4, 5), "02:30"),  # 02:00-03:00 twice
    ("Australia/Sydney", (2026, 10, 4), "02:30"),  # 02:00-03:00 does not exist
]


@pytest.mark.parametrize(("zone", "day", "reset_at"), DST_DAYS)
async def test_exactly_one_daily_reset_per_local_date_across_dst(
    sims: Any, zone: str, day: tuple[int, int, int], reset_at: str
) -> None:
    tz = ZoneInfo(zone)
    clock, node = on_clock(datetime(*day, tzinfo=tz) - timedelta(days=1), zone=zone)
    _, service, _ = make(node, capacity=30, reset_at=reset_at)
    resets = await sims(service, clock).until(clock.t + timedelta(days=3))
    dates = [r.astimezone(tz).date() for r in resets]
    assert len(resets) == 3 and len(set(dates)) == 3, [r.astimezone(tz) for r in resets]


@pytest.mark.parametrize(
    ("zone", "day", "reset_at", "utc"),
    [
        ("Europe/Helsinki", (2026, 10, 25), "03:30", (0, 30)),  # 03:30 summer time, +3
        ("Europe/Paris", (2026, 10, 25), "02:30", (0, 30)),
        ("America/New_York", (2026, 11, 1), "01:30", (5, 30)),
        ("Australia/Sydney", (2026, 4, 5), "02:30", (15, 30)),  # the day before in UTC
    ],
)
def test_a_reset_time_that_happens_twice_resets_at_the_first(
    zone: str, day: tuple[int, int, int], reset_at: str, utc: tuple[int, int]
) -> None:
    tz = ZoneInfo(zone)
    _, service, _ = make(TestHost(timezone=zone), reset_at=reset_at)
    due = service.next_reset(datetime(*day, tzinfo=tz))
    assert due is not None and (due.astimezone(UTC).hour, due.astimezone(UTC).minute) == utc
    for later in (40, 60):  # the repeated hour again: 20 min before reset_at, then at it
        again = (due.astimezone(UTC) + timedelta(minutes=later)).astimezone(tz)
        after = service.next_reset(again)
        assert after is not None and after.astimezone(tz).date() > due.astimezone(tz).date()


def test_a_reset_time_the_clocks_skip_resets_just_after_the_gap() -> None:
    _, service, _ = make(reset_at="02:30")
    due = service.next_reset(datetime(2026, 3, 29, 0, 0, tzinfo=PARIS))
    assert due is not None and due.astimezone(PARIS).strftime("%d %H:%M %Z") == "29 03:30 CEST"


async def test_daily_resets_resume_after_a_clock_that_ran_a_year_ahead_is_set_right(
    sims: Any,
) -> None:
    """A spoofed GPS time or a bad NTP server puts the clock a year ahead; a daily reset is
    stamped then. Once the clock is right again, the next nights still reset."""
    clock, node = on_clock(datetime(2026, 11, 25, 2, 0, tzinfo=PARIS), **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    sim = sims(service, clock)
    await sim.until(datetime(2026, 11, 25, 3, 10, tzinfo=PARIS))
    clock.t += timedelta(days=365)  # the clock steps a year ahead...
    await sim.until(clock.t + timedelta(days=1))
    clock.t -= timedelta(days=365)  # ...and back to the true time
    before = len(sim.resets)
    resets = await sim.until(clock.t + timedelta(days=2))
    assert len(resets) - before == 2, [r.astimezone(PARIS) for r in resets[before:]]


async def test_a_clock_set_back_minutes_across_the_reset_does_not_reset_twice(
    sims: Any,
) -> None:
    clock, node = on_clock(datetime(2026, 11, 25, 2, 0, tzinfo=PARIS), **YESTERDAY)
    _, service, _ = make(node, capacity=30, reset_at="03:00")
    sim = sims(service, clock)
    await sim.until(datetime(2026, 11, 25, 3, 10, tzinfo=PARIS))
    clock.t -= timedelta(minutes=20)  # NTP corrects a clock 20 minutes fast
    resets = await sim.until(datetime(2026, 11, 25, 4, 0, tzinfo=PARIS))
    assert len(resets) == 1


async def test_a_stop_start_engine_stopped_at_a_stop_keeps_the_count_through_the_trips() -> None:
    # the real vehicle service reads the ignition from engine speed: 0 rpm for longer than
    # ignition_off_after_s ends the trip, the engine starting again opens the next one
    from edged.config.services import TripServiceConfig, VehicleServiceConfig
    from edged.services.vehicle import VehicleService
    from tests.edged.services.test_vehicle import CanFeed

    node = TestHost()
    vehicle = VehicleService(node, VehicleServiceConfig(), TripServiceConfig())
    _, occupancy, _ = make(node, trip_end_grace_s=GRACE_S * 4)
    bus = CanFeed(vehicle)
    bus.engine(800)
    occupancy.add(12, "tap")
    bus.engine(0)  # at the stop, riders boarding, the engine stopped by itself
    vehicle.check_ignition(now=vehicle._engine_running_at + 31)  # type: ignore[operator]
    assert vehicle.trips.trip is None, "the first trip ended"
    occupancy.add(2, "tap")
    bus.engine(800)  # off again
    assert vehicle.trips.trip is not None, "the next trip opened"
    await asyncio.sleep(8 * GRACE_S)
    assert occupancy.count == 14 and node.of_type(OccupancyReset) == []


async def test_a_rider_standing_in_the_beams_past_max_transit_s_then_boarding_is_counted(
    pins: MockFactory,
) -> None:
    """The real GPIO driver on mock pins, the real service: a rider stops on both beams
    (paying the driver on the step, a walker, a pram lifted up) longer than max_transit_s,
    then boards. The stuck report goes to health; the rider is on board."""
    node, service, counted = make(count_from=["beams"])
    beams = [{"door": "front", "outer": 20, "inner": 21, "min_block_s": 0.005}]
    gpio = SupervisedBoard(node, beams=[{**beams[0], "max_transit_s": 0.1}])
    outer, inner = pins.pin(20), pins.pin(21)
    outer.drive_low()
    inner.drive_low()
    try:
        await gpio.start()
        outer.drive_high()
        await asyncio.sleep(0.02)
        inner.drive_high()
        await wait_until(
            lambda: any(k.endswith("beam_stuck") for k in counted.snapshot()), 1, "a stuck report"
        )
        outer.drive_low()
        await asyncio.sleep(0.02)
        inner.drive_low()
        await wait_until(lambda: service.count == 1, 1, "the rider counted")
        assert node.bodies("occupancy")[-1].count == 1
    finally:
        await gpio.stop()


async def _walk(outer: Any, inner: Any, direction: str, step_s: float = 0.02) -> None:
    first, second = (outer, inner) if direction == "in" else (inner, outer)
    for pin, drive in ((first, "high"), (second, "high"), (first, "low"), (second, "low")):
        getattr(pin, f"drive_{drive}")()
        await asyncio.sleep(step_s)


async def test_beams_behind_a_closed_door_count_no_one_and_tell_ops(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venue: the door contact and the beams of one door (config/venue.toml), the real
    GPIO driver on mock pins, the real service. Someone inside waves a hand through the
    beams while the door is shut: nobody went through it, and the room must not fill up
    (a full venue refuses its booked providers at the door). Walks the door was open for,
    even for a moment of them (the door shutting behind a rider still on the beams, a
    rider crossing the beams to the handle), count."""
    from drivers.gpio import board

    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.2, raising=False)
    node, service, counted = make(count_from=["beams"], capacity=3)
    door, outer, inner = pins.pin(17), pins.pin(20), pins.pin(21)
    door.drive_low()  # closed: a reed contact to ground, the pull-up
    outer.drive_low()
    inner.drive_low()
    gpio = SupervisedBoard(
        node,
        doors=[{"name": "entrance", "pin": 17}],
        beams=[{"door": "entrance", "outer": 20, "inner": 21, "min_block_s": 0.005}],
    )

    def dropped() -> int:
        return sum(n for k, n in counted.snapshot().items() if k.endswith("beam_door_closed"))

    try:
        await gpio.start()
        for _ in range(4):  # four sweeps "in": the room would be full
            await _walk(outer, inner, "in")
        await wait_until(lambda: dropped() == 4, 1.5, "four walks judged")
        assert service.count == 0 and not service.full
        door.drive_high()  # opened
        await _walk(outer, inner, "in")
        await wait_until(lambda: service.count == 1, 0.5, "the one who came in")
        outer.drive_high()
        inner.drive_high()
        await asyncio.sleep(0.03)
        door.drive_low()  # shut behind the next one, still on the beams
        await asyncio.sleep(0.1)
        outer.drive_low()
        await asyncio.sleep(0.03)
        inner.drive_low()
        await wait_until(lambda: service.count == 2, 1, "the one the door shut behind")
        await asyncio.sleep(0.35)  # past the grace
        await _walk(outer, inner, "out")  # to the handle, then the door opens
        await asyncio.sleep(0.05)
        door.drive_high()
        await wait_until(lambda: service.count == 1, 1, "the one who left")
        assert dropped() == 4
    finally:
        await gpio.stop()


async def test_a_rider_who_pushes_the_door_open_as_its_contact_chatters_is_counted(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venue, the real GPIO driver on mock pins, the real service: a rider crosses the
    beams to the handle and pushes the door open slowly within the grace; the reed, at its
    threshold, makes and breaks for a while before it stays open, so the contact's report
    comes later than a debounce after the opening began. The walk waits for it, and counts;
    the door's opening is dated when it began, well within the grace."""
    from drivers.gpio import board

    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.4, raising=False)
    node, service, counted = make(count_from=["beams"], capacity=3)
    door, outer, inner = pins.pin(17), pins.pin(20), pins.pin(21)
    for pin in (door, outer, inner):
        pin.drive_low()
    gpio = SupervisedBoard(
        node,
        doors=[{"name": "entrance", "pin": 17, "bounce_s": 0.2}],
        beams=[{"door": "entrance", "outer": 20, "inner": 21, "min_block_s": 0.005}],
    )
    try:
        await gpio.start()
        service.add(1, "command")  # someone inside, who leaves
        await _walk(outer, inner, "out", step_s=0.01)
        await asyncio.sleep(0.05)  # the beams cleared some 0.06 s ago: to the handle
        for _ in range(30):  # 0.6 s of a reed making and breaking, then open
            door.drive_high()
            await asyncio.sleep(0.01)
            door.drive_low()
            await asyncio.sleep(0.01)
        door.drive_high()
        await wait_until(lambda: service.count == 0, 1.5, "the one who left")
        assert not any(k.endswith("beam_door_closed") for k in counted.snapshot())
    finally:
        await gpio.stop()


async def test_a_hand_waved_through_the_beams_fills_the_count_to_twice_the_capacity_at_most(
    pins: MockFactory,
) -> None:
    """A rider sweeps an arm through the beams, outer to inner, again and again, to make
    the shuttle look full (its doors are on the CAN bus, which has not said a word: nothing
    gates the beams, test_occupancy_can_doors.py for a bus that speaks). The
    count stops at twice the capacity, which no vehicle holds, and ops see the rest."""
    node, service, counted = make(count_from=["beams"], capacity=3)
    outer, inner = pins.pin(20), pins.pin(21)
    outer.drive_low()
    inner.drive_low()
    gpio = SupervisedBoard(
        node, beams=[{"door": "rear", "outer": 20, "inner": 21, "min_block_s": 0.002}]
    )
    try:
        await gpio.start()
        for _ in range(9):
            await _walk(outer, inner, "in", step_s=0.006)
        await wait_until(lambda: counted.snapshot().get("occupancy.overflow") == 3, 1, "three over")
        assert service.count == 6 and service.entries == 6
        assert node.bodies("occupancy")[-1].count == 6
        await _walk(outer, inner, "out", step_s=0.006)  # and the real ones still count
        await wait_until(lambda: service.count == 5, 1, "one out")
    finally:
        await gpio.stop()


def test_the_count_stops_at_twice_the_capacity_whatever_counts_in() -> None:
    node, service, counted = make(count_from=["taps"], capacity=2)
    for _ in range(3):
        node.emit(AccessDecided("entry", 2))
    assert service.count == 4 and counted.snapshot()["occupancy.overflow"] == 2

"""How many people are on board or inside: `occupancy`, retained, for dispatch and the kiosk.

Counted from granted taps, from the counting beams' crossings, and from door openings
where a door is configured to count; which sources count is config, because one person
crossing the beams after tapping must not count twice. The count never goes below zero (a
missed entry then an exit is noise, not a negative bus): the exit is counted in `health`
as `occupancy.underflow`. Nor above twice the capacity (`ceiling`: no vehicle or room
holds that; the most `occupancy.reset` takes too): an entry beyond is a counting fault or
a hand waved through the beams again and again to make the vehicle look full, counted
`occupancy.overflow` with a warning, so the drift is bounded and ops see it; so is a
count saved with a larger capacity (the node moved to a smaller vehicle, a room re-rated)
at the start. Published as
the count, the capacity, a percentage rounded to `percent_step` (never across empty, full
or over capacity: `coarse_percent`) and the GTFS-Realtime OccupancyStatus — numbers,
never who.

Reset to zero at the end of a trip, every day at `reset_at` (local time) to undo the day's
drift, and by `occupancy.reset`. The count survives a restart.

The reset at a trip's end waits `trip_end_grace_s` and is called off by a trip that starts
meanwhile: with the ignition read from engine speed, an engine stopped for
`ignition_off_after_s` (a stop-start engine at a long stop, a key turned at a level
crossing) ends the trip with riders aboard, and the next start of the engine opens a new
one. Any other reset meanwhile (daily, ops') calls it off too: it is the newer count. When
it comes, those who boarded since the trip's end stay counted (the next run's riders,
boarding at the terminus while the driver waits with the engine off), less the exits since
beyond the last trip's count. A reset pending when the daemon stops is kept with the count:
at the next start it waits what is left of the grace when the node's clock, trusted at the
trip's end and now, says how long ago that was; otherwise it is done at once (a Pi powered
with the ignition is off from the key's turn until the next morning), or when a trip starts
before the service looked.

The daily reset is once per local date, at the first occurrence of `reset_at` when the
clocks go back (the repeated hour is not reset again) and just after the gap when they go
forward (02:30 that does not exist is 03:30 summer time). It is judged on the node's clock
(`host.clock`: NTP, else GPS time) and only while that clock is trusted: an unsynced Pi's
clock can be hours off, and a reset then would zero a bus full of riders. A reset missed
while the node was off, or while its clock was not trusted, is made up at the first
trusted look: the count is zeroed if a `reset_at` fell between the last reset and now.
What was counted since this start is kept then (riders who boarded in the minute before
GPS gave the time are on board); only the count carried over from before is dropped. A
last reset stamped on an untrusted clock cannot say whether a `reset_at` was missed:
none is made up then, the next one is kept.

Taps come as the access service's `AccessDecided`, trip ends as `TripEnded`; the count
goes on the bus as `OccupancyChanged` (trips, access at capacity, the kiosk's gauge), a
reset as `OccupancyReset`.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.driver import DriverReady
from core.events import (
    COUNT_DOUBTS,
    CountDoubt,
    CountDoubtName,
    CountDoubtsHeld,
    Crossing,
    DoorInput,
)
from core.logs import flood_key
from edged.clock import ClockSource
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.config.access import OccupancyServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import Occupancy
from edged.services.base import Service
from edged.services.events import (
    AccessDecided,
    OccupancyChanged,
    OccupancyReset,
    TripEnded,
    TripStarted,
)
from edged.topics import OCCUPANCY

log = logging.getLogger(__name__)

STATE_KEY = "occupancy"
UNTRUSTED_RECHECK_S = 60.0
"""How often the daily reset looks again at a clock that is not trusted yet."""
AHEAD_MS = 86_400_000
"""A last reset stamped more than this after the trusted time now was stamped by a wrong
clock: daily resets count from now, not from that date (see `_reset_if_due`)."""
Source = Literal["tap", "beam", "door", "command"]


def _doubts(saved: Any) -> set[tuple[str, CountDoubtName]]:
    """The doubts kept in the state; what is not a known finding of a door is dropped
    (not the count with it: the beams say their findings again)."""
    if not isinstance(saved, list):
        return set()
    kept: set[tuple[str, CountDoubtName]] = set()
    for item in saved:
        if (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[1] in COUNT_DOUBTS
        ):
            kept.add((item[0], item[1]))
    return kept


def coarse_percent(count: int, capacity: int, step: int) -> int:
    """`count / capacity` in percent, to the nearest multiple of `step` (halves up), so one
    person boarding does not show — but never rounded across empty, full or over capacity:
    0 only when no one is aboard, 100 exactly when full, a step below 100 at most while
    places are left, and a step above 100 at least when over capacity (GTFS-Realtime's
    `occupancy_percentage` may exceed 100). Dispatch reads 0 % as an empty bus and 100 % as
    one to send a second vehicle for."""
    if count <= 0:
        return 0
    if count == capacity:
        return 100
    nearest = step * ((200 * count + step * capacity) // (2 * step * capacity))
    if count < capacity:
        return min(max(step, nearest), (99 // step) * step)
    return max(nearest, (100 // step + 1) * step)


class OccupancyService(Service):
    def __init__(self, host: Host, config: OccupancyServiceConfig) -> None:
        super().__init__(host)
        self.config = config
        self.zone = ZoneInfo(host.node.timezone)
        self.capacity = config.capacity
        self.count = 0
        self.entries = 0
        self.exits = 0
        self.reset_at_ms, source = host.clock.now()
        self.due_after: int | None = (
            self.reset_at_ms if source is not ClockSource.UNSYNCED else None
        )
        """UTC ms after which a daily reset not done is made up; None: not known (the last
        reset was stamped by an untrusted clock) until the first trusted look."""
        self._restored_end: tuple[int, bool, int] | None = None  # (UTC ms, trusted, entries)
        self.doubts: set[tuple[str, CountDoubtName]] = set()
        """(door, finding) of the counting beams while they last (`CountDoubt`), kept across
        a restart: the beams take them as found when their driver starts."""
        self._trip_end_at: tuple[int, bool] = (0, False)  # when the pending one's trip ended
        saved = host.state.get(STATE_KEY)
        if isinstance(saved, dict):
            try:
                self.count = max(0, int(saved["count"]))
                self.entries = max(0, int(saved["entries"]))
                self.exits = max(0, int(saved["exits"]))
                self.reset_at_ms = int(saved["reset_at"])
                # saved before `due_after` existed: the last reset, as it was then
                after = saved.get("due_after", self.reset_at_ms)
                self.due_after = None if after is None else int(after)
                self.doubts = _doubts(saved.get("doubt"))
                end = saved.get("trip_end")  # a trip-end reset pending when it stopped
                if isinstance(end, dict):
                    self._restored_end = (int(end["at"]), bool(end["trusted"]), int(end["entries"]))
            except (KeyError, TypeError, ValueError, OverflowError):
                self.count = self.entries = self.exits = 0
                self._restored_end = None
                self.doubts = set()
                log.warning("the saved occupancy is unreadable; counting from zero")
        if self.count > self.ceiling:  # saved with a larger capacity (another vehicle, room)
            log.warning(
                "occupancy: the saved count %d is above twice the capacity now (%d): counted "
                "as %d (occupancy.overflow)",
                self.count,
                self.ceiling,
                self.ceiling,
            )
            host.counters.inc("occupancy.overflow", self.count - self.ceiling)
            self.count = self.ceiling
        self._baseline = (self.entries, self.exits)  # counted before this start, or reset
        self._looked = False  # the daily reset has looked at a trusted clock in this run
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests simulate time
        self._doors_open: dict[str, bool] = {}
        bus = host.bus
        if "beams" in config.count_from:
            bus.subscribe(Crossing, self.on_crossing)
            bus.subscribe(CountDoubt, self.on_doubt)
            bus.subscribe(DriverReady, self._tell_doubts)
        else:
            self.doubts = set()  # the beams no longer count: their findings do not matter
        if config.door_cycles:
            bus.subscribe(DoorInput, self.on_door)
        if "taps" in config.count_from:
            bus.subscribe(AccessDecided, self.on_access)
        bus.subscribe(TripEnded, self.on_trip_end)
        bus.subscribe(TripStarted, self.on_trip_start)
        self._trip_end_reset: asyncio.TimerHandle | None = None
        self._trip_end_entries = 0  # `entries` when the trip ended
        bus.emit(OccupancyChanged(self.count, self.capacity, doubt=self.doubt()))

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("occupancy.reset", self.command_reset)]

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.count >= self.capacity

    # -- counting ---------------------------------------------------------------------

    def on_access(self, event: AccessDecided) -> None:
        self.add(event.delta, "tap")

    def on_crossing(self, event: Crossing) -> None:
        self.add(1 if event.direction == "in" else -1, "beam")

    def on_door(self, event: DoorInput) -> None:
        was_open = self._doors_open.get(event.door)
        self._doors_open[event.door] = event.open
        direction = self.config.door_cycles.get(event.door)
        if direction is not None and event.open and was_open is False:
            self.add(1 if direction == "in" else -1, "door")

    def on_doubt(self, event: CountDoubt) -> None:
        """A finding of the counting beams began or cleared: `doubt` says so at once, in the
        retained message too."""
        key = (event.door, event.finding)
        if event.doubted == (key in self.doubts):
            return
        if event.doubted:
            self.doubts.add(key)
        else:
            self.doubts.discard(key)
        self._changed(0)

    def _tell_doubts(self, _event: DriverReady) -> None:
        """A driver (re)started: the GPIO driver's beams take the doubts held as found (and
        clear at once those not so now). Every driver's ready: taking them is idempotent."""
        if self.doubts:
            self.host.bus.emit(CountDoubtsHeld(tuple(sorted(self.doubts))))

    def doubt(self) -> tuple[CountDoubtName, ...]:
        """The findings that make the count doubtful, by name, each once, sorted."""
        return tuple(sorted({finding for _, finding in self.doubts}))

    @property
    def ceiling(self) -> int:
        """The most the count can be: twice the capacity (no vehicle or room holds that),
        the same bound as `occupancy.reset`'s."""
        return 2 * self.capacity if self.capacity else 100_000

    def add(self, delta: int, source: Source) -> None:
        if delta == 0:
            return
        boarded = 0
        if delta > 0:
            boarded = min(delta, max(0, self.ceiling - self.count))
            if boarded < delta:
                self.host.counters.inc("occupancy.overflow", delta - boarded)
                log.warning(
                    "occupancy: %d counted in (%s) beyond twice the capacity (%d), not counted: "
                    "a counting fault, or someone waving through the beams? (occupancy.overflow)",
                    delta - boarded,
                    source,
                    self.ceiling,
                    extra=flood_key("occupancy.overflow"),
                )
                if boarded == 0:
                    return
            self.count += boarded
            self.entries += boarded
        else:
            out = min(-delta, self.count)
            if out < -delta:
                self.host.counters.inc("occupancy.underflow", -delta - out)
            self.count -= out
            self.exits += out
        self._changed(boarded)

    def reset(
        self, count: int = 0, *, entries: int = 0, exits: int = 0, since_start: bool = False
    ) -> None:
        """Set the count back to `count`; `since_start`: those are the ones counted since
        this start (a made-up daily reset) or since the trip's end (its reset after the
        grace), the access service keeps only those it saw enter in this run inside."""
        self._call_off_trip_end_reset()
        self.count = count
        self.entries, self.exits = entries, exits
        self._baseline = (0, 0)
        self.reset_at_ms, source = self.host.clock.now()
        self.due_after = self.reset_at_ms if source is not ClockSource.UNSYNCED else None
        self.host.bus.emit(OccupancyReset(count, since_start and count > 0))
        self._changed(0)

    def _save(self) -> None:
        self.host.state.set(
            STATE_KEY,
            {
                "count": self.count,
                "entries": self.entries,
                "exits": self.exits,
                "reset_at": self.reset_at_ms,
                "due_after": self.due_after,
                "trip_end": self._pending_end(),
                "doubt": [list(d) for d in sorted(self.doubts)],
            },
        )

    def _pending_end(self) -> dict[str, Any] | None:
        """The trip-end reset pending, as kept: scheduled, or restored and not yet looked at."""
        if self._trip_end_reset is not None:
            at, trusted = self._trip_end_at
            return {"at": at, "trusted": trusted, "entries": self._trip_end_entries}
        if self._restored_end is not None:
            at, trusted, entries = self._restored_end
            return {"at": at, "trusted": trusted, "entries": entries}
        return None

    def _changed(self, boarded: int) -> None:
        self._save()
        self.host.bus.emit(OccupancyChanged(self.count, self.capacity, boarded, self.doubt()))
        self.publish()

    # -- reporting --------------------------------------------------------------------

    def status(self) -> str:
        if self.capacity is None:
            return "EMPTY" if self.count == 0 else "NO_DATA_AVAILABLE"
        if self.count == 0:
            return "EMPTY"
        pct = 100 * self.count / self.capacity
        for threshold in self.config.thresholds:
            if pct < threshold.below_pct:
                return threshold.status
        return "FULL"

    def snapshot(self) -> Occupancy:
        percent = None
        if self.capacity is not None:
            percent = coarse_percent(self.count, self.capacity, self.config.percent_step)
        return Occupancy(
            count=self.count,
            capacity=self.capacity,
            percent=percent,
            status=self.status(),
            entries=self.entries,
            exits=self.exits,
            reset_at=self.reset_at_ms,
            doubt=list(self.doubt()) or None,
        )

    def publish(self) -> None:
        self.host.publish(OCCUPANCY, self.snapshot())

    # -- resets -------------------------------------------------------------------------

    def on_trip_end(self, _event: TripEnded) -> None:
        if not self.config.reset_on_trip_end:
            return
        grace = self.config.trip_end_grace_s
        if grace <= 0:
            self.reset()
            return
        self._call_off_trip_end_reset()
        self._restored_end = None  # a newer end
        self._trip_end_entries = self.entries
        at_ms, source = self.host.clock.now()
        self._trip_end_at = (at_ms, source is not ClockSource.UNSYNCED)
        self._trip_end_reset = asyncio.get_running_loop().call_later(grace, self._trip_end_due)
        self._save()  # a restart during the grace does not forget it

    def on_trip_start(self, _event: TripStarted) -> None:
        self._resume_trip_end()
        if self._trip_end_reset is not None:
            log.info(
                "a trip started within %g s of the last one's end: occupancy kept",
                self.config.trip_end_grace_s,
            )
            self.host.counters.inc("occupancy.trip_end_reset_called_off")
            self._call_off_trip_end_reset()
            self._save()

    def _trip_end_due(self) -> None:
        """The trip's end, as of then: who boarded since (the next run's riders, boarding
        while the driver waits with the engine off) stays counted; the exits since are the
        last trip's riders first."""
        self._trip_end_reset = None
        boarded = max(0, self.entries - self._trip_end_entries)
        kept = min(self.count, boarded)
        log.info(
            "occupancy reset: the trip ended %g s ago and none started since; %d who "
            "boarded since kept",
            self.config.trip_end_grace_s,
            kept,
        )
        self.reset(kept, entries=boarded, exits=boarded - kept, since_start=True)

    def _resume_trip_end(self) -> None:
        """A trip-end reset pending when the daemon stopped: what is left of its grace, by
        the node's clock trusted then and now; else due now (how long the node was off is
        not known: a Pi powered with the ignition is off until the key turns again)."""
        if self._restored_end is None:
            return
        at_ms, trusted_then, entries = self._restored_end
        self._restored_end = None
        if not self.config.reset_on_trip_end:
            self._save()
            return
        now_ms, source = self.host.clock.now()
        grace = self.config.trip_end_grace_s
        left = grace - (now_ms - at_ms) / 1000
        self._trip_end_entries = entries
        if trusted_then and source is not ClockSource.UNSYNCED and 0 < left <= grace:
            self._trip_end_at = (at_ms, True)
            self._trip_end_reset = asyncio.get_running_loop().call_later(left, self._trip_end_due)
            return  # a trip starting now calls it off (`on_trip_start`)
        self._trip_end_due()

    def _call_off_trip_end_reset(self) -> None:
        self._restored_end = None  # a newer count (a reset) than the one pending at a stop
        if self._trip_end_reset is not None:
            self._trip_end_reset.cancel()
            self._trip_end_reset = None

    def scheduled(self, day: date) -> datetime | None:
        """The daily reset of local date `day`, aware in the configured zone: the first
        `reset_at` of a day whose clocks go back, the instant just after the gap of a day
        whose clocks go forward (02:30 that never shows is 03:30 summer time)."""
        at = self.config.reset_time
        if at is None:
            return None
        local = datetime(day.year, day.month, day.day, at.hour, at.minute, tzinfo=self.zone)
        return local.astimezone(UTC).astimezone(self.zone)  # fold 0; a gap time normalised

    # Compared in UTC: two datetimes of one zone compare by wall time, fold ignored, so
    # the first 02:30 of a night the clocks go back is "after" the second 02:10.

    def next_reset(self, now: datetime) -> datetime | None:
        """The next daily reset after `now` (aware), in the configured zone."""
        today = now.astimezone(self.zone).date()
        due = self.scheduled(today)
        if due is None or due.astimezone(UTC) > now.astimezone(UTC):
            return due
        return self.scheduled(today + timedelta(days=1))

    def last_reset(self, now: datetime) -> datetime | None:
        """The latest daily reset at or before `now` (aware), in the configured zone."""
        today = now.astimezone(self.zone).date()
        due = self.scheduled(today)
        if due is None or due.astimezone(UTC) <= now.astimezone(UTC):
            return due
        return self.scheduled(today - timedelta(days=1))

    def _now(self) -> tuple[datetime, bool]:
        """The node's wall time, and whether it is trusted (NTP or GPS)."""
        ms, source = self.host.clock.now()
        return datetime.fromtimestamp(ms / 1000, UTC), source is not ClockSource.UNSYNCED

    def _reset_if_due(self, now: datetime) -> bool:
        """Reset if a daily reset fell after the last reset (trusted clock only)."""
        due = self.last_reset(now)
        if due is None:
            return False
        late = not self._looked
        self._looked = True
        if self.due_after is None:  # when the last reset was is a guess: from now on
            self.due_after = int(now.timestamp() * 1000)
            self._save()
            return False
        now_ms = int(now.timestamp() * 1000)
        if self.due_after - now_ms > AHEAD_MS:
            # the last reset was stamped by a clock then more than a day ahead (a spoofed
            # GPS time, a bad NTP server, a wrong saved time): waiting for that date would
            # stop the daily reset for as long; counted from now on instead. A smaller step
            # back keeps its mark, so a reset just done is not done twice.
            log.warning(
                "the last occupancy reset is stamped %s, ahead of the trusted clock: daily "
                "resets counted from now",
                datetime.fromtimestamp(self.due_after / 1000, self.zone).isoformat("T", "minutes"),
            )
            self.due_after = now_ms
            self._save()
        if due.timestamp() * 1000 <= self.due_after:
            return False
        if not late:
            log.info("daily occupancy reset at %s", self.config.reset_at)
            self.reset()
            return True
        entries = max(0, self.entries - self._baseline[0])  # since this start
        exits = max(0, self.exits - self._baseline[1])
        log.info(
            "daily occupancy reset of %s missed (node off or clock not trusted): made up, "
            "%d carried over dropped, %d counted since the start kept",
            due.isoformat(timespec="minutes"),
            self.count,
            max(0, entries - exits),
        )
        self.reset(max(0, entries - exits), entries=entries, exits=exits, since_start=True)
        return True

    async def run(self) -> None:
        self._resume_trip_end()
        if self.config.reset_time is None:
            self.publish()  # the retained state right after a start; nothing is ever due
            return
        first = True
        while True:
            now, trusted = self._now()
            done = trusted and self._reset_if_due(now)
            if first and not done:
                self.publish()  # the retained state right after a start
            first = False
            due = self.next_reset(now) if trusted else None
            # sleep in steps: a clock set by NTP or GPS moves the wall time under us
            wait = UNTRUSTED_RECHECK_S if due is None else (due.timestamp() - now.timestamp())
            await self._sleep(min(300.0, max(0.5, wait)))

    async def command_reset(self, args: dict[str, Any]) -> dict[str, Any]:
        """`occupancy.reset` with an optional `count`, when ops counted by eye."""
        only("occupancy.reset", args, "count")
        count = args.get("count", 0)
        limit = self.ceiling
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= limit:
            raise CommandError("bad_args", f"count must be an integer from 0 to {limit}")
        before = self.count
        self.reset(count)
        return {"count": self.count, "before": before, "reset_at": self.reset_at_ms}

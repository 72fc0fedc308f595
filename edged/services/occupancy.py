"""How many people are on board or inside: `occupancy`, retained, for dispatch and the kiosk.

Counted from granted taps, from the counting beams' crossings, and from door openings
where a door is configured to count; which sources count is config, because one person
crossing the beams after tapping must not count twice. The count never goes below zero (a
missed entry then an exit is noise, not a negative bus): the exit is counted in `health`
as `occupancy.underflow`. Published as the count, the capacity, a percentage rounded to
`percent_step` and the GTFS-Realtime OccupancyStatus — numbers, never who.

Reset to zero at the end of a trip, every day at `reset_at` (local time) to undo the day's
drift, and by `occupancy.reset`. The count survives a restart.

Taps come as the access service's `AccessDecided`, trip ends as `TripEnded`; the count
goes on the bus as `OccupancyChanged` (trips, access at capacity, the kiosk's gauge), a
reset as `OccupancyReset`.
"""

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.events import Crossing, DoorInput
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.config.access import OccupancyServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import Occupancy
from edged.services.base import Service
from edged.services.events import AccessDecided, OccupancyChanged, OccupancyReset, TripEnded
from edged.topics import OCCUPANCY

log = logging.getLogger(__name__)

STATE_KEY = "occupancy"
Source = Literal["tap", "beam", "door", "command"]


class OccupancyService(Service):
    def __init__(self, host: Host, config: OccupancyServiceConfig) -> None:
        super().__init__(host)
        self.config = config
        self.zone = ZoneInfo(host.node.timezone)
        self.capacity = config.capacity
        self.count = 0
        self.entries = 0
        self.exits = 0
        self.reset_at_ms = host.clock.now()[0]
        saved = host.state.get(STATE_KEY)
        if isinstance(saved, dict):
            try:
                self.count = max(0, int(saved["count"]))
                self.entries = max(0, int(saved["entries"]))
                self.exits = max(0, int(saved["exits"]))
                self.reset_at_ms = int(saved["reset_at"])
            except (KeyError, TypeError, ValueError):
                log.warning("the saved occupancy is unreadable; counting from zero")
        self._doors_open: dict[str, bool] = {}
        bus = host.bus
        if "beams" in config.count_from:
            bus.subscribe(Crossing, self.on_crossing)
        if config.door_cycles:
            bus.subscribe(DoorInput, self.on_door)
        if "taps" in config.count_from:
            bus.subscribe(AccessDecided, self.on_access)
        bus.subscribe(TripEnded, self.on_trip_end)
        bus.emit(OccupancyChanged(self.count, self.capacity))

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

    def add(self, delta: int, source: Source) -> None:
        if delta == 0:
            return
        boarded = 0
        if delta > 0:
            self.count += delta
            self.entries += delta
            boarded = delta
        else:
            out = min(-delta, self.count)
            if out < -delta:
                self.host.counters.inc("occupancy.underflow", -delta - out)
            self.count -= out
            self.exits += out
        self._changed(boarded)

    def reset(self, count: int = 0) -> None:
        self.count = count
        self.entries = self.exits = 0
        self.reset_at_ms = self.host.clock.now()[0]
        self.host.bus.emit(OccupancyReset())
        self._changed(0)

    def _changed(self, boarded: int) -> None:
        self.host.state.set(
            STATE_KEY,
            {
                "count": self.count,
                "entries": self.entries,
                "exits": self.exits,
                "reset_at": self.reset_at_ms,
            },
        )
        self.host.bus.emit(OccupancyChanged(self.count, self.capacity, boarded))
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
            step = self.config.percent_step
            percent = int(step * round(100 * self.count / self.capacity / step))
        return Occupancy(
            count=self.count,
            capacity=self.capacity,
            percent=percent,
            status=self.status(),
            entries=self.entries,
            exits=self.exits,
            reset_at=self.reset_at_ms,
        )

    def publish(self) -> None:
        self.host.publish(OCCUPANCY, self.snapshot())

    # -- resets -------------------------------------------------------------------------

    def on_trip_end(self, _event: TripEnded) -> None:
        if self.config.reset_on_trip_end:
            self.reset()

    def next_reset(self, now: datetime) -> datetime | None:
        """The next `reset_at` after `now` (aware), in the configured zone."""
        at = self.config.reset_time
        if at is None:
            return None
        local = now.astimezone(self.zone)
        candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
        if candidate <= local:
            # a calendar day later: the same wall time across a DST change
            candidate = (candidate + timedelta(days=1)).replace(hour=at.hour, minute=at.minute)
        return candidate

    async def run(self) -> None:
        self.publish()  # the retained state right after a start
        while True:
            now = datetime.now(self.zone)
            due = self.next_reset(now)
            if due is None:
                return
            # sleep in steps: a clock set by NTP or GPS moves the wall time under us
            await asyncio.sleep(min(300.0, max(0.5, (due - now).total_seconds())))
            if datetime.now(due.tzinfo) >= due:
                log.info("daily occupancy reset at %s", self.config.reset_at)
                self.reset()

    async def command_reset(self, args: dict[str, Any]) -> dict[str, Any]:
        """`occupancy.reset` with an optional `count`, when ops counted by eye."""
        only("occupancy.reset", args, "count")
        count = args.get("count", 0)
        limit = 2 * self.capacity if self.capacity else 100_000
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= limit:
            raise CommandError("bad_args", f"count must be an integer from 0 to {limit}")
        before = self.count
        self.reset(count)
        return {"count": self.count, "before": before, "reset_at": self.reset_at_ms}

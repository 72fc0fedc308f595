"""How many people are on board or inside: `occupancy`, retained, for dispatch and the kiosk.

Counted from granted taps, from the counting beams' crossings, and from door openings
where a door is configured to count; which sources count is config, because one person
crossing the beams after tapping must not count twice. The count never goes below zero (a
missed entry then an exit is noise, not a negative bus): the exit is counted in `health`
as `occupancy.underflow`. Published as the count, the capacity, a percentage rounded to
`percent_step` and the GTFS-Realtime OccupancyStatus — numbers, never who.

Reset to zero at the end of a trip, every day at `reset_at` (local time) to undo the day's
drift, and by `occupancy.reset`. The count survives a restart.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.events import Crossing, DoorInput
from edged.commands.args import only
from edged.config.access import OccupancyServiceConfig
from edged.errors import CommandError
from edged.payloads import Occupancy
from edged.services.base import NodeApi
from edged.topics import OCCUPANCY

log = logging.getLogger(__name__)

STATE_KEY = "occupancy"
Source = Literal["tap", "beam", "door", "command"]


class OccupancyService:
    def __init__(
        self,
        node: NodeApi,
        config: OccupancyServiceConfig,
        *,
        timezone: str = "Europe/Paris",
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.node = node
        self.config = config
        self.zone = ZoneInfo(timezone)
        self.capacity = config.capacity
        self._count_counter = count or (lambda key, n: None)
        self.on_change: list[Callable[[int, int], None]] = []  # (count, boarded)
        self.on_reset: list[Callable[[], None]] = []
        self.count = 0
        self.entries = 0
        self.exits = 0
        self.reset_at_ms = node.clock.now()[0]
        saved = node.get_state(STATE_KEY)
        if isinstance(saved, dict):
            try:
                self.count = max(0, int(saved["count"]))
                self.entries = max(0, int(saved["entries"]))
                self.exits = max(0, int(saved["exits"]))
                self.reset_at_ms = int(saved["reset_at"])
            except (KeyError, TypeError, ValueError):
                log.warning("the saved occupancy is unreadable; counting from zero")
        self._doors_open: dict[str, bool] = {}
        if "beams" in config.count_from:
            node.subscribe(Crossing, self.on_crossing)
        if config.door_cycles:
            node.subscribe(DoorInput, self.on_door)

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.count >= self.capacity

    @property
    def counts_taps(self) -> bool:
        return "taps" in self.config.count_from

    # -- counting ---------------------------------------------------------------------

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
                self._count_counter("occupancy.underflow", -delta - out)
            self.count -= out
            self.exits += out
        self._changed(boarded)

    def reset(self, count: int = 0) -> None:
        self.count = count
        self.entries = self.exits = 0
        self.reset_at_ms = self.node.clock.now()[0]
        for callback in self.on_reset:
            callback()
        self._changed(0)

    def _changed(self, boarded: int) -> None:
        self.node.set_state(
            STATE_KEY,
            {
                "count": self.count,
                "entries": self.entries,
                "exits": self.exits,
                "reset_at": self.reset_at_ms,
            },
        )
        for callback in self.on_change:
            callback(self.count, boarded)
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
        self.node.publish(OCCUPANCY, self.snapshot())

    # -- resets -------------------------------------------------------------------------

    def on_trip_end(self, _trip: Any) -> None:
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

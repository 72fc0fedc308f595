"""When a vehicle may switch releases: parked (ignition off, no trip open, doors closed and
nobody at them for a while). The switch stops edged for seconds; nobody must be boarding,
tapping or waiting for a door then."""

import time
from collections.abc import Callable

from edged.events import Crossing, DoorInput, Tap, Unlock


class Parked:
    def __init__(
        self,
        subscribe: Callable[[type, Callable[[object], None]], object],
        *,
        idle_s: float,
        ignition: Callable[[], bool | None],
        open_trip: Callable[[], str | None],
        open_doors: Callable[[], list[str]],
    ) -> None:
        self.idle_s = idle_s
        self.ignition = ignition
        self.open_trip = open_trip
        self.open_doors = open_doors
        self.last_activity = time.monotonic()  # after a start, what came before is unknown
        for event in (DoorInput, Tap, Unlock, Crossing):
            subscribe(event, self._activity)

    def _activity(self, _event: object) -> None:
        self.last_activity = time.monotonic()

    def waiting_for(self) -> list[str]:
        """What keeps it from being a safe moment now (empty: switch)."""
        reasons = []
        if self.ignition() is True:
            reasons.append("ignition on")
        trip = self.open_trip()
        if trip is not None:
            reasons.append(f"trip {trip} open")
        reasons += [f"door {d} open" for d in self.open_doors()]
        quiet = time.monotonic() - self.last_activity
        if quiet < self.idle_s:
            reasons.append(f"doors or readers used {quiet:.0f} s ago")
        return reasons

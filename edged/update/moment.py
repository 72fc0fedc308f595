"""When a vehicle may switch releases: parked (ignition off, no trip open, doors closed and
nobody at them for a while). The switch stops edged for seconds; nobody must be boarding,
tapping or waiting for a door then.

It keeps its own view from the bus, as every service does: the vehicle service's
`VehicleStatus` (ignition, doors the CAN bus reports open or disputed, the open trip) and the door
sensors' `DoorInput`; any door, tap, unlock or beam crossing is activity.
"""

import time

from core.bus import Bus
from core.events import Crossing, DoorInput, Tap, Unlock
from edged.services.events import VehicleStatus


class Parked:
    def __init__(self, bus: Bus, *, idle_s: float) -> None:
        self.idle_s = idle_s
        self.vehicle: VehicleStatus | None = None  # a venue has none: never "in use"
        self.doors: dict[str, bool] = {}  # the door sensors (GPIO), open or not
        self.last_activity = time.monotonic()  # after a start, what came before is unknown
        for event in (DoorInput, Tap, Unlock, Crossing):
            bus.subscribe(event, self._activity, acts=False)  # not a lock relay
        bus.subscribe(DoorInput, self._door)
        bus.subscribe(VehicleStatus, self._vehicle)

    def _activity(self, _event: object) -> None:
        self.last_activity = time.monotonic()

    def _door(self, event: DoorInput) -> None:
        self.doors[event.door] = event.open

    def _vehicle(self, event: VehicleStatus) -> None:
        self.vehicle = event

    def waiting_for(self) -> list[str]:
        """What keeps it from being a safe moment now (empty: switch)."""
        reasons = []
        v = self.vehicle
        if v is not None and v.ignition is True:
            reasons.append("ignition on")
        if v is not None and v.trip_id is not None:
            reasons.append(f"trip {v.trip_id} open")
        doors = [d for d, is_open in self.doors.items() if is_open]
        doors += v.open_doors if v is not None else ()
        reasons += [f"door {d} open" for d in doors]
        if v is not None:  # ECUs disagree on it: it may be open
            reasons += [f"door {d} unknown (ECUs on the CAN bus disagree)" for d in v.unknown_doors]
        quiet = time.monotonic() - self.last_activity
        if quiet < self.idle_s:
            reasons.append(f"doors or readers used {quiet:.0f} s ago")
        return reasons

"""Typed events between services, on the node's bus: a service never calls another.

The `Retained` ones state how things are now; the bus hands the latest to whoever
subscribes later, so a service learns the mode or the occupancy whenever it is built.
"""

from dataclasses import dataclass
from typing import Any

from core.bus import Retained
from core.events import Fix
from edged.config.geofences import Geofence
from edged.payloads import Trip


@dataclass(frozen=True, slots=True)
class PositionUpdated(Retained):
    """A valid fix (position service); `suspect` says why it is not believed where the
    vehicle is (plausibility.py), None when it is: who acts on a place skips a suspect one."""

    fix: Fix
    suspect: str | None = None


@dataclass(frozen=True, slots=True)
class WheelSpeed:
    """The CAN bus's wheel-based speed (CCVS1), m/s, at `ts` (monotonic s) (vehicle
    service): the witness the position service judges fixes against."""

    mps: float
    ts: float


@dataclass(frozen=True, slots=True)
class OdometerChanged(Retained):
    """The GPS odometer, as restored at start and each time it advances (position service)."""

    odometer_m: float


@dataclass(frozen=True, slots=True)
class FixStatus(Retained):
    """No valid fix for `fix_lost_after_s` (lost), or one again (position service)."""

    lost: bool


@dataclass(frozen=True, slots=True)
class GeofencesChanged(Retained):
    """The fences in force (config and dispatch's), and the ids of those the vehicle is in,
    in the order of `fences` (geofence service)."""

    fences: tuple[Geofence, ...]
    inside: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModeChanged(Retained):
    """The operating mode: on-demand, school or out-of-service (mode service)."""

    mode: str


@dataclass(frozen=True, slots=True)
class JourneyChanged(Retained):
    """The run the vehicle is on, as `journey.assign` gave it, or None (journey service)."""

    run: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class OccupancyChanged(Retained):
    """How many are on board or inside (occupancy service); `boarded` is how many got on
    in the change that led here (0 for the state restored at start, a reset, or a change of
    `doubt`); `doubt`, the findings that make the node doubt its count (`occupancy.doubt`:
    the kiosk does not show a count in doubt)."""

    count: int
    capacity: int | None
    boarded: int = 0
    doubt: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.count >= self.capacity


@dataclass(frozen=True, slots=True)
class OccupancyReset:
    """The count was set back (end of day, a trip's end, ops) to `count`: 0, nobody is
    inside; more, ops counted them by eye (`occupancy.reset {"count"}`: whoever the access
    service knows to be inside still is, so their tap out counts out), or a daily reset
    missed while the node was off was made up, or a trip's end came after its grace
    (`since_start`: those counted since this start, or since the trip's end, are kept, and
    only they are still inside)."""

    count: int = 0
    since_start: bool = False


@dataclass(frozen=True, slots=True)
class TripEnded:
    """A trip was closed (vehicle service)."""

    trip: Trip


@dataclass(frozen=True, slots=True)
class TripStarted:
    """A trip was opened (vehicle service): by the ignition, a command, or a restart."""

    trip_id: str
    trigger: str


@dataclass(frozen=True, slots=True)
class AccessDecided:
    """A granted tap that is not a repeat: `delta` people in (+1) or out (-1), or 0 (a
    provider's login) (access service)."""

    action: str | None
    delta: int


@dataclass(frozen=True, slots=True)
class LinkChanged(Retained):
    """The node got or lost its session with the broker (the node, from the uplink)."""

    connected: bool


@dataclass(frozen=True, slots=True)
class VehicleStatus(Retained):
    """What the CAN bus (or an ignition line) says of the vehicle being in use: the
    ignition, the doors it reports open, the open trip (vehicle service)."""

    ignition: bool | None
    open_doors: tuple[str, ...]
    trip_id: str | None
    unknown_doors: tuple[str, ...] = ()
    """Doors the ECUs on the CAN bus disagree on (`disputed`): shut or open, nobody knows."""

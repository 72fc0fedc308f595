"""Trips: what a journey cost in distance, fuel and CO2e, from the vehicle's own totals.

Distances and fuel come from the ECU's lifetime totals (VDHR, LFC), summed as increments so
that a counter wrap or a reset of the ECU's totals (a replaced ECU, a flashed dashboard)
neither loses nor invents kilometres: a total that goes back, or on by more than the
vehicle could have driven (burnt) since the last reading, starts a new count (`Totalizer`).
Without CAN data the GPS odometer and a per-vehicle
consumption stand in; the trip says which source it used. An open trip is kept on disk, so
a restart (or a power cut) mid-trip continues it.

Its times are the node's clock (NTP, else GPS time), as every payload's `ts`: a Pi without
NTP runs on fake-hwclock's saved time, days off. A trip opened on an untrusted clock and
closed on a trusted one (NTP came up meanwhile) is dated back from its end by the monotonic
time it lasted, when the same run of the daemon saw both.

The GPS odometer comes from the position service's `OdometerChanged`, the load from the
occupancy service's `OccupancyChanged`; a trip goes on the bus as `TripStarted` when
opened and `TripEnded` when closed.
"""

import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from edged.clock import ClockSource
from edged.config.services import TripServiceConfig
from edged.host import Host
from edged.payloads import Trip
from edged.services.events import OccupancyChanged, OdometerChanged, TripEnded, TripStarted
from edged.topics import TRIP

OPEN_TRIP_KEY = "trips.open"
PERSIST_EVERY_S = 10.0
_J1939_MAX_RAW_4 = 0xFAFFFFFF  # largest valid 4-byte parameter value
DISTANCE_WRAP_M = (_J1939_MAX_RAW_4 + 1) * 5.0
FUEL_WRAP_L = (_J1939_MAX_RAW_4 + 1) * 0.5


class Reading(NamedTuple):
    """A lifetime total and when it was received (monotonic seconds, as an event's `ts`)."""

    value: float
    at: float
    pace: float = 1.0  # the bus's seconds per second of `at` (a replay's speed)


@dataclass
class Totalizer:
    """The sum of a lifetime counter's increments since the trip began.

    Each reading continues the count when it is at most what the vehicle could add since
    the one before (`rate` per second, plus `slack` for the counter's steps). Anything else
    breaks the continuity, and the count goes on from the new value: a counter reset or
    replaced ECU (0, or another odometer, behind or far ahead), a second ECU's counter
    slipping in, an ECU that restarts while cranking and sends 0 until it has read its
    stored totals. So the value before a break is held, and a counter that comes back to it
    (within what could be added since) counts from it: a glitch adds only the distance
    really covered, not the whole odometer back. Above a value held below it (a leap
    forward), readings that go on from the last are the new counter's, however long: only
    a step back comes back to the value held. A counter wrapping past its maximum
    continues across it.

    What readings may add is one budget, not an allowance per reading: `rate` per second
    since the last reading, plus what is left of `slack` (`spare`, never more than
    `slack`). A reading that adds its steps uses the budget up, so a device on the bus
    that sends the engine's total a little higher ten times a second (each step within
    `slack`), or that alternates it with another value to be taken back each time, adds
    no more than the vehicle could.
    """

    wrap: float
    last: float | None = None
    total: float = 0.0
    resets: int = 0  # breaks counted: the counter went on from a new value
    samples: int = 0
    held: float | None = None  # the value before the last break, until the counter is back
    glitches: int = 0  # breaks the counter came back from
    at: float | None = None  # when `last` was read, on the trip clock; None: unknown
    held_at: float | None = None
    rate: float = math.inf  # the most the counter can add per second
    slack: float = 0.0  # and beyond it, at most: its resolution, a clock's step
    spare: float | None = None  # what is left of `slack` at `at`; None: all of it
    held_spare: float | None = None  # and at `held_at`
    held_total: float | None = None  # `total` when `held` was held: what came since is
    # the new counter's, taken from the same budget as the way back to `held`

    def _allowed(
        self, since: float | None, spare: float | None, at: float | None, pace: float
    ) -> float:
        """The most the counter can have added between `since` and `at` (`pace`: the
        counter's seconds per second of those times, a replay's speed)."""
        if since is None or at is None or at < since:
            # how long since is unknown: a record of before, or one from a run whose clock
            # was set otherwise (a Pi rebooted on fake-hwclock's saved time, or in 1970)
            return math.inf
        return self.rate * pace * (at - since) + (self.slack if spare is None else spare)

    def feed(self, value: float, at: float | None = None, pace: float = 1.0) -> None:
        self.samples += 1
        spare: float | None = None  # after this reading; None: all of `slack`
        if self.last is not None:
            delta = value - self.last
            if delta < 0 and self.last > 0.9 * self.wrap and value < 0.1 * self.wrap:
                delta += self.wrap  # the counter wrapped past its maximum
            allowed = self._allowed(self.at, self.spare, at, pace)
            onward = 0 <= delta <= allowed
            back = value - self.held if self.held is not None else -1.0
            allowed_back = self._allowed(self.held_at, self.held_spare, at, pace)
            if self.held_total is not None:  # the budget the new counter's readings used
                allowed_back -= max(0.0, self.total - self.held_total)
            # above a value held below it, what goes on is the new counter: the held value's
            # allowance grows with time and would take its readings in at length
            if (
                self.held is not None
                and (self.held > self.last or not onward)
                and 0 <= back <= allowed_back
            ):
                self.total += back  # back where it was: the break was a glitch
                spare = _left(allowed_back - back, self.slack)
                self.held = self.held_at = self.held_spare = self.held_total = None
                self.resets -= 1
                self.glitches += 1
            else:
                if onward:
                    self.total += delta
                    spare = _left(allowed - delta, self.slack)
                else:  # reset, replaced, another ECU's, a glitch: count on from the new value
                    self.resets += 1
                    spare = _left(allowed, self.slack)
                    if self.held is None:
                        self.held, self.held_at, self.held_spare = self.last, self.at, self.spare
                        self.held_total = self.total
        self.last, self.at, self.spare = value, at, spare

    def saved(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the fields the release before reads, the rest), for the state store: an update
        that fails its trial rolls back to that release mid-trip, and it restores the first
        with `Totalizer(**…)`, a TypeError on any other key (the open trip then lost). It
        holds a value only below a drop and counts a counter back at or above it from there:
        a value held below the last (a leap forward) would count the leap, so it is kept in
        the rest alone."""
        before = {name: getattr(self, name) for name in _READ_BEFORE}
        if self.held is not None and self.last is not None and self.held <= self.last:
            before["held"] = None
        return before, {
            "held": self.held,
            "at": self.at,
            "held_at": self.held_at,
            "spare": self.spare,
            "held_spare": self.held_spare,
            "held_total": self.held_total,
        }


def _left(allowed: float, slack: float) -> float | None:
    """What of `slack` is left once `allowed` was the budget: None when all of it."""
    return None if allowed >= slack else allowed


_READ_BEFORE = ("wrap", "last", "total", "resets", "samples", "held", "glitches")
"""The Totalizer fields of the release before (5bb46e3)."""


def distance_totalizer(**raw: Any) -> Totalizer:
    """Metres: no bus or truck adds more than 250 km/h (CCVS1's highest speed) while it is
    driven; 500 m of slack covers a low-resolution odometer's 125 m steps."""
    return Totalizer(**{"wrap": DISTANCE_WRAP_M, **raw, "rate": 250 / 3.6, "slack": 500.0})


def fuel_totalizer(**raw: Any) -> Totalizer:
    """Litres: no engine burns more than 0.1 L/s (360 L/h; a 16-litre engine at full load
    burns about a third of it); 2 L of slack is four of LFC's 0.5 L steps."""
    return Totalizer(**{"wrap": FUEL_WRAP_L, **raw, "rate": 0.1, "slack": 2.0})


@dataclass
class OpenTrip:
    trip_id: str
    started: str  # ISO 8601 UTC
    trigger: Literal["ignition", "command", "restart"]
    gps_start_m: float
    distance: Totalizer = field(default_factory=distance_totalizer)
    fuel: Totalizer = field(default_factory=fuel_totalizer)
    passengers: int = 0  # on board at the start + boarded since
    passenger_m: float = 0.0  # people x metres, summed at each change of the load
    load: int = 0  # people on board now
    load_mark_m: float = 0.0  # trip distance when the load last changed
    clock: str = ClockSource.NTP.value  # what stamped `started`

    def saved(self) -> dict[str, Any]:
        """As kept on disk: the release before reads it too (`Totalizer.saved`); what only
        this release reads of the totals is under `readings`, which that release neither
        reads nor writes back (a trip it saved has none: times unknown)."""
        raw = asdict(self)
        raw["distance"], distance = self.distance.saved()
        raw["fuel"], fuel = self.fuel.saved()
        raw["readings"] = {"distance": distance, "fuel": fuel}
        return raw

    @classmethod
    def restore(cls, raw: dict[str, Any]) -> "OpenTrip":
        readings = raw.get("readings") or {}
        return cls(
            trip_id=raw["trip_id"],
            started=raw["started"],
            trigger=raw["trigger"],
            gps_start_m=float(raw["gps_start_m"]),
            distance=distance_totalizer(**{**raw["distance"], **readings.get("distance", {})}),
            fuel=fuel_totalizer(**{**raw["fuel"], **readings.get("fuel", {})}),
            passengers=int(raw.get("passengers", 0)),
            passenger_m=float(raw.get("passenger_m", 0.0)),
            load=int(raw.get("load", 0)),
            load_mark_m=float(raw.get("load_mark_m", 0.0)),
            clock=str(raw.get("clock", ClockSource.NTP.value)),
        )


class TripRecorder:
    def __init__(self, host: Host, config: TripServiceConfig) -> None:
        self.host = host
        self.config = config
        self.gps_odometer_m = 0.0  # the position service's, once it says (no GPS: stays 0)
        self._persisted_at = 0.0
        self.load: int | None = None  # people on board; None: nothing counts them
        self._opened_at: tuple[str, float] | None = None  # (trip id, monotonic) in this run
        # the trip clock: monotonic seconds within a run, set to the node's clock at its
        # start, so a reading's age survives a restart and no clock step within a run counts
        self._trip_clock = host.clock.now()[0] / 1000 - time.monotonic()
        raw = host.state.get(OPEN_TRIP_KEY)
        self.trip: OpenTrip | None = None
        if isinstance(raw, dict):
            try:
                self.trip = OpenTrip.restore(raw)
            except (KeyError, TypeError, ValueError):
                self.trip = None  # an unreadable trip record is not worth a crash loop
        host.bus.subscribe(OdometerChanged, self.on_odometer)
        host.bus.subscribe(OccupancyChanged, self.on_occupancy)

    def on_odometer(self, event: OdometerChanged) -> None:
        self.gps_odometer_m = event.odometer_m

    def on_occupancy(self, event: OccupancyChanged) -> None:
        self.set_load(event.count, event.boarded)

    def start(
        self,
        trigger: Literal["ignition", "command", "restart"],
        *,
        distance: Reading | None = None,
        fuel: Reading | None = None,
    ) -> OpenTrip:
        """Open a trip; the ECU totals known now are its baseline."""
        now, source = self._now()
        self.trip = OpenTrip(
            trip_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
            started=now.isoformat(),
            trigger=trigger,
            gps_start_m=self.gps_odometer_m,
            passengers=self.load or 0,
            load=self.load or 0,
            clock=source.value,
        )
        self._opened_at = (self.trip.trip_id, time.monotonic())
        self.feed(distance=distance, fuel=fuel)
        self.persist(force=True)
        self.host.bus.emit(TripStarted(self.trip.trip_id, trigger))
        return self.trip

    def feed(self, *, distance: Reading | None = None, fuel: Reading | None = None) -> None:
        """The ECU's lifetime totals, each with the monotonic time it was received."""
        if self.trip is None:
            return
        if distance is not None:
            self.trip.distance.feed(distance.value, distance.at + self._trip_clock, distance.pace)
        if fuel is not None:
            self.trip.fuel.feed(fuel.value, fuel.at + self._trip_clock, fuel.pace)
        self.persist()

    def set_load(self, count: int, boarded: int = 0) -> None:
        """The occupancy changed: close the passenger-km of the previous load."""
        self.load = count
        trip = self.trip
        if trip is None:
            return
        distance = self._distance_m(trip)[0]
        trip.passenger_m += trip.load * max(0.0, distance - trip.load_mark_m)
        trip.load_mark_m = distance
        trip.load = count
        trip.passengers += max(0, boarded)
        self.persist()

    def _distance_m(self, trip: OpenTrip) -> tuple[float, Literal["can", "gps"]]:
        if trip.distance.samples >= 2:
            return trip.distance.total, "can"
        return max(0.0, self.gps_odometer_m - trip.gps_start_m), "gps"

    def persist(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._persisted_at >= PERSIST_EVERY_S:
            self._persisted_at = now
            saved = self.trip.saved() if self.trip else None
            # its progress every PERSIST_EVERY_S may wait with samples; a start or an end not
            self.host.state.set(OPEN_TRIP_KEY, saved, may_wait=not force)

    def _now(self) -> tuple[datetime, ClockSource]:
        ms, source = self.host.clock.now()
        return datetime.fromtimestamp(ms / 1000, UTC), source

    def _started(self, trip: OpenTrip, ended: datetime, trusted_now: bool) -> datetime:
        """When the trip began: as stamped, or its end less its monotonic length when the
        start's clock was not trusted and the end's is (and this run saw both)."""
        started = datetime.fromisoformat(trip.started)
        opened = self._opened_at
        if trip.clock != ClockSource.UNSYNCED.value or not trusted_now:
            return started
        if opened is None or opened[0] != trip.trip_id:
            return started
        return ended - timedelta(seconds=max(0.0, time.monotonic() - opened[1]))

    def summary(self, trip: OpenTrip) -> Trip:
        distance_m, distance_source = self._distance_m(trip)
        distance_km = distance_m / 1000
        if trip.fuel.samples >= 2:
            fuel_l, fuel_source = trip.fuel.total, "can"
        else:
            fuel_l = distance_km * self.config.consumption_l_per_100km / 100
            fuel_source = "estimate"
        factor = self.config.co2e_kg_per_l[self.config.fuel]
        co2e_kg = fuel_l * factor
        passengers = passenger_km = per_pkm = None
        if self.load is not None:
            passengers = trip.passengers
            passenger_m = trip.passenger_m + trip.load * max(0.0, distance_m - trip.load_mark_m)
            passenger_km = round(passenger_m / 1000, 3)
            if passenger_km > 0:
                per_pkm = round(co2e_kg * 1000 / passenger_km, 1)
        ended, source = self._now()
        return Trip(
            trip_id=trip.trip_id,
            started=self._started(trip, ended, source is not ClockSource.UNSYNCED),
            ended=ended,
            trigger=trip.trigger,
            distance_km=round(distance_km, 3),
            distance_source=distance_source,
            fuel_l=round(fuel_l, 2),
            fuel_source=fuel_source,
            fuel=self.config.fuel,
            co2e_kg=round(co2e_kg, 2),
            co2e_factor_kg_per_l=factor,
            passengers=passengers,
            passenger_km=passenger_km,
            co2e_g_per_passenger_km=per_pkm,
        )

    def stop(self) -> Trip | None:
        """Close the open trip; published unless shorter than `min_distance_km`."""
        if self.trip is None:
            return None
        summary = self.summary(self.trip)
        self.trip = None
        self.persist(force=True)
        if summary.distance_km >= self.config.min_distance_km:
            self.host.publish(TRIP, summary)
        self.host.bus.emit(TripEnded(summary))
        return summary

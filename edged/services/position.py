"""Position reporting: fixes in, `position` out, adaptively, as vehicle trackers do.

A report is due after `max_period_s` (heartbeat), or — once `min_period_s` has passed — when
the vehicle moved `min_distance_m` or turned more than `heading_change_deg` above
`heading_min_speed_mps`. Moving and stopped vehicles have separate settings, so a bus parked
at a market for the day reports every few minutes and a bus on the road every few seconds.

A parked receiver's fixes wander by metres: the odometer only advances when the receiver
reports a real speed and the fix is farther than the jitter allowance from the last counted
point. In a street canyon a receiver tracking signals reflected off the facades puts the
vehicle 100 m and more off the street for a few seconds, then snaps back; summed fix to fix,
every such excursion would add its way out and back. So the odometer leaves out a fix whose
HDOP is above `max_hdop`, and one farther from the last good fix than the vehicle could have
gone since (its reported speed, a hard acceleration, at most `MAX_ROAD_SPEED_MPS`, plus the
jitter allowance): the next good fix counts from the last good one. A receiver that does not
come back within `EXCURSION_MAX_S` is believed where it stays (the first fix was the wrong
one), counting the way there at no more than `MAX_ROAD_SPEED_MPS` (standing still, the
receiver moved, not the vehicle: only the crawl believed before, and its speeds meanwhile).
All in the receiver's time — but no more of it than the node's time between the fixes'
arrivals plus `EXCURSION_MAX_S` (`believed_s`; when the driver says when they
came): a receiver's clock that jumps hours or years on (a spoofer moving the time
with the position, a cold-start date, a gpsd reporting year 1 then 9999) would otherwise
make any step reachable, and count it. A fix the receiver did not measure
(`Fix.measured`: quality 6 estimated, as a receiver extrapolates or dead-reckons in a
tunnel, 7 typed in, 8 simulated) is published, its quality saying so, but not counted:
an extrapolation drifts off the road and back, and the next measured fix counts the way
from the last one.

Fixes that stop coming (unplugged antenna, tunnel) raise `events/fix` lost after
`fix_lost_after_s`, and regained when a valid fix returns.

Each valid fix is judged (plausibility.py: physics, and the CAN bus's wheel speed when the
vehicle service hears one): a suspect one is published marked `suspect` with the reason,
is not used to set the clock, and the geofence service skips it. The odometer counts none
the wheels speak against (`wheels`, `frozen`) and keeps its own rule above for a `jump`;
it believes the wheels' speed when they roll and the receiver says it stands (a receiver
stuck at speed 0 would freeze it), and without wheels takes a receiver whose fixes drive
on while it says it stands as one that gives no speed.

The other services hear of it on the bus: `PositionUpdated` (each valid fix, its verdict),
`OdometerChanged` and `FixStatus` (lost, regained).
"""

import asyncio
import itertools
import time
from dataclasses import replace
from typing import Literal, cast

from core.events import SIMULATED, Fix, FixMode
from core.geo import haversine_m
from edged.config.services import PositionServiceConfig, ReportingConfig
from edged.host import Host
from edged.payloads import FixEvent, Position
from edged.services.base import Service
from edged.services.events import FixStatus, OdometerChanged, PositionUpdated, WheelSpeed
from edged.services.plausibility import (
    ACCEL_MPS2,
    EXCURSION_MAX_FIXES,
    EXCURSION_MAX_S,
    MAX_ROAD_SPEED_MPS,
    SPEED_MARGIN_MPS,
    FixJudge,
    believed_s,
    elapsed_s,
    jitter_m,
)

__all__ = [
    "EXCURSION_MAX_S",
    "MAX_ROAD_SPEED_MPS",
    "PositionService",
    "believed_s",
    "heading_delta",
]
from edged.topics import FIX, POSITION

ODOMETER_KEY = "position.odometer_m"
PERIOD_SLACK_S = 0.05
STATIONARY_SPEED = 0.5  # m/s; below it a fix's movement is taken as jitter


def heading_delta(a: float, b: float) -> float:
    """Smallest angle between two courses, 0..180."""
    d = abs(a - b) % 360
    return 360 - d if d > 180 else d


class PositionService(Service):
    def __init__(
        self,
        host: Host,
        config: PositionServiceConfig,
        *,
        watch_fix: bool = True,
        wheels: bool = True,
    ) -> None:
        super().__init__(host)
        self.config = config
        self.watch_fix = watch_fix  # False: no GPS on this node, no "fix lost" to say
        self.wheels = wheels  # False: the CAN bus is not this receiver's vehicle (a replay)
        self.odometer_m: float = float(host.state.get(ODOMETER_KEY, 0.0))
        self._anchor: Fix | None = None  # last point counted in the odometer
        self._good: Fix | None = None  # last fix the odometer believed
        self._excursion: list[Fix] = []  # fixes since then it did not believe
        self._last_sent: tuple[Fix, float] | None = None  # fix, monotonic time
        self.last_valid: tuple[Fix, float] | None = None
        self.fix_lost = False
        self._lost_at: float | None = None
        self.void_fixes = 0
        self._started = time.monotonic()
        self.judge = FixJudge(pace=config.route_pace)
        host.bus.subscribe(Fix, self.on_fix)
        host.bus.subscribe(WheelSpeed, self.on_wheels)
        host.bus.emit(OdometerChanged(self.odometer_m))

    # -- fixes ------------------------------------------------------------------------

    def on_wheels(self, event: WheelSpeed) -> None:
        if self.wheels:
            self.judge.on_wheels(event.mps, event.ts)

    def on_fix(self, fix: Fix) -> None:
        if not fix.valid:
            self.void_fixes += 1
            return
        now = time.monotonic()
        if self.fix_lost:
            self._regained(fix, now)
        self.last_valid = (fix, now)
        refuted = self.judge.wheels_refuted
        suspect = self.judge.judge(fix, now)
        if self.judge.wheels_refuted and not refuted:
            self.host.counters.inc("position.wheels_refuted")  # a tow, or wheels stuck at 0
        if suspect is not None:
            self.host.counters.inc(f"position.suspect.{suspect}")
        # a guessed day must not become the node's clock, nor a date before any plausible,
        # nor a receiver's simulator mode (GGA quality 8: its date is whatever it plays)
        if fix.quality == SIMULATED:
            self.host.counters.inc("position.simulated")
        elif suspect is not None:
            pass  # a spoofer moves the time with the position: a suspect fix sets nothing
        elif fix.date_known and not self.host.clock.discipline(fix.fix_time, fix.received):
            self.host.counters.inc("position.implausible_time")
        if suspect in (None, "jump"):  # the odometer has its own rule for jumps (above)
            speed = self.judge.speed(fix, now)
            if speed is None and fix.speed is not None:
                self.host.counters.inc("position.speed_stuck")  # judged by its positions
            elif speed != fix.speed:
                self.host.counters.inc("position.speed_from_wheels")
            self._count_distance(fix if speed == fix.speed else replace(fix, speed=speed))
        if self._due(fix, now):
            self._last_sent = (fix, now)
            self.host.state.set(ODOMETER_KEY, round(self.odometer_m, 1), may_wait=True)
            self.host.publish(POSITION, self.payload(fix, suspect), qos=self.config.qos)
        self.host.bus.emit(PositionUpdated(fix, suspect))

    def _count_distance(self, fix: Fix) -> None:
        if not fix.measured:
            self.host.counters.inc("position.odometer_estimated")
            return  # the next measured fix counts the way from the last one
        if fix.hdop is not None and fix.hdop > self.config.max_hdop:
            self.host.counters.inc("position.odometer_poor_hdop")
            return  # a receiver that gives no HDOP is judged on its positions alone
        good = self._good
        if good is None or self._anchor is None:
            self._good = self._anchor = fix
            return
        if self._reachable(good, fix):
            if self._excursion:
                self.host.counters.inc("position.odometer_jumps")
                self._excursion.clear()  # the receiver came back: that was a jump
            self._follow(fix)
            return
        self._excursion.append(fix)
        away_s = (fix.fix_time - self._excursion[0].fix_time).total_seconds()
        if away_s >= EXCURSION_MAX_S or len(self._excursion) >= EXCURSION_MAX_FIXES:
            self._settle(fix)

    def _reachable(self, good: Fix, fix: Fix) -> bool:
        """`fix` is no farther from `good` than the vehicle could have gone in between."""
        dt = elapsed_s(good, fix)
        speed = MAX_ROAD_SPEED_MPS
        if good.speed is not None and fix.speed is not None:
            reported = max(good.speed, fix.speed) + SPEED_MARGIN_MPS + ACCEL_MPS2 * dt / 2
            speed = min(speed, reported)
        step = haversine_m(good.lat, good.lon, fix.lat, fix.lon)
        return step <= speed * dt + jitter_m(fix)

    def _follow(self, fix: Fix) -> None:
        """Count a believed fix: the distance from the last counted point, past the jitter."""
        assert self._anchor is not None
        self._good = fix
        if fix.speed is not None and fix.speed < STATIONARY_SPEED:
            return
        step = haversine_m(self._anchor.lat, self._anchor.lon, fix.lat, fix.lon)
        if step >= jitter_m(fix):
            self._advance(fix, step)

    def _settle(self, fix: Fix) -> None:
        """The receiver stayed away: believe it from `fix` on, the way there counted no
        faster than a road vehicle goes (nothing if its fix times went back)."""
        assert self._anchor is not None and self._good is not None
        self.host.counters.inc("position.odometer_settled")
        good, away = self._good, [self._good, *self._excursion]
        self._excursion.clear()
        self._good = fix
        if fix.speed is not None and fix.speed < STATIONARY_SPEED:
            # standing still, the receiver moved, not the vehicle: count from here on, or
            # the first metre driven adds the whole jump (a wrong first fix after a cold
            # start, the receiver then settling where the bus is parked) -- but keep the
            # way believed and not yet counted (a crawl in a jam, under STATIONARY_SPEED)
            # and what the speeds say it went while the receiver was away
            before = haversine_m(self._anchor.lat, self._anchor.lon, good.lat, good.lon)
            metres = before if before >= jitter_m(good) else 0.0
            for a, b in itertools.pairwise(away):
                metres += ((a.speed or 0.0) + (b.speed or 0.0)) / 2 * elapsed_s(a, b)
            self._advance(fix, metres)
            return
        dt = elapsed_s(self._anchor, fix)
        step = haversine_m(self._anchor.lat, self._anchor.lon, fix.lat, fix.lon)
        self._advance(fix, min(step, MAX_ROAD_SPEED_MPS * dt))

    def _advance(self, fix: Fix, metres: float) -> None:
        self._anchor = fix
        if metres > 0:
            self.odometer_m += metres
            self.host.bus.emit(OdometerChanged(self.odometer_m))

    def moving(self, fix: Fix) -> bool:
        return fix.speed is not None and fix.speed >= self.config.stopped_below_mps

    def _rule(self, fix: Fix) -> ReportingConfig:
        return self.config.moving if self.moving(fix) else self.config.stopped

    def _due(self, fix: Fix, now: float) -> bool:
        if self._last_sent is None:
            return True
        last, at = self._last_sent
        # fixes come once per epoch: without slack a 1 s period would skip every other fix
        elapsed = now - at + PERIOD_SLACK_S
        if self.moving(fix) != self.moving(last):
            # departure and arrival are worth a report, but a speed wavering about
            # `stopped_below_mps` must not send every fix: the shorter minimum period holds
            shortest = min(self.config.moving.min_period_s, self.config.stopped.min_period_s)
            return elapsed >= shortest
        rule = self._rule(fix)
        if elapsed >= rule.max_period_s:
            return True
        if elapsed < rule.min_period_s:
            return False
        if haversine_m(last.lat, last.lon, fix.lat, fix.lon) >= rule.min_distance_m:
            return True
        return (
            fix.course is not None
            and last.course is not None
            and fix.speed is not None
            and fix.speed >= self.config.heading_min_speed_mps
            and heading_delta(fix.course, last.course) >= rule.heading_change_deg
        )

    def payload(self, fix: Fix, suspect: str | None = None) -> Position:
        return Position(
            fix_time=fix.fix_time,
            lat=fix.lat,
            lon=fix.lon,
            alt=fix.alt,
            speed=fix.speed,
            course=fix.course,
            mode="3D" if fix.mode is FixMode.THREE_D else "2D",
            quality=fix.quality,
            satellites=fix.satellites,
            hdop=fix.hdop,
            odometer_m=round(self.odometer_m, 1),
            date_unknown=None if fix.date_known else True,
            suspect=cast(Literal["jump", "wheels", "frozen"] | None, suspect),
        )

    # -- fix lost / regained ----------------------------------------------------------

    def check_fix(self, now: float | None = None) -> None:
        """Raise `lost` once no valid fix came for `fix_lost_after_s` (since start, too)."""
        now = time.monotonic() if now is None else now
        since = self.last_valid[1] if self.last_valid else self._started
        if not self.fix_lost and now - since >= self.config.fix_lost_after_s:
            self.fix_lost = True
            self._lost_at = since
            last = self.last_valid[0] if self.last_valid else None
            self.host.bus.emit(FixStatus(lost=True))
            self.host.publish(
                FIX,
                FixEvent(
                    event="lost",
                    after_s=round(now - since, 1),
                    last_fix_time=last.fix_time if last else None,
                    lat=last.lat if last else None,
                    lon=last.lon if last else None,
                ),
            )

    def _regained(self, fix: Fix, now: float) -> None:
        self.fix_lost = False
        outage = now - (self._lost_at if self._lost_at is not None else now)
        self.host.bus.emit(FixStatus(lost=False))
        self.host.publish(
            FIX,
            FixEvent(
                event="regained",
                after_s=round(outage, 1),
                last_fix_time=fix.fix_time,
                lat=fix.lat,
                lon=fix.lon,
            ),
        )

    async def run(self) -> None:
        while self.watch_fix:
            await asyncio.sleep(min(1.0, self.config.fix_lost_after_s / 4))
            self.check_fix()

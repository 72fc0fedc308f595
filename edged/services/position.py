"""Position reporting: fixes in, `position` out, adaptively, as vehicle trackers do.

A report is due after `max_period_s` (heartbeat), or — once `min_period_s` has passed — when
the vehicle moved `min_distance_m` or turned more than `heading_change_deg` above
`heading_min_speed_mps`. Moving and stopped vehicles have separate settings, so a bus parked
at a market for the day reports every few minutes and a bus on the road every few seconds.

A parked receiver's fixes wander by metres: the odometer only advances when the receiver
reports a real speed and the fix is farther than the jitter allowance from the last counted
point. Fixes that stop coming (unplugged antenna, tunnel) raise `events/fix` lost after
`fix_lost_after_s`, and regained when a valid fix returns.

The other services hear of it on the bus: `PositionUpdated` (each valid fix),
`OdometerChanged` and `FixStatus` (lost, regained).
"""

import asyncio
import time

from core.events import Fix, FixMode
from core.geo import haversine_m
from edged.config.services import PositionServiceConfig, ReportingConfig
from edged.host import Host
from edged.payloads import FixEvent, Position
from edged.services.base import Service
from edged.services.events import FixStatus, OdometerChanged, PositionUpdated
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
        self, host: Host, config: PositionServiceConfig, *, watch_fix: bool = True
    ) -> None:
        super().__init__(host)
        self.config = config
        self.watch_fix = watch_fix  # False: no GPS on this node, no "fix lost" to say
        self.odometer_m: float = float(host.state.get(ODOMETER_KEY, 0.0))
        self._anchor: tuple[float, float] | None = None  # last point counted in the odometer
        self._last_sent: tuple[Fix, float] | None = None  # fix, monotonic time
        self.last_valid: tuple[Fix, float] | None = None
        self.fix_lost = False
        self._lost_at: float | None = None
        self.void_fixes = 0
        self._started = time.monotonic()
        host.bus.subscribe(Fix, self.on_fix)
        host.bus.emit(OdometerChanged(self.odometer_m))

    # -- fixes ------------------------------------------------------------------------

    def on_fix(self, fix: Fix) -> None:
        if not fix.valid:
            self.void_fixes += 1
            return
        now = time.monotonic()
        if self.fix_lost:
            self._regained(fix, now)
        self.last_valid = (fix, now)
        # a guessed day must not become the node's clock, nor a date before any plausible
        if fix.date_known and not self.host.clock.discipline(fix.fix_time, fix.received):
            self.host.counters.inc("position.implausible_time")
        self._count_distance(fix)
        if self._due(fix, now):
            self._last_sent = (fix, now)
            self.host.state.set(ODOMETER_KEY, round(self.odometer_m, 1))
            self.host.publish(POSITION, self.payload(fix), qos=self.config.qos)
        self.host.bus.emit(PositionUpdated(fix))

    def _count_distance(self, fix: Fix) -> None:
        if self._anchor is None:
            self._anchor = (fix.lat, fix.lon)
            return
        if fix.speed is not None and fix.speed < STATIONARY_SPEED:
            return
        step = haversine_m(*self._anchor, fix.lat, fix.lon)
        if step >= max(10.0, 5.0 * (fix.hdop or 1.0)):
            self.odometer_m += step
            self._anchor = (fix.lat, fix.lon)
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

    def payload(self, fix: Fix) -> Position:
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

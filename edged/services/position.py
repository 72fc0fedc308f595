"""Position reporting: fixes in, `position` out, adaptively (period, distance, heartbeat).

A parked shuttle with GPS jitter must neither flood the uplink nor grow its odometer, so
the odometer only advances when a fix is farther than the jitter allowance from the last
counted point, and a report is due on distance only once the vehicle really moved.
"""

import time

from edged.config.models import PositionServiceConfig
from edged.events import Fix, FixMode
from edged.geo import haversine_m
from edged.payloads import Position
from edged.services.base import NodeApi
from edged.topics import POSITION

ODOMETER_KEY = "position.odometer_m"
PERIOD_SLACK_S = 0.05
STATIONARY_SPEED = 0.5  # m/s; below it a fix's movement is taken as jitter


class PositionService:
    def __init__(self, node: NodeApi, config: PositionServiceConfig) -> None:
        self.node = node
        self.config = config
        self.odometer_m: float = float(node.get_state(ODOMETER_KEY, 0.0))
        self._anchor: tuple[float, float] | None = None  # last point counted in the odometer
        self._last_sent: tuple[float, float, float] | None = None  # lat, lon, monotonic
        self.void_fixes = 0
        node.subscribe(Fix, self.on_fix)

    @staticmethod
    def _jitter_allowance(fix: Fix) -> float:
        """Distance a parked receiver's fixes wander: 10 m, more with a poor HDOP."""
        return max(10.0, 5.0 * (fix.hdop or 1.0))

    @staticmethod
    def _stationary(fix: Fix) -> bool:
        """Receivers report near-zero speed when parked; trust it when given."""
        return fix.speed is not None and fix.speed < STATIONARY_SPEED

    def on_fix(self, fix: Fix) -> None:
        if not fix.valid:
            self.void_fixes += 1
            return
        self.node.clock.discipline(fix.fix_time)
        if self._anchor is None:
            self._anchor = (fix.lat, fix.lon)
        elif not self._stationary(fix):
            step = haversine_m(*self._anchor, fix.lat, fix.lon)
            if step >= self._jitter_allowance(fix):
                self.odometer_m += step
                self._anchor = (fix.lat, fix.lon)
        if self._due(fix):
            self._last_sent = (fix.lat, fix.lon, time.monotonic())
            self.node.set_state(ODOMETER_KEY, round(self.odometer_m, 1))
            self.node.publish(POSITION, self.payload(fix), qos=self.config.qos)

    def _due(self, fix: Fix) -> bool:
        if self._last_sent is None:
            return True
        lat, lon, at = self._last_sent
        # fixes come once per epoch: without slack a 1 s period would skip every other fix
        elapsed = time.monotonic() - at + PERIOD_SLACK_S
        if elapsed >= self.config.max_period_s:
            return True
        if elapsed < self.config.min_period_s:
            return False
        return haversine_m(lat, lon, fix.lat, fix.lon) >= self.config.min_distance_m

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
        )

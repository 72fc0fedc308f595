"""`gps.sim`: a shuttle driving a route file, with GPS-like jitter, at real or faster pace.

`speed_factor` compresses the route, not time: fix times are the wall clock at emission, so
the node's GPS-disciplined clock stays right in a sped-up demo.

The demo, the tests and the benchmarks run on it, so it behaves as a receiver does: one
fix per epoch, noise on the position, speed and course from the motion, a dwell at stops.
"""

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime

from pydantic import Field

from core.driver import DriverContext, DriverOptions, Opens
from core.events import Fix, FixMode
from core.geo import offset
from core.paths import ExistingConfigPath
from drivers.gps.route import Route


class SimGpsOptions(DriverOptions):
    route: ExistingConfigPath = Field(description="route JSON, relative to the config file")
    speed_factor: float = Field(default=1.0, gt=0, le=1000, description="simulated s per real s")
    rate_hz: float = Field(default=1.0, gt=0, le=20, description="fixes per real second")
    jitter_m: float = Field(default=2.0, ge=0, le=100, description="position noise (1 sigma)")
    start_s: float = Field(default=0, ge=0, le=7 * 86400, description="simulated s to skip")
    seed: int | None = None


class SimGps:
    Options = SimGpsOptions

    @classmethod
    def opens(cls, options: SimGpsOptions) -> Opens:
        return Opens(simulated="simulated GPS (route file)")

    def __init__(self, options: SimGpsOptions) -> None:
        self.options = options
        self.route = Route.load(options.route)
        self.rng = random.Random(options.seed)

    def track(self, step_s: float) -> Iterator[tuple[float, float, float, float]]:
        """(lat, lon, speed m/s, course) every `step_s` simulated seconds, forever."""
        while True:
            for a, b, length, course in self.route.legs():
                if a.stop and a.dwell_s:
                    for _ in range(max(1, round(a.dwell_s / step_s))):
                        yield a.lat, a.lon, 0.0, course
                speed = (a.speed_kmh or self.route.speed_kmh) / 3.6
                steps = max(1, round(length / (speed * step_s)))
                for i in range(steps):
                    f = i / steps
                    yield a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f, speed, course

    async def run(self, ctx: DriverContext) -> None:
        period = 1 / self.options.rate_hz
        step = period * self.options.speed_factor
        track = self.track(step)
        for _ in range(int(self.options.start_s / step)):
            next(track)
        jitter = self.options.jitter_m
        ctx.ready()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for lat, lon, speed, course in track:
            if jitter:
                lat, lon = offset(lat, lon, self.rng.gauss(0, jitter), self.rng.gauss(0, jitter))
            ctx.emit(
                Fix(
                    fix_time=datetime.now(UTC),
                    lat=round(lat, 8),
                    lon=round(lon, 8),
                    alt=round(430 + self.rng.gauss(0, 1.5), 1),
                    speed=round(max(0.0, speed + self.rng.gauss(0, 0.2 if speed else 0.05)), 2),
                    course=round(course, 1),
                    mode=FixMode.THREE_D,
                    quality=1,
                    satellites=self.rng.randint(7, 12),
                    hdop=round(self.rng.uniform(0.7, 1.6), 2),
                    pace=self.options.speed_factor,
                )
            )
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))

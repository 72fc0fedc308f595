"""Where a vehicle on a route is at a given time: legs at the route's speeds, dwells at stops."""

import bisect
from dataclasses import dataclass
from pathlib import Path

from drivers.gps.route import Route, Waypoint

ROUTES = Path(__file__).resolve().parents[2] / "config" / "routes"


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float
    speed: float  # m/s
    course: float
    stop: str | None  # at a stop (dwelling), else None


class Track:
    """A route as a loop in time: `at(t)` for any t (seconds since the loop's start)."""

    def __init__(self, route: Route, name: str) -> None:
        self.route = route
        self.name = name
        self.segments: list[tuple[float, float, Waypoint, Waypoint, float, float]] = []
        t = 0.0
        for a, b, length, course in route.legs():
            if a.stop and a.dwell_s:
                self.segments.append((t, a.dwell_s, a, a, 0.0, course))
                t += a.dwell_s
            speed = (a.speed_kmh or route.speed_kmh) / 3.6
            duration = max(length / speed, 1.0)
            self.segments.append((t, duration, a, b, speed, course))
            t += duration
        self.period_s = t
        self.starts = [s[0] for s in self.segments]
        self.length_m = sum(length for _, _, length, _ in route.legs())

    @classmethod
    def load(cls, path: Path) -> "Track":
        return cls(Route.load(path), path.stem)

    def at(self, t: float) -> Point:
        t %= self.period_s
        i = max(0, bisect.bisect_right(self.starts, t) - 1)
        start, duration, a, b, speed, course = self.segments[i]
        f = min(1.0, (t - start) / duration)
        if speed == 0.0:
            return Point(a.lat, a.lon, 0.0, course, a.stop)
        return Point(a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f, speed, course, None)


def tracks(folder: Path = ROUTES) -> list[Track]:
    return [Track.load(p) for p in sorted(folder.glob("*.json"))]

"""A route for the GPS simulator: waypoints, some of them stops, read from a JSON file."""

import itertools
import json
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError

from core.confignumbers import NumbersNotBools
from core.errors import ConfigError
from core.geo import bearing_deg, haversine_m


class Waypoint(NumbersNotBools):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    stop: str | None = Field(default=None, description="stop name; the vehicle dwells here")
    dwell_s: float = Field(default=0, ge=0, le=86400)
    market: bool = Field(default=False, description="this stop is a service market")
    speed_kmh: float | None = Field(default=None, gt=0, le=130, description="to the next point")


class Route(NumbersNotBools):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    comment: str = ""
    speed_kmh: float = Field(default=55, gt=0, le=130)
    waypoints: list[Waypoint] = Field(min_length=2)

    @classmethod
    def load(cls, path: Path) -> "Route":
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(str(path), [f"cannot read the route: {exc.strerror}"]) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), [f"the route is not JSON: {exc}"]) from exc
        except ValidationError as exc:
            raise ConfigError(
                str(path),
                [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()],
            ) from exc

    def legs(self) -> list[tuple[Waypoint, Waypoint, float, float]]:
        """(from, to, length m, bearing) for each leg, closing the loop back to the start."""
        pts = [*self.waypoints, self.waypoints[0]]
        return [
            (a, b, haversine_m(a.lat, a.lon, b.lat, b.lon), bearing_deg(a.lat, a.lon, b.lat, b.lon))
            for a, b in itertools.pairwise(pts)
        ]

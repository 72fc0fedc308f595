"""Geofence shapes, as written in a config file and sent by dispatch in `geofences.set`."""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from core.confignumbers import NumbersNotBools
from core.geo import ring_problem

LatLon = tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]]
FenceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
FenceName = Annotated[str, Field(max_length=120)]
FenceKind = Literal["stop", "market", "depot", "venue", "zone"]


class Geofence(NumbersNotBools):
    """A circle (`center` + `radius_m`) or a polygon (`points`), never both."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: FenceId
    name: FenceName = ""
    kind: FenceKind = "stop"
    center: LatLon | None = None
    radius_m: float | None = Field(default=None, gt=0, le=50_000)
    points: list[LatLon] | None = Field(default=None, min_length=3, max_length=500)
    hysteresis_m: float | None = Field(
        default=None, ge=0, le=1000, description="leave only this far outside"
    )
    dwell_s: float | None = Field(
        default=None, ge=0, le=3600, description="inside (or outside) this long to count"
    )

    @model_validator(mode="after")
    def _one_shape(self) -> "Geofence":
        circle = self.center is not None or self.radius_m is not None
        if circle and self.points is not None:
            raise ValueError("a geofence is a circle (center, radius_m) or a polygon (points)")
        if circle and (self.center is None or self.radius_m is None):
            raise ValueError("a circle needs both center and radius_m")
        if not circle and self.points is None:
            raise ValueError("give center and radius_m for a circle, or points for a polygon")
        if self.points is not None and (problem := ring_problem(self.points)) is not None:
            raise ValueError(problem)  # else it would bound another area, or none, silently
        return self


class GeofenceSet(NumbersNotBools):
    """Arguments of the `geofences.set` command: the complete dynamic set, replacing the last."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    geofences: list[Geofence] = Field(max_length=500)

    @model_validator(mode="after")
    def _unique_ids(self) -> "GeofenceSet":
        ids = [g.id for g in self.geofences]
        if len(ids) != len(set(ids)):
            raise ValueError("geofence ids must be unique")
        return self

"""Config of the services: what each reports, and when."""

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edged.config.access import (
    AccessServiceConfig,
    OccupancyServiceConfig,
    PanicServiceConfig,
)
from edged.config.base import NAME_PATTERN, Strict
from edged.config.geofences import Geofence, GeofenceSet
from edged.config.kiosk import KioskConfig

SIGNAL_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")

CO2E_KG_PER_L = {
    "diesel": 3.17,  # French regulatory factor, well to wheel: 0.66 upstream + 2.51 combustion
}
"""Default well-to-wheel factors; a config adds other fuels with their own factor."""


class ReportingConfig(Strict):
    """When a position is due, as vehicle trackers decide it."""

    min_period_s: float = Field(default=1.0, ge=0, le=3600, description="never more often")
    max_period_s: float = Field(default=30.0, gt=0, le=86400, description="heartbeat")
    min_distance_m: float = Field(default=25.0, ge=0, le=100_000)
    heading_change_deg: float = Field(default=30.0, gt=0, le=180)


class PositionServiceConfig(Strict):
    qos: Literal[0, 1] = 0
    stopped_below_mps: float = Field(
        default=1.0, ge=0, le=10, description="slower than this, the vehicle counts as stopped"
    )
    heading_min_speed_mps: float = Field(
        default=2.0, ge=0, le=50, description="heading changes count only above this speed"
    )
    moving: ReportingConfig = ReportingConfig()
    stopped: ReportingConfig = ReportingConfig(
        min_period_s=10.0, max_period_s=300.0, min_distance_m=50.0
    )
    fix_lost_after_s: float = Field(
        default=10.0, gt=0, le=3600, description="no valid fix this long: `events/fix` lost"
    )
    max_hdop: float = Field(
        default=5.0,
        gt=0,
        le=100,
        description="the odometer leaves out fixes with a worse HDOP (a fix without HDOP counts)",
    )
    wheels_witness: bool = Field(
        default=True,
        description="judge fixes against the CAN bus's wheel speed (with a real receiver and "
        "can.bus); false on a bench whose bus is not the route's vehicle (a recorded FMS "
        "day beside a scripted route)",
    )
    route_pace: float = Field(
        default=1.0,
        ge=1,
        le=1000,
        description="route seconds per second of the fixes' time: 1 on a vehicle; a bench "
        "playing a route faster through a real driver (hil/rig) says how much, or every "
        "fix of it is a jump no vehicle makes",
    )


class GeofenceServiceConfig(Strict):
    hysteresis_m: float = Field(default=20.0, ge=0, le=1000)
    dwell_s: float = Field(default=10.0, ge=0, le=3600)
    max_hdop: float = Field(
        default=5.0,
        gt=0,
        le=100,
        description="a fix with a worse HDOP neither starts nor calls off an arrival or a "
        "departure (a fix without HDOP counts)",
    )
    fences: list[Geofence] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _unique_ids(self) -> "GeofenceServiceConfig":
        GeofenceSet(geofences=self.fences)
        return self


VEHICLE_DEADBANDS = {
    "speed_kmh": 10.0,
    "total_distance_km": 1.0,
    "fuel_level_pct": 2.0,
    "fuel_used_l": 1.0,
    "engine_rpm": 500.0,
    "engine_hours": 0.25,
}
"""Default deadbands of `vehicle`, in each field's unit."""


VEHICLE_FIELDS = (
    "speed",
    "total_distance",
    "fuel_used",
    "fuel_level",
    "engine_speed",
    "engine_hours",
)
"""The fields of `vehicle` a DBC signal feeds (`VehicleServiceConfig`'s of the same names)."""


class VehicleServiceConfig(Strict):
    """Which DBC signal feeds which vehicle field: `"MESSAGE.Signal"`, as named in the DBC."""

    qos: Literal[0, 1] = 0
    period_s: float = Field(
        default=10.0, ge=0.5, le=3600, description="how often the values are looked at"
    )
    on_change: bool = Field(
        default=True,
        description="send `vehicle` only when a value moved past its deadband (or at the "
        "heartbeat); false: every period_s, as edged did before",
    )
    heartbeat_s: float = Field(
        default=300.0, ge=1, le=86400, description="`vehicle` at least this often (on_change)"
    )
    deadbands: dict[str, float] = Field(
        default_factory=lambda: dict(VEHICLE_DEADBANDS),
        description="field -> smallest change worth a message; a field not named here (and "
        "every `extra` signal) counts on any change. Doors, ignition and the trip always count",
    )
    speed: str | None = "CCVS1.WheelBasedVehicleSpeed"
    total_distance: str | None = "VDHR.TotalVehicleDistanceHighRes"
    fuel_used: str | None = "LFC.EngineTotalFuelUsed"
    fuel_level: str | None = "DD.FuelLevel1"
    engine_speed: str | None = "EEC1.EngineSpeed"
    engine_hours: str | None = "HOURS.EngineTotalHoursOfOperation"
    doors: dict[str, str] = Field(
        default_factory=lambda: {"front": "DC2.Door1OpenStatus", "rear": "DC2.Door2OpenStatus"},
        description="door name -> 2-bit J1939 open status signal (0 closed, 1 open)",
    )
    extra: dict[str, str] = Field(
        default_factory=dict, description="more signals to publish under `extra`"
    )
    ignition_rpm: float = Field(
        default=300, ge=0, description="engine at or above this: ignition on"
    )
    ignition_off_after_s: float = Field(
        default=30, gt=0, le=3600, description="engine stopped or bus silent this long: off"
    )

    @model_validator(mode="after")
    def _deadband_fields(self) -> "VehicleServiceConfig":
        for name, band in self.deadbands.items():
            if name not in VEHICLE_DEADBANDS:
                known = ", ".join(VEHICLE_DEADBANDS)
                raise ValueError(f"deadbands: {name!r} is not a vehicle field ({known})")
            if not band >= 0:
                raise ValueError(f"deadbands.{name} must be 0 or more, not {band}")
        return self

    def signals(self) -> list[tuple[str, str, str | None]]:
        """`(kind, key, "MESSAGE.Signal")` of each signal named here, in this order: each
        field (`kind` "field", `key` its name; None when unset), each door ("door"), each
        extra ("extra"). What the service decodes, and what the config check holds to the
        DBC."""
        return [
            *(("field", name, getattr(self, name)) for name in VEHICLE_FIELDS),
            *(("door", door, ref) for door, ref in self.doors.items()),
            *(("extra", key, ref) for key, ref in self.extra.items()),
        ]

    @model_validator(mode="after")
    def _signal_names(self) -> "VehicleServiceConfig":
        for _, _, ref in self.signals():
            if ref is not None and not SIGNAL_REF.fullmatch(ref):
                raise ValueError(f"{ref!r} is not MESSAGE.Signal as named in the DBC")
        return self


class TripServiceConfig(Strict):
    auto: bool = Field(default=True, description="open and close trips on ignition")
    fuel: str = Field(default="diesel", pattern=NAME_PATTERN)
    co2e_kg_per_l: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(
        default_factory=lambda: dict(CO2E_KG_PER_L),
        description="well-to-wheel kg CO2e per litre, per fuel",
    )
    consumption_l_per_100km: float = Field(
        default=30.0, gt=0, le=200, description="estimate when the bus gives no fuel total"
    )
    min_distance_km: float = Field(
        default=0.1, ge=0, description="shorter trips (an engine test) are not published"
    )

    @model_validator(mode="after")
    def _fuel_known(self) -> "TripServiceConfig":
        if self.fuel not in self.co2e_kg_per_l:
            known = ", ".join(sorted(self.co2e_kg_per_l))
            raise ValueError(f"no CO2e factor for fuel {self.fuel!r}; known: {known}")
        return self


class ServicesConfig(Strict):
    position: PositionServiceConfig = PositionServiceConfig()
    geofences: GeofenceServiceConfig = GeofenceServiceConfig()
    vehicle: VehicleServiceConfig = VehicleServiceConfig()
    trips: TripServiceConfig = TripServiceConfig()
    kiosk: KioskConfig = KioskConfig()
    access: AccessServiceConfig = AccessServiceConfig()
    occupancy: OccupancyServiceConfig = OccupancyServiceConfig()
    panic: PanicServiceConfig = PanicServiceConfig()

"""The services a node runs, in the order they are built and started, and when each is on.

Adding a service is its file in this folder and one row here. A row builds the service
from the host and the config (its own section, and what it needs of `[node]` comes with
the host); the node collects the commands each declares and runs them.
"""

from collections.abc import Callable
from dataclasses import dataclass

from edged.config.models import EdgedConfig
from edged.host import Host
from edged.services.access import AccessService
from edged.services.base import Service
from edged.services.doors import DoorService
from edged.services.geofences import GeofenceService
from edged.services.journey import JourneyService
from edged.services.mode import ModeService
from edged.services.occupancy import OccupancyService
from edged.services.panic import PanicService
from edged.services.position import PositionService
from edged.services.vehicle import VehicleService


def always(config: EdgedConfig) -> bool:
    return True


def has_gps(config: EdgedConfig) -> bool:
    """A venue has no GPS: no "fix lost" for it."""
    return any(d.enabled and d.driver.startswith("gps.") for d in config.drivers)


def kiosk(host: Host, config: EdgedConfig) -> Service:
    from edged.services.kiosk import KioskService  # aiohttp: ~10 MB, only with a screen

    return KioskService(host, config.services.kiosk)


@dataclass(frozen=True)
class Row:
    name: str
    build: Callable[[Host, EdgedConfig], Service]
    enabled: Callable[[EdgedConfig], bool] = always


SERVICES: tuple[Row, ...] = (
    Row("position", lambda h, c: PositionService(h, c.services.position, watch_fix=has_gps(c))),
    Row("geofences", lambda h, c: GeofenceService(h, c.services.geofences)),
    Row("vehicle", lambda h, c: VehicleService(h, c.services.vehicle, c.services.trips)),
    Row("mode", lambda h, c: ModeService(h)),
    Row("journey", lambda h, c: JourneyService(h)),
    Row("doors", lambda h, c: DoorService(h, default_pulse_s=c.services.access.pulse_s)),
    Row(
        "occupancy",
        lambda h, c: OccupancyService(h, c.services.occupancy),
        lambda c: c.services.occupancy.enabled,
    ),
    Row(
        "access",
        lambda h, c: AccessService(h, c.services.access),
        lambda c: c.services.access.enabled,
    ),
    Row("panic", lambda h, c: PanicService(h, c.services.panic)),
    Row("kiosk", kiosk, lambda c: c.services.kiosk.enabled),
)


def build(host: Host, config: EdgedConfig) -> dict[str, Service]:
    """Every enabled service, by name, in table order."""
    return {row.name: row.build(host, config) for row in SERVICES if row.enabled(config)}

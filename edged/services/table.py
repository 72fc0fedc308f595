"""The services a node runs, in the order they are built and started, and when each is on.

Adding a service is its file in this folder and one row here. A row builds the service
from the host and the config (its own section, and what it needs of `[node]` comes with
the host); the node collects the commands each declares and runs them. Services speak
through the bus; the one exception is said in its row: the riders' hotspot serves the
kiosk's own view (its portal is the kiosk page on the phones), so it is built with it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edged.config.models import EdgedConfig
from edged.host import Host
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


def wheels_witness(config: EdgedConfig) -> bool:
    """The CAN bus's wheels witness the fixes only when both are of this vehicle: a real
    receiver and a real bus. A simulated route (`gps.sim`) beside a recorded bus
    (`can.replay`), as in the shipped examples and the demo, would contradict each other;
    `[services.position] wheels_witness = false` says so of a bench (hil/rig)."""
    enabled = {d.driver for d in config.drivers if d.enabled}
    real = bool(enabled & {"gps.nmea-serial", "gps.gpsd"}) and "can.bus" in enabled
    return real and config.services.position.wheels_witness


Built = Mapping[str, Service]
"""The services built so far, by name (only the hotspot reads it: the kiosk it shows)."""


def access(host: Host, config: EdgedConfig, built: Built) -> Service:
    # its lists, decisions and card refs: only on a node with access control (off in the
    # shipped configs); ~6 ms of a start here, ~40 ms at a sixth of a Pi Zero 2 W's core
    from edged.services.access import AccessService

    return AccessService(host, config.services.access)


def kiosk(host: Host, config: EdgedConfig, built: Built) -> Service:
    from edged.services.kiosk import KioskService  # its HTTP server and models: only with a screen

    return KioskService(host, config.services.kiosk)


def wifi(host: Host, config: EdgedConfig, built: Built) -> Service:
    from edged.services.kiosk import KioskService
    from edged.services.wifi import WifiService

    screen = built["kiosk"]
    assert isinstance(screen, KioskService)  # enabled only with the kiosk (its row is before)
    return WifiService(host, config.wifi, screen, screen.config)


def hotspot(config: EdgedConfig) -> bool:
    """The riders' hotspot, with its portal: only on a node with a kiosk (the config
    refuses `[wifi] enabled` without one)."""
    return config.wifi.enabled and config.services.kiosk.enabled


@dataclass(frozen=True)
class Row:
    name: str
    build: Callable[[Host, EdgedConfig, Built], Service]
    enabled: Callable[[EdgedConfig], bool] = always


SERVICES: tuple[Row, ...] = (
    Row(
        "position",
        lambda h, c, _: PositionService(
            h, c.services.position, watch_fix=has_gps(c), wheels=wheels_witness(c)
        ),
    ),
    Row("geofences", lambda h, c, _: GeofenceService(h, c.services.geofences)),
    Row("vehicle", lambda h, c, _: VehicleService(h, c.services.vehicle, c.services.trips)),
    Row("mode", lambda h, c, _: ModeService(h)),
    Row("journey", lambda h, c, _: JourneyService(h)),
    Row("doors", lambda h, c, _: DoorService(h, default_pulse_s=c.services.access.pulse_s)),
    Row(
        "occupancy",
        lambda h, c, _: OccupancyService(h, c.services.occupancy),
        lambda c: c.services.occupancy.enabled,
    ),
    Row("access", access, lambda c: c.services.access.enabled),
    Row("panic", lambda h, c, _: PanicService(h, c.services.panic)),
    Row("kiosk", kiosk, lambda c: c.services.kiosk.enabled),
    Row("wifi", wifi, hotspot),
)


def build(host: Host, config: EdgedConfig) -> dict[str, Service]:
    """Every enabled service, by name, in table order."""
    built: dict[str, Service] = {}
    for row in SERVICES:
        if row.enabled(config):
            built[row.name] = row.build(host, config, built)
    return built

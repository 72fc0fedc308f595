"""Driver names to classes, imported lazily: a node loads only the hardware libraries it uses.

A name is `{kind}.{backend}`; every backend of a kind keeps the same contract (the contract
tests under tests/drivers/{kind}/ run on each one listed here).
"""

import importlib
from typing import Any

from core.driver import DriverOptions
from core.errors import EdgedError

REGISTRY: dict[str, str] = {
    "gps.sim": "drivers.gps.sim:SimGps",
    "gps.nmea-serial": "drivers.gps.serial:NmeaSerialGps",
    "gps.gpsd": "drivers.gps.gpsd:GpsdGps",
    "can.bus": "drivers.can.bus:CanBusDriver",
    "can.replay": "drivers.can.replay:CanReplayDriver",
    "nfc.libnfc": "drivers.nfc.libnfc:LibnfcReader",
    "nfc.sim": "drivers.nfc.sim:SimReader",
    "gpio.gpiozero": "drivers.gpio.board:GpioBoard",
}
"""Registry name -> "module:Class". A new backend is one line here."""


class UnknownDriverError(EdgedError):
    pass


def backends(kind: str) -> list[str]:
    """The registry names of one device kind ("gps" -> gps.sim, gps.nmea-serial...)."""
    return [name for name in REGISTRY if name.partition(".")[0] == kind]


def driver_class(name: str) -> Any:
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownDriverError(f"unknown driver {name!r}; known drivers: {known}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownDriverError(
            f"driver {name!r} cannot be loaded: the library {exc.name} is not installed; "
            "reinstall edged with its dependencies (pip install edged)"
        ) from exc
    return getattr(module, class_name)


def options_model(name: str) -> type[DriverOptions]:
    cls = driver_class(name)
    options: type[DriverOptions] = cls.Options
    return options

"""Typed events that drivers hand to services. They carry no MQTT, topic or JSON knowledge."""

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum


class FixMode(IntEnum):
    NONE = 1
    TWO_D = 2
    THREE_D = 3


@dataclass(frozen=True, slots=True)
class Fix:
    """One position epoch as the receiver stated it."""

    fix_time: datetime  # UTC, from the receiver
    lat: float
    lon: float
    alt: float | None = None
    speed: float | None = None  # m/s over ground
    course: float | None = None  # degrees from true north
    mode: FixMode = FixMode.THREE_D
    quality: int = 1  # GGA fix quality: 1 GPS, 2 DGPS, 4 RTK fixed...
    satellites: int | None = None
    hdop: float | None = None

    @property
    def valid(self) -> bool:
        return self.mode >= FixMode.TWO_D and self.quality > 0

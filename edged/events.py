"""Typed events that drivers hand to services. They carry no MQTT, topic or JSON knowledge."""

from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class J1939Signals:
    """Decoded signals of one J1939 parameter group from one source address.

    A signal the ECU reports as "not available" or "error" (0xFF…/0xFE…) is None, never a
    number. `name` is the message name in the DBC (e.g. "CCVS1"); signal keys are the DBC's
    signal names, so a user adds signals by editing the DBC and the config, not the code.
    """

    pgn: int
    name: str
    source: int
    signals: Mapping[str, float | int | None]
    ts: float  # seconds, time.monotonic() at reception


@dataclass(frozen=True, slots=True)
class TroubleCode:
    spn: int  # suspect parameter number, 19 bits
    fmi: int  # failure mode identifier, 5 bits
    occurrence: int  # 7 bits


@dataclass(frozen=True, slots=True)
class ActiveFaults:
    """A J1939 DM1 message: the lamp states and every active trouble code of one ECU."""

    source: int
    lamps: Mapping[str, int]  # malfunction, red_stop, amber_warning, protect: 0 off, 1 on...
    codes: tuple[TroubleCode, ...]
    ts: float

"""Typed events that drivers hand to services. They carry no MQTT, topic or JSON knowledge."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Literal, get_args


class FixMode(IntEnum):
    NONE = 1
    TWO_D = 2
    THREE_D = 3


MEASURED = frozenset({1, 2, 3, 4, 5, 9})
"""GGA qualities of a position measured from satellites (GPS, DGPS, PPS, RTK fixed, RTK
float, and 9: NovAtel's WAAS/SBAS, its receivers' default); 6 estimated (dead reckoning),
7 manual input and 8 simulator are not, whatever their numbers."""
SIMULATED = 8
"""GGA quality of a receiver in its simulator mode: neither its position nor its date is
real."""


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
    date_known: bool = True  # False: the receiver gave no date yet, fix_time's day is a guess
    received: float | None = field(default=None, compare=False)
    """time.monotonic() when the epoch's first sentence arrived (None: not known), so the
    clock can be set from a fix published later than the receiver sent it."""
    pace: float = field(default=1.0, compare=False)
    """Route seconds per second of `fix_time`: gps.sim's `speed_factor` (a sped-up route on
    the wall clock), 1 for a receiver; how far the vehicle may have gone is judged by it."""

    @property
    def valid(self) -> bool:
        return self.mode >= FixMode.TWO_D and self.quality > 0

    @property
    def measured(self) -> bool:
        """Measured from satellites (`MEASURED`), not estimated, typed in or simulated."""
        return self.quality in MEASURED


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
    pace: float = 1.0  # the bus's seconds per second of `ts`: a recording replayed faster, more


@dataclass(frozen=True, slots=True)
class TroubleCode:
    spn: int  # suspect parameter number, 19 bits
    fmi: int  # failure mode identifier, 5 bits
    occurrence: int  # 7 bits
    cm: int = 0  # SPN conversion method: 0 J1939-73 version 4 layout, 1 an older one


@dataclass(frozen=True, slots=True)
class ActiveFaults:
    """A J1939 DM1 message: the lamp states and every active trouble code of one ECU."""

    source: int
    lamps: Mapping[str, int]  # malfunction, red_stop, amber_warning, protect: 0 off, 1 on...
    codes: tuple[TroubleCode, ...]
    ts: float


# -- access, counting and alarms: from the NFC and GPIO drivers ----------------------------


@dataclass(frozen=True, slots=True)
class Tap:
    """A card presented to a reader: one per presentation, however long it is held.

    `uid` is the raw ISO 14443A UID (4, 7 or 10 bytes). It never leaves the node: the access
    service turns it into a keyed `card_ref` before anything is stored or published.
    """

    uid: bytes
    reader: str  # the driver instance name, e.g. "front-reader"
    ts: float  # time.monotonic() when the card was read


@dataclass(frozen=True, slots=True)
class DoorInput:
    """A door contact changed (GPIO)."""

    door: str
    open: bool
    ts: float


@dataclass(frozen=True, slots=True)
class VehicleDoorStatus:
    """A door's 2-bit open status in one frame of the vehicle's bus (DC2): 0 closed, 1 open,
    2 error, 3 not available; None when the frame did not carry it. Every frame of the ECU
    the vehicle service follows, not only changes: the GPIO driver gates the counting beams
    of a door of that name by it, and a status that stops coming is a bus gone quiet."""

    door: str
    status: int | None
    ts: float  # time.monotonic() when the frame was taken, as J1939Signals.ts


DOOR_HEARD = (0, 1, 2)
"""A door's status that says the door controller knows the door (an error too): not 3, not
available, which is what FMS sends for a door position the vehicle does not have."""


@dataclass(frozen=True, slots=True)
class VehicleDoorUnheard:
    """The vehicle's bus has talked for a while (other parameter groups kept coming) and not
    once given a status of this door (0, 1 or 2) since the vehicle service started: a
    gateway that filters its message, a vehicle that does not send it, the wrong door number
    in the config. Sent once, and again to a driver that starts; a `VehicleDoorStatus` with
    a status ends it. The GPIO driver reports it for the beams of that door, whose gate is
    off meanwhile (a bus is not a contact: nobody else can tell)."""

    door: str
    signal: str  # as configured, "DC2.Door1OpenStatus"
    message_heard: bool  # frames of the signal's message came, none with the door's status
    positions: tuple[str, ...]  # doors that message gave a status of ("1", "2"), if any
    talked_s: float  # how long the bus had talked without a gap when it was found
    ts: float  # time.monotonic() when it was found
    again: bool = False  # told again to a driver that (re)started: no new finding


@dataclass(frozen=True, slots=True)
class Crossing:
    """One person went through a door's pair of counting beams, in the direction given."""

    door: str
    direction: Literal["in", "out"]
    ts: float


CountDoubtName = Literal[
    "beam_stuck",
    "beam_one_sided",
    "beam_rests_blocked",
    "beam_silent",
    "door_gate_inverted",
    "door_silent",
]
"""The GPIO driver's findings that make a door's beam count unreliable while they last,
named as its health counters: a beam blocked `max_transit_s` (whoever crosses the other
counts nothing), a beam stuck clear, a pair read the wrong way round, beams that never
change while the door opens, a door contact read the wrong way round, a contact stuck shut
(its beams' walks all dropped)."""
COUNT_DOUBTS: frozenset[str] = frozenset(get_args(CountDoubtName))


@dataclass(frozen=True, slots=True)
class CountDoubt:
    """A finding of the counting beams at `door` began (`doubted`) or cleared. Only from
    the GPIO driver, on the node's own bus: no message from outside the node makes one."""

    door: str
    finding: CountDoubtName
    doubted: bool
    ts: float


@dataclass(frozen=True, slots=True)
class CountDoubtsHeld:
    """To a GPIO driver that (re)started: the doubts the occupancy service holds, as
    `(door, finding)`, kept across the restart. Its beams take each as found already, so
    the finding's own clearing clears it (or at once, when what it says is not so now)."""

    doubts: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PanicInput:
    """The panic button was pressed (True) or released (False)."""

    pressed: bool
    ts: float


@dataclass(frozen=True, slots=True)
class IgnitionInput:
    """The ignition sense line changed (GPIO); more direct than engine speed from CAN."""

    on: bool
    ts: float


# -- from services to outputs: the GPIO driver subscribes to these --------------------------


@dataclass(frozen=True, slots=True)
class Unlock:
    """Energise the lock relay for `pulse_s` seconds (a granted tap, `door.unlock`)."""

    pulse_s: float
    ts: float  # time.monotonic() of the decision, to measure tap -> relay latency


FeedbackPattern = Literal["granted", "denied", "alarm", "alarm_acked", "alarm_off"]
"""granted: green + one beep. denied: red + three beeps. alarm: red blinking and a buzzer
pattern until alarm_acked (help is coming: slow blink, buzzer silent) or alarm_off."""


@dataclass(frozen=True, slots=True)
class Feedback:
    pattern: FeedbackPattern
    ts: float

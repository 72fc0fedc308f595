"""Options of the `gpio.gpiozero` driver: what is wired to which pin, and how it behaves.

Everything is checked when the config is loaded (`edged check-config`), not when the pins
open on the road: pin names, a pin used twice under two spellings, a pull-down asked of a
pin that has a fixed pull-up, a control socket asked of real hardware.

Polarity: every input says which electrical level means "yes" (door open, beam blocked,
button pressed, ignition on) with `active_high`, separately from its pull resistor, since
the wiring decides both: a reed contact to ground with the internal pull-up reads HIGH when
the door opens; an optocoupler on the ignition line pulls LOW when the ignition is on.
Every output says whether HIGH energises it (many relay boards are active-low).
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from core.confignumbers import NumbersNotBools
from core.driver import DriverOptions
from drivers.gpio.flapping import FLAP_CHANGES, FLAP_STEADY_S, FLAP_WITHIN_S
from drivers.gpio.pins import FIXED_PULL_UP, Pin, name

Pull = Literal["up", "down", "none"]
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the terminating NUL


class _Part(NumbersNotBools):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Input(_Part):
    pin: Pin = Field(description="BCM number or gpiozero name: 17, 'GPIO17', 'BOARD11'")
    pull: Pull = Field(
        default="up",
        description="internal resistor: 'up' for a contact to ground, 'none' when the "
        "circuit has its own",
    )
    active_high: bool = Field(
        default=True, description="HIGH on the pin means yes (open, blocked, pressed, on)"
    )


class DoorContact(_Input):
    name: str = Field(min_length=1, max_length=40, description="door name in events")
    bounce_s: float = Field(
        default=0.05,
        ge=0,
        le=2,
        description="a change counts once the level has been steady this long (contact "
        "bounce), or this much longer at the new level than at the old (a chattering contact)",
    )
    flap_changes: int = Field(
        default=FLAP_CHANGES,
        ge=3,
        le=50,
        description="this many changes within flap_within_s: the contact is flapping (a "
        "loose wire), not a door; no events until it is steady",
    )
    flap_within_s: float = Field(
        default=FLAP_WITHIN_S, gt=0, le=60, description="the window of flap_changes"
    )
    flap_steady_s: float = Field(
        default=FLAP_STEADY_S,
        gt=0,
        le=60,
        description="a flapping contact steady this long reports its level and is a door again",
    )


class BeamPair(_Part):
    door: str = Field(
        min_length=1,
        max_length=40,
        description="door name in Crossing events; a door contact of this name gates the "
        "beams: a walk counts only if the door was open at some moment of it",
    )
    outer: Pin = Field(description="pin of the beam on the outside of the doorway")
    inner: Pin = Field(description="pin of the beam on the inside of the doorway")
    pull: Pull = Field(default="up", description="internal resistor on both beam inputs")
    active_high: bool = Field(
        default=True,
        description="HIGH means blocked (an NPN light-on receiver with a pull-up: a cut wire "
        "then reads blocked and is reported stuck, not silently clear)",
    )
    min_block_s: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="a block or drop-out shorter than this is noise (insects, reflections)",
    )
    max_transit_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="a beam blocked with no change this long is reported stuck (counted "
        "beam_stuck; the walk in progress goes on: whoever stood in the door and walks on "
        "counts)",
    )

    @model_validator(mode="after")
    def _sane(self) -> "BeamPair":
        if self.outer == self.inner:
            raise ValueError(f"outer and inner are the same pin {name(self.outer)}")
        if self.max_transit_s <= self.min_block_s:
            raise ValueError("max_transit_s must be longer than min_block_s")
        return self


class PanicButton(_Input):
    active_high: bool = Field(
        default=False, description="HIGH means pressed (default: a button to ground, pull-up)"
    )
    hold_s: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="pressed this long before it counts, so a brush or a bag does not raise "
        "the alarm",
    )
    bounce_s: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="contact bounce on press and release: a change counts once steady this "
        "long, or this much longer at the new level than at the old (a worn contact chattering)",
    )
    dropout_s: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="a held button that opens this long or less (a worn contact on a bump) "
        "is still held: the hold goes on",
    )
    presses: int = Field(
        default=3,
        ge=0,
        le=10,
        description="this many presses within presses_within_s raise the alarm, however "
        "short each (at least 0.1 s); 0: only a hold raises",
    )
    presses_within_s: float = Field(default=3.0, gt=0, le=30, description="the window of `presses`")

    @model_validator(mode="after")
    def _presses(self) -> "PanicButton":
        if self.presses == 1:
            raise ValueError("presses = 1 would raise on any brush: use 0 (off) or 2 or more")
        return self


class IgnitionSense(_Input):
    active_high: bool = Field(
        default=False,
        description="HIGH means on (default: an optocoupler pulling the pin low when on)",
    )
    bounce_s: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="on or off counts once steady this long, or this much longer at the new "
        "level than at the old (the line dips while cranking)",
    )


class Output(_Part):
    pin: Pin = Field(description="BCM number or gpiozero name: 17, 'GPIO17', 'BOARD11'")
    active_high: bool = Field(
        default=True, description="HIGH energises it; false for active-low relay boards"
    )


class FeedbackTimings(_Part):
    """Indicator timings; tests shorten them."""

    granted_s: float = Field(default=1.0, gt=0, le=10, description="green on after a grant")
    denied_s: float = Field(default=1.0, gt=0, le=10, description="red on after a refusal")
    beep_s: float = Field(
        default=0.1, gt=0, le=2, description="a short beep, and the gap between beeps"
    )
    denied_beeps: int = Field(default=3, ge=1, le=10, description="beeps for a refusal")
    alarm_blink_s: float = Field(
        default=0.25, gt=0, le=5, description="alarm: red on this long, then off this long"
    )
    alarm_beep_s: float = Field(
        default=0.5, gt=0, le=5, description="alarm: buzzer on this long, then off this long"
    )
    acked_on_s: float = Field(
        default=0.2, gt=0, le=5, description="alarm acknowledged: red on this long..."
    )
    acked_off_s: float = Field(
        default=1.8, gt=0, le=10, description="...then off this long (a slow, calm blink)"
    )


class GpioOptions(DriverOptions):
    pin_factory: Literal["default", "mock"] = Field(
        default="default",
        description="'default': gpiozero's choice for this Pi (lgpio, RPi.GPIO...); 'mock': "
        "gpiozero's MockFactory, for the demo and the test rig",
    )
    mock_control: Path | None = Field(
        default=None,
        description="unix socket serving the mock pins to a test rig in another process "
        "(hardware-in-the-loop only; refused unless pin_factory = 'mock')",
    )
    doors: tuple[DoorContact, ...] = Field(default=(), description="door contacts")
    beams: tuple[BeamPair, ...] = Field(
        default=(), description="pairs of counting beams, one per doorway"
    )
    panic: PanicButton | None = Field(default=None, description="the panic button")
    ignition: IgnitionSense | None = Field(default=None, description="the ignition sense line")
    lock: Output | None = Field(default=None, description="the door lock relay")
    green: Output | None = Field(default=None, description="green LED (access granted)")
    red: Output | None = Field(default=None, description="red LED (refused, alarm)")
    buzzer: Output | None = Field(default=None, description="buzzer (active: on/off, no tone)")
    max_unlock_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="longest the lock relay stays energised, whatever an Unlock asks",
    )
    feedback: FeedbackTimings = Field(
        default_factory=FeedbackTimings, description="LED and buzzer timings"
    )

    @field_validator("mock_control", mode="after")
    @classmethod
    def _socket_path(cls, value: Path | None, info: Any) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        if not value.is_absolute() and base is not None:
            value = Path(base) / value
        if len(str(value).encode()) > SOCKET_PATH_MAX:
            raise ValueError(f"a unix socket path is at most {SOCKET_PATH_MAX} bytes")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "GpioOptions":
        if self.mock_control is not None and self.pin_factory != "mock":
            raise ValueError(
                "mock_control drives pins from outside the daemon: it is for the test rig "
                "only and needs pin_factory = 'mock'"
            )
        problems: list[str] = []
        seen: dict[int, str] = {}
        for where, pin, pull in self.pin_uses():
            if pin in seen:
                problems.append(f"{name(pin)} is used twice: {seen[pin]} and {where}")
            else:
                seen[pin] = where
            if pull is not None and pull != "up" and pin in FIXED_PULL_UP:
                problems.append(
                    f"{where}: {name(pin)} has a fixed pull-up on the board; "
                    "set pull = 'up' or use another pin"
                )
        for label, names in (
            ("doors", [d.name for d in self.doors]),
            ("beams", [b.door for b in self.beams]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(f"{label}: {', '.join(dupes)} appear(s) more than once")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def pin_uses(self) -> list[tuple[str, int, Pull | None]]:
        """(where in the options, BCM pin, pull for inputs) for every pin."""
        uses: list[tuple[str, int, Pull | None]] = []
        for i, d in enumerate(self.doors):
            uses.append((f"doors[{i}].pin", d.pin, d.pull))
        for i, b in enumerate(self.beams):
            uses.append((f"beams[{i}].outer", b.outer, b.pull))
            uses.append((f"beams[{i}].inner", b.inner, b.pull))
        for key in ("panic", "ignition"):
            part = getattr(self, key)
            if part is not None:
                uses.append((f"{key}.pin", part.pin, part.pull))
        for key in ("lock", "green", "red", "buzzer"):
            part = getattr(self, key)
            if part is not None:
                uses.append((f"{key}.pin", part.pin, None))
        return uses

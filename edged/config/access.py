"""`[services.access]`, `[services.occupancy]`, `[services.panic]` in the config."""

import re
from datetime import time
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from core.paths import PrivateConfigPath
from edged.config.base import Strict
from edged.security.signing import public_key_from_text

ReaderRole = Literal["entry", "exit", "both"]
OccupancyStatus = Literal[
    "EMPTY",
    "MANY_SEATS_AVAILABLE",
    "FEW_SEATS_AVAILABLE",
    "STANDING_ROOM_ONLY",
    "CRUSHED_STANDING_ROOM_ONLY",
    "FULL",
    "NOT_ACCEPTING_PASSENGERS",
]
"""GTFS-Realtime `VehiclePosition.OccupancyStatus` names."""

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
LIST_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
"""A room or profile name in the signed access lists (`edged.access.lists`): a name the
config gives for them must be one the lists can hold, or it never matches anything."""
_LIST_NAME = re.compile(LIST_NAME_PATTERN)


def _list_name(value: str) -> str:
    """Refuse a room or profile name the signed lists can never carry, saying what to write:
    such a name matched no booking or card, silently (a door that opened for nobody)."""
    if _LIST_NAME.fullmatch(value):
        return value
    hint = ""
    lowered = value.strip().lower()
    if lowered != value and _LIST_NAME.fullmatch(lowered):
        hint = f" (did you mean {lowered!r}?)"
    raise ValueError(
        "not a name the access lists can hold, so no booking or card would ever match it"
        f"{hint}: write it exactly as dispatch names it in the lists, 1 to 32 characters, "
        "lowercase letters a-z, digits, '-' or '_', starting with a letter or a digit "
        '(e.g. "ahun-salle-1")'
    )


ListName = Annotated[str, AfterValidator(_list_name)]
HELD_TOGETHER_S = 0.25
"""`together_s` by default. Two cards granted at one reader this close were held to it
together (a wallet): the driver reports each, in the same poll or on alternate ones (50 ms
apart by default). The second is refused `together`: one presentation is one rider, one
fare, one count. Riders tapping in turn take longer (one lifts a card, the next presents
one); a rider boarding with a second pass taps it on its own."""
NEVER = "never"
"""`[services.occupancy] reset_at = "never"`: no daily reset."""


class AccessServiceConfig(Strict):
    """Tap decisions from local lists; the lists come signed from dispatch (`access.update`)."""

    enabled: bool = False
    secret_file: PrivateConfigPath | None = Field(
        default=None,
        description="fleet secret for card_ref = HMAC-SHA256(secret, UID); mode 600",
    )
    card_ref_bytes: int = Field(
        default=16, ge=8, le=32, description="card_ref length (hex text is twice as long)"
    )
    lists_public_key: str | None = Field(
        default=None,
        description="base64 Ed25519 key that signs the access lists; unset: updates refused",
    )
    unknown_card: Literal["deny", "allow"] | None = Field(
        default=None,
        description="a card not on the lists; unset: deny on a shuttle and at a venue, "
        "allow (client check-in) in a truck",
    )
    unknown_fare_cents: int = Field(default=0, ge=0, le=100_000)
    deny_when_full: bool | None = Field(
        default=None, description="refuse entry at capacity; unset: yes at a venue only"
    )
    repeat_window_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="the same card again this soon is answered as before, charged and counted "
        "once (and past it while the card is read again within 2 s: still at the reader); "
        "0: no repeats",
    )
    repeat_unlocks: bool = Field(
        default=False,
        description="a repeat within repeat_window_s pulses the lock again (a venue door that "
        "is slow to open) when the card may still pass now (a booking that ended since does "
        "not); off: the feedback only, so one fare never lets two riders board",
    )
    free_exit: bool = Field(
        default=False,
        description="the door opens from inside without the lock (handle, push bar): an exit "
        "tap on a `both` reader is recorded and never unlocks; off: it unlocks only for a card "
        "that may enter now",
    )
    unsynced_validity: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="a card whose valid_from/valid_until neither a trusted clock nor the last "
        "trusted time can decide: refuse (staff_profiles still admitted) or allow",
    )
    expired_lists: Literal["allow", "refuse"] = Field(
        default="allow",
        description="lists past the `expires` dispatch signed into them (a node offline "
        "since: cards revoked meanwhile are not on them): allow (decide on them as ever, each "
        "tap flagged lists_expired, health says so) or refuse (only staff_profiles let in by "
        "the lists); the deny list applies either way",
    )
    together_s: float = Field(
        default=HELD_TOGETHER_S,
        ge=0,
        le=2,
        description="cards granted at one reader this close were held together (a wallet): "
        "the second is refused `together`, one presentation one rider; 0: each card boards",
    )
    pulse_s: float = Field(default=3.0, gt=0, le=30, description="lock relay pulse on a grant")
    rooms: list[ListName] = Field(
        default_factory=list,
        max_length=64,
        description="venue: the rooms this door opens (names are fleet-wide: the lists carry "
        "every venue's bookings); unset: a booking of any room opens it",
    )
    booking_early_s: float = Field(
        default=600, ge=0, le=86400, description="venue: a booking opens this early"
    )
    readers: dict[str, ReaderRole] = Field(
        default_factory=dict,
        description="reader driver name -> entry, exit or both (default: both; at a venue "
        "a card already inside leaves, see free_exit)",
    )
    staff_profiles: list[ListName] = Field(default_factory=lambda: ["staff"], max_length=64)
    provider_profiles: list[ListName] = Field(default_factory=lambda: ["provider"], max_length=64)

    @field_validator("lists_public_key")
    @classmethod
    def _is_key(cls, value: str | None) -> str | None:
        if value is not None:
            public_key_from_text(value)
        return value

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> "AccessServiceConfig":
        if self.enabled and self.secret_file is None:
            raise ValueError(
                "secret_file is required when access is enabled: card UIDs are only ever "
                "handled as HMAC card_refs (make one: head -c 32 /dev/urandom > secret; "
                "chmod 600 secret)"
            )
        return self


class Threshold(Strict):
    below_pct: float = Field(gt=0, le=1000, description="this status while percent < below_pct")
    status: OccupancyStatus


DEFAULT_THRESHOLDS = [
    Threshold(below_pct=50, status="MANY_SEATS_AVAILABLE"),
    Threshold(below_pct=80, status="FEW_SEATS_AVAILABLE"),
    Threshold(below_pct=95, status="STANDING_ROOM_ONLY"),
    Threshold(below_pct=100, status="CRUSHED_STANDING_ROOM_ONLY"),
]
"""Above the last threshold: FULL. A count of zero: EMPTY."""


class OccupancyServiceConfig(Strict):
    enabled: bool = True
    capacity: int | None = Field(
        default=None, ge=1, le=100_000, description="people allowed on board or inside"
    )
    count_from: list[Literal["taps", "beams"]] = Field(
        default=["taps"],
        description="what counts people: granted taps, counting beams, or both (at "
        "different doors; the same person must not be counted by both)",
    )
    door_cycles: dict[str, Literal["in", "out"]] = Field(
        default_factory=dict,
        description="door -> direction: each opening of that door counts one person",
    )
    percent_step: int = Field(
        default=10, ge=1, le=50, description="percent is rounded to this, so no one is tracked"
    )
    thresholds: list[Threshold] = Field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    reset_at: str | None = Field(
        default="03:00",
        description='the daily reset, HH:MM in [node] timezone, or "never" (TOML cannot unset '
        "a key, and leaving it out means 03:00)",
    )
    reset_on_trip_end: bool = True
    trip_end_grace_s: float = Field(
        default=600,
        ge=0,
        le=86_400,
        description="the reset at a trip's end waits this long, and is called off if a trip "
        "starts meanwhile: an engine stopped at a stop or a level crossing (stop-start, a "
        "key turned) ends a trip with riders aboard; 0: at once",
    )

    @field_validator("reset_at")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is not None and value != NEVER and not _HHMM.fullmatch(value):
            raise ValueError(f'reset_at must be HH:MM (24 h) or "never", got {value!r}')
        return value

    @field_validator("thresholds")
    @classmethod
    def _increasing(cls, value: list[Threshold]) -> list[Threshold]:
        limits = [t.below_pct for t in value]
        if limits != sorted(set(limits)):
            raise ValueError("thresholds must have strictly increasing below_pct")
        return value

    @property
    def reset_time(self) -> time | None:
        if self.reset_at is None or self.reset_at == NEVER:
            return None
        hours, minutes = self.reset_at.split(":")
        return time(int(hours), int(minutes))


class PanicServiceConfig(Strict):
    repeat_s: float = Field(
        default=30, ge=5, le=3600, description="re-send an unacknowledged alarm this often"
    )
    acked_indicator_s: float = Field(
        default=120, ge=0, le=3600, description="'help is coming' shown this long after ack"
    )
    stuck_after_s: float = Field(
        default=300,
        ge=10,
        le=86400,
        description="a button held this long is reported stuck (health: panic.stuck)",
    )

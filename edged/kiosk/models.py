"""What dispatch sends to the kiosk (command args), what it keeps on disk, what riders post.

Every text that reaches the screen is plain text: it is shown with `textContent`, never as
HTML, and control characters are refused here so a message cannot hide or reorder text.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from core.errors import EdgedError
from edged.errors import CommandError
from edged.instants import end_of_day
from edged.kiosk.marks import MAX_MARKS, cap_marks, longest_marks, too_many_marks

AwareDatetime = Annotated[pydantic.AwareDatetime, BeforeValidator(end_of_day)]
"""A time with a zone; `…T24:00+01:00`, a service until midnight, is the next day's 00:00."""
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
Lang = Literal["fr", "en"]
Kind = Literal["pickup", "mediator", "service"]
MessagePriority = Literal["info", "important", "urgent"]
Status = Literal["saving", "sent", "failed", "received"]

_ALLOWED_CONTROLS = {"\n"}
_JOINERS = {"\u200c", "\u200d"}  # needed by some scripts and by emoji sequences
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_TAG_SEQUENCE = re.compile("(\U0001f3f4[\U000e0020-\U000e007e]{1,32}\U000e007f)")
"""An emoji tag sequence (UTS #51 ED-14a): the flags of England, Scotland, Wales. Its tag
characters are format characters, allowed there only: anywhere else they are invisible
text (a message hidden in "plain" text)."""


def _plain(text: str) -> str:
    """Refuse control and bidi-override characters, and more combining marks on a character
    than the screen shows (`edged.kiosk.marks`): what dispatch typed is what riders read."""
    if _BIDI.search(text):
        raise ValueError("text has a bidi override or isolate; send plain text")
    import unicodedata  # here: its tables are 0.1 MB a node without this text never needs

    for ch in _TAG_SEQUENCE.sub("\U0001f3f4", text):
        if ch not in _ALLOWED_CONTROLS and _hidden(ch, unicodedata.category(ch)):
            raise ValueError(f"text has a control character U+{ord(ch):04X}; send plain text")
    if problem := too_many_marks(text):
        raise ValueError(problem)
    return text


def _hidden(ch: str, category: str) -> bool:
    """A control, format or surrogate character (`category` its Unicode category), but the
    joiners: not shown as itself. Dispatch's text with one is refused (`_plain`), a name
    the kiosk did not check is shown without it (`screen_text`)."""
    return ch not in _JOINERS and category in ("Cc", "Cf", "Cs")


_SPACES = re.compile(" {2,}")


def screen_text(text: str) -> str:
    """A name the kiosk did not validate itself (the node's name from the config, a fence's
    from the config or `geofences.set`, kept on disk by older releases too) as the screen may
    show it: bidi overrides, isolates and other invisible format characters dropped (a
    U+202E turned "12:30" into "03:21" on the page), other control characters too, line
    breaks and tabs made one space, and at most `MAX_MARKS` combining marks left on each
    character (a "zalgo" name spilled over the screen). Refusing them where they come in
    would lose a fence set already stored."""
    if text.isprintable() and not _BIDI.search(text) and longest_marks(text) <= MAX_MARKS:
        return text
    import unicodedata  # as in `_plain`

    kept = []
    for i, piece in enumerate(_TAG_SEQUENCE.split(text)):
        if i % 2:  # an emoji tag sequence (the split's group), kept whole
            kept.append(piece)
            continue
        for ch in piece:
            category = unicodedata.category(ch)
            if ch.isspace() and category in ("Cc", "Zl", "Zp"):
                kept.append(" ")
            elif not _hidden(ch, category):
                kept.append(ch)
    return cap_marks(_SPACES.sub(" ", "".join(kept)).strip())


def _strip(n: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=n)


Text80 = Annotated[str, _strip(80), AfterValidator(_plain)]
Text120 = Annotated[str, _strip(120), AfterValidator(_plain)]
Text160 = Annotated[str, _strip(160), AfterValidator(_plain)]
Text200 = Annotated[str, _strip(200), AfterValidator(_plain)]
Text500 = Annotated[str, _strip(500), AfterValidator(_plain)]
LocalText80 = Text80 | Annotated[dict[Lang, Text80], Field(min_length=1)]
"""A name dispatch may give in one language (shown as is) or per language."""
LocalText160 = Text160 | Annotated[dict[Lang, Text160], Field(min_length=1)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


M = TypeVar("M", bound=BaseModel)


def parse_args(model: type[M], args: dict[str, Any]) -> M:
    """Validate command args; a refusal names every bad key, as `geofences.set` does."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()
        )
        raise CommandError("bad_args", problems[:500]) from None


# -- kiosk.schedule ---------------------------------------------------------------------


class ServiceSlot(Args):
    """One provider at the market or venue today: a truck, a desk, a room. It is shown
    until `until`; without one, until the end of its day in the kiosk's time zone: the day
    of `start`, else the day the schedule came (`edged.services.kiosk`)."""

    id: Id
    provider: Text80 = Field(description="who: France Services, CPAM, a repair workshop…")
    what: LocalText160 | None = Field(default=None, description="what they help with")
    where: LocalText80 | None = Field(default=None, description="truck 2, room B…")
    start: AwareDatetime | None = None
    until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _order(self) -> "ServiceSlot":
        if self.start and self.until and self.until <= self.start:
            raise ValueError("until must be after start")
        return self


class NextStop(Args):
    name: Text120
    eta: AwareDatetime


class ScheduleArgs(Args):
    """Each key given replaces that part of the schedule; a key left out keeps it."""

    model_config = ConfigDict(defer_build=True)  # built on its first command (#19)

    place: LocalText80 | None = Field(
        default=None, description="the service market or venue those services are at"
    )
    services: list[ServiceSlot] | None = Field(default=None, max_length=40)
    stops: list[NextStop] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _something(self) -> "ScheduleArgs":
        if not self.model_fields_set:
            raise ValueError("give at least one of place, services, stops")
        ids = [s.id for s in self.services or []]
        if len(ids) != len(set(ids)):
            raise ValueError("service ids must be unique")
        return self


class Schedule(BaseModel):
    """As kept on disk: the last value of each part dispatch sent."""

    place: LocalText80 | None = None
    services: list[ServiceSlot] = Field(default_factory=list)
    services_ms: int | None = None
    """Node time when dispatch sent `services`, or when the node's clock was first known
    after: a service with neither `until` nor `start` is that day's. None until then (and in
    a schedule stored by an older release)."""
    stops: list[NextStop] = Field(default_factory=list)


# -- kiosk.message ----------------------------------------------------------------------


class MessageArgs(Args):
    """An announcement; the same `id` in another `lang` is its translation."""

    model_config = ConfigDict(defer_build=True)  # built on its first command (#19)

    id: Id | None = None
    text: Text500
    priority: MessagePriority = "info"
    lang: Lang = "fr"
    expires_at: AwareDatetime | None = None
    ttl_s: int | None = Field(default=None, ge=10, le=7 * 86400)

    @model_validator(mode="after")
    def _one_expiry(self) -> "MessageArgs":
        if self.expires_at is not None and self.ttl_s is not None:
            raise ValueError("give expires_at or ttl_s, not both")
        return self


class ClearArgs(Args):
    model_config = ConfigDict(defer_build=True)  # built on its first command (#19)

    id: Id
    clear: Literal[True]


class Message(BaseModel):
    id: str
    lang: Lang
    text: str
    priority: MessagePriority
    expires_ms: int
    received_ms: int
    dated: bool = True
    """False: received while the node's clock was not trusted; `expires_ms` is set again
    (from `ttl_ms`, or capped at a week) once it is (`KioskService._date_messages`)."""
    ttl_ms: int | None = None  # an undated message's ttl, when it came with one


# -- kiosk.ack and rider requests -------------------------------------------------------


class AckArgs(Args):
    model_config = ConfigDict(defer_build=True)  # built on its first command (#19)

    request_id: Id
    note: Text200 | None = Field(default=None, description="shown to the rider, as text")


class RequestRecord(BaseModel):
    """A rider request as the kiosk remembers it, with what the screen says about it."""

    model_config = ConfigDict(defer_build=True)  # built on the first rider request (#19)

    request_id: str
    kind: Kind
    service_id: str | None = None
    service: str | None = None
    lang: Lang
    made_ms: int
    status: Status
    acked_ms: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class Asked:
    """What became of a rider's press."""

    record: RequestRecord
    repeat: bool  # the same button again, soon: the earlier request, nothing new sent


class RequestRefused(EdgedError):
    """A rider request that cannot be made as asked; `code` is for the page."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class RiderPost(BaseModel):
    """The body of `POST /api/requests`: nothing else is accepted."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)  # on a press

    kind: Kind
    lang: Lang = "fr"
    service_id: Id | None = None

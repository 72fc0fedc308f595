"""The local access lists, and how a signed update from dispatch replaces or patches them.

Dispatch signs each list document itself (not only the command that carries it), with its
own key: a list is authority data, valid whoever relays it, and the signature covers the
fleet and the version so a list cannot be moved to another fleet or played back older.

Updates are all or nothing: a full list replaces everything, a delta applies to exactly
the version it was made from; anything else (bad signature, wrong fleet, older version,
a gap, a malformed entry) is refused with a reason and the lists in force do not change.

A full list is ~3 MB of JSON (30,000 cards). The node checks it in a worker thread while
the event loop goes on deciding taps, and a worker thread only lets the loop run between
two calls into C: one `json.dumps` or one pydantic validation of all of it holds the loop
for a tenth of a second or more. So everything here that walks a whole list does it in
pieces of about `STEP` entries (`edged.security.canonical`, `_validate`, `dump`), each a
millisecond or so, and gives the same result as the one-call version.
"""

import base64
import hashlib
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from edged.commands.args import only
from edged.config.access import LIST_NAME_PATTERN
from edged.errors import CommandError
from edged.instants import end_of_day
from edged.security.canonical import STEP, canonical_json
from edged.security.signing import PublicKey, verify

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAX_CARDS = 50_000
MAX_BOOKINGS_PER_CARD = 64
LIST_BYTES = 4 * 1024 * 1024
"""Largest `access.update` command accepted (a full list of ~30,000 cards)."""

SIGNING_DOMAIN = b"edged-access-lists/v1\n"
"""Prefix of what is signed, so a list signature can never pass for a command's."""

CardRef = Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$")]
Name = Annotated[str, Field(pattern=LIST_NAME_PATTERN)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2026-11-25T09:00:00+01:00 or ...Z)")
    return value


AwareDatetime = Annotated[datetime, BeforeValidator(end_of_day), AfterValidator(_aware)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Card(_Model):
    profile: Name = Field(description="resident, senior, jobseeker, provider, staff...")
    valid_from: date | None = None
    valid_until: date | None = Field(default=None, description="last valid day, inclusive")


class Denied(_Model):
    reason: str = Field(default="lost", max_length=64)


class Booking(_Model):
    room: Name
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> "Booking":
        # one that ends as it starts is taken, and opens nothing (`decide._booked`): the
        # slot 02:00-03:00 of a night the clocks go forward is one instant (02:00 is 03:00
        # summer time), and refusing it refused the whole list with it (RFC 5545 too takes
        # an event whose end is its start)
        if self.end < self.start and not _skipped(self.start, self.end):
            raise ValueError("a booking ends after it starts")
        return self


def _skipped(start: datetime, end: datetime) -> bool:
    """`end` before `start` only because the clocks went forward between them: a slot from
    a time they skip (02:30, read as 03:30 summer time) to one past the gap (03:00) books
    no time, as the 02:00-03:00 slot; its wall times are in order, its offset went up.
    Taken, and opens nothing (`decide._booked`): one such slot refused the whole list."""
    start_offset, end_offset = start.utcoffset(), end.utcoffset()
    assert start_offset is not None and end_offset is not None  # aware: `_aware`
    return end_offset > start_offset and end.replace(tzinfo=None) >= start.replace(tzinfo=None)


Bookings = Annotated[list[Booking], Field(max_length=MAX_BOOKINGS_PER_CARD)]
Fare = Annotated[int, Field(ge=0, le=100_000, description="euro cents")]


class _Validity(_Model):
    """When dispatch issued the lists and until when it vouches for them. Signed with the
    rest (a fleet peer cannot move `expires` on: the signature no longer verifies); absent
    in lists from a dispatch that sets none, which never expire (`freshness`)."""

    issued: AwareDatetime | None = Field(default=None, description="when dispatch signed them")
    expires: AwareDatetime | None = Field(
        default=None, description="past this, the node holds them stale (`expired_lists`)"
    )

    @model_validator(mode="after")
    def _expires_after_issued(self) -> "_Validity":
        if self.issued is not None and self.expires is not None and self.expires <= self.issued:
            raise ValueError("lists expire after they are issued")
        return self


class AccessLists(_Validity):
    """Everything a node decides from; `version` grows with every change at dispatch."""

    kind: Literal["full"] = "full"
    fleet: str
    version: int = Field(ge=0)
    cards: dict[CardRef, Card] = Field(default_factory=dict, max_length=MAX_CARDS)
    deny: dict[CardRef, Denied] = Field(default_factory=dict, max_length=MAX_CARDS)
    bookings: dict[CardRef, Bookings] = Field(default_factory=dict, max_length=MAX_CARDS)
    fares: dict[Name, Fare] = Field(default_factory=dict, max_length=64)


class AccessDelta(_Validity):
    """Changes from `base_version` to `version`; null removes an entry. Its `issued` and
    `expires`, when it gives them (null too), become the lists' (an empty delta renews
    their validity); a delta that gives neither keeps the lists' own."""

    model_config = ConfigDict(defer_build=True)  # built on the first access.delta (#19)

    kind: Literal["delta"]
    fleet: str
    version: int = Field(ge=1)
    base_version: int = Field(ge=0)
    cards: dict[CardRef, Card | None] = Field(default_factory=dict, max_length=MAX_CARDS)
    deny: dict[CardRef, Denied | None] = Field(default_factory=dict, max_length=MAX_CARDS)
    bookings: dict[CardRef, Bookings | None] = Field(default_factory=dict, max_length=MAX_CARDS)
    fares: dict[Name, Fare | None] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _forward(self) -> "AccessDelta":
        if self.version <= self.base_version:
            raise ValueError("a delta's version must be above its base_version")
        return self


EMPTY = AccessLists(fleet="", version=0)

VALIDITY = ("issued", "expires")
MAPS = ("cards", "deny", "bookings")
"""The maps that grow with the fleet's cards: checked and dumped in pieces."""


def signed_bytes(document: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8) after the signing domain."""
    try:
        return SIGNING_DOMAIN + canonical_json(document).encode()
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the command's JSON)
        raise CommandError("bad_lists", "the lists hold text that is not Unicode") from None
    except (RecursionError, TypeError, ValueError):
        raise CommandError("bad_lists", "the lists are not a JSON document") from None


def sign_lists(key: "Ed25519PrivateKey", document: dict[str, Any]) -> str:
    """What dispatch does (and the tests, the demo and `edgectl`): base64 signature."""
    return base64.b64encode(key.sign(signed_bytes(document))).decode()


_DUMPERS: dict[str, TypeAdapter[Any]] = {
    "cards": TypeAdapter(dict[str, Card]),
    "deny": TypeAdapter(dict[str, Denied]),
    "bookings": TypeAdapter(dict[str, list[Booking]]),
}


def dump(lists: AccessLists, *, step: int = STEP) -> dict[str, Any]:
    """`lists.model_dump(mode="json")`, the big maps `step` entries at a time."""
    out = lists.model_dump(mode="json", exclude=set(MAPS))
    for name in MAPS:
        entries = list(getattr(lists, name).items())
        dumped: dict[str, Any] = {}
        for i in range(0, len(entries), step):
            dumped.update(_DUMPERS[name].dump_python(dict(entries[i : i + step]), mode="json"))
        out[name] = dumped
    # a validity not given is left out, not null: lists without one keep the digest (and
    # the stored form) they had before lists could carry one
    return {
        name: out[name]
        for name in AccessLists.model_fields
        if out[name] is not None or name not in VALIDITY
    }


def stored_forms(dumped: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lists dumped (`dump`) as they are stored: (the lists without their validity, the
    validity with the version and fleet it belongs to). Apart, because the release before
    validity existed must still read the stored lists after an update's rollback (its model
    forbids fields it does not know: it would decide on empty lists, every rider refused
    `unknown`, and refuse as `bad_lists` every list dispatch signs a validity into)."""
    lists = {k: v for k, v in dumped.items() if k not in VALIDITY}
    validity = {k: dumped[k] for k in ("fleet", "version", *VALIDITY) if k in dumped}
    return lists, validity


def with_validity(lists: AccessLists, stored: Any) -> AccessLists:
    """`lists` restored, with the validity stored beside them (`stored_forms`) when it is
    theirs: a validity of other lists (the release before took newer ones after a
    rollback; it stores none) is not. ValueError when it is theirs but unreadable."""
    if not isinstance(stored, dict) or (stored.get("fleet"), stored.get("version")) != (
        lists.fleet,
        lists.version,
    ):
        return lists
    validity = _Validity.model_validate({k: stored[k] for k in VALIDITY if k in stored})
    return lists.model_copy(update={k: getattr(validity, k) for k in VALIDITY})


def digest_of(dumped: dict[str, Any]) -> str:
    """The digest of lists already dumped (`dump`)."""
    return hashlib.sha256(signed_bytes(dumped)).hexdigest()[:16]


def digest(lists: AccessLists) -> str:
    return digest_of(dump(lists))


def _problems(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'lists'}: {e['msg']}" for e in exc.errors()[:5]]
    more = exc.error_count() - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_update(
    args: dict[str, Any],
    *,
    key: PublicKey | None,
    fleet: str,
    card_ref_chars: int,
) -> AccessLists | AccessDelta:
    """Check an `access.update`'s arguments: `{"lists": {...}, "sig": "base64"}`."""
    if key is None:
        raise CommandError(
            "no_key",
            "this node has no [services.access] lists_public_key: it cannot trust any list",
        )
    only("access.update", args, "lists", "sig")
    document, sig = args.get("lists"), args.get("sig")
    if not isinstance(document, dict) or not isinstance(sig, str):
        raise CommandError("bad_args", "give lists (an object) and sig (base64 text)")
    if len(sig) > 256 or not verify(key, sig, signed_bytes(document)):
        raise CommandError("bad_signature", "the lists' signature does not verify")
    kind = document.get("kind", "full")
    model: type[AccessLists] | type[AccessDelta] = AccessDelta if kind == "delta" else AccessLists
    try:
        parsed = _validate(model, document)
    except ValidationError as exc:
        raise CommandError("bad_lists", _problems(exc)[:800]) from None
    if parsed.fleet != fleet:
        raise CommandError("wrong_fleet", f"lists for fleet {parsed.fleet!r}, this is {fleet!r}")
    refs = [*parsed.cards, *parsed.deny, *parsed.bookings]
    wrong = next((r for r in refs if len(r) != card_ref_chars), None)
    if wrong is not None:
        raise CommandError(
            "bad_card_ref",
            f"card_ref {wrong[:16]}… has {len(wrong)} hex digits; this node makes "
            f"{card_ref_chars} ([services.access] card_ref_bytes)",
        )
    return parsed


def _validate(
    model: type[AccessLists] | type[AccessDelta], document: dict[str, Any], step: int = STEP
) -> AccessLists | AccessDelta:
    """`model.model_validate(document)`, its big maps `step` entries at a time (the same
    rules: each piece is validated by the model itself, beside the rest of the document)."""
    big = [m for m in MAPS if isinstance(document.get(m), dict) and len(document[m]) > step]
    rest = {k: v for k, v in document.items() if k not in big}
    head = model.model_validate(rest)
    if not big:
        return head
    maps: dict[str, dict[str, Any]] = {}
    for name in big:
        entries = list(document[name].items())
        if len(entries) > MAX_CARDS:
            raise CommandError(
                "bad_lists", f"{name}: at most {MAX_CARDS} entries, not {len(entries)}"
            )
        merged: dict[str, Any] = {}
        for i in range(0, len(entries), step):
            piece = model.model_validate({**rest, name: dict(entries[i : i + step])})
            merged.update(getattr(piece, name))
        maps[name] = merged
    return head.model_copy(update=maps)


def apply(current: AccessLists, update: AccessLists | AccessDelta) -> AccessLists:
    """The lists after `update`, or CommandError; `current` is never modified."""
    if isinstance(update, AccessLists):
        if update.version < current.version or (
            update.version == current.version and digest(update) != digest(current)
        ):
            raise CommandError(
                "stale_version",
                f"version {update.version} is older than the lists in force ({current.version})",
            )
        return update
    if update.base_version != current.version:
        raise CommandError(
            "version_gap",
            f"delta from version {update.base_version}, but version {current.version} is in "
            "force: send a full list",
        )
    maps: dict[str, dict[str, Any]] = {
        "cards": dict(current.cards),
        "deny": dict(current.deny),
        "bookings": dict(current.bookings),
        "fares": dict(current.fares),
    }
    for name, target in maps.items():
        for k, v in getattr(update, name).items():
            if v is None:
                target.pop(k, None)
            else:
                target[k] = v
    if any(len(m) > MAX_CARDS for m in maps.values()):
        raise CommandError("too_many", f"the lists would hold more than {MAX_CARDS} entries")
    # a validity given (null too) replaces the lists' own, as a pair; none keeps theirs: a
    # delta signed without one (a revocation from a tool that sets none) must not make
    # the lists never expire
    given = update.model_fields_set & set(VALIDITY)
    validity = update if given else current
    # every entry was validated, in the lists in force or in the delta: built as they are
    # (validating 30,000 cards again would hold the event loop; see the module's docstring)
    return AccessLists.model_construct(
        fleet=current.fleet or update.fleet,
        version=update.version,
        issued=validity.issued,
        expires=validity.expires,
        cards=maps["cards"],
        deny=maps["deny"],
        bookings=maps["bookings"],
        fares=maps["fares"],
    )

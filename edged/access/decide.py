"""Whether a card opens the door, and what it costs: a pure function of the lists and the moment.

No I/O and no clock reading here, so every rule is a one-line test and the decision takes
microseconds. The rules per node profile:

- shuttle: a listed card in its validity dates boards and pays its profile's fare; a card
  not on the lists follows `unknown_card` (deny by default).
- venue: a card opens for a booking of one of the venue's rooms that is current (from
  `booking_early_s` before the start to the end), or for staff at any time; at capacity,
  entry is refused with reason `full` (staff excepted).
- truck: a provider's card logs the provider in and out; any other card checks a client
  in (a card not on the lists too, unless `unknown_card = "deny"`).
- a shuttle in mode `out-of-service` (`mode.set`) boards nobody but staff.

A card on the deny list (lost, stolen) is refused everywhere, before anything else.

Leaving: an `exit` reader (inside) lets out any card not on the deny list. A `both` reader
cannot tell whether a card "inside" is leaving or back outside after leaving without a tap,
so its exit is always recorded but unlocks only when that card may enter now: a guest whose
booking ended, or whose card was withdrawn, is not let back in by tapping "out" (with
`free_exit`, the door opens from inside without the lock, and an exit never unlocks).

Lists past their signed `expires` (dispatch has not been heard from since: revocations may
be missing) follow `expired_lists`: `allow` (default) decides on them as ever, the taps
flagged; `refuse` lets in only `staff_profiles` on the strength of the lists (the deny list
applies either way, and what the config alone lets in, `unknown_card = "allow"`, stays).

Validity dates need a trusted clock. Without one, they are read against the last trusted
time (a lower bound on now): it proves a card expired or started, never that it is still
valid. What it cannot decide follows `unsynced_validity` (refuse, staff still admitted).
"""

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from edged.access.lists import AccessLists, Card
from edged.config.access import AccessServiceConfig, ReaderRole

Action = Literal["board", "enter", "exit", "checkin", "login", "logout"]
NodeProfile = Literal["shuttle", "truck", "venue"]
Validity = Literal["clock", "last_trusted", "undecided"]
ENTRY: dict[NodeProfile, Action] = {"shuttle": "board", "venue": "enter", "truck": "checkin"}


@dataclass(frozen=True, slots=True)
class Situation:
    """What the service knows at the moment of the tap."""

    profile: NodeProfile
    now: datetime | None  # local, aware; None when no clock can be trusted
    role: ReaderRole = "both"
    inside: bool = False  # venue: this card entered and has not left; truck: provider in
    full: bool = False  # occupancy at capacity
    out_of_service: bool = False  # `mode.set out-of-service`: a shuttle takes no riders
    bound: datetime | None = None  # without `now`: the last trusted time, a lower bound
    lists_expired: bool = False  # the lists are past their signed `expires` (`freshness`)


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: str
    action: Action | None = None
    profile: str | None = None
    fare_cents: int | None = None
    delta: int = 0  # what the tap does to occupancy: +1 in, -1 out
    unlock: bool = False  # pulse the lock: a grant that lets someone through the door
    validity: Validity | None = None  # how the card's dates were read; None: none to read


def _grant(
    reason: str,
    action: Action,
    profile: str | None,
    fare: int | None = None,
    delta: int = 0,
    validity: Validity | None = None,
) -> Decision:
    return Decision(True, reason, action, profile, fare, delta, True, validity)


def _dates(card: Card, s: Situation) -> tuple[str | None, Validity | None]:
    """(refusal reason or None, how the dates were read); "undecided" when they could not be."""
    if card.valid_from is None and card.valid_until is None:
        return None, None
    if s.now is not None:
        return _against(card, s.now.date()), "clock"
    floor: date | None = s.bound.date() if s.bound is not None else None
    if floor is not None and card.valid_until is not None and floor > card.valid_until:
        return "expired", "last_trusted"  # it had expired by the last trusted time
    started = card.valid_from is None or (floor is not None and floor >= card.valid_from)
    if started and card.valid_until is None:
        return None, "last_trusted"  # started by then, and never ends
    return None, "undecided"  # may have expired since, or may have started since


def _against(card: Card, today: date) -> str | None:
    if card.valid_from is not None and today < card.valid_from:
        return "not_yet_valid"
    if card.valid_until is not None and today > card.valid_until:
        return "expired"
    return None


def _booked(lists: AccessLists, ref: str, config: AccessServiceConfig, now: datetime) -> bool:
    early = timedelta(seconds=config.booking_early_s)
    # `now + early`, not `start - early`: a start on 0001-01-01 has no time before it; and
    # in UTC: a local time plus a timedelta is wall-clock arithmetic that drops `fold`, so
    # the second 02:30 of a night the clocks go back would be taken for the first
    instant = now.astimezone(UTC)
    return any(
        b.start <= instant + early and instant < b.end
        for b in lists.bookings.get(ref, ())
        if (not config.rooms or b.room in config.rooms)
        and b.start < b.end  # an empty slot, or one the clocks skip, booked no time
    )


def decide(
    lists: AccessLists, config: AccessServiceConfig, ref: str, situation: Situation
) -> Decision:
    s = situation
    card = lists.cards.get(ref)
    profile = card.profile if card else None
    if ref in lists.deny:
        return Decision(False, "blocked", profile=profile)
    if s.role == "exit":  # a reader inside: let out, count out
        return _grant("exit", "exit", profile, delta=-1)
    if s.profile == "venue" and s.role == "both" and s.inside:
        # leaving, or back outside after leaving without a tap: the exit is recorded, and
        # the door opens only for a card that could open it to come in
        entry = _enter(lists, config, ref, replace(s, inside=False))
        unlock = entry.granted and not config.free_exit
        return Decision(True, "exit", "exit", profile, None, -1, unlock, entry.validity)
    return _enter(lists, config, ref, s)


def unknown_card_policy(config: AccessServiceConfig, profile: NodeProfile) -> str:
    """What a card not on the lists gets: `unknown_card`, else allow in a truck (a client
    checks in), deny elsewhere."""
    return config.unknown_card or ("allow" if profile == "truck" else "deny")


def _enter(lists: AccessLists, config: AccessServiceConfig, ref: str, s: Situation) -> Decision:
    """The decision for a card coming in (boarding, entering, checking in, logging in)."""
    card = lists.cards.get(ref)
    profile = card.profile if card else None
    staff = profile in config.staff_profiles
    if s.out_of_service and s.profile == "shuttle" and not staff:
        return Decision(False, "out_of_service", profile=profile)
    if card is None:
        if unknown_card_policy(config, s.profile) == "deny":
            return Decision(False, "unknown")
        if s.profile == "venue" and s.full and config.deny_when_full is not False:
            return Decision(False, "full")
        if s.profile == "shuttle" and s.full and config.deny_when_full:
            return Decision(False, "full")
        fare = config.unknown_fare_cents if s.profile == "shuttle" else None
        return _grant("unknown_allowed", ENTRY[s.profile], None, fare, delta=1)
    if s.lists_expired and not staff and config.expired_lists == "refuse":
        return Decision(False, "lists_expired", profile=profile)
    problem, validity = _dates(card, s)
    if problem is not None:
        return Decision(False, problem, profile=profile, validity=validity)
    if validity == "undecided" and not staff and config.unsynced_validity == "refuse":
        return Decision(False, "clock_unsynced", profile=profile, validity=validity)
    if s.profile == "shuttle":
        if s.full and config.deny_when_full:
            return Decision(False, "full", profile=profile, validity=validity)
        fare = lists.fares.get(card.profile)
        return _grant("ok", "board", profile, fare, delta=1, validity=validity)
    if s.profile == "truck":
        if profile in config.provider_profiles:
            return _grant("provider", "logout" if s.inside else "login", profile, None, 0, validity)
        return _grant("ok", "checkin", profile, delta=1, validity=validity)
    # venue
    if staff:
        return _grant("staff", "enter", profile, delta=1, validity=validity)
    if s.now is None:  # a booking is a time of day: only a trusted clock can say it is now
        return Decision(False, "clock_unsynced", profile=profile, validity=validity)
    if not _booked(lists, ref, config, s.now):
        return Decision(False, "no_booking", profile=profile, validity=validity)
    if s.full and config.deny_when_full is not False:
        return Decision(False, "full", profile=profile, validity=validity)
    return _grant("booking", "enter", profile, delta=1, validity=validity)

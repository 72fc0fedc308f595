"""Whether a card opens the door, and what it costs: a pure function of the lists and the moment.

No I/O and no clock reading here, so every rule is a one-line test and the decision takes
microseconds. The rules per node profile:

- shuttle: a listed card in its validity dates boards and pays its profile's fare; a card
  not on the lists follows `unknown_card` (deny by default).
- venue: a card opens for a booking of one of the venue's rooms that is current (from
  `booking_early_s` before the start to the end), or for staff at any time; at capacity,
  entry is refused with reason `full` (staff excepted). Leaving is never refused, so nobody
  is ever locked in by a list.
- truck: a provider's card logs the provider in and out; any other card checks a client
  in (a card not on the lists too, unless `unknown_card = "deny"`).
- a shuttle in mode `out-of-service` (`mode.set`) boards nobody but staff.

A card on the deny list (lost, stolen) is refused everywhere, before anything else.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from edged.access.lists import AccessLists, Card
from edged.config.access import AccessServiceConfig, ReaderRole

Action = Literal["board", "enter", "exit", "checkin", "login", "logout"]
NodeProfile = Literal["shuttle", "truck", "venue"]
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


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: str
    action: Action | None = None
    profile: str | None = None
    fare_cents: int | None = None
    delta: int = 0  # what the tap does to occupancy: +1 in, -1 out


def _dates(card: Card, today: date | None) -> str | None:
    if today is None:
        return None
    if card.valid_from is not None and today < card.valid_from:
        return "not_yet_valid"
    if card.valid_until is not None and today > card.valid_until:
        return "expired"
    return None


def _booked(lists: AccessLists, ref: str, config: AccessServiceConfig, now: datetime) -> bool:
    early = timedelta(seconds=config.booking_early_s)
    return any(
        (not config.rooms or b.room in config.rooms) and b.start - early <= now < b.end
        for b in lists.bookings.get(ref, ())
    )


def decide(
    lists: AccessLists, config: AccessServiceConfig, ref: str, situation: Situation
) -> Decision:
    s = situation
    card = lists.cards.get(ref)
    profile = card.profile if card else None
    denied = lists.deny.get(ref)
    if denied is not None:
        return Decision(False, "blocked", profile=profile)
    if s.profile == "venue" and (s.role == "exit" or (s.role == "both" and s.inside)):
        return Decision(True, "exit", "exit", profile, delta=-1)
    if s.role == "exit":  # an exit reader on a shuttle or truck: let out, count out
        return Decision(True, "exit", "exit", profile, delta=-1)
    if s.out_of_service and s.profile == "shuttle" and profile not in config.staff_profiles:
        return Decision(False, "out_of_service", profile=profile)
    if card is None:
        policy = config.unknown_card or ("allow" if s.profile == "truck" else "deny")
        if policy == "deny":
            return Decision(False, "unknown")
        if s.profile == "venue" and s.full and config.deny_when_full is not False:
            return Decision(False, "full")
        if s.profile == "shuttle" and s.full and config.deny_when_full:
            return Decision(False, "full")
        fare = config.unknown_fare_cents if s.profile == "shuttle" else None
        return Decision(True, "unknown_allowed", ENTRY[s.profile], None, fare, delta=1)
    today = s.now.date() if s.now is not None else None
    problem = _dates(card, today)
    if problem is not None:
        return Decision(False, problem, profile=profile)
    if s.profile == "shuttle":
        if s.full and config.deny_when_full:
            return Decision(False, "full", profile=profile)
        return Decision(True, "ok", "board", profile, lists.fares.get(card.profile), delta=1)
    if s.profile == "truck":
        if profile in config.provider_profiles:
            return Decision(True, "provider", "logout" if s.inside else "login", profile)
        return Decision(True, "ok", "checkin", profile, delta=1)
    # venue
    if profile in config.staff_profiles:
        return Decision(True, "staff", "enter", profile, delta=1)
    if s.now is None:
        return Decision(False, "clock_unsynced", profile=profile)
    if not _booked(lists, ref, config, s.now):
        return Decision(False, "no_booking", profile=profile)
    if s.full and config.deny_when_full is not False:
        return Decision(False, "full", profile=profile)
    return Decision(True, "booking", "enter", profile, delta=1)

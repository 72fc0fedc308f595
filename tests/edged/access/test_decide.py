"""Every decision path, on a shuttle, at a venue and in a truck."""

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edged.access.decide import Situation, decide
from edged.access.lists import AccessLists
from edged.config.access import AccessServiceConfig

from .support import (
    REFS,
    UID_BOOKED,
    UID_LOST,
    UID_PROVIDER,
    UID_RESIDENT,
    UID_SENIOR,
    UID_STAFF,
    UID_UNKNOWN,
    config,
    full_lists,
)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=PARIS)


def lists(**changes: object) -> AccessLists:
    return AccessLists.model_validate(full_lists(**changes))


@pytest.fixture
def cfg(tmp_path: Path) -> AccessServiceConfig:
    return config(tmp_path, rooms=["salle-1"])


def at(profile: str, **kw: object) -> Situation:
    return Situation(profile=profile, now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]


def test_shuttle_boards_a_listed_card_with_its_profile_fare(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_RESIDENT), at("shuttle"))
    assert (d.granted, d.reason, d.action, d.profile, d.fare_cents, d.delta) == (
        True,
        "ok",
        "board",
        "resident",
        150,
        1,
    )


def test_shuttle_free_profile_boards_with_a_zero_fare(cfg: AccessServiceConfig) -> None:
    assert decide(lists(), cfg, REFS(UID_SENIOR), at("shuttle")).fare_cents == 0


def test_a_profile_missing_from_the_fare_table_boards_without_a_fare(
    cfg: AccessServiceConfig,
) -> None:
    d = decide(lists(fares={}), cfg, REFS(UID_RESIDENT), at("shuttle"))
    assert d.granted and d.fare_cents is None


def test_a_card_on_the_deny_list_is_refused_as_blocked(cfg: AccessServiceConfig) -> None:
    for profile in ("shuttle", "venue", "truck"):
        d = decide(lists(), cfg, REFS(UID_LOST), at(profile))
        assert (d.granted, d.reason) == (False, "blocked")


def test_a_blocked_card_cannot_even_leave_by_tapping(cfg: AccessServiceConfig) -> None:
    # the door handle still opens from inside; the card does not act for a thief
    d = decide(lists(), cfg, REFS(UID_LOST), at("venue", inside=True))
    assert not d.granted


def test_unknown_card_is_denied_on_a_shuttle_by_default(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_UNKNOWN), at("shuttle"))
    assert (d.granted, d.reason, d.profile) == (False, "unknown", None)


def test_unknown_card_policy_allow_boards_with_the_unknown_fare(tmp_path: Path) -> None:
    cfg = config(tmp_path, unknown_card="allow", unknown_fare_cents=200)
    d = decide(lists(), cfg, REFS(UID_UNKNOWN), at("shuttle"))
    assert (d.granted, d.reason, d.fare_cents, d.delta) == (True, "unknown_allowed", 200, 1)


def test_expired_card_is_refused(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-24"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle"))
    assert (d.granted, d.reason) == (False, "expired")


def test_card_valid_until_today_still_boards(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-25"}}
    assert decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle")).granted


def test_card_not_yet_valid_is_refused(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_from": "2026-12-01"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle"))
    assert (d.granted, d.reason) == (False, "not_yet_valid")


def test_without_a_trusted_clock_an_expired_pass_does_not_board(
    cfg: AccessServiceConfig,
) -> None:
    # issue #12.2: the dates used to be skipped when the clock was unsynced
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2020-01-01"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None))
    assert (d.granted, d.reason, d.validity, d.unlock) == (
        False,
        "clock_unsynced",
        "undecided",
        False,
    )


def test_the_last_trusted_time_proves_a_pass_expired(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-24"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None, bound=NOW))
    assert (d.granted, d.reason, d.validity) == (False, "expired", "last_trusted")


def test_an_expired_staff_card_is_refused_against_the_last_trusted_time(
    cfg: AccessServiceConfig,
) -> None:
    cards = {REFS(UID_STAFF): {"profile": "staff", "valid_until": "2026-11-01"}}
    for profile in ("venue", "shuttle"):
        situation = at(profile, now=None, bound=NOW)
        d = decide(lists(cards=cards), cfg, REFS(UID_STAFF), situation)
        assert (d.granted, d.reason, d.unlock) == (False, "expired", False)


def test_a_pass_still_valid_at_the_last_trusted_time_is_undecided_and_refused(
    cfg: AccessServiceConfig,
) -> None:
    # it was valid then; it may have expired since: the bound cannot say it is valid now
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-30"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None, bound=NOW))
    assert (d.granted, d.reason, d.validity) == (False, "clock_unsynced", "undecided")


def test_a_pass_not_yet_started_at_the_last_trusted_time_is_undecided(
    cfg: AccessServiceConfig,
) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_from": "2026-12-01"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None, bound=NOW))
    assert (d.granted, d.reason, d.validity) == (False, "clock_unsynced", "undecided")


def test_a_pass_started_by_the_last_trusted_time_and_open_ended_boards(
    cfg: AccessServiceConfig,
) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_from": "2026-11-01"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None, bound=NOW))
    assert (d.granted, d.fare_cents, d.validity, d.unlock) == (True, 150, "last_trusted", True)


def test_a_card_without_dates_boards_without_a_clock(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_SENIOR), at("shuttle", now=None))
    assert (d.granted, d.validity) == (True, None)


def test_staff_with_undecidable_dates_are_still_admitted(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_STAFF): {"profile": "staff", "valid_until": "2026-12-31"}}
    for profile in ("venue", "shuttle"):
        d = decide(lists(cards=cards), cfg, REFS(UID_STAFF), at(profile, now=None))
        assert (d.granted, d.validity, d.unlock) == (True, "undecided", True)


def test_unsynced_validity_allow_admits_what_cannot_be_decided(tmp_path: Path) -> None:
    cfg = config(tmp_path, unsynced_validity="allow")
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-30"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None, bound=NOW))
    assert (d.granted, d.reason, d.validity) == (True, "ok", "undecided")


def test_unsynced_validity_allow_still_refuses_what_the_bound_proves_expired(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, unsynced_validity="allow")
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-24"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle", now=None, bound=NOW))
    assert (d.granted, d.reason) == (False, "expired")


def test_a_trusted_clock_reads_the_dates_itself(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_RESIDENT): {"profile": "resident", "valid_until": "2026-11-30"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_RESIDENT), at("shuttle"))
    assert (d.granted, d.validity) == (True, "clock")


def test_a_full_shuttle_still_boards_unless_configured(tmp_path: Path) -> None:
    assert decide(lists(), config(tmp_path), REFS(UID_RESIDENT), at("shuttle", full=True)).granted
    strict = config(tmp_path, deny_when_full=True)
    d = decide(lists(), strict, REFS(UID_RESIDENT), at("shuttle", full=True))
    assert (d.granted, d.reason) == (False, "full")


def booking(start: timedelta, end: timedelta, room: str = "salle-1") -> dict[str, object]:
    return {
        REFS(UID_BOOKED): [
            {"room": room, "start": (NOW + start).isoformat(), "end": (NOW + end).isoformat()}
        ]
    }


def test_venue_opens_for_a_current_booking(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(hours=-1), timedelta(hours=1)))
    d = decide(listed, cfg, REFS(UID_BOOKED), at("venue"))
    assert (d.granted, d.reason, d.action, d.delta) == (True, "booking", "enter", 1)


def test_venue_opens_a_little_before_the_booking_starts(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(minutes=5), timedelta(hours=1)))
    assert decide(listed, cfg, REFS(UID_BOOKED), at("venue")).granted


def test_venue_refuses_a_booking_that_starts_later(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(hours=2), timedelta(hours=3)))
    d = decide(listed, cfg, REFS(UID_BOOKED), at("venue"))
    assert (d.granted, d.reason) == (False, "no_booking")


def test_venue_refuses_a_booking_that_has_ended(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(hours=-3), timedelta(seconds=0)))
    assert decide(listed, cfg, REFS(UID_BOOKED), at("venue")).reason == "no_booking"


def test_venue_refuses_a_booking_of_another_room(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(hours=-1), timedelta(hours=1), room="salle-9"))
    assert decide(listed, cfg, REFS(UID_BOOKED), at("venue")).reason == "no_booking"


def test_venue_refuses_entry_at_capacity_with_reason_full(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(hours=-1), timedelta(hours=1)))
    d = decide(listed, cfg, REFS(UID_BOOKED), at("venue", full=True))
    assert (d.granted, d.reason) == (False, "full")


def test_venue_lets_staff_in_at_any_time_even_when_full(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_STAFF), at("venue", full=True, now=None))
    assert (d.granted, d.reason, d.action) == (True, "staff", "enter")


def test_venue_without_a_trusted_clock_cannot_check_bookings(cfg: AccessServiceConfig) -> None:
    listed = lists(bookings=booking(timedelta(hours=-1), timedelta(hours=1)))
    d = decide(listed, cfg, REFS(UID_BOOKED), at("venue", now=None))
    assert (d.granted, d.reason) == (False, "clock_unsynced")


def test_a_card_inside_the_venue_leaves_and_is_counted_out(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_BOOKED), at("venue", inside=True, full=True))
    assert (d.granted, d.action, d.delta) == (True, "exit", -1)


def test_an_exit_without_a_current_booking_is_recorded_but_does_not_unlock(
    cfg: AccessServiceConfig,
) -> None:
    # issue #12.1: a guest who left without tapping is back outside at 23:30
    ended = lists(bookings=booking(timedelta(hours=-14), timedelta(hours=-13)))
    d = decide(ended, cfg, REFS(UID_BOOKED), at("venue", inside=True))
    assert (d.granted, d.action, d.delta, d.unlock) == (True, "exit", -1, False)


def test_an_exit_of_a_card_removed_from_the_lists_does_not_unlock(
    cfg: AccessServiceConfig,
) -> None:
    d = decide(lists(cards={}), cfg, REFS(UID_BOOKED), at("venue", inside=True))
    assert (d.action, d.unlock) == ("exit", False)


def test_an_exit_of_a_card_that_may_enter_now_unlocks(cfg: AccessServiceConfig) -> None:
    current = lists(bookings=booking(timedelta(hours=-1), timedelta(hours=1)))
    d = decide(current, cfg, REFS(UID_BOOKED), at("venue", inside=True))
    assert (d.action, d.unlock) == ("exit", True)
    assert decide(lists(), cfg, REFS(UID_STAFF), at("venue", inside=True, now=None)).unlock


def test_an_exit_at_a_full_venue_unlocks_only_for_staff(cfg: AccessServiceConfig) -> None:
    current = lists(bookings=booking(timedelta(hours=-1), timedelta(hours=1)))
    guest = decide(current, cfg, REFS(UID_BOOKED), at("venue", inside=True, full=True))
    staff = decide(current, cfg, REFS(UID_STAFF), at("venue", inside=True, full=True))
    assert (guest.action, guest.unlock, staff.action, staff.unlock) == ("exit", False, "exit", True)


def test_an_exit_with_an_expired_card_does_not_unlock(cfg: AccessServiceConfig) -> None:
    cards = {REFS(UID_STAFF): {"profile": "staff", "valid_until": "2026-11-01"}}
    d = decide(lists(cards=cards), cfg, REFS(UID_STAFF), at("venue", inside=True))
    assert (d.action, d.unlock) == ("exit", False)


def test_a_free_exit_door_never_unlocks_for_an_exit(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_exit=True)
    d = decide(lists(), cfg, REFS(UID_STAFF), at("venue", inside=True))
    assert (d.granted, d.action, d.unlock) == (True, "exit", False)
    assert decide(lists(), cfg, REFS(UID_STAFF), at("venue")).unlock  # coming in: it opens


def test_an_exit_reader_always_lets_out(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    d = decide(lists(), cfg, REFS(UID_UNKNOWN), at("venue", role="exit"))
    assert (d.granted, d.action, d.delta, d.unlock) == (True, "exit", -1, True)


def test_an_exit_reader_does_not_let_a_blocked_card_act(cfg: AccessServiceConfig) -> None:
    for profile in ("venue", "shuttle"):
        d = decide(lists(), cfg, REFS(UID_LOST), at(profile, role="exit"))
        assert (d.granted, d.reason, d.unlock) == (False, "blocked", False)


def test_an_entry_reader_at_a_venue_never_decides_an_exit(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_BOOKED), at("venue", role="entry", inside=True))
    assert (d.granted, d.reason, d.unlock) == (False, "no_booking", False)


def test_every_refusal_leaves_the_door_locked(cfg: AccessServiceConfig) -> None:
    situations = [
        at(p, role=r, inside=i, full=f, now=n, out_of_service=o)
        for p in ("shuttle", "venue", "truck")
        for r in ("entry", "exit", "both")
        for i in (False, True)
        for f in (False, True)
        for n in (NOW, None)
        for o in (False, True)
    ]
    for uid in (UID_RESIDENT, UID_SENIOR, UID_STAFF, UID_PROVIDER, UID_LOST, UID_UNKNOWN):
        for s in situations:
            d = decide(lists(), cfg, REFS(uid), s)
            assert d.granted or not d.unlock, (uid, s, d)


def test_truck_logs_the_provider_in_then_out(cfg: AccessServiceConfig) -> None:
    first = decide(lists(), cfg, REFS(UID_PROVIDER), at("truck"))
    second = decide(lists(), cfg, REFS(UID_PROVIDER), at("truck", inside=True))
    assert (first.action, second.action) == ("login", "logout")
    assert first.delta == second.delta == 0


def test_truck_checks_a_client_in(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_SENIOR), at("truck"))
    assert (d.granted, d.action, d.delta, d.fare_cents) == (True, "checkin", 1, None)


def test_truck_checks_in_an_unknown_card_by_default(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_UNKNOWN), at("truck"))
    assert (d.granted, d.reason, d.action) == (True, "unknown_allowed", "checkin")


def test_truck_can_be_configured_to_refuse_unknown_cards(tmp_path: Path) -> None:
    d = decide(lists(), config(tmp_path, unknown_card="deny"), REFS(UID_UNKNOWN), at("truck"))
    assert (d.granted, d.reason) == (False, "unknown")


def test_an_out_of_service_shuttle_boards_nobody_but_staff(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_RESIDENT), at("shuttle", out_of_service=True))
    assert (d.granted, d.reason) == (False, "out_of_service")
    assert decide(lists(), cfg, REFS(UID_STAFF), at("shuttle", out_of_service=True)).granted


def test_a_booking_for_a_card_not_on_the_cards_opens_nothing(cfg: AccessServiceConfig) -> None:
    """docs/topics.md, *Access lists*: withdrawing a card from `cards` withdraws its
    bookings too (dispatch need not remove them in the same update)."""
    slot = {"room": "salle-1", "start": NOW - timedelta(hours=1), "end": NOW + timedelta(hours=1)}
    d = decide(lists(bookings={REFS(UID_UNKNOWN): [slot]}), cfg, REFS(UID_UNKNOWN), at("venue"))
    assert (d.granted, d.reason, d.unlock) == (False, "unknown", False)


def test_a_booking_does_not_open_for_a_card_on_the_deny_list(cfg: AccessServiceConfig) -> None:
    slot = {"room": "salle-1", "start": NOW - timedelta(hours=1), "end": NOW + timedelta(hours=1)}
    d = decide(lists(bookings={REFS(UID_LOST): [slot]}), cfg, REFS(UID_LOST), at("venue"))
    assert (d.granted, d.reason) == (False, "blocked")


def test_a_booking_past_the_cards_last_valid_day_is_refused_expired(
    cfg: AccessServiceConfig,
) -> None:
    slot = {"room": "salle-1", "start": NOW - timedelta(hours=1), "end": NOW + timedelta(days=2)}
    cards = {REFS(UID_BOOKED): {"profile": "jobseeker", "valid_until": "2026-11-25"}}
    booked = lists(cards=cards, bookings={REFS(UID_BOOKED): [slot]})
    tomorrow = at("venue", now=NOW + timedelta(days=1))
    assert decide(booked, cfg, REFS(UID_BOOKED), tomorrow).reason == "expired"


def test_a_venue_without_rooms_opens_for_a_booking_of_any_room(tmp_path: Path) -> None:
    """docs/topics.md, *Access lists*: `rooms` unset, every booking in the fleet's lists
    opens this door (the shipped venue config names its rooms)."""
    slot = {"room": "gueret-1", "start": NOW - timedelta(hours=1), "end": NOW + timedelta(hours=1)}
    booked = lists(bookings={REFS(UID_BOOKED): [slot]})
    assert decide(booked, config(tmp_path), REFS(UID_BOOKED), at("venue")).reason == "booking"
    named = config(tmp_path, rooms=["ahun-salle-1"])
    assert decide(booked, named, REFS(UID_BOOKED), at("venue")).reason == "no_booking"


def test_a_booking_in_the_repeated_hour_of_autumn_opens_only_in_its_own_pass(
    tmp_path: Path,
) -> None:
    """A booking is two instants: 02:00-03:00 after the clocks went back (`+01:00`) does not
    open during the first 02:00-03:00 (`+02:00`), an hour before."""
    slot = {
        "room": "salle-1",
        "start": "2026-10-25T02:00:00+01:00",
        "end": "2026-10-25T03:00:00+01:00",
    }
    cfg = config(tmp_path, rooms=["salle-1"], booking_early_s=0)
    booked = lists(bookings={REFS(UID_BOOKED): [slot]})
    first = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS)  # fold 0: CEST, +02:00
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS)  # CET, +01:00
    reasons = [
        decide(booked, cfg, REFS(UID_BOOKED), at("venue", now=t)).reason for t in (first, second)
    ]
    assert reasons == ["no_booking", "booking"]


def test_an_empty_booking_the_spring_forward_gap_made_opens_nothing(tmp_path: Path) -> None:
    """The 02:00-03:00 slot of 2027-03-28 in Paris is one instant (02:00 is 03:00 summer
    time): no hour was booked, so neither the slot nor `booking_early_s` before it opens."""
    slot = {
        "room": "salle-1",
        "start": "2027-03-28T02:00:00+01:00",
        "end": "2027-03-28T03:00:00+02:00",
    }
    cfg = config(tmp_path, rooms=["salle-1"], booking_early_s=600)
    booked = lists(bookings={REFS(UID_BOOKED): [slot]})
    moments = [datetime(2027, 3, 28, 1, 55, tzinfo=PARIS), datetime(2027, 3, 28, 3, 0, tzinfo=PARIS)]
    reasons = [decide(booked, cfg, REFS(UID_BOOKED), at("venue", now=t)).reason for t in moments]
    assert reasons == ["no_booking", "no_booking"]


def test_a_booking_from_the_calendar_s_first_day_opens_without_raising(
    cfg: AccessServiceConfig,
) -> None:
    """"Booked since ever", written from 0001-01-01T00:00:00Z: the door's early opening
    was counted back from that start, before the first day a date can hold, and every tap
    of that card raised instead of being decided (no record, no light)."""
    slot = {"room": "salle-1", "start": "0001-01-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}
    d = decide(lists(bookings={REFS(UID_BOOKED): [slot]}), cfg, REFS(UID_BOOKED), at("venue"))
    assert (d.granted, d.reason) == (True, "booking")


def test_a_slot_the_spring_forward_gap_turned_back_to_front_opens_nothing(
    tmp_path: Path,
) -> None:
    """02:30-03:00 of 2027-03-28 in Paris: 02:30 (fold 0) is 03:30 summer time, after the
    end; the slot booked no time, so neither 03:00-03:30 nor `booking_early_s` opens."""
    slot = {
        "room": "salle-1",
        "start": "2027-03-28T02:30:00+01:00",
        "end": "2027-03-28T03:00:00+02:00",
    }
    cfg = config(tmp_path, rooms=["salle-1"], booking_early_s=600)
    booked = lists(bookings={REFS(UID_BOOKED): [slot]})
    moments = [datetime(2027, 3, 28, 3, m, tzinfo=PARIS) for m in (0, 15, 25)]
    reasons = [decide(booked, cfg, REFS(UID_BOOKED), at("venue", now=t)).reason for t in moments]
    assert reasons == ["no_booking"] * 3


# -- lists past their signed expires -------------------------------------------------------------


def test_expired_lists_decide_as_ever_by_default(cfg: AccessServiceConfig) -> None:
    d = decide(lists(), cfg, REFS(UID_RESIDENT), at("shuttle", lists_expired=True))
    assert (d.granted, d.reason, d.fare_cents) == (True, "ok", 150)


def test_expired_lists_under_refuse_board_no_rider(tmp_path: Path) -> None:
    strict = config(tmp_path, expired_lists="refuse")
    d = decide(lists(), strict, REFS(UID_RESIDENT), at("shuttle", lists_expired=True))
    assert (d.granted, d.reason, d.profile) == (False, "lists_expired", "resident")


def test_expired_lists_under_refuse_still_let_staff_in(tmp_path: Path) -> None:
    strict = config(tmp_path, expired_lists="refuse", rooms=["salle-1"])
    assert decide(lists(), strict, REFS(UID_STAFF), at("venue", lists_expired=True)).granted


def test_expired_lists_under_refuse_still_let_everyone_out(tmp_path: Path) -> None:
    strict = config(tmp_path, expired_lists="refuse")
    d = decide(lists(), strict, REFS(UID_RESIDENT), at("venue", role="exit", lists_expired=True))
    assert (d.granted, d.action) == (True, "exit")


def test_expired_lists_under_refuse_leave_the_config_s_unknown_card_allow(tmp_path: Path) -> None:
    """A truck's client check-in is the config's word, not the lists'."""
    strict = config(tmp_path, expired_lists="refuse")
    d = decide(lists(), strict, REFS(UID_UNKNOWN), at("truck", lists_expired=True))
    assert (d.granted, d.reason) == (True, "unknown_allowed")


def test_expired_lists_still_refuse_a_denied_card(tmp_path: Path) -> None:
    d = decide(lists(), config(tmp_path), REFS(UID_LOST), at("shuttle", lists_expired=True))
    assert (d.granted, d.reason) == (False, "blocked")

"""Signed list updates: all or nothing, never older, never from another fleet."""

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.access.lists import (
    EMPTY,
    MAX_BOOKINGS_PER_CARD,
    MAX_CARDS,
    STEP,
    AccessLists,
    apply,
    digest,
    dump,
    parse_update,
)
from edged.errors import CommandError
from edged.security.signing import public_key_from_text

from .support import FLEET, PUBLIC, REFS, UID_RESIDENT, UID_SENIOR, full_lists, signed

KEY = public_key_from_text(PUBLIC)


def parse(args: dict[str, Any]) -> Any:
    return parse_update(args, key=KEY, fleet=FLEET, card_ref_chars=32)


def code_of(args: dict[str, Any], current: AccessLists = EMPTY) -> str:
    with pytest.raises(CommandError) as info:
        apply(current, parse(args))
    return info.value.code


def test_a_signed_full_list_replaces_the_empty_lists() -> None:
    lists = apply(EMPTY, parse(signed(full_lists(3))))
    assert lists.version == 3 and lists.cards[REFS(UID_SENIOR)].profile == "senior"


def test_a_list_signed_by_another_key_is_refused() -> None:
    assert code_of(signed(full_lists(), Ed25519PrivateKey.generate())) == "bad_signature"


def test_a_list_changed_after_signing_is_refused() -> None:
    args = signed(full_lists())
    args["lists"]["fares"]["resident"] = 0
    assert code_of(args) == "bad_signature"


def test_a_command_signature_does_not_pass_as_a_list_signature() -> None:
    import base64
    import json as _json

    from .support import KEY as PRIVATE

    doc = full_lists()
    bare = _json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    sig = base64.b64encode(PRIVATE.sign(bare)).decode()  # same key, without the list domain
    assert code_of({"lists": doc, "sig": sig}) == "bad_signature"


def test_an_older_version_is_refused_and_changes_nothing() -> None:
    current = apply(EMPTY, parse(signed(full_lists(5))))
    assert code_of(signed(full_lists(4)), current) == "stale_version"
    assert current.version == 5


def test_the_same_version_with_other_content_is_refused() -> None:
    current = apply(EMPTY, parse(signed(full_lists(5))))
    assert code_of(signed(full_lists(5, fares={"resident": 1})), current) == "stale_version"


def test_the_same_list_again_is_accepted_unchanged() -> None:
    current = apply(EMPTY, parse(signed(full_lists(5))))
    assert apply(current, parse(signed(full_lists(5)))) == current


def test_lists_for_another_fleet_are_refused() -> None:
    assert code_of(signed(full_lists(fleet="other"))) == "wrong_fleet"


def test_a_delta_adds_and_removes_entries() -> None:
    current = apply(EMPTY, parse(signed(full_lists(1))))
    new_ref = "ab" * 16
    delta = {
        "kind": "delta",
        "fleet": FLEET,
        "version": 2,
        "base_version": 1,
        "cards": {new_ref: {"profile": "senior"}, REFS(UID_SENIOR): None},
        "deny": {REFS(UID_RESIDENT): {"reason": "stolen"}},
        "fares": {"senior": None},
    }
    lists = apply(current, parse(signed(delta)))
    assert lists.version == 2
    assert new_ref in lists.cards and REFS(UID_SENIOR) not in lists.cards
    assert lists.deny[REFS(UID_RESIDENT)].reason == "stolen"
    assert "senior" not in lists.fares and lists.fares["resident"] == 150


def test_a_delta_from_another_version_asks_for_a_full_list() -> None:
    current = apply(EMPTY, parse(signed(full_lists(3))))
    delta = {"kind": "delta", "fleet": FLEET, "version": 5, "base_version": 4}
    assert code_of(signed(delta), current) == "version_gap"


def test_a_delta_that_goes_backwards_is_malformed() -> None:
    delta = {"kind": "delta", "fleet": FLEET, "version": 1, "base_version": 1}
    with pytest.raises(CommandError) as info:
        parse(signed(delta))
    assert info.value.code == "bad_lists"


@pytest.mark.parametrize(
    "change",
    [
        {"cards": {"nothex": {"profile": "resident"}}},
        {"cards": {"ab" * 16: {"profile": "Has Spaces"}}},
        {"cards": {"ab" * 16: {"profile": "resident", "valid_until": "31/12/2026"}}},
        {"fares": {"resident": -5}},
        {"bookings": {"ab" * 16: [{"room": "r1", "start": "2026-01-01T10:00:00"}]}},
        {
            "bookings": {
                "ab" * 16: [
                    {"room": "r1", "start": "2026-01-01T10:00:00Z", "end": "2026-01-01T09:00:00Z"}
                ]
            }
        },
        {"version": -1},
        {"surprise": 1},
    ],
)
def test_malformed_lists_are_refused_with_the_problem(change: dict[str, Any]) -> None:
    doc = full_lists()
    doc.update(change)
    with pytest.raises(CommandError) as info:
        parse(signed(doc))
    assert info.value.code == "bad_lists" and info.value.message


def test_card_refs_of_another_length_are_refused() -> None:
    doc = full_lists(cards={"ab" * 8: {"profile": "resident"}})
    with pytest.raises(CommandError) as info:
        parse(signed(doc))
    assert info.value.code == "bad_card_ref"


@pytest.mark.parametrize(
    "args",
    [{}, {"lists": [], "sig": "x"}, {"lists": {}, "sig": 5}, {"lists": {}, "sig": "x", "more": 1}],
)
def test_wrong_arguments_are_refused(args: dict[str, Any]) -> None:
    with pytest.raises(CommandError) as info:
        parse(args)
    assert info.value.code in ("bad_args", "bad_signature")


def test_without_a_public_key_no_list_is_trusted() -> None:
    with pytest.raises(CommandError) as info:
        parse_update(signed(full_lists()), key=None, fleet=FLEET, card_ref_chars=32)
    assert info.value.code == "no_key"


def test_an_oversized_signature_is_refused_before_verifying() -> None:
    args = signed(full_lists())
    args["sig"] = "A" * 10_000
    assert code_of(args) == "bad_signature"


@settings(max_examples=200, deadline=None)
@given(
    doc=st.recursive(
        st.none() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_signed_documents_are_refused_cleanly_or_parsed(doc: Any) -> None:
    if not isinstance(doc, dict):
        doc = {"payload": doc}
    try:
        apply(EMPTY, parse(signed(copy.deepcopy(doc))))
    except CommandError as exc:
        assert exc.code in (
            "bad_lists",
            "wrong_fleet",
            "bad_card_ref",
            "stale_version",
            "version_gap",
        )
        json.dumps(exc.message)


# -- big lists are checked in pieces (the event loop keeps deciding taps meanwhile) ----------


def many_cards(n: int) -> dict[str, Any]:
    return {
        REFS(i.to_bytes(4, "big")): {"profile": "resident", "valid_until": "2099-12-31"}
        for i in range(n)
    }


def test_a_list_bigger_than_a_piece_parses_as_in_one_call() -> None:
    doc = full_lists(2, cards=many_cards(2 * STEP + 7))
    assert parse(signed(doc)) == AccessLists.model_validate(doc)


def test_a_bad_entry_in_a_later_piece_is_refused_by_name() -> None:
    cards = many_cards(2 * STEP + 7)
    last = sorted(cards)[-1]
    cards[last] = {"profile": "Not A Name"}
    args = signed(full_lists(2, cards=cards))
    with pytest.raises(CommandError) as exc:
        parse(args)
    assert exc.value.code == "bad_lists" and last in str(exc.value)


def test_a_map_over_the_cap_is_refused_before_its_pieces_are_checked() -> None:
    doc = full_lists(2, cards=many_cards(MAX_CARDS + 1))
    assert code_of(signed(doc)) == "bad_lists"


def test_the_dump_in_pieces_is_the_models_dump() -> None:
    booking = {"room": "r1", "start": "2026-11-25T09:00:00+01:00", "end": "2026-11-25T10:00Z"}
    refs = sorted(many_cards(7))
    doc = full_lists(2, cards=many_cards(7), bookings={ref: [booking] for ref in refs})
    lists = AccessLists.model_validate(doc)
    assert dump(lists, step=2) == lists.model_dump(mode="json", exclude={"issued", "expires"})


def test_lists_with_text_that_is_not_unicode_are_refused_not_a_crash() -> None:
    doc = full_lists(2, deny={REFS(UID_RESIDENT): {"reason": "\ud800"}})
    assert code_of({"lists": doc, "sig": "AAAA"}) == "bad_lists"


def test_a_delta_onto_big_lists_keeps_every_other_entry() -> None:
    cards = many_cards(STEP + 3)
    current = parse(signed(full_lists(2, cards=cards)))
    gone = sorted(cards)[STEP]
    change = {
        "kind": "delta",
        "fleet": FLEET,
        "version": 3,
        "base_version": 2,
        "cards": {gone: None},
    }
    after = apply(current, parse(signed(change)))
    assert gone not in after.cards and len(after.cards) == len(current.cards) - 1
    assert after == AccessLists.model_validate(after.model_dump(mode="json"))


def test_a_delta_that_would_take_a_map_past_the_cap_is_refused_too_many() -> None:
    """A delta is checked against the lists it lands on: each part under the cap, the whole
    over it. Refused `too_many` (docs/topics.md, `access.update`), the lists in force kept."""
    cards = many_cards(MAX_CARDS)
    current = AccessLists.model_construct(fleet=FLEET, version=2, cards=cards, deny={},
                                          bookings={}, fares={})  # fmt: skip
    change = {
        "kind": "delta",
        "fleet": FLEET,
        "version": 3,
        "base_version": 2,
        "cards": {"ab" * 16: {"profile": "senior"}},
    }
    assert code_of(signed(change), current) == "too_many"
    assert len(current.cards) == MAX_CARDS and "ab" * 16 not in current.cards


@pytest.mark.parametrize(("count", "taken"), [(MAX_BOOKINGS_PER_CARD, True), (65, False)])
def test_a_card_takes_at_most_64_bookings(count: int, taken: bool) -> None:
    """docs/topics.md, *Access lists*: 64 bookings per card at most, or the whole list is
    refused `bad_lists`."""
    slot = {"room": "r1", "start": "2026-11-25T09:00:00+01:00", "end": "2026-11-25T10:00Z"}
    doc = full_lists(2, bookings={"ab" * 16: [slot] * count})
    if taken:
        assert len(parse(signed(doc)).bookings["ab" * 16]) == MAX_BOOKINGS_PER_CARD == 64
    else:
        with pytest.raises(CommandError) as info:
            parse(signed(doc))
        assert info.value.code == "bad_lists" and "ab" * 16 in info.value.message


@pytest.mark.parametrize(
    "end",
    ["2026-12-31T24:00:00+01:00", "2026-12-31T24:00+01:00", "2026-12-31T24:00:00.000+01:00"],
)
def test_a_booking_ending_at_24_00_ends_at_the_next_days_midnight(end: str) -> None:
    """docs/topics.md, *Access lists*: ISO 8601's 24:00, a booking to midnight as it is
    often written, was refused as no time, and with it the whole list."""
    slot = {"room": "r1", "start": "2026-12-31T17:00:00+01:00", "end": end}
    booking = parse(signed(full_lists(2, bookings={"ab" * 16: [slot]}))).bookings["ab" * 16][0]
    assert booking.end.isoformat() == "2027-01-01T00:00:00+01:00"


@pytest.mark.parametrize("end", ["2026-12-31t24:00:00z", "2026-12-31 24:00:00Z"])
def test_24_00_is_read_in_each_spelling_of_rfc_3339_the_list_takes_for_other_times(
    end: str,
) -> None:
    """RFC 3339 (5.6) lets `T` and `Z` be lower case and the `T` a space, and the lists take
    `2026-12-31t23:00:00z`; a booking to midnight so written was refused, and with it the
    whole list."""
    slot = {"room": "r1", "start": "2026-12-31T17:00:00Z", "end": end}
    booking = parse(signed(full_lists(2, bookings={"ab" * 16: [slot]}))).bookings["ab" * 16][0]
    assert booking.end.isoformat() == "2027-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    "start", ["2026-11-25T24:30:00+01:00", "2026-02-29T24:00:00+01:00", "2026-11-25T24:00:00"]
)
def test_24_00_is_only_the_end_of_a_real_day_with_a_zone(start: str) -> None:
    slot = {"room": "r1", "start": start, "end": "2027-01-01T00:00:00Z"}
    with pytest.raises(CommandError) as info:
        parse(signed(full_lists(2, bookings={"ab" * 16: [slot]})))
    assert info.value.code == "bad_lists"


def test_24_00_on_the_calendars_last_day_is_refused_as_a_bad_list() -> None:
    """The next day does not exist: the update is refused `bad_lists`, not failed
    `internal` with an OverflowError (and a traceback in the log)."""
    slot = {"room": "r1", "start": "9999-12-31T17:00:00Z", "end": "9999-12-31T24:00Z"}
    with pytest.raises(CommandError) as info:
        parse(signed(full_lists(2, bookings={"ab" * 16: [slot]})))
    assert info.value.code == "bad_lists"


def _paris_slot(day: str, start: str, end: str) -> dict[str, str]:
    """A booking tool's local slot: each wall time made an instant in Paris, a time the
    clocks skip read with the offset before the gap (RFC 5545 3.3.5, Python's fold 0)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")

    def instant(hhmm: str) -> str:
        return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=paris).isoformat()

    return {"room": "r1", "start": instant(start), "end": instant(end)}


def test_the_02_00_03_00_slot_of_the_spring_forward_night_does_not_refuse_the_list() -> None:
    """On 2027-03-28 in Paris 02:00 is 03:00 summer time: a booking tool's hourly slot
    02:00-03:00 that night starts and ends at one instant (01:00Z). That empty slot made
    the whole list refused `bad_lists`, every other card and booking of the fleet with it;
    it is taken, as RFC 5545 takes an event whose end is its start."""
    slot = _paris_slot("2027-03-28", "02:00", "03:00")
    assert slot["start"] != slot["end"]  # two spellings of one instant
    booking = parse(signed(full_lists(2, bookings={"ab" * 16: [slot]}))).bookings["ab" * 16][0]
    assert booking.start == booking.end


def test_a_booking_that_ends_before_it_starts_still_refuses_the_list() -> None:
    slot = {"room": "r1", "start": "2027-03-27T23:00:00+01:00", "end": "2027-03-27T01:00Z"}
    with pytest.raises(CommandError) as info:
        parse(signed(full_lists(2, bookings={"ab" * 16: [slot]})))
    assert info.value.code == "bad_lists"


@pytest.mark.parametrize(("start", "end"), [("02:30", "03:00"), ("02:45", "03:15")])
def test_a_slot_from_within_the_spring_forward_gap_to_past_it_does_not_refuse_the_list(
    start: str, end: str
) -> None:
    """A booking tool's half-hour slot 02:30-03:00 of 2027-03-28 in Paris: 02:30, a time
    the clocks skip, is 03:30 summer time (fold 0), after the end: the slot books no time,
    and refusing it refused the whole list, as the hourly slot's did."""
    slot = _paris_slot("2027-03-28", start, end)
    booking = parse(signed(full_lists(2, bookings={"ab" * 16: [slot]}))).bookings["ab" * 16][0]
    assert booking.end < booking.start


def test_a_booking_ending_before_it_starts_across_a_change_of_offset_is_still_refused() -> None:
    """The end's wall time before the start's is no gap's doing, whatever the offsets."""
    slot = {"room": "r1", "start": "2027-03-28T03:30:00+01:00", "end": "2027-03-28T03:00:00+02:00"}
    with pytest.raises(CommandError) as info:
        parse(signed(full_lists(2, bookings={"ab" * 16: [slot]})))
    assert info.value.code == "bad_lists"


# -- validity: issued, expires ---------------------------------------------------------------

ISSUED = "2026-12-01T08:00:00Z"
EXPIRES = "2026-12-08T08:00:00Z"


def test_lists_carry_when_dispatch_issued_them_and_until_when_they_hold() -> None:
    lists = apply(EMPTY, parse(signed(full_lists(2, issued=ISSUED, expires=EXPIRES))))
    assert (lists.issued, lists.expires) == (
        datetime(2026, 12, 1, 8, tzinfo=UTC),
        datetime(2026, 12, 8, 8, tzinfo=UTC),
    )


def test_a_peer_moving_expires_on_breaks_the_signature() -> None:
    args = signed(full_lists(2, issued=ISSUED, expires=EXPIRES))
    args["lists"] = {**args["lists"], "expires": "2027-12-08T08:00:00Z"}
    assert code_of(args) == "bad_signature"


def test_a_peer_taking_expires_out_breaks_the_signature() -> None:
    args = signed(full_lists(2, issued=ISSUED, expires=EXPIRES))
    args["lists"] = {k: v for k, v in args["lists"].items() if k != "expires"}
    assert code_of(args) == "bad_signature"


def test_lists_that_expire_before_they_are_issued_are_refused() -> None:
    assert code_of(signed(full_lists(2, issued=EXPIRES, expires=ISSUED))) == "bad_lists"


def test_an_expiry_without_a_time_zone_is_refused() -> None:
    assert code_of(signed(full_lists(2, expires="2026-12-08T08:00:00"))) == "bad_lists"


def test_lists_without_a_validity_keep_the_digest_they_had_before_lists_could_carry_one() -> None:
    lists = apply(EMPTY, parse(signed(full_lists(2))))
    assert "issued" not in dump(lists) and "expires" not in dump(lists)
    assert lists.issued is None and lists.expires is None


def test_an_empty_delta_renews_the_lists_validity() -> None:
    current = apply(EMPTY, parse(signed(full_lists(2, issued=ISSUED, expires=EXPIRES))))
    later = {"issued": "2026-12-07T08:00:00Z", "expires": "2026-12-14T08:00:00Z"}
    delta = {"kind": "delta", "fleet": FLEET, "version": 3, "base_version": 2, **later}
    renewed = apply(current, parse(signed(delta)))
    assert renewed.expires == datetime(2026, 12, 14, 8, tzinfo=UTC)
    assert renewed.cards == current.cards and renewed.version == 3


def test_a_validity_given_is_in_the_dump_and_the_digest() -> None:
    plain = apply(EMPTY, parse(signed(full_lists(2))))
    dated = apply(EMPTY, parse(signed(full_lists(2, issued=ISSUED, expires=EXPIRES))))
    assert dump(dated)["expires"] == "2026-12-08T08:00:00Z"
    assert digest(dated) != digest(plain)


def test_a_delta_that_says_nothing_of_the_validity_keeps_the_lists_expires() -> None:
    """A delta signed without a validity (a revocation sent by a tool that sets none)
    made the lists never expire: a node offline after it kept letting revoked cards in
    unflagged for ever. Only a validity given (null too) replaces the lists' own."""
    current = apply(EMPTY, parse(signed(full_lists(2, issued=ISSUED, expires=EXPIRES))))
    delta = {"kind": "delta", "fleet": FLEET, "version": 3, "base_version": 2}
    after = apply(current, parse(signed({**delta, "deny": {"ab" * 16: {"reason": "lost"}}})))
    assert (after.issued, after.expires) == (current.issued, current.expires)


def test_a_delta_giving_a_null_validity_takes_the_expiry_away() -> None:
    current = apply(EMPTY, parse(signed(full_lists(2, issued=ISSUED, expires=EXPIRES))))
    delta = {"kind": "delta", "fleet": FLEET, "version": 3, "base_version": 2}
    after = apply(current, parse(signed({**delta, "issued": None, "expires": None})))
    assert (after.issued, after.expires) == (None, None)

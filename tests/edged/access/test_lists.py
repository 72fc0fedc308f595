"""Signed list updates: all or nothing, never older, never from another fleet."""

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.access.lists import EMPTY, AccessLists, apply, parse_update
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

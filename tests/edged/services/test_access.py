"""The access service on a test host: decide, actuate, count, publish — in that order."""

import asyncio
import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.counters import Counters
from core.events import Feedback, Tap, Unlock
from edged.access.lasttrusted import STATE_KEY
from edged.access.lists import digest
from edged.clock import ClockSource
from edged.commands.router import CommandRouter, IncomingCommand
from edged.config.access import HELD_TOGETHER_S, OccupancyServiceConfig
from edged.errors import CommandError
from edged.services.access import (
    LISTS_KEY,
    MADE_FOR_KEY,
    STILL_THERE_S,
    STRANGERS_BURST,
    STRANGERS_EVERY_S,
    AccessService,
)
from edged.services.events import AccessDecided, ModeChanged
from edged.services.occupancy import OccupancyService
from tests.edged.access.support import (
    FLEET,
    REFS,
    UID_BOOKED,
    UID_LOST,
    UID_PHONE,
    UID_PHONE_AGAIN,
    UID_PROVIDER,
    UID_RESIDENT,
    UID_SENIOR,
    UID_STAFF,
    UID_UNKNOWN,
    SetClock,
    config,
    full_lists,
    service_on,
    signed,
)
from tests.helpers.host import TestHost


class OrderedNode(TestHost):
    """A node of the lists' fleet that also notes, at each publication, how many Unlock and
    Feedback events the relay and the lights had had."""

    def __init__(self, profile: str = "shuttle", **kw: Any) -> None:
        super().__init__(profile=profile, fleet=FLEET, **kw)
        self.commanded_before_publish: list[int] = []

    def publish(self, spec: Any, body: Any, **kw: Any) -> Any:
        commanded = [e for e in self.emitted if isinstance(e, Unlock | Feedback)]
        self.commanded_before_publish.append(len(commanded))
        return super().publish(spec, body, **kw)


def make(
    tmp_path: Path,
    profile: str = "shuttle",
    *,
    node: TestHost | None = None,
    capacity: int | None = 40,
    **extra: Any,
) -> tuple[TestHost, AccessService, OccupancyService]:
    node = node or OrderedNode(profile, synced=True)
    occupancy = OccupancyService(node, OccupancyServiceConfig(capacity=capacity))
    service = AccessService(node, config(tmp_path, **extra))
    asyncio.run(service.command_update(signed(full_lists(1))))
    return node, service, occupancy


def tap(node: TestHost, uid: bytes, ts: float = 100.0, reader: str = "front") -> None:
    node.emit(Tap(uid=uid, reader=reader, ts=ts))


def taps(node: TestHost) -> list[Any]:
    return node.bodies("events/tap")


def test_a_granted_tap_unlocks_and_shows_green_before_it_is_recorded(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    assert isinstance(node, OrderedNode)
    tap(node, UID_RESIDENT)
    physical = [type(e) for e in node.emitted if isinstance(e, Tap | Unlock | Feedback)]
    assert physical == [Tap, Unlock, Feedback]
    assert node.of_type(Feedback)[0].pattern == "granted"
    # the tap's record before the relay and the lights, the occupancy after them
    assert [name for name, _, _ in node.published] == ["events/tap", "occupancy"]
    assert node.commanded_before_publish == [0, 2]


def test_a_denied_tap_shows_red_and_does_not_unlock(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_LOST)
    assert node.of_type(Unlock) == []
    assert node.of_type(Feedback)[-1].pattern == "denied"
    assert taps(node)[-1].reason == "blocked"


def test_the_tap_event_carries_card_ref_decision_profile_and_fare(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    tap(node, UID_RESIDENT)
    event = taps(node)[-1]
    assert event.card_ref == REFS(UID_RESIDENT)
    assert (event.decision, event.reason, event.profile, event.fare_cents) == (
        "granted",
        "ok",
        "resident",
        150,
    )
    assert event.lists_version == service.lists.version == 1


def test_no_published_or_stored_byte_holds_the_uid(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, "venue", rooms=[])
    for uid in (UID_RESIDENT, UID_SENIOR, UID_STAFF, UID_UNKNOWN, UID_LOST):
        tap(node, uid, ts=1000.0 + len(node.emitted))
    text = json.dumps([b.to_json_dict() for _, b, _ in node.published]) + json.dumps(node.state)
    for uid in (UID_RESIDENT, UID_SENIOR, UID_STAFF, UID_UNKNOWN, UID_LOST):
        assert uid.hex() not in text.lower() and uid.hex().upper() not in text


def test_boarding_taps_count_people_on_board(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=1)
    tap(node, UID_SENIOR, ts=2)
    assert occupancy.count == 2 and node.bodies("occupancy")[-1].count == 2


def test_the_same_card_again_soon_shows_green_but_is_not_charged_counted_or_let_in_twice(
    tmp_path: Path,
) -> None:
    # issue #12.3: the repeat pulsed the lock again, so two riders boarded on one fare
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    tap(node, UID_RESIDENT, ts=15.0)
    first, second = taps(node)[-2:]
    assert (second.reason, second.fare_cents, second.decision) == ("repeat", None, "granted")
    assert (first.fare_cents, first.unlocked, second.unlocked) == (150, True, False)
    assert occupancy.count == 1 and len(node.of_type(Unlock)) == 1
    assert [f.pattern for f in node.of_type(Feedback)] == ["granted", "granted"]


def test_repeat_unlocks_pulses_the_lock_again_for_a_slow_door(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path, "venue", rooms=[], repeat_unlocks=True)
    tap(node, UID_STAFF, ts=10.0)
    tap(node, UID_STAFF, ts=12.0)
    assert [t.unlocked for t in taps(node)] == [True, True]
    assert len(node.of_type(Unlock)) == 2 and occupancy.count == 1


def test_repeat_unlocks_never_opens_for_a_repeat_of_an_exit_that_did_not(
    tmp_path: Path,
) -> None:
    node, service, _ = make(tmp_path, "venue", rooms=[], repeat_unlocks=True)
    service.inside.add(REFS(UID_BOOKED))  # inside, no current booking
    tap(node, UID_BOOKED, ts=10.0)
    tap(node, UID_BOOKED, ts=12.0)
    assert [(t.reason, t.unlocked) for t in taps(node)] == [("exit", False), ("repeat", False)]
    assert node.of_type(Unlock) == []


def test_the_same_card_after_the_window_is_a_new_boarding(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    tap(node, UID_RESIDENT, ts=21.0)
    assert taps(node)[-1].reason == "ok" and occupancy.count == 2


def test_a_card_blocked_by_an_update_is_refused_at_once_even_within_the_window(
    tmp_path: Path,
) -> None:
    node, service, _ = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    delta = {
        "kind": "delta",
        "fleet": FLEET,
        "version": 2,
        "base_version": 1,
        "deny": {REFS(UID_RESIDENT): {"reason": "stolen"}},
    }
    asyncio.run(service.command_update(signed(delta)))
    tap(node, UID_RESIDENT, ts=11.0)
    assert taps(node)[-1].reason == "blocked"


def delta(version: int, **maps: Any) -> dict[str, Any]:
    return {
        "kind": "delta",
        "fleet": FLEET,
        "version": version,
        "base_version": version - 1,
        **maps,
    }


def test_an_unrelated_list_update_does_not_let_a_card_that_just_boarded_board_again(
    tmp_path: Path,
) -> None:
    node, service, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    # dispatch's routine delta (a fare for another profile), nothing about this card
    asyncio.run(service.command_update(signed(delta(2, fares={"student": 80}))))
    tap(node, UID_RESIDENT, ts=12.0)  # the same card 2 s later: handed back, or bounced
    second = taps(node)[-1]
    assert (second.reason, second.fare_cents, second.unlocked) == ("repeat", None, False)
    assert len(node.of_type(Unlock)) == 1 and occupancy.count == 1


def test_a_new_fare_for_the_cards_own_profile_does_not_charge_a_repeat(tmp_path: Path) -> None:
    node, service, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    asyncio.run(service.command_update(signed(delta(2, fares={"resident": 170}))))
    tap(node, UID_RESIDENT, ts=12.0)
    assert taps(node)[-1].reason == "repeat" and occupancy.count == 1


def test_a_card_withdrawn_by_an_update_is_refused_at_once_even_within_the_window(
    tmp_path: Path,
) -> None:
    node, service, _ = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    asyncio.run(service.command_update(signed(delta(2, cards={REFS(UID_RESIDENT): None}))))
    tap(node, UID_RESIDENT, ts=11.0)
    assert (taps(node)[-1].decision, taps(node)[-1].reason) == ("denied", "unknown")


def test_a_guest_whose_booking_an_update_removed_is_not_let_in_again_as_a_repeat(
    tmp_path: Path,
) -> None:
    node, service, _ = make(tmp_path, "venue", readers={"door": "entry"})
    now = datetime.now(UTC)
    slot = {
        "room": "salle-1",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    asyncio.run(service.command_update(signed(full_lists(2, bookings={REFS(UID_BOOKED): [slot]}))))
    tap(node, UID_BOOKED, ts=10.0, reader="door")
    assert taps(node)[-1].reason == "booking"
    asyncio.run(service.command_update(signed(delta(3, bookings={REFS(UID_BOOKED): None}))))
    tap(node, UID_BOOKED, ts=12.0, reader="door")
    assert (taps(node)[-1].decision, taps(node)[-1].reason) == ("denied", "no_booking")
    assert len(node.of_type(Unlock)) == 1


def test_an_exit_reader_right_after_the_entry_reader_lets_the_card_out(tmp_path: Path) -> None:
    node, service, occupancy = make(
        tmp_path, "venue", rooms=[], readers={"outside": "entry", "inside": "exit"}
    )
    tap(node, UID_STAFF, ts=10.0, reader="outside")
    tap(node, UID_STAFF, ts=15.0, reader="inside")  # forgot something: back out at once
    last = taps(node)[-1]
    assert (last.reason, last.action, last.unlocked) == ("exit", "exit", True)
    assert service.inside == set() and occupancy.count == 0


def test_a_card_left_flickering_at_the_edge_of_the_field_is_charged_once(tmp_path: Path) -> None:
    """A card in a bag leaning on the reader: read, lost for more than the driver's
    release_s, read again, for a minute. It was charged and counted at each window."""
    node, _, occupancy = make(tmp_path)
    for i in range(60):
        tap(node, UID_RESIDENT, ts=100.0 + i * (STILL_THERE_S - 0.5))
    fares = [t.fare_cents for t in taps(node) if t.reason == "ok"]
    assert fares == [150] and occupancy.count == 1
    repeats = [t.reason for t in taps(node)][1:]  # recorded once a minute, the others counted
    assert set(repeats) == {"repeat"}
    assert len(repeats) + node.counters["access.repeat_again"] == 59


def test_the_same_card_after_a_pause_past_the_window_is_a_new_tap(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_RESIDENT, ts=101.0)  # still there
    tap(node, UID_RESIDENT, ts=101.0 + STILL_THERE_S + 10.0)  # away, back past the window
    assert [t.reason for t in taps(node)] == ["ok", "repeat", "ok"]
    assert occupancy.count == 2


def test_no_repeat_at_all_when_the_window_is_zero_even_for_a_card_still_there(
    tmp_path: Path,
) -> None:
    node, _, _ = make(tmp_path, repeat_window_s=0)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_RESIDENT, ts=100.5)
    assert [t.reason for t in taps(node)] == ["ok", "ok"]


def test_the_same_card_at_another_reader_of_the_same_role_is_a_repeat(tmp_path: Path) -> None:
    # handed back through the front door and tapped at the rear one: one card, one rider
    node, _, occupancy = make(tmp_path, readers={"front": "entry", "rear": "entry"})
    tap(node, UID_RESIDENT, ts=10.0, reader="front")
    tap(node, UID_RESIDENT, ts=13.0, reader="rear")
    assert taps(node)[-1].reason == "repeat"
    assert len(node.of_type(Unlock)) == 1 and occupancy.count == 1


def test_a_random_uid_is_refused_even_when_its_card_ref_is_on_the_lists(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    cards = full_lists()["cards"]
    cards[REFS(UID_PHONE)] = {"profile": "resident"}  # "enrolled" by tapping a phone once
    asyncio.run(service.command_update(signed(full_lists(2, cards=cards))))
    tap(node, UID_PHONE, ts=10.0)
    last = taps(node)[-1]
    assert (last.decision, last.reason, last.profile, last.fare_cents) == (
        "denied",
        "random_uid",
        None,
        None,
    )
    assert node.of_type(Unlock) == [] and node.of_type(Feedback)[-1].pattern == "denied"


@pytest.mark.parametrize("card", [UID_RESIDENT, UID_LOST])
def test_a_phone_read_with_the_card_in_its_wallet_case_leaves_the_cards_light(
    tmp_path: Path, card: bytes
) -> None:
    """A co-pass card carried in a phone's wallet case: the reader lists both (in turn,
    nfc.libnfc taps each) a poll or two apart. The phone's random ID was shown red with
    three beeps over the card's green, and a boarded rider was turned back."""
    node, _, _ = make(tmp_path)
    tap(node, card, ts=100.0)
    tap(node, UID_PHONE, ts=100.1)
    verdict = "granted" if card == UID_RESIDENT else "denied"
    assert [f.pattern for f in node.of_type(Feedback)] == [verdict]
    assert [t.reason for t in taps(node)][-1] == "random_uid"  # still recorded, refused
    assert node.counters["access.random_uid"] == 1


def test_a_phone_alone_after_a_card_was_read_is_still_shown_red(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_PHONE, ts=100.6)  # the next rider's phone, once the card was lifted
    tap(node, UID_RESIDENT, ts=110.1, reader="rear")
    tap(node, UID_PHONE_AGAIN, ts=110.2)  # at the front: nobody's card is there
    assert [f.pattern for f in node.of_type(Feedback)] == ["granted", "denied", "granted", "denied"]


def test_one_phone_presented_twice_checks_nobody_in_at_a_truck(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path, "truck")  # unknown cards check in at a truck
    tap(node, UID_PHONE, ts=10.0)
    tap(node, UID_PHONE_AGAIN, ts=40.0)  # the same phone: a new random ID
    assert [t.reason for t in taps(node)] == ["random_uid", "random_uid"]
    assert occupancy.count == 0 and node.counters["access.random_uid"] == 2


def test_a_random_uid_does_not_open_an_exit_reader(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, "venue", rooms=[], readers={"inside": "exit"})
    tap(node, UID_PHONE, ts=10.0, reader="inside")
    assert taps(node)[-1].reason == "random_uid" and node.of_type(Unlock) == []


def emulated(i: int) -> bytes:
    """The i-th UID of a card emulator that changes it at each presentation (4 bytes, not
    a random UID's 08h: it passes for a card)."""
    return (0x04000000 + 0x1000 + i).to_bytes(4, "big")


def test_a_card_emulator_changing_its_uid_checks_in_only_its_budget_at_a_truck(
    tmp_path: Path,
) -> None:
    """A truck admits unknown cards: 200 new UIDs in 50 s (the emulator at 4 a second,
    each just apart enough not to be taken for cards held together) were 200 people
    checked in, the truck "full" for real ones, 200 records."""
    node, _, occupancy = make(tmp_path, "truck", capacity=None)
    for i in range(200):
        tap(node, emulated(i), ts=100.0 + i * HELD_TOGETHER_S)
    allowed = occupancy.count
    most = STRANGERS_BURST + 200 * HELD_TOGETHER_S / STRANGERS_EVERY_S + 1
    assert STRANGERS_BURST <= allowed <= most
    assert len(node.of_type(Unlock)) == allowed
    reasons = [t.reason for t in taps(node)]
    assert reasons.count("unknown_allowed") == allowed
    assert reasons.count("too_many_unknown") == 1, "one record of the flood, not 190"
    assert node.counters["access.too_many_unknown"] == 200 - allowed
    patterns = [f.pattern for f in node.of_type(Feedback)]
    assert (patterns.count("granted"), patterns.count("denied")) == (allowed, 200 - allowed)


def test_a_queue_of_riders_with_unregistered_cards_all_check_in(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path, "truck", capacity=None)
    for i in range(40):  # one every 2 s, and a group of 10 at once first
        tap(node, emulated(i), ts=100.0 + (i * 0.3 if i < 10 else 3 + i * STRANGERS_EVERY_S))
    assert occupancy.count == 40
    assert "too_many_unknown" not in [t.reason for t in taps(node)]


def test_a_known_card_and_another_reader_pass_during_a_flood(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, readers={"front": "entry", "rear": "entry"})
    for i in range(50):
        tap(node, emulated(i), ts=100.0 + i * 0.05)
    tap(node, UID_RESIDENT, ts=102.6)
    tap(node, emulated(999), ts=102.7, reader="rear")
    assert [t.reason for t in taps(node)][-2:] == ["ok", "unknown"]


def test_a_flood_is_recorded_once_a_minute(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    for i in range(2_400):  # two minutes at 20 a second
        tap(node, emulated(i), ts=100.0 + i * 0.05)
    reasons = [t.reason for t in taps(node)]
    assert reasons.count("too_many_unknown") == 2
    assert len(reasons) < 100, "not a record per emulated card"


def expired_pass(service: AccessService) -> None:
    doc = full_lists(2)
    doc["cards"][REFS(UID_RESIDENT)] = {"profile": "resident", "valid_until": "2001-01-31"}
    asyncio.run(service.command_update(signed(doc)))


@pytest.mark.parametrize("card", ["lost", "expired"])
def test_a_refused_card_presented_again_and_again_is_recorded_once_a_minute(
    tmp_path: Path, card: str
) -> None:
    """A card on the lists that is refused (on the deny list, a pass that expired: every
    former subscriber has one) spends no budget for strangers. A card emulator switching
    its field on and off with that card's UID (or the card at the edge of the field) was
    a record per presentation, ~3 a second: the outbox's hard cap (400,000) in under two
    days offline, then real taps' records refused. Each is still decided and shown red."""
    node, service, _ = make(tmp_path)
    uid = UID_LOST
    if card == "expired":
        expired_pass(service)
        uid = UID_RESIDENT
    for i in range(200):  # 80 s, one presentation every 0.4 s
        tap(node, uid, ts=100.0 + i * 0.4)
    reasons = [t.reason for t in taps(node)]
    assert reasons == ["blocked" if card == "lost" else "expired"] * 2, "one record a minute"
    assert node.of_type(Unlock) == []
    assert [f.pattern for f in node.of_type(Feedback)] == ["denied"] * 200
    assert node.counters["access.refused_repeat"] == 198


def test_a_pass_presented_again_and_again_is_recorded_once_a_minute(tmp_path: Path) -> None:
    """A rider's own valid pass does the same: each read after the first is a `repeat`
    (no charge, no count, no door), and each was a record. The first grant and the first
    repeat are recorded, then one a minute; every read still shows green."""
    node, _, occupancy = make(tmp_path)
    for i in range(200):  # 80 s, one presentation every 0.4 s
        tap(node, UID_RESIDENT, ts=100.0 + i * 0.4)
    assert [t.reason for t in taps(node)] == ["ok", "repeat", "repeat"]
    assert len(node.of_type(Unlock)) == 1 and occupancy.count == 1
    assert [f.pattern for f in node.of_type(Feedback)] == ["granted"] * 200
    assert node.counters["access.repeat_again"] == 197


def test_a_pass_handed_back_to_rider_after_rider_is_recorded_at_each_presentation(
    tmp_path: Path,
) -> None:
    """Pass-back: one valid pass handed back through the door to one rider after another.
    Each one's tap is a `repeat` (no charge, no count) shown green, and a record dispatch
    counts them from; only the first was recorded in a minute, the others folded into a
    counter with no card nor reader. A card presented again (away `STILL_THERE_S` or more)
    is a rider's act, recorded; one read again and again (an emulator) still once a minute."""
    node, _, _ = make(tmp_path)
    for i in range(4):  # the pass, then three riders it is handed back to, within 10 s
        tap(node, UID_RESIDENT, ts=100.0 + i * 3.0)
    assert [t.reason for t in taps(node)] == ["ok"] + ["repeat"] * 3
    for i in range(100):  # then an emulator with its UID, every 0.4 s: once a minute
        tap(node, UID_RESIDENT, ts=200.0 + i * 0.4)
    assert [t.reason for t in taps(node)][4:] == ["ok", "repeat"]
    assert node.counters["access.repeat_again"] == 98


def test_passes_presented_again_by_clones_at_one_reader_are_still_a_bounded_flood(
    tmp_path: Path,
) -> None:
    """Presentations recorded as a rider's act spend a per-reader budget (10, then one per
    2 s, as strangers do): ten valid passes' UIDs read in turn by an emulator, each away
    2 s and more, are no new flood of records (480 in 2 minutes without it)."""
    node, service, _ = make(tmp_path, repeat_window_s=3600)
    clones = [bytes([4, 0xAB, 0xCD, i]) for i in range(10)]
    cards = {REFS(uid): {"profile": "resident"} for uid in clones}
    asyncio.run(service.command_update(signed(full_lists(2, cards=cards))))
    for i in range(480):  # 2 minutes, one read every 0.25 s: each UID away 2.25 s
        tap(node, clones[i % 10], ts=100.0 + i * 0.25)
    assert 10 + 10 + 60 <= len(taps(node)) <= 10 + 10 + 60 + 2 * 10


def test_a_repeat_that_opens_the_door_is_always_recorded(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, "venue", repeat_unlocks=True, repeat_window_s=60)
    for i in range(5):  # presented again each 2.5 s: the slow door opened again each time
        tap(node, UID_STAFF, ts=100.0 + i * 2.5)
    assert [t.unlocked for t in taps(node)] == [True] * 5
    assert len(node.of_type(Unlock)) == 5


def test_repeat_unlocks_does_not_hold_the_door_open_for_a_card_left_at_the_reader(
    tmp_path: Path,
) -> None:
    """A badge on a lanyard resting on the reader, a card in a bag left leaning on it: read,
    lost for more than the driver's release_s, read again, about each second. Each read was
    a repeat that pulsed the lock (3 s): the door stayed unlocked, for anyone, for as long
    as the card stayed there. Only a card presented again (away 2 s or more) reopens it."""
    node, _, _ = make(tmp_path, "venue", rooms=[], repeat_unlocks=True)
    for i in range(60):  # a minute
        tap(node, UID_STAFF, ts=100.0 + i * 1.0)
    assert len(node.of_type(Unlock)) == 1
    tap(node, UID_STAFF, ts=159.0 + STILL_THERE_S + 1)  # lifted, then tapped again
    assert len(node.of_type(Unlock)) == 2


def test_a_refused_card_granted_since_is_decided_anew_and_recorded(tmp_path: Path) -> None:
    """The repeat of a refusal is only not recorded: the decision is made anew each time,
    so a card the lists grant since (taken off the deny list) opens at once."""
    node, service, _ = make(tmp_path)
    tap(node, UID_LOST, ts=100.0)
    tap(node, UID_LOST, ts=101.0)
    doc = full_lists(2, deny={})
    asyncio.run(service.command_update(signed(doc)))
    tap(node, UID_LOST, ts=102.0)
    assert [t.reason for t in taps(node)] == ["blocked", "ok"]
    assert len(node.of_type(Unlock)) == 1


def test_a_refusal_after_a_pause_or_for_another_reason_is_recorded(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_LOST, ts=100.0)
    tap(node, UID_LOST, ts=111.0)  # past repeat_window_s (10 s) since its last read
    tap(node, UID_LOST, ts=112.0, reader="rear")  # same role: a repeat
    tap(node, UID_UNKNOWN, ts=113.0)
    tap(node, UID_UNKNOWN, ts=114.0)
    assert [t.reason for t in taps(node)] == ["blocked", "blocked", "unknown"]


def test_without_a_repeat_window_every_refusal_is_recorded(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, repeat_window_s=0)
    for i in range(5):
        tap(node, UID_LOST, ts=100.0 + i * 0.4)
    assert len(taps(node)) == 5


def test_random_uids_spend_the_same_budget(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    for i in range(50):
        tap(node, bytes([0x08, 0, 0, i]), ts=100.0 + i * 0.05)
    assert node.counters["access.too_many_unknown"] > 30


def test_an_unknown_card_left_at_a_trucks_reader_leaves_the_budget_to_the_next_clients(
    tmp_path: Path,
) -> None:
    """A client's unregistered card in a bag leaning on the reader: read, lost, read again
    (a repeat, still there). Each read spent the budget for strangers: the card itself went
    red, and every client after it was refused too_many_unknown while the bag stayed."""
    node, _, occupancy = make(tmp_path, "truck", capacity=None)
    for i in range(60):  # for half a minute, read again each 0.5 s (release_s 0.3 s)
        tap(node, UID_UNKNOWN, ts=100.0 + i * 0.5)
    tap(node, emulated(0), ts=130.0)  # the next client
    reasons = [t.reason for t in taps(node)]
    assert reasons == ["unknown_allowed", "repeat", "unknown_allowed"]  # repeats: once a minute
    assert occupancy.count == 2


def test_riders_with_a_phone_in_their_wallet_case_keep_their_green_in_a_long_queue(
    tmp_path: Path,
) -> None:
    """Each rider's card and then, 0.1 s later, the phone around it (a random ID). The
    phones spent the budget for strangers; past it a phone was refused too_many_unknown
    with a red light and three beeps over the card's green, despite the wallet-case rule."""
    riders = [(0x04C00000 + i).to_bytes(4, "big") for i in range(40)]
    node, service, _ = make(tmp_path)
    cards = {REFS(uid): {"profile": "resident"} for uid in riders}
    asyncio.run(service.command_update(signed(full_lists(2, cards=cards))))
    for i, uid in enumerate(riders):  # one rider a second
        tap(node, uid, ts=100.0 + i)
        tap(node, bytes([0x08, 0xA0, 0, i]), ts=100.1 + i)
    assert [f.pattern for f in node.of_type(Feedback)] == ["granted"] * 40
    assert node.counters["access.too_many_unknown"] == 0


def test_random_uids_held_beside_a_card_still_spend_the_budget_past_the_first(
    tmp_path: Path,
) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    for i in range(50):  # an emulator of random IDs beside a card: one phone is spared
        tap(node, bytes([0x08, 0xB0, 0, i]), ts=100.001 + i * 0.005)
    assert node.counters["access.too_many_unknown"] == 50 - 1 - STRANGERS_BURST


def test_a_tap_during_a_large_update_is_decided_within_100_ms(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    # 30,000 cards: ~2.7 MB, under the 4 MB access.update accepts ("~30,000 cards")
    cards = {
        REFS(i.to_bytes(4, "big")): {"profile": "resident", "valid_until": "2099-12-31"}
        for i in range(30_000)
    }
    cards[REFS(UID_RESIDENT)] = {"profile": "resident"}
    args = signed(full_lists(2, cards=cards, deny={}))
    unlocked: list[float] = []
    node.bus.subscribe(Unlock, lambda e: unlocked.append(time.monotonic()))

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        read_at: list[float] = []

        def reader_thread() -> None:  # the libnfc poll thread hands a Tap over
            time.sleep(0.02)
            read_at.append(time.monotonic())
            loop.call_soon_threadsafe(node.emit, Tap(UID_RESIDENT, "front", read_at[0]))

        threading.Thread(target=reader_thread).start()
        await asyncio.sleep(0.005)  # the update arrives just before the card
        await service.command_update(args)
        await asyncio.sleep(0.01)
        return read_at[0], taps(node)[-1].lists_version

    read, version = asyncio.run(main())
    assert unlocked and unlocked[0] - read < 0.1, f"read -> relay: {unlocked[0] - read:.3f} s"
    assert version == 1  # decided before the swap: on the lists then in force


def test_a_tap_after_an_update_is_decided_on_the_new_lists(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    asyncio.run(service.command_update(signed(delta(2, deny={REFS(UID_SENIOR): {}}))))
    tap(node, UID_SENIOR)
    assert (taps(node)[-1].reason, taps(node)[-1].lists_version) == ("blocked", 2)


def test_two_updates_in_a_row_apply_in_the_order_they_came(tmp_path: Path) -> None:
    _, service, _ = make(tmp_path)

    async def both() -> list[Any]:
        first = service.command_update(signed(full_lists(2)))
        second = service.command_update(signed(delta(3, fares={"senior": 10})))
        return await asyncio.gather(first, second)

    first, second = asyncio.run(both())
    assert (first["version"], second["version"]) == (2, 3)
    assert service.lists.fares["senior"] == 10


def test_a_refused_update_during_taps_leaves_the_lists_and_their_digest(tmp_path: Path) -> None:
    _, service, _ = make(tmp_path)
    before = asyncio.run(service.command_status({}))
    bad = signed(full_lists(2))
    bad["lists"]["version"] = 3  # not what was signed
    with pytest.raises(CommandError):
        asyncio.run(service.command_update(bad))
    assert asyncio.run(service.command_status({})) == before


def test_the_status_digest_is_the_lists_digest(tmp_path: Path) -> None:
    _, service, _ = make(tmp_path)
    status = asyncio.run(service.command_status({}))
    assert status["digest"] == digest(service.lists)


def test_venue_entry_then_exit_counts_in_and_out(tmp_path: Path) -> None:
    node, service, occupancy = make(tmp_path, "venue", rooms=[])
    tap(node, UID_STAFF, ts=10.0)
    tap(node, UID_STAFF, ts=30.0)
    assert [t.action for t in taps(node)] == ["enter", "exit"]
    assert occupancy.count == 0 and service.inside == set()


def test_venue_at_capacity_refuses_entry_with_reason_full(tmp_path: Path) -> None:
    node, service, occupancy = make(tmp_path, "venue", capacity=1)
    now = datetime.now(UTC)
    slot = {
        "room": "salle-1",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    asyncio.run(service.command_update(signed(full_lists(2, bookings={REFS(UID_BOOKED): [slot]}))))
    tap(node, UID_BOOKED, ts=10.0)
    assert taps(node)[-1].reason == "booking" and occupancy.count == 1
    tap(node, UID_STAFF, ts=20.0)  # staff: let in even when full
    tap(node, UID_SENIOR, ts=30.0)  # no booking
    tap(node, UID_BOOKED, ts=40.0)  # inside: leaves
    assert [t.reason for t in taps(node)[-3:]] == ["staff", "no_booking", "exit"]
    occupancy.add(5, "beam")
    asyncio.run(service.command_update(signed(full_lists(3, bookings={REFS(UID_BOOKED): [slot]}))))
    tap(node, UID_BOOKED, ts=60.0)
    assert (taps(node)[-1].decision, taps(node)[-1].reason) == ("denied", "full")


def test_truck_provider_login_survives_a_restart(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, "truck")
    tap(node, UID_PROVIDER, ts=10.0)
    again = OrderedNode("truck", state=node.state, synced=True)
    node2, _, _ = make(tmp_path, "truck", node=again)
    tap(node2, UID_PROVIDER, ts=100.0)
    assert taps(node2)[-1].action == "logout"


def test_applied_lists_survive_a_restart(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    restarted = AccessService(OrderedNode(state=node.state, synced=True), config(tmp_path))
    assert restarted.lists.version == 1 and REFS(UID_SENIOR) in restarted.lists.cards


def _restarted(
    node: TestHost, tmp_path: Path, profile: str = "truck", **extra: Any
) -> AccessService:
    return AccessService(
        OrderedNode(profile, state=node.state, synced=True), config(tmp_path, **extra)
    )


def test_lists_stored_for_another_card_ref_length_are_set_aside_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node, _, _ = make(tmp_path, "truck")  # a truck lets unknown cards in: the deny list matters
    restarted = _restarted(node, tmp_path, card_ref_bytes=8)
    # version 0 in force, as taps and access.status say: dispatch sends a full list
    assert restarted.lists.version == 0 and restarted.lists.deny == {}
    assert restarted.host.counters.snapshot()["access.lists_unusable"] == 1
    assert "card_refs have 16 bytes and this node makes 8" in caplog.text
    assert "unknown cards: allow" in caplog.text


def test_lists_stored_under_another_fleet_secret_are_set_aside_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node, _, _ = make(tmp_path, "truck")
    other = tmp_path / "other.secret"
    other.write_bytes(b"another-fleet-secret-0123456789")
    other.chmod(0o600)
    restarted = _restarted(node, tmp_path, secret_file=str(other))
    assert restarted.lists.version == 0
    assert restarted.host.counters.snapshot()["access.lists_unusable"] == 1
    assert "the fleet secret" in caplog.text and "changed" in caplog.text


def test_lists_set_aside_come_back_when_the_config_goes_back(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path, "truck")
    assert _restarted(node, tmp_path, card_ref_bytes=8).lists.version == 0
    back = _restarted(node, tmp_path)
    assert back.lists.version == 1 and REFS(UID_LOST) in back.lists.deny
    assert isinstance(back.host, TestHost)
    tap(back.host, UID_LOST)
    assert taps(back.host)[-1].reason == "blocked"


def test_lists_stored_before_their_check_was_kept_are_used_when_their_length_fits(
    tmp_path: Path,
) -> None:
    node, _, _ = make(tmp_path, "truck")
    del node.state[MADE_FOR_KEY]  # stored by a release that did not keep it
    assert _restarted(node, tmp_path).lists.version == 1
    assert _restarted(node, tmp_path, card_ref_bytes=8).lists.version == 0


def test_unreadable_stored_lists_mean_empty_lists_not_a_crash(tmp_path: Path) -> None:
    node = OrderedNode(state={LISTS_KEY: {"version": "x"}}, synced=True)
    service = AccessService(node, config(tmp_path))
    assert service.lists.version == 0
    tap(node, UID_RESIDENT)
    assert taps(node)[-1].reason == "unknown"


def test_lists_set_aside_at_start_are_no_way_back_to_an_older_signed_list(
    tmp_path: Path,
) -> None:
    """Lists a release cannot read (written by a newer one it was rolled back from: a field
    it does not know), or made under another secret, are set aside: version 0 in force.
    Any signed list passed that, so one played back from before a card was put on the deny
    list (captured on the broker, where any tool's certificate can send it) was taken, and
    the stolen card let in. No list older than the ones set aside is taken."""
    node, service, _ = make(tmp_path)
    old = signed(full_lists(2, deny={}))  # before the card was lost
    asyncio.run(service.command_update(old))
    asyncio.run(service.command_update(signed(full_lists(5))))
    stored = node.state[LISTS_KEY]
    node.state.set(LISTS_KEY, {**stored, "issued_at": "2026-12-01T00:00:00Z"})  # a newer release's
    restarted = _restarted(node, tmp_path, "shuttle")
    assert restarted.lists.version == 0
    with pytest.raises(CommandError, match="older than the lists this node had") as refused:
        asyncio.run(restarted.command_update(old))
    assert refused.value.code == "stale_version"
    assert isinstance(restarted.host, TestHost)
    tap(restarted.host, UID_LOST)
    assert taps(restarted.host)[-1].decision == "denied"
    asyncio.run(restarted.command_update(signed(full_lists(5))))  # dispatch's current one
    assert restarted.lists.version == 5


def test_an_older_list_over_lists_restored_in_force_is_refused_as_older_than_those(
    tmp_path: Path,
) -> None:
    """Lists restored whole at start are in force, not set aside: the refusal of an older
    one says so (it said "set aside at start" for every restart, sending ops looking for a
    fault that was not there)."""
    node, service, _ = make(tmp_path)
    asyncio.run(service.command_update(signed(full_lists(5))))
    restarted = _restarted(node, tmp_path, "shuttle")
    assert restarted.lists.version == 5
    with pytest.raises(CommandError, match="older than the lists in force") as refused:
        asyncio.run(restarted.command_update(signed(full_lists(2))))
    assert refused.value.code == "stale_version"
    assert "set aside" not in str(refused.value)


def test_lists_set_aside_under_another_fleet_set_no_floor(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    asyncio.run(service.command_update(signed(full_lists(5))))
    node.state.set(LISTS_KEY, {**node.state[LISTS_KEY], "fleet": "elsewhere", "x": 1})
    restarted = _restarted(node, tmp_path, "shuttle")
    asyncio.run(restarted.command_update(signed(full_lists(2))))
    assert restarted.lists.version == 2


def test_a_refused_update_changes_nothing(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    before = dict(node.state)
    bad = signed(full_lists(9))
    bad["lists"]["version"] = 10  # tampered after signing
    with pytest.raises(CommandError):
        asyncio.run(service.command_update(bad))
    assert service.lists.version == 1 and node.state == before


@pytest.mark.parametrize(
    ("name", "size", "code"),
    [
        ("access.update", 1024 * 1024, "bad_args"),  # read, then refused for its arguments
        ("access.update", 4 * 1024 * 1024 + 1, "too_large"),
        ("access.status", 64 * 1024 + 1, "too_large"),
    ],
)
def test_access_update_alone_takes_commands_up_to_4_mib(
    tmp_path: Path, name: str, size: int, code: str
) -> None:
    """docs/topics.md, *Size*: 64 KiB for a command, 4 MiB for access.update, as the
    service declares them to the router."""
    _, service, _ = make(tmp_path)
    router = CommandRouter(Counters())
    for spec in service.commands():
        router.add(spec)
    head = json.dumps({"id": "c1", "args": {"pad": ""}}).encode()
    payload = head.replace(b'""', b'"' + b"x" * (size - len(head)) + b'"')
    assert len(payload) == size
    out = asyncio.run(router.handle(IncomingCommand(name, payload, topic=f"t/cmd/{name}")))
    assert out.reply.error is not None and out.reply.error.code == code


def test_status_counts_the_lists(tmp_path: Path) -> None:
    _, service, _ = make(tmp_path)
    status = asyncio.run(service.command_status({}))
    assert (status["version"], status["cards"], status["deny"], status["fares"]) == (1, 6, 1, 3)


def test_a_flood_of_taps_is_each_decided_and_recorded_once(tmp_path: Path) -> None:
    node, service, occupancy = make(tmp_path, capacity=None, unknown_card="allow")
    for i in range(2000):  # as fast as strangers may come (STRANGERS_EVERY_S)
        tap(node, i.to_bytes(4, "big"), ts=i * STRANGERS_EVERY_S)
    assert len(taps(node)) == 2000 and occupancy.count == 2000
    assert len(node.of_type(Unlock)) == 2000 and service.taps == 2000


# -- issue #12.1: a `both` reader's exit opens only for a card that may enter now ----------

PARIS = ZoneInfo("Europe/Paris")


def venue_with_booking(tmp_path: Path, **extra: Any) -> tuple[TestHost, AccessService, SetClock]:
    """The issue's guest: booked 09:00-10:00, the shipped venue's single `both` reader."""
    clock = SetClock(0)
    clock.at(datetime(2026, 11, 25, 9, 5, tzinfo=PARIS))
    node = OrderedNode("venue", clock=clock)
    node, service, _ = make(tmp_path, "venue", node=node, rooms=["salle-1"], **extra)
    slot = {
        "room": "salle-1",
        "start": "2026-11-25T09:00:00+01:00",
        "end": "2026-11-25T10:00:00+01:00",
    }
    asyncio.run(service.command_update(signed(full_lists(2, bookings={REFS(UID_BOOKED): [slot]}))))
    return node, service, clock


def test_a_guest_back_at_night_is_recorded_leaving_but_the_door_stays_locked(
    tmp_path: Path,
) -> None:
    node, service, clock = venue_with_booking(tmp_path)
    tap(node, UID_BOOKED, ts=100.0)
    assert (taps(node)[-1].reason, taps(node)[-1].unlocked) == ("booking", True)
    clock.at(datetime(2026, 11, 25, 23, 30, tzinfo=PARIS))  # left without tapping; back
    tap(node, UID_BOOKED, ts=60_000.0)
    event = taps(node)[-1]
    assert (event.decision, event.action, event.unlocked) == ("granted", "exit", False)
    assert len(node.of_type(Unlock)) == 1 and REFS(UID_BOOKED) not in service.inside
    tap(node, UID_BOOKED, ts=60_100.0)  # now "outside": an entry, refused
    assert (taps(node)[-1].reason, len(node.of_type(Unlock))) == ("no_booking", 1)


def test_a_guest_removed_from_the_lists_while_inside_cannot_open_by_tapping_out(
    tmp_path: Path,
) -> None:
    node, service, _ = venue_with_booking(tmp_path)
    tap(node, UID_BOOKED, ts=100.0)
    removed = {"kind": "delta", "fleet": FLEET, "version": 3, "base_version": 2}
    removed["cards"] = {REFS(UID_BOOKED): None}
    asyncio.run(service.command_update(signed(removed)))
    tap(node, UID_BOOKED, ts=200.0)
    assert (taps(node)[-1].action, taps(node)[-1].unlocked) == ("exit", False)
    assert len(node.of_type(Unlock)) == 1


def test_a_guest_leaving_during_the_booking_opens_the_door(tmp_path: Path) -> None:
    node, _, clock = venue_with_booking(tmp_path)
    tap(node, UID_BOOKED, ts=100.0)
    clock.at(datetime(2026, 11, 25, 9, 50, tzinfo=PARIS))
    tap(node, UID_BOOKED, ts=2800.0)
    assert (taps(node)[-1].action, taps(node)[-1].unlocked) == ("exit", True)
    assert len(node.of_type(Unlock)) == 2


def test_repeat_unlocks_does_not_reopen_the_door_once_the_booking_has_ended(
    tmp_path: Path,
) -> None:
    # a repeat was answered on the moment of the first tap: with a long window, a guest
    # whose booking ended at 10:00 opened the door again at 10:08 by tapping twice
    node, _, clock = venue_with_booking(tmp_path, repeat_unlocks=True, repeat_window_s=600)
    clock.at(datetime(2026, 11, 25, 9, 58, tzinfo=PARIS))
    tap(node, UID_BOOKED, ts=100.0)
    clock.at(datetime(2026, 11, 25, 10, 8, tzinfo=PARIS))
    tap(node, UID_BOOKED, ts=580.0)
    assert [(t.reason, t.unlocked) for t in taps(node)[-2:]] == [
        ("booking", True),
        ("repeat", False),
    ]
    assert len(node.of_type(Unlock)) == 1


def test_repeat_unlocks_still_reopens_the_door_during_the_booking(tmp_path: Path) -> None:
    node, _, clock = venue_with_booking(tmp_path, repeat_unlocks=True, repeat_window_s=600)
    tap(node, UID_BOOKED, ts=100.0)
    clock.at(datetime(2026, 11, 25, 9, 13, tzinfo=PARIS))
    tap(node, UID_BOOKED, ts=580.0)
    assert [(t.reason, t.unlocked) for t in taps(node)[-2:]] == [
        ("booking", True),
        ("repeat", True),
    ]
    assert len(node.of_type(Unlock)) == 2


# -- issue #12.2: no trusted clock -----------------------------------------------------------


def expiring(version: int, until: str) -> dict[str, Any]:
    cards = full_lists()["cards"]
    cards[REFS(UID_RESIDENT)] = {"profile": "resident", "valid_until": until}
    cards[REFS(UID_STAFF)] = {"profile": "staff", "valid_until": until}
    return full_lists(version, cards=cards)


def power_cycle(node: TestHost, tmp_path: Path, profile: str = "shuttle", **kw: Any) -> TestHost:
    """A new boot on the same disk (the node's state), with the clock not synced."""
    # a Pi without RTC: a guess from 1970 or so
    again = OrderedNode(profile, state=node.state, clock=SetClock(0, trusted=False))
    service = service_on(again, tmp_path, boot="boot-2", **kw)
    assert service.lists.version >= 1
    return again


def synced_node(tmp_path: Path, when: datetime, until: str, profile: str = "shuttle") -> TestHost:
    clock = SetClock(0)
    clock.at(when)
    node = OrderedNode(profile, clock=clock)
    service = service_on(node, tmp_path, rooms=[])
    asyncio.run(service.command_update(signed(expiring(1, until))))
    tap(node, UID_SENIOR, ts=1.0)  # any tap reads (and keeps) the trusted time
    return node


def test_an_expired_pass_does_not_board_after_a_power_cycle_without_a_clock(
    tmp_path: Path,
) -> None:
    node = synced_node(tmp_path, datetime(2026, 11, 25, 18, 0, tzinfo=PARIS), "2026-11-24")
    again = power_cycle(node, tmp_path)
    tap(again, UID_RESIDENT, ts=5.0)
    event = taps(again)[-1]
    assert (event.decision, event.reason, event.validity) == ("denied", "expired", "last_trusted")
    assert again.of_type(Unlock) == []


def test_an_expired_staff_card_does_not_open_a_venue_after_a_power_cycle(
    tmp_path: Path,
) -> None:
    node = synced_node(tmp_path, datetime(2026, 11, 25, 18, 0, tzinfo=PARIS), "2026-11-24", "venue")
    again = power_cycle(node, tmp_path, "venue", rooms=[])
    tap(again, UID_STAFF, ts=5.0)
    assert (taps(again)[-1].reason, again.of_type(Unlock)) == ("expired", [])


def test_a_gps_time_set_back_before_the_last_ntp_time_boards_no_expired_pass(
    tmp_path: Path,
) -> None:
    """A rider's GPS spoofer on a node that lost NTP: the GPS says a day the pass was valid."""
    node = synced_node(tmp_path, datetime(2026, 11, 25, 18, 0, tzinfo=PARIS), "2026-11-24")
    spoofed = SetClock(0)
    spoofed.kind = ClockSource.GPS
    spoofed.at(datetime(2026, 11, 20, 9, 0, tzinfo=PARIS))
    again = OrderedNode(state=node.state, clock=spoofed)
    service_on(again, tmp_path, boot="boot-2")
    tap(again, UID_RESIDENT, ts=5.0)
    event = taps(again)[-1]
    assert (event.decision, event.reason, event.validity) == ("denied", "expired", "last_trusted")
    assert again.of_type(Unlock) == []


def test_a_gps_time_moved_on_to_a_booking_s_slot_does_not_open_the_venue(
    tmp_path: Path,
) -> None:
    """A guest booked for tomorrow 09:00 spoofs the GPS of a venue node that lost NTP."""
    clock = SetClock(0)
    clock.kind = ClockSource.GPS
    clock.at(datetime(2026, 11, 25, 8, 0, tzinfo=PARIS))
    node = OrderedNode("venue", clock=clock)
    mono = [100.0]
    service = service_on(node, tmp_path, rooms=["salle-1"], monotonic=lambda: mono[0])
    booking = {
        "room": "salle-1",
        "start": "2026-11-26T09:00:00+01:00",
        "end": "2026-11-26T10:00:00+01:00",
    }
    lists = full_lists(bookings={REFS(UID_BOOKED): [booking]})
    asyncio.run(service.command_update(signed(lists)))
    tap(node, UID_BOOKED, ts=1.0)  # today: no booking now
    mono[0] += 60
    clock.at(datetime(2026, 11, 26, 9, 5, tzinfo=PARIS))  # a minute on, the GPS says tomorrow
    tap(node, UID_BOOKED, ts=70.0)
    assert [t.reason for t in taps(node)] == ["no_booking", "clock_unsynced"]
    assert node.of_type(Unlock) == []


def test_a_pass_the_bound_cannot_decide_is_refused_and_counted_staff_admitted(
    tmp_path: Path,
) -> None:
    node = synced_node(tmp_path, datetime(2026, 11, 25, 18, 0, tzinfo=PARIS), "2026-12-31")
    again = OrderedNode(state=node.state, clock=SetClock(0, trusted=False))
    service = service_on(again, tmp_path, boot="boot-2")
    tap(again, UID_RESIDENT, ts=5.0)
    tap(again, UID_STAFF, ts=6.0)
    rider, staff = taps(again)[-2:]
    assert (rider.reason, rider.validity, rider.unlocked) == ("clock_unsynced", "undecided", False)
    assert (staff.decision, staff.validity, staff.unlocked) == ("granted", "undecided", True)
    assert again.counters["access.validity.undecided"] == 2
    assert asyncio.run(service.command_status({}))["undecided"] == 2


def test_the_last_trusted_time_is_kept_in_the_node_state(tmp_path: Path) -> None:
    when = datetime(2026, 11, 25, 18, 0, tzinfo=PARIS)
    node = synced_node(tmp_path, when, "2026-12-31")
    assert node.state[STATE_KEY]["ms"] == int(when.timestamp() * 1000)


@pytest.mark.parametrize(
    ("zone", "last_day"),
    [
        ("Europe/Paris", "2026-10-25"),  # 25 hours: 02:00-03:00 twice
        ("Europe/Paris", "2026-03-28"),  # the next day has no 02:00-03:00
        ("Pacific/Kiritimati", "2026-12-31"),  # UTC+14: the day ends at 10:00 UTC
        ("America/St_Johns", "2026-12-31"),  # UTC-03:30
    ],
)
def test_a_pass_boards_to_the_last_millisecond_of_its_last_local_day(
    tmp_path: Path, zone: str, last_day: str
) -> None:
    """docs/topics.md, *Access lists*: `valid_until` inclusive, in `[node] timezone`."""
    clock = SetClock(0)
    node = OrderedNode(clock=clock, timezone=zone)
    service = service_on(node, tmp_path, repeat_window_s=0)
    asyncio.run(service.command_update(signed(expiring(1, last_day))))
    next_day = date.fromisoformat(last_day) + timedelta(days=1)
    midnight = datetime.combine(next_day, datetime.min.time(), ZoneInfo(zone))
    for ms, ts in (
        (int(midnight.timestamp() * 1000) - 1, 1.0),
        (int(midnight.timestamp() * 1000), 2.0),
    ):
        clock.ms = ms
        tap(node, UID_RESIDENT, ts=ts)
    assert [t.reason for t in taps(node)] == ["ok", "expired"]


def test_a_stored_bound_no_calendar_holds_leaves_taps_decided(tmp_path: Path) -> None:
    # a corrupt state made every tap fail (year out of range): no record, no light, no door
    node = OrderedNode(
        state={STATE_KEY: {"ms": 10**17, "mono": 0, "boot": "boot-0"}},
        clock=SetClock(0, trusted=False),
    )
    service = service_on(node, tmp_path)
    asyncio.run(service.command_update(signed(expiring(1, "2020-01-01"))))
    tap(node, UID_RESIDENT, ts=1.0)
    tap(node, UID_SENIOR, ts=2.0)
    assert [(t.reason, t.unlocked) for t in taps(node)] == [("clock_unsynced", False), ("ok", True)]


def test_a_node_that_never_had_a_trusted_clock_refuses_dated_passes(tmp_path: Path) -> None:
    node = OrderedNode(clock=SetClock(0, trusted=False))
    service = service_on(node, tmp_path)
    asyncio.run(service.command_update(signed(expiring(1, "2020-01-01"))))
    tap(node, UID_RESIDENT, ts=1.0)
    tap(node, UID_SENIOR, ts=2.0)  # no dates on this card: boards
    assert [(t.reason, t.unlocked) for t in taps(node)] == [("clock_unsynced", False), ("ok", True)]


# -- what the other services say, on the bus -------------------------------------------------


def test_a_shuttle_out_of_service_boards_staff_only(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    node.emit(ModeChanged("out-of-service"))  # the mode service, after mode.set
    tap(node, UID_RESIDENT, ts=10.0)
    tap(node, UID_STAFF, ts=20.0)
    assert [(t.decision, t.profile) for t in taps(node)] == [
        ("denied", "resident"),
        ("granted", "staff"),
    ]
    node.emit(ModeChanged("on-demand"))
    tap(node, UID_RESIDENT, ts=30.0)
    assert taps(node)[-1].decision == "granted"


def test_an_occupancy_reset_leaves_nobody_inside_a_venue(tmp_path: Path) -> None:
    node, service, occupancy = make(tmp_path, "venue", rooms=[])
    tap(node, UID_STAFF, ts=10.0)
    assert service.inside and node.state["access.inside"]
    occupancy.reset()
    assert not service.inside and node.state["access.inside"] == []


def test_a_granted_tap_tells_the_counting_and_a_repeat_does_not(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    tap(node, UID_RESIDENT, ts=11.0)  # a repeat
    tap(node, UID_LOST, ts=12.0)  # denied
    assert node.of_type(AccessDecided) == [AccessDecided("board", 1)]


def test_a_reset_to_the_count_ops_gave_keeps_who_is_inside_so_leaving_counts_out(
    tmp_path: Path,
) -> None:
    node, _, occupancy = make(tmp_path, "venue", rooms=[])
    tap(node, UID_STAFF, ts=10.0)
    asyncio.run(occupancy.command_reset({"count": 1}))  # ops counted one person by eye
    tap(node, UID_STAFF, ts=30.0)  # that person leaves
    assert taps(node)[-1].action == "exit" and occupancy.count == 0


def test_a_daily_reset_made_up_at_start_keeps_inside_only_who_entered_since(
    tmp_path: Path,
) -> None:
    """Powered on at 8:00 after a night off, the clock trusted a minute later: the guest
    still marked inside from yesterday (left without tapping) is forgotten, the staff who
    came in during that minute is not: tapping out counts them out."""
    two_days_ago = int((datetime.now(UTC) - timedelta(days=2)).timestamp() * 1000)
    yesterday = {"count": 1, "entries": 1, "exits": 0, "reset_at": two_days_ago}
    state = {"occupancy": yesterday, "access.inside": [REFS(UID_SENIOR)]}
    node = OrderedNode("venue", synced=True, state=state)
    node, service, occupancy = make(tmp_path, "venue", node=node, rooms=[])
    tap(node, UID_STAFF, ts=10.0)

    async def first_look() -> None:
        task = asyncio.create_task(occupancy.run())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(first_look())
    assert occupancy.count == 1 and service.inside == {REFS(UID_STAFF)}
    tap(node, UID_STAFF, ts=30.0)
    assert taps(node)[-1].action == "exit" and occupancy.count == 0


# -- two cards held together -----------------------------------------------------------------


def test_two_cards_held_together_board_once(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_SENIOR, ts=100.05)  # the next poll: both cards in the field (a wallet)
    second = taps(node)[-1]
    assert (second.decision, second.reason, second.fare_cents) == ("denied", "together", None)
    assert occupancy.count == 1 and len(node.of_type(Unlock)) == 1
    assert node.counters["access.together"] == 1


def test_the_second_of_two_cards_held_together_leaves_the_first_one_s_light(
    tmp_path: Path,
) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_SENIOR, ts=100.05)
    assert [f.pattern for f in node.of_type(Feedback)] == ["granted"]


def test_a_wallet_of_two_cards_presented_again_does_not_board_its_second_card(
    tmp_path: Path,
) -> None:
    """The rider, unsure it worked, lifts the wallet and holds it to the reader again: the
    first card is a repeat (no fare), and the second, granted just after it, was decided
    as a new rider (the last new grant at the reader was seconds before): a second fare,
    a second rider counted."""
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_SENIOR, ts=100.05)
    tap(node, UID_RESIDENT, ts=104.0)  # presented again: a repeat
    tap(node, UID_SENIOR, ts=104.05)  # refused `together` again: counted, not recorded again
    assert occupancy.count == 1 and node.counters["access.together"] == 2
    assert [t.fare_cents for t in taps(node) if t.fare_cents] == [taps(node)[0].fare_cents]


def test_two_riders_tapping_in_turn_both_board(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_SENIOR, ts=100.0 + HELD_TOGETHER_S)
    assert taps(node)[-1].decision == "granted" and occupancy.count == 2


def test_a_refused_card_held_with_a_valid_one_does_not_stop_it(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    tap(node, UID_LOST, ts=100.0)
    tap(node, UID_RESIDENT, ts=100.05)
    assert taps(node)[-1].decision == "granted"


def test_two_cards_held_together_at_two_readers_are_two_riders(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path, readers={"front": "entry", "rear": "entry"})
    tap(node, UID_RESIDENT, ts=100.0, reader="front")
    tap(node, UID_SENIOR, ts=100.05, reader="rear")
    assert occupancy.count == 2


def test_together_s_zero_boards_each_card_held_together(tmp_path: Path) -> None:
    node, _, occupancy = make(tmp_path, together_s=0)
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_SENIOR, ts=100.05)
    assert occupancy.count == 2 and node.counters["access.together"] == 0

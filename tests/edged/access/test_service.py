"""The access service on a stand-in node: decide, actuate, count, publish — in that order."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edged.access.service import LISTS_KEY, AccessService
from edged.config.access import OccupancyServiceConfig
from edged.errors import CommandError
from edged.events import Feedback, Tap, Unlock
from edged.services.occupancy import OccupancyService
from tests.edged.services.fakes import FakeNode

from .support import (
    FLEET,
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
    signed,
)


class OrderedNode(FakeNode):
    """Also notes how many events had been emitted when each message was published."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.emitted_before_publish: list[int] = []

    def publish(self, spec: Any, body: Any, **kw: Any) -> Any:
        self.emitted_before_publish.append(len(self.emitted))
        return super().publish(spec, body, **kw)


def make(
    tmp_path: Path,
    profile: str = "shuttle",
    *,
    node: FakeNode | None = None,
    capacity: int | None = 40,
    **extra: Any,
) -> tuple[FakeNode, AccessService, OccupancyService]:
    node = node or OrderedNode(synced=True)
    occupancy = OccupancyService(node, OccupancyServiceConfig(capacity=capacity))
    service = AccessService(
        node,
        config(tmp_path, **extra),
        profile=profile,  # type: ignore[arg-type]
        fleet=FLEET,
        timezone="Europe/Paris",
        emit=node.emit,
        occupancy=occupancy,
    )
    asyncio.run(service.command_update(signed(full_lists(1))))
    return node, service, occupancy


def tap(node: FakeNode, uid: bytes, ts: float = 100.0, reader: str = "front") -> None:
    node.emit(Tap(uid=uid, reader=reader, ts=ts))


def taps(node: FakeNode) -> list[Any]:
    return node.bodies("events/tap")


def test_a_granted_tap_unlocks_and_shows_green_before_it_is_recorded(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    assert isinstance(node, OrderedNode)
    tap(node, UID_RESIDENT)
    assert [type(e) for e in node.emitted[1:]] == [Unlock, Feedback]
    assert node.of_type(Feedback)[0].pattern == "granted"
    published_at = node.emitted_before_publish[-1]
    assert published_at == len(node.emitted)  # the relay and lights were commanded first


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


def test_the_same_card_again_soon_opens_but_is_not_charged_or_counted_twice(
    tmp_path: Path,
) -> None:
    node, _, occupancy = make(tmp_path)
    tap(node, UID_RESIDENT, ts=10.0)
    tap(node, UID_RESIDENT, ts=15.0)
    first, second = taps(node)[-2:]
    assert (second.reason, second.fare_cents, second.decision) == ("repeat", None, "granted")
    assert first.fare_cents == 150
    assert occupancy.count == 1 and len(node.of_type(Unlock)) == 2


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
    again = OrderedNode(state=node.state, synced=True)
    node2, _, _ = make(tmp_path, "truck", node=again)
    tap(node2, UID_PROVIDER, ts=100.0)
    assert taps(node2)[-1].action == "logout"


def test_applied_lists_survive_a_restart(tmp_path: Path) -> None:
    node, _, _ = make(tmp_path)
    restarted = AccessService(
        OrderedNode(state=node.state, synced=True),
        config(tmp_path),
        profile="shuttle",
        fleet=FLEET,
        timezone="Europe/Paris",
        emit=lambda e: None,
    )
    assert restarted.lists.version == 1 and REFS(UID_SENIOR) in restarted.lists.cards


def test_unreadable_stored_lists_mean_empty_lists_not_a_crash(tmp_path: Path) -> None:
    node = OrderedNode(state={LISTS_KEY: {"version": "x"}}, synced=True)
    service = AccessService(
        node,
        config(tmp_path),
        profile="shuttle",
        fleet=FLEET,
        timezone="Europe/Paris",
        emit=node.emit,
    )
    assert service.lists.version == 0
    tap(node, UID_RESIDENT)
    assert taps(node)[-1].reason == "unknown"


def test_a_refused_update_changes_nothing(tmp_path: Path) -> None:
    node, service, _ = make(tmp_path)
    before = dict(node.state)
    bad = signed(full_lists(9))
    bad["lists"]["version"] = 10  # tampered after signing
    with pytest.raises(CommandError):
        asyncio.run(service.command_update(bad))
    assert service.lists.version == 1 and node.state == before


def test_status_counts_the_lists(tmp_path: Path) -> None:
    _, service, _ = make(tmp_path)
    status = asyncio.run(service.command_status({}))
    assert (status["version"], status["cards"], status["deny"], status["fares"]) == (1, 6, 1, 3)


def test_a_flood_of_taps_is_each_decided_and_recorded_once(tmp_path: Path) -> None:
    node, service, occupancy = make(tmp_path, capacity=None, unknown_card="allow")
    for i in range(2000):
        tap(node, i.to_bytes(4, "big"), ts=float(i))
    assert len(taps(node)) == 2000 and occupancy.count == 2000
    assert len(node.of_type(Unlock)) == 2000 and service.taps == 2000

"""The access lists' age on a node: reported, judged without a clock that can jump, and what
the node does past the `expires` dispatch signed into them."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.events import Tap, Unlock
from edged.clock import ClockSource
from edged.errors import CommandError
from edged.services.access import LISTS_KEY, VALIDITY_KEY, AccessService
from tests.edged.access.support import (
    REFS,
    UID_LOST,
    UID_RESIDENT,
    UID_SENIOR,
    UID_STAFF,
    SetClock,
    full_lists,
    host,
    service_on,
    signed,
)
from tests.helpers.host import TestHost

ISSUED = datetime(2026, 12, 1, 8, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(days=7)
WEEK_S = 7 * 86_400.0


class Mono:
    def __init__(self, at: float = 1000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def dated(version: int = 1, issued: datetime = ISSUED, expires: datetime = EXPIRES) -> Any:
    return signed(full_lists(version, issued=issued.isoformat(), expires=expires.isoformat()))


def node_with_lists(
    tmp_path: Path,
    *,
    trusted: bool = True,
    at: datetime = ISSUED + timedelta(hours=1),
    mono: Mono | None = None,
    **config: Any,
) -> tuple[TestHost, AccessService, SetClock, Mono]:
    clock = SetClock(0, trusted=trusted)
    clock.at(at)
    node = host(clock=clock)
    mono = mono or Mono()
    service = service_on(node, tmp_path, monotonic=mono, **config)
    asyncio.run(service.command_update(dated()))
    return node, service, clock, mono


def tap(node: TestHost, uid: bytes, ts: float = 100.0, reader: str = "front") -> Any:
    node.emit(Tap(uid=uid, reader=reader, ts=ts))
    return node.bodies("events/tap")[-1]


def health(service: AccessService) -> Any:
    return asyncio.run(service.report())["access"]


# -- what ops sees ---------------------------------------------------------------------------


def test_health_says_when_dispatch_issued_the_lists_and_when_the_node_took_them(
    tmp_path: Path,
) -> None:
    _, service, clock, mono = node_with_lists(tmp_path)
    mono.at += 7200
    report = health(service)
    assert (report.version, report.issued, report.expires) == (
        1,
        int(ISSUED.timestamp() * 1000),
        int(EXPIRES.timestamp() * 1000),
    )
    assert (report.received, report.received_clock) == (clock.ms, "ntp")
    assert (report.held_s, report.expired) == (7200, False)
    # taken an hour after issued, held two since: the trusted clock that did not move is
    # no reason to say less
    assert report.age_s == 3 * 3600


def test_health_of_lists_without_a_validity_has_their_version_and_held_time_only(
    tmp_path: Path,
) -> None:
    node = host(clock=SetClock(int(ISSUED.timestamp() * 1000)))
    service = service_on(node, tmp_path)
    asyncio.run(service.command_update(signed(full_lists(3))))
    report = health(service).to_json_dict()
    assert "issued" not in report and "expires" not in report and "age_s" not in report
    assert (report["version"], report["expired"]) == (3, False)


def test_access_status_gives_the_lists_age(tmp_path: Path) -> None:
    _, service, _, _ = node_with_lists(tmp_path)
    status = asyncio.run(service.command_status({}))
    assert status["expires"] == int(EXPIRES.timestamp() * 1000) and status["expired"] is False


# -- past expires ---------------------------------------------------------------------------


def test_lists_past_expires_keep_boarding_riders_by_default_each_tap_flagged(
    tmp_path: Path,
) -> None:
    node, service, clock, _ = node_with_lists(tmp_path)
    clock.at(EXPIRES + timedelta(minutes=1))
    event = tap(node, UID_RESIDENT)
    assert (event.decision, event.reason, event.lists_expired) == ("granted", "ok", True)
    assert node.counters["access.lists_expired"] == 1 and health(service).expired


def test_a_tap_on_fresh_lists_is_not_flagged(tmp_path: Path) -> None:
    node, _, _, _ = node_with_lists(tmp_path)
    assert "lists_expired" not in tap(node, UID_RESIDENT).to_json_dict()


def test_the_deny_list_still_refuses_past_expires(tmp_path: Path) -> None:
    node, _, clock, _ = node_with_lists(tmp_path)
    clock.at(EXPIRES + timedelta(days=30))
    event = tap(node, UID_LOST)
    assert (event.decision, event.reason) == ("denied", "blocked")
    assert node.of_type(Unlock) == []


def test_refuse_past_expires_turns_riders_away_with_reason_lists_expired(tmp_path: Path) -> None:
    node, _, clock, _ = node_with_lists(tmp_path, expired_lists="refuse")
    clock.at(EXPIRES + timedelta(minutes=1))
    event = tap(node, UID_RESIDENT)
    assert (event.decision, event.reason) == ("denied", "lists_expired")
    assert node.of_type(Unlock) == []


def test_refuse_past_expires_still_lets_staff_in(tmp_path: Path) -> None:
    node, _, clock, _ = node_with_lists(tmp_path, expired_lists="refuse")
    clock.at(EXPIRES + timedelta(minutes=1))
    assert tap(node, UID_STAFF).decision == "granted"


def test_an_expiry_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    node, _, clock, _ = node_with_lists(tmp_path)
    clock.at(EXPIRES + timedelta(minutes=1))
    tap(node, UID_RESIDENT, ts=100.0)
    tap(node, UID_SENIOR, ts=200.0)
    assert sum("expired at" in r.getMessage() for r in caplog.records) == 1


def test_an_empty_delta_one_version_up_renews_expired_lists(tmp_path: Path) -> None:
    node, service, clock, _ = node_with_lists(tmp_path)
    clock.at(EXPIRES + timedelta(minutes=1))
    later = {"issued": clock_iso(clock), "expires": (EXPIRES + timedelta(days=7)).isoformat()}
    delta = {"kind": "delta", "fleet": service.fleet, "version": 2, "base_version": 1, **later}
    asyncio.run(service.command_update(signed(delta)))
    assert not health(service).expired
    assert "lists_expired" not in tap(node, UID_RESIDENT).to_json_dict()


def clock_iso(clock: SetClock) -> str:
    return datetime.fromtimestamp(clock.ms / 1000, UTC).isoformat()


# -- the adversaries -------------------------------------------------------------------------


def test_a_peer_playing_back_an_expired_list_to_a_node_that_lost_its_own_is_refused(
    tmp_path: Path,
) -> None:
    """A fleet peer (any certificate may write cmd/) kept a signed list from before a card
    was revoked; the node lost its state: an expired list is no way back to it."""
    clock = SetClock(0)
    clock.at(EXPIRES + timedelta(days=60))
    service = service_on(host(clock=clock), tmp_path)
    with pytest.raises(CommandError) as info:
        asyncio.run(service.command_update(dated(5)))
    assert info.value.code == "expired" and service.lists.version == 0


def test_a_clock_set_back_does_not_make_expired_lists_fresh(tmp_path: Path) -> None:
    """Someone at the node's clock (`date -s` with trust_system_clock) sets it back to a
    day the lists held: they were held past their validity, on the monotonic clock."""
    node, service, clock, mono = node_with_lists(tmp_path)
    mono.at += WEEK_S
    clock.at(ISSUED + timedelta(hours=2))
    assert tap(node, UID_RESIDENT).lists_expired is True and health(service).expired


def test_a_clock_set_back_across_a_restart_does_not_make_expired_lists_fresh(
    tmp_path: Path,
) -> None:
    node, _, clock, mono = node_with_lists(tmp_path)
    mono.at += WEEK_S
    clock.at(ISSUED + timedelta(hours=2))
    again = host(clock=clock)
    again.state = node.state
    service = service_on(again, tmp_path, monotonic=mono)  # same boot: the daemon restarted
    assert health(service).expired


def test_an_unsynced_clock_stepped_forward_does_not_expire_the_lists(tmp_path: Path) -> None:
    """A node without NTP whose clock jumps on a year (a GPS fix not believed, a guess):
    riders keep boarding unflagged; only a trusted time or the time held expire them."""
    node, service, clock, mono = node_with_lists(tmp_path)
    clock.trusted = False
    clock.at(EXPIRES + timedelta(days=365))
    mono.at += 3600
    assert "lists_expired" not in tap(node, UID_RESIDENT).to_json_dict()
    assert not health(service).expired


def test_a_node_that_never_had_a_clock_expires_its_lists_after_their_validity_of_running(
    tmp_path: Path,
) -> None:
    node, service, _, mono = node_with_lists(
        tmp_path, trusted=False, at=datetime(1970, 1, 2, tzinfo=UTC)
    )
    mono.at += WEEK_S - 3600  # issued + held: still an hour to go
    assert not health(service).expired
    mono.at += 7200
    assert tap(node, UID_RESIDENT).lists_expired is True


def test_a_revoked_card_boarding_on_expired_lists_is_flagged_for_dispatch(tmp_path: Path) -> None:
    """The rider's gain on a node offline past expires (default `allow`): a ride, recorded
    with the lists' staleness so dispatch can act on it."""
    node, _, clock, _ = node_with_lists(tmp_path)
    clock.at(EXPIRES + timedelta(days=3))
    event = tap(node, UID_SENIOR)  # revoked at dispatch since; this node never heard
    assert (event.decision, event.lists_expired, event.lists_version) == ("granted", True, 1)


def test_a_gps_time_jumping_a_year_on_under_a_running_node_does_not_expire_the_lists(
    tmp_path: Path,
) -> None:
    """A spoofer moving GPS time on (the kernel clock without NTP) to lock riders out
    where `expired_lists = "refuse"`: a GPS time away from the one carried on is not
    believed, so only the time held counts."""
    node, service, clock, mono = node_with_lists(tmp_path, expired_lists="refuse")
    clock.kind = ClockSource.GPS
    clock.at(EXPIRES + timedelta(days=365))
    mono.at += 60
    assert tap(node, UID_SENIOR).decision == "granted"  # no dates of its own to doubt
    assert not health(service).expired


def test_the_same_lists_sent_again_keep_the_time_they_were_held(tmp_path: Path) -> None:
    """Dispatch retrying an update, or a peer playing back the lists in force: nothing
    changed, so their held time goes on; restarted from zero, lists expired on a node
    without a clock were fresh again for another validity."""
    node, service, _, mono = node_with_lists(
        tmp_path, trusted=False, at=datetime(1970, 1, 2, tzinfo=UTC)
    )
    mono.at += WEEK_S + 3600
    asyncio.run(service.command_update(dated()))
    assert health(service).held_s == WEEK_S + 3600
    assert tap(node, UID_RESIDENT).lists_expired is True


# -- across releases -------------------------------------------------------------------------

BEFORE_VALIDITY = {"kind", "fleet", "version", "cards", "deny", "bookings", "fares"}
"""The fields of the stored lists the release before this one reads (its model forbids
any other: lists it cannot read are set aside, and it decides on empty lists)."""


def restarted(node: TestHost, tmp_path: Path, mono: Mono) -> AccessService:
    again = host(clock=node.clock)
    again.state = node.state
    return service_on(again, tmp_path, monotonic=mono)


def test_lists_with_a_validity_are_stored_in_the_form_the_release_before_reads(
    tmp_path: Path,
) -> None:
    """An update that fails its trial is rolled back by itself (docs/updates.md): the
    release before must still decide on the lists this one stored, not refuse every rider
    `unknown` on empty lists until dispatch stops signing a validity it cannot read."""
    node, _, _, _ = node_with_lists(tmp_path)
    assert set(node.state[LISTS_KEY]) == BEFORE_VALIDITY


def test_the_lists_validity_and_digest_come_back_after_a_restart(tmp_path: Path) -> None:
    node, service, _, mono = node_with_lists(tmp_path)
    before = asyncio.run(service.command_status({}))["digest"]
    again = restarted(node, tmp_path, mono)
    assert (again.lists.issued, again.lists.expires) == (ISSUED, EXPIRES)
    assert asyncio.run(again.command_status({}))["digest"] == before


def test_lists_the_release_before_took_after_a_rollback_do_not_take_the_old_validity(
    tmp_path: Path,
) -> None:
    """Rolled back, the release before took version 2 (it stores no validity); updated
    again, version 2 is not given version 1's expires."""
    node, _, _, mono = node_with_lists(tmp_path)
    node.state.set(LISTS_KEY, {**node.state[LISTS_KEY], "version": 2})
    again = restarted(node, tmp_path, mono)
    assert (again.lists.version, again.lists.expires) == (2, None)


def test_a_damaged_stored_validity_leaves_the_lists_deciding(tmp_path: Path) -> None:
    node, _, _, mono = node_with_lists(tmp_path)
    node.state.set(VALIDITY_KEY, {**node.state[VALIDITY_KEY], "expires": "soon"})
    again = restarted(node, tmp_path, mono)
    assert (again.lists.version, again.lists.expires) == (1, None)


def test_newer_lists_past_their_expires_are_taken_over_older_ones(tmp_path: Path) -> None:
    """A node whose trusted clock runs ahead (GPS believed from the start, an RTC trusted by
    config) held every list dispatch signed expired, and refused them all: the card
    revoked since never reached its deny list. Newer lists lose no revocation."""
    node, service, clock, _ = node_with_lists(tmp_path)
    clock.at(EXPIRES + timedelta(days=60))
    newer = full_lists(2, issued=(ISSUED + timedelta(days=1)).isoformat())
    newer["expires"] = (EXPIRES + timedelta(days=1)).isoformat()
    newer["deny"] = {**newer["deny"], REFS(UID_SENIOR): {"reason": "stolen"}}
    asyncio.run(service.command_update(signed(newer)))
    assert service.lists.version == 2 and health(service).expired
    assert tap(node, UID_SENIOR).reason == "blocked"


def test_a_delta_keeping_the_validity_keeps_counting_the_time_held(tmp_path: Path) -> None:
    """On a node without a clock, `issued` plus the time held is the only bound: a delta
    that keeps the lists' validity (a revocation, no renewal) restarted the count, and
    lists a week old were fresh for another week."""
    _, service, _, mono = node_with_lists(
        tmp_path, trusted=False, at=datetime(1970, 1, 2, tzinfo=UTC)
    )
    mono.at += WEEK_S - 3600
    delta = {"kind": "delta", "fleet": service.fleet, "version": 2, "base_version": 1}
    asyncio.run(service.command_update(signed({**delta, "deny": {REFS(UID_SENIOR): {}}})))
    mono.at += 7200
    assert service.lists.version == 2 and health(service).expired


def test_a_clean_stop_keeps_the_time_held_since_the_last_save(tmp_path: Path) -> None:
    """The ignition off stops the node cleanly: the minutes since the last 10-minute save
    were lost at each stop, so a node without a clock stopped every few minutes (a
    shuttle parked often) never counted the time it held its lists."""
    node, service, _, mono = node_with_lists(tmp_path)

    async def run_then_stop() -> None:
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0)
        mono.at += 300
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run_then_stop())
    assert node.state["access.lists.held"]["held_ms"] == 300_000

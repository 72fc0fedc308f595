"""The rider's and the guest's whole game at once: any sequence of taps, readers, clock
states and list changes, and the door never opens for a card that could not come in now.

For every pulse of the lock at a reader that is not an `exit` reader, a fresh entry
decision for that card at that moment must grant it; a repeat never pulses the lock (by
default), so one fare lets one rider through; with `repeat_unlocks` (a slow venue door) it
may, but only for a card that may come in at the moment of the repeat.
"""

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.events import Tap, Unlock
from edged.access.decide import Situation, decide
from edged.config.access import OccupancyServiceConfig
from edged.services.occupancy import OccupancyService

from .support import (
    REFS,
    UID_BOOKED,
    UID_LOST,
    UID_RESIDENT,
    UID_SENIOR,
    UID_STAFF,
    UID_UNKNOWN,
    SetClock,
    config,
    full_lists,
    host,
    service_on,
    signed,
)

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2026, 11, 25, 8, 0, tzinfo=PARIS)
UIDS = [UID_BOOKED, UID_RESIDENT, UID_SENIOR, UID_STAFF, UID_LOST, UID_UNKNOWN]
READERS = {"door": "both", "in": "entry", "out": "exit"}

Step = tuple[str, Any, Any]
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("tap"),
            st.sampled_from(range(len(UIDS))),
            st.sampled_from(["door", "door", "door", "in", "out"]),  # mostly the `both` one
        ),
        st.tuples(st.just("wait"), st.sampled_from([1, 5, 30, 600, 3600, 43200, 86400]), st.none()),
        st.tuples(st.just("clock"), st.booleans(), st.none()),
        st.tuples(st.just("withdraw"), st.sampled_from(range(len(UIDS))), st.none()),
    ),
    max_size=40,
)
# the attacks, always played besides what hypothesis makes up
NIGHT = [("tap", 0, "door"), ("wait", 43200, None), ("tap", 0, "door")]
WITHDRAWN = [("tap", 0, "door"), ("withdraw", 0, None), ("tap", 0, "door")]
PASS_BACK = [("tap", 1, "door"), ("wait", 5, None), ("tap", 1, "door")]
UNSYNCED = [("clock", False, None), ("wait", 86400, None), ("tap", 2, "door")]
# the booking (07:50-09:00) ends between a tap and its repeat within a long window
OVERSTAY = [("wait", 3500, None), ("tap", 0, "in"), ("wait", 600, None), ("tap", 0, "in")]


def lists_doc(version: int, withdrawn: set[bytes]) -> dict[str, Any]:
    cards = {
        REFS(UID_BOOKED): {"profile": "jobseeker", "valid_until": "2026-11-26"},
        REFS(UID_RESIDENT): {"profile": "resident", "valid_from": "2026-11-25"},
        REFS(UID_SENIOR): {"profile": "senior", "valid_until": "2026-11-25"},
        REFS(UID_STAFF): {"profile": "staff"},
        REFS(UID_LOST): {"profile": "resident"},
    }
    slot = {
        "room": "salle-1",
        "start": (START - timedelta(minutes=10)).isoformat(),
        "end": (START + timedelta(hours=1)).isoformat(),
    }
    return full_lists(
        version,
        cards={k: v for k, v in cards.items() if k not in {REFS(u) for u in withdrawn}},
        bookings={REFS(UID_BOOKED): [slot], REFS(UID_RESIDENT): [slot]},
    )


def play(tmp_path: Path, profile: str, program: list[Step], **extra: Any) -> None:
    clock = SetClock(0)
    clock.at(START)
    node = host(profile, clock=clock)
    mono = [1000.0]
    cfg = config(tmp_path, readers=READERS, rooms=["salle-1"], **extra)
    occupancy = OccupancyService(node, OccupancyServiceConfig(capacity=2))
    service = service_on(
        node,
        tmp_path,
        monotonic=lambda: mono[0],
        readers=READERS,
        rooms=["salle-1"],
        **extra,
    )
    withdrawn: set[bytes] = set()
    full_then: dict[bytes, bool] = {}
    version = 1
    asyncio.run(service.command_update(signed(lists_doc(version, withdrawn))))
    for kind, a, b in program:
        if kind == "wait":
            clock.ms += a * 1000
            mono[0] += a
        elif kind == "clock":
            clock.trusted = a
        elif kind == "withdraw":
            withdrawn.add(UIDS[a])
            version += 1
            asyncio.run(service.command_update(signed(lists_doc(version, withdrawn))))
        else:
            uid, reader = UIDS[a], b
            full = occupancy.full
            before = len(node.of_type(Unlock))
            recorded = len(node.bodies("events/tap"))
            node.emit(Tap(uid=uid, reader=reader, ts=mono[0]))
            opened = len(node.of_type(Unlock)) - before
            if len(node.bodies("events/tap")) == recorded:  # a refusal repeated: not recorded
                assert not opened, "the door opened for a tap with no record"
                continue
            event = node.bodies("events/tap")[-1]
            assert opened == int(event.unlocked), event
            if event.decision == "granted" and event.reason != "repeat":
                full_then[uid] = full  # what a repeat of this tap is decided on
            if not opened or READERS[reader] == "exit":
                continue
            if event.reason == "repeat":
                assert extra.get("repeat_unlocks"), "a repeat pulsed the lock"
                full = full_then[uid]  # the same person again, already counted
            card = service.lists.cards.get(REFS(uid))
            if not clock.trusted and card is not None and card.valid_until is not None:
                # no clock can say a dated pass is still valid: only staff pass on policy
                assert card.profile in cfg.staff_profiles, f"{event} opened on an unsynced clock"
            bound = service.time.bound()
            now = datetime.fromtimestamp(clock.ms / 1000, PARIS)
            fresh = Situation(
                profile=profile,  # type: ignore[arg-type]
                now=now if clock.trusted else None,
                bound=None
                if clock.trusted or bound is None
                else datetime.fromtimestamp(bound / 1000, PARIS),
                role="entry",
                full=full,
            )
            entry = decide(service.lists, cfg, REFS(uid), fresh)
            assert entry.granted, f"the door opened for {event} but entry says {entry}"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=steps)
@example(program=NIGHT)
@example(program=WITHDRAWN)
@example(program=UNSYNCED)
def test_at_a_venue_the_door_opens_only_for_a_card_that_may_enter_now(
    tmp_path: Path, program: list[Step]
) -> None:
    play(tmp_path, "venue", program)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=steps)
@example(program=PASS_BACK)
@example(program=UNSYNCED)
def test_on_a_shuttle_every_pulse_of_the_lock_is_a_paid_boarding(
    tmp_path: Path, program: list[Step]
) -> None:
    play(tmp_path, "shuttle", program)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=steps)
@example(program=OVERSTAY)
def test_a_slow_door_reopened_by_a_repeat_opens_only_for_a_card_that_may_enter_now(
    tmp_path: Path, program: list[Step]
) -> None:
    play(tmp_path, "venue", program, repeat_unlocks=True, repeat_window_s=900)

"""Wiring faults on the board's door contacts and counting beams, driven on gpiozero's
MockFactory pins with the timing the faulty part has on a bus."""

import asyncio
import itertools
import logging
import random
import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from core.events import Crossing, DoorInput, PanicInput
from drivers.gpio import board
from drivers.gpio.beams import RESTS_BLOCKED
from tests.drivers.gpio.conftest import Start
from tests.drivers.gpio.fakes import chatter, wait_until
from tests.helpers.journal import FEW, Journal

DOOR, OUTER, INNER, PANIC = 5, 6, 13, 19
REAR_OUTER, REAR_INNER = 20, 21


async def flap(pin: MockPin, seconds: float, seed: int = 1) -> bool:
    """A loose reed wire on a vibrating bus: the level alternates irregularly, each level
    lasting 60-120 ms (longer than the 50 ms debounce), for `seconds`. Returns the last
    level driven."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    level = bool(pin.state)
    while loop.time() < end:
        level = not level
        (pin.drive_high if level else pin.drive_low)()
        await asyncio.sleep(rng.uniform(0.06, 0.12))
    return level


def changes(events: list[DoorInput]) -> list[bool]:
    """The door changes reported after the state at start."""
    return [e.open for e in events[1:]]


# -- door contacts ---------------------------------------------------------------------


async def test_flapping_door_contact_gives_at_most_three_events_and_is_counted(
    start: Start, factory: MockFactory
) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR}])  # defaults: bounce_s 0.05
    await flap(factory.pin(DOOR), 3.0)  # some 35 changes, each longer than the debounce
    await asyncio.sleep(0.2)
    assert len(changes(r.rec.of(DoorInput))) <= 3  # before it can be told from a door
    assert r.rec.counts["door_flapping"] == 1


async def test_flapping_door_contact_reports_its_settled_state_once_steady(
    start: Start, factory: MockFactory
) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR, "flap_steady_s": 0.5}])
    pin = factory.pin(DOOR)
    await flap(pin, 1.0)
    pin.drive_high()  # the door is open; the wire stops moving
    during = len(r.rec.of(DoorInput))
    await asyncio.sleep(0.3)
    assert len(r.rec.of(DoorInput)) == during  # not steady long enough yet
    await wait_until(lambda: not r.driver.board.doors[0].guard.flapping, 1, "steady")  # type: ignore[union-attr]
    await asyncio.sleep(0.1)
    events = r.rec.of(DoorInput)
    assert events[-1].open is True
    assert len(events) <= during + 1  # once, and only if it differs from the last report


async def test_flapping_door_contact_warns_once_and_counts_every_flap(
    start: Start, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR, "flap_steady_s": 0.3}])
    pin = factory.pin(DOOR)
    with caplog.at_level(logging.WARNING):
        await flap(pin, 0.8, seed=2)
        await asyncio.sleep(0.5)
        await flap(pin, 0.8, seed=3)
        await asyncio.sleep(0.5)
    assert r.rec.counts["door_flapping"] == 2
    warnings = [m for m in caplog.messages if "flapping" in m]
    assert len(warnings) == 1


async def test_door_opened_and_closed_quickly_still_gives_both_events(
    start: Start, factory: MockFactory
) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR}])
    pin = factory.pin(DOOR)
    pin.drive_low()  # closed
    await wait_until(lambda: len(r.rec.of(DoorInput)) == 2, 1, "closed")
    await asyncio.sleep(0.5)
    for _ in range(2):  # pushed open and let swing shut, twice in a row
        pin.drive_high()
        await asyncio.sleep(0.3)
        pin.drive_low()
        await asyncio.sleep(0.4)
    assert changes(r.rec.of(DoorInput)) == [False, True, False, True, False]
    assert r.rec.counts["door_flapping"] == 0


async def test_door_contact_chattering_while_closed_reports_the_close_once(
    start: Start, factory: MockFactory
) -> None:
    # a worn reed contact on a vibrating bus, the door shut: made (LOW) but breaking every
    # few ms (fakes.chatter), never steady for the 50 ms debounce. The door is closed
    r = await start(doors=[{"name": "front", "pin": DOOR}])
    pin = factory.pin(DOOR)
    first = asyncio.get_running_loop().time()
    held = await chatter(pin, False, 1.0)
    events = r.rec.of(DoorInput)
    if held.broken >= 0.05:  # this machine held a break past the debounce: a real opening
        await wait_until(lambda: r.rec.of(DoorInput)[-1].open is False, 1, "the close")
        assert changes(r.rec.of(DoorInput))[0] is False
        return
    assert changes(events) == [False], "the close was not reported while the contact chattered"
    assert abs(events[1].ts - first) < 0.01
    assert r.rec.counts["door_flapping"] == 0


async def test_door_contact_chattering_at_50_hz_then_closing_reports_little_and_the_close(
    start: Start, factory: MockFactory
) -> None:
    """At 50 Hz no level is steady for the 50 ms debounce; on a loaded machine a 10 ms sleep
    can last past 50 ms, and such a level was steady: the flap guard then holds the rest.
    Either way a few events at most, and the close at the end."""
    r = await start(doors=[{"name": "front", "pin": DOOR}])
    pin = factory.pin(DOOR)
    for _ in range(100):  # 2 s at 50 Hz
        pin.drive_low()
        await asyncio.sleep(0.01)
        pin.drive_high()
        await asyncio.sleep(0.01)
    pin.drive_low()
    await wait_until(
        lambda: bool(r.rec.of(DoorInput)) and r.rec.of(DoorInput)[-1].open is False,
        3,
        "the close reported",
    )
    events = [e.open for e in r.rec.of(DoorInput)]
    assert events[0] is True and events[-1] is False and len(events) <= 4, events


# -- counting beams --------------------------------------------------------------------


async def _clear_beams(factory: MockFactory) -> None:
    """Receivers see their light: LOW (the pull-up reads blocked until they drive)."""
    factory.pin(OUTER).drive_low()
    factory.pin(INNER).drive_low()
    await asyncio.sleep(0.05)


async def _outer_only(factory: MockFactory, people: int) -> None:
    """People walking in through a doorway whose inner receiver always sees light: only the
    outer beam is ever blocked (0.35 s a body, 0.15 s between bodies)."""
    for _ in range(people):
        factory.pin(OUTER).drive_high()
        await asyncio.sleep(0.35)
        factory.pin(OUTER).drive_low()
        await asyncio.sleep(0.15)


async def test_inner_beam_stuck_clear_is_reported_after_ten_outer_back_outs(
    start: Start, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    r = await start(beams=[{"door": "front", "outer": OUTER, "inner": INNER}])
    await _clear_beams(factory)
    with caplog.at_level(logging.WARNING):
        await _outer_only(factory, 9)
        assert r.rec.counts["beam_one_sided"] == 0
        await _outer_only(factory, 11)
    assert r.rec.of(Crossing) == []
    assert r.rec.counts["beam_one_sided"] == 1
    assert len([m for m in caplog.messages if "stuck clear" in m]) == 1


async def test_one_sided_beams_clear_when_the_silent_beam_moves_and_can_report_again(
    start: Start, factory: MockFactory
) -> None:
    r = await start(beams=[{"door": "front", "outer": OUTER, "inner": INNER}])
    await _clear_beams(factory)
    await _outer_only(factory, 10)
    assert r.rec.counts["beam_one_sided"] == 1
    for step in ("I+", "I-"):  # the inner receiver works again (someone wiped it)
        pin = factory.pin(INNER if step[0] == "I" else OUTER)
        pin.drive_high() if step[1] == "+" else pin.drive_low()
        await asyncio.sleep(0.1)
    await _outer_only(factory, 9)
    assert r.rec.counts["beam_one_sided"] == 1  # the count started again from zero
    await _outer_only(factory, 1)
    assert r.rec.counts["beam_one_sided"] == 2


async def _one_sided_then_moving(factory: MockFactory, outer: int, inner: int) -> None:
    """Ten back-outs on the outer beam, then a flicker of the inner one: a loose connector
    on the inner receiver, at the scaled pace of a busy doorway (min_block_s 2 ms)."""
    for _ in range(10):
        factory.pin(outer).drive_high()
        await asyncio.sleep(0.006)
        factory.pin(outer).drive_low()
        await asyncio.sleep(0.006)
    factory.pin(inner).drive_high()
    await asyncio.sleep(0.006)
    factory.pin(inner).drive_low()
    await asyncio.sleep(0.006)


async def test_an_inner_beam_that_works_now_and_then_leaves_a_few_lines_in_the_journal(
    start: Start, factory: MockFactory, journal: Journal
) -> None:
    """Each one-sided report and each "changes again" was a line: 117 a minute from one
    doorway. The first ones at once, the rest counted (beam_one_sided)."""
    pair = {"door": "front", "outer": OUTER, "inner": INNER, "min_block_s": 0.002}
    r = await start(beams=[pair])
    await _clear_beams(factory)
    for _ in range(20):
        await _one_sided_then_moving(factory, OUTER, INNER)
    await wait_until(lambda: r.rec.counts["beam_one_sided"] == 20, 2, "20 reports counted")
    assert 1 <= len(journal.with_("back-outs in a row on the outer beam")) <= FEW
    assert 1 <= len(journal.with_("door front: the inner beam changes again")) <= FEW


async def test_a_flooding_doorway_does_not_hide_the_first_report_of_another(
    start: Start, factory: MockFactory, journal: Journal
) -> None:
    front = {"door": "front", "outer": OUTER, "inner": INNER, "min_block_s": 0.002}
    rear = {"door": "rear", "outer": REAR_OUTER, "inner": REAR_INNER, "min_block_s": 0.002}
    r = await start(beams=[front, rear])
    for pin in (OUTER, INNER, REAR_OUTER, REAR_INNER):
        factory.pin(pin).drive_low()
    await asyncio.sleep(0.05)
    for _ in range(20):
        await _one_sided_then_moving(factory, OUTER, INNER)
    await _one_sided_then_moving(factory, REAR_OUTER, REAR_INNER)
    await wait_until(lambda: r.rec.counts["beam_one_sided"] == 21, 2, "21 reports counted")
    assert len(journal.with_("door rear: 10 back-outs in a row")) == 1


async def test_covered_outer_lens_is_stuck_even_while_people_keep_crossing_the_inner_beam(
    start: Start, factory: MockFactory
) -> None:
    # scaled: max_transit_s 1 s, someone on the inner beam every 0.4 s
    r = await start(beams=[{"door": "front", "outer": OUTER, "inner": INNER, "max_transit_s": 1.0}])
    o, i = factory.pin(OUTER), factory.pin(INNER)
    await _clear_beams(factory)
    o.drive_high()  # lens covered for good
    for _ in range(6):
        await asyncio.sleep(0.2)
        i.drive_high()
        await asyncio.sleep(0.2)
        i.drive_low()
    assert r.rec.counts["beam_stuck"] == 1
    assert r.rec.of(Crossing) == []


async def test_a_beam_already_blocked_when_the_driver_starts_is_reported_stuck(
    start: Start, factory: MockFactory
) -> None:
    """A lens covered before the start (a case left on the step overnight, a receiver
    whose `active_high` is the wrong way round): nothing changes afterwards, and it is still
    reported `max_transit_s` on, not only once someone moves the other beam."""
    factory.pin(OUTER).drive_high()
    factory.pin(INNER).drive_low()
    r = await start(beams=[{"door": "front", "outer": OUTER, "inner": INNER, "max_transit_s": 0.1}])
    await wait_until(lambda: r.rec.counts["beam_stuck"] == 1, 1, "the stuck report")


async def test_receivers_wired_the_opposite_of_the_config_are_reported_not_counted_silently(
    start: Start, factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # dark-on receivers (output off while they see the light) with the default light-on
    # config: the pull-up reads blocked at rest, a rider reads as a moment clear. Scaled: a
    # stop of riders 0.25 s after the last, a ride of max_transit_s 0.1 s between stops
    pair = {"door": "front", "outer": OUTER, "inner": INNER, "min_block_s": 0.005}
    r = await start(beams=[{**pair, "max_transit_s": 0.1}])
    o, i = factory.pin(OUTER), factory.pin(INNER)
    o.drive_high()
    i.drive_high()
    with caplog.at_level(logging.WARNING):
        for _ in range(RESTS_BLOCKED + 1):  # a stop: one rider going in
            await asyncio.sleep(0.15)
            for pin, level in ((o, 0), (i, 0), (o, 1), (i, 1)):
                pin.drive_high() if level else pin.drive_low()
                await asyncio.sleep(0.015)
        await wait_until(lambda: r.rec.counts["beam_rests_blocked"] == 1, 1, "the report")
    assert len([m for m in caplog.messages if "set active_high = false" in m]) == 1
    assert r.rec.counts["beam_stuck"] >= RESTS_BLOCKED


async def test_riders_standing_in_the_door_one_after_another_at_one_stop_are_not_beams_reversed(
    start: Start, factory: MockFactory
) -> None:
    # riders paying the driver on the step, each on both beams longer than max_transit_s,
    # the next stepping up at once: honest beams, one opening of the door. Scaled
    factory.pin(DOOR).drive_low()  # shut
    r = await start(
        doors=[{"name": "front", "pin": DOOR, "bounce_s": 0.005}],
        beams=[
            {"door": "front", "outer": OUTER, "inner": INNER}
            | {"min_block_s": 0.005, "max_transit_s": 0.1}
        ],
    )
    o, i, door = factory.pin(OUTER), factory.pin(INNER), factory.pin(DOOR)
    o.drive_low()
    i.drive_low()
    door.drive_high()  # open
    await asyncio.sleep(0.02)
    for _ in range(RESTS_BLOCKED + 1):
        for pin, high, then in ((o, 1, 0.015), (i, 1, 0.15), (o, 0, 0.015), (i, 0, 0.015)):
            pin.drive_high() if high else pin.drive_low()
            await asyncio.sleep(then)
    await wait_until(lambda: len(r.rec.of(Crossing)) == RESTS_BLOCKED + 1, 1, "the riders")
    assert r.rec.counts["beam_stuck"] >= RESTS_BLOCKED + 1
    assert r.rec.counts["beam_rests_blocked"] == 0


# -- a storm of edges ------------------------------------------------------------------


async def test_an_input_storming_at_khz_is_read_not_followed_edge_by_edge_and_then_heard(
    start: Start, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A door contact on a floating line (a cut cable, `pull = "none"`) toggling 20,000
    times: the loop is not handed each edge (each a hop ~8 µs here, several times that on a
    Pi Zero), the storm is counted, and once it is quiet the door is heard again."""
    handed: list[int] = []
    edge = board._Debounced.edge

    def counted(self: board._Debounced, state: int, ts: float) -> None:
        handed.append(state)
        edge(self, state, ts)

    monkeypatch.setattr(board._Debounced, "edge", counted)
    r = await start(doors=[{"name": "front", "pin": DOOR, "pull": "none", "bounce_s": 0.01}])
    pin = factory.pin(DOOR)

    def storm() -> None:  # the thread of gpiozero's pin factory, as lgpio's alerts come
        for i in range(20_000):
            (pin.drive_high if i % 2 else pin.drive_low)()

    assert [e.open for e in r.rec.of(DoorInput)] == [False]  # floating low: closed
    await asyncio.to_thread(storm)  # ends high: the door open
    # (the few levels read during the storm may trip the flap guard: steady 2 s first)
    await wait_until(lambda: changes(r.rec.of(DoorInput))[-1:] == [True], 5, "the opening")
    assert len(handed) < 1_000
    assert r.rec.counters.snapshot().get("driver.gpio.edge_storm") == 1
    pin.drive_low()  # quiet again: the close is heard
    await wait_until(lambda: changes(r.rec.of(DoorInput))[-1:] == [False], 5, "the close")


async def test_a_panic_button_held_while_its_contact_chatters_at_khz_is_one_press(
    start: Start, factory: MockFactory
) -> None:
    """A worn button held down, its contact breaking for 0.2 ms every 0.8 ms (some 2,500
    edges a second): storming, yet pressed most of the time, so one press, never let go.
    Read at single instants instead, one in four would say "up": released, and pressed
    again."""
    r = await start(panic={"pin": PANIC, "presses": 0})
    pin = factory.pin(PANIC)
    loop = asyncio.get_running_loop()
    end = loop.time() + 2.5

    edges: list[tuple[float, int]] = []  # (when, level): what the line really did

    def held() -> None:  # pressed is low (a button to ground, the pull-up)
        while loop.time() < end:
            for level, up, seconds in ((pin.drive_high, 1, 0.0002), (pin.drive_low, 0, 0.0006)):
                level()
                edges.append((time.monotonic(), up))
                until = time.monotonic() + seconds
                while time.monotonic() < until:  # not sleep(): too coarse for this
                    pass
        pin.drive_low()

    await asyncio.to_thread(held)
    if stalled := _not_the_chatter(edges, board.STORM_POLL_S):
        pytest.skip(f"this machine stalled the chatter: {stalled}")
    await asyncio.sleep(0.3)
    assert r.rec.counters.snapshot().get("driver.gpio.edge_storm") == 1
    assert [e.pressed for e in r.rec.of(PanicInput)] == [False, True]  # up at start, then held


def _not_the_chatter(edges: list[tuple[float, int]], poll_s: float, parts: int = 10) -> str:
    """Whether a busy machine made the line something else than a chatter pressed most of
    the time, as the storm brake sees it in any of its polls (`poll_s` apart): cut in bins
    of a tenth of a poll, every poll holds 9 whole bins and lies within 11. Up half of 11
    bins may make a poll's level up; few edges in 9 may end the storm (read the pin)."""
    bin_s = poll_s / parts
    start = edges[0][0]
    bins = int((edges[-1][0] - start) / bin_s)  # whole ones: the last is cut by the end
    up = [0.0] * (bins + 2)
    count = [0] * (bins + 2)
    for (t, level), (t_next, _) in itertools.pairwise(edges):
        i = min(int((t - start) / bin_s), bins + 1)
        count[i] += 1
        while level and t < t_next:  # up from t to t_next, over the bins it crosses
            edge = min(t_next, start + (i + 1) * bin_s)
            up[min(i, bins + 1)] += max(edge - t, 0.0)
            t, i = max(edge, t), i + 1
    fewest = min(sum(count[i : i + parts - 1]) for i in range(bins - parts + 2))
    if fewest < board.EDGE_STORM * poll_s / 10:
        return f"only {fewest} edges in {(parts - 1) * bin_s:.3f} s"
    most = max(sum(up[i : i + parts + 1]) for i in range(bins - parts))
    if most >= poll_s / 2:
        return f"the line up {most:.3f} s in {(parts + 1) * bin_s:.3f} s"
    return ""


async def test_a_door_opening_again_and_again_with_dead_beams_reports_them_silent_once(
    start: Start,
    factory: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both receivers read clear however dark (active-low receivers unplugged, the
    pull-up then reads clear): no edge ever, nothing counted, and only the door says
    people come and go. SILENT_OPENINGS (20) openings with not one beam edge report it
    once; an edge clears it, and the count starts over."""
    monkeypatch.setattr(board, "SILENT_OPENINGS", 3, raising=False)
    r = await start(
        doors=[{"name": "entrance", "pin": DOOR, "bounce_s": 0.005, "flap_changes": 50}],
        beams=[{"door": "entrance", "outer": OUTER, "inner": INNER, "active_high": False}],
    )
    door = factory.pin(DOOR)

    async def cycles(n: int) -> None:
        for _ in range(n):
            door.drive_high()
            await asyncio.sleep(0.02)
            door.drive_low()
            await asyncio.sleep(0.02)

    with caplog.at_level(logging.WARNING):
        await cycles(2)
        assert r.rec.counts["beam_silent"] == 0
        await cycles(4)
        assert r.rec.counts["beam_silent"] == 1
    assert len([m for m in caplog.messages if "beam_silent" in m]) == 1
    factory.pin(OUTER).drive_low()  # blocked (active low): alive
    await asyncio.sleep(0.02)
    factory.pin(OUTER).drive_high()
    await cycles(2)
    assert r.rec.counts["beam_silent"] == 1
    await cycles(1)
    assert r.rec.counts["beam_silent"] == 2


async def test_a_door_contact_stuck_shut_while_people_walk_through_is_reported_once(
    start: Start,
    factory: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The magnet came off the door: its contact reads shut for ever, and the gate drops
    every walk through the beams, in and out, so nobody is counted at that door. Each is
    `beam_door_closed` with a warning that may as well mean a hand waved through the beams;
    DOOR_SILENT_WALKS (20) of them in a row, the door never once reported open, say the
    contact is the likelier fault, once. Counting stays gated; the door opening clears it,
    and the count starts over."""
    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.02, raising=False)
    monkeypatch.setattr(board, "DOOR_SILENT_WALKS", 4, raising=False)
    r = await start(
        doors=[{"name": "entrance", "pin": DOOR, "bounce_s": 0.005}],
        beams=[{"door": "entrance", "outer": OUTER, "inner": INNER, "min_block_s": 0.002}],
    )
    door, outer, inner = factory.pin(DOOR), factory.pin(OUTER), factory.pin(INNER)

    async def walks(n: int) -> None:
        judged = r.rec.counts["beam_door_closed"] + n
        for i in range(n):
            first, second = (outer, inner) if i % 2 else (inner, outer)
            for pin, high in ((first, True), (second, True), (first, False), (second, False)):
                pin.drive_high() if high else pin.drive_low()
                await asyncio.sleep(0.005)
        await wait_until(lambda: r.rec.counts["beam_door_closed"] == judged, 1, "the walks judged")

    door.drive_low()  # shut, and stuck so
    for pin in (outer, inner):
        pin.drive_low()
    await asyncio.sleep(0.02)
    with caplog.at_level(logging.WARNING):
        await walks(3)
        assert r.rec.counts["door_silent"] == 0
        await walks(1)
        assert r.rec.counts["door_silent"] == 1
        await walks(4)
    assert r.rec.counts["door_silent"] == 1 and r.rec.of(Crossing) == []
    assert len([m for m in caplog.messages if "door_silent" in m]) == 1
    door.drive_high()  # it opens after all
    await wait_until(lambda: r.rec.of(DoorInput)[-1].open, 1, "the opening")
    door.drive_low()
    await asyncio.sleep(0.05)
    await walks(3)
    assert r.rec.counts["door_silent"] == 1
    await walks(1)
    assert r.rec.counts["door_silent"] == 2


async def _stops(
    factory: MockFactory, stops: int, riders: int, *, open_level: bool, waves: int = 0
) -> None:
    """Stops of a door with a contact: it opens (driven to `open_level`), `riders` walk in
    well within it, it shuts; then `waves` hands waved through the beams while it is shut.
    Scaled: DOOR_GRACE_S 0.02 s."""
    door = factory.pin(DOOR)
    for _ in range(stops):
        door.drive_high() if open_level else door.drive_low()
        await asyncio.sleep(0.04)
        await _walks(factory, riders)
        await asyncio.sleep(0.04)
        door.drive_low() if open_level else door.drive_high()
        await asyncio.sleep(0.04)
        await _walks(factory, waves)
        await asyncio.sleep(0.04)


async def _walks(factory: MockFactory, n: int) -> None:
    """`n` walks in through the beams (active high), 5 ms an edge."""
    outer, inner = factory.pin(OUTER), factory.pin(INNER)
    for _ in range(n):
        for pin, high in ((outer, True), (inner, True), (outer, False), (inner, False)):
            pin.drive_high() if high else pin.drive_low()
            await asyncio.sleep(0.005)


GATED = {
    "doors": [{"name": "entrance", "pin": DOOR, "bounce_s": 0.005, "flap_changes": 50}],
    "beams": [{"door": "entrance", "outer": OUTER, "inner": INNER, "min_block_s": 0.002}],
}


async def test_a_door_contact_read_the_wrong_way_round_is_reported_once(
    start: Start,
    factory: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reed wired NC where the config says NO: it reads open while the door is shut, so
    riders at each stop are dropped as `beam_door_closed`, and each reported opening (the
    real closing) cleared `door_silent`'s count: only the per-walk warning said so."""
    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.02, raising=False)
    monkeypatch.setattr(board, "GATE_SHUT", 4, raising=False)
    factory.pin(DOOR).drive_high()  # shut, read open
    r = await start(**GATED)
    for pin in (OUTER, INNER):
        factory.pin(pin).drive_low()
    with caplog.at_level(logging.WARNING):
        await _stops(factory, 4, 2, open_level=False)
        await wait_until(lambda: r.rec.counts["beam_door_closed"] == 8, 1, "the walks judged")
    assert r.rec.counts["door_gate_inverted"] == 1
    assert len([m for m in caplog.messages if "set active_high = false" in m]) == 1


async def test_a_hand_waved_now_and_then_at_a_shut_door_is_no_contact_the_wrong_way_round(
    start: Start, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.02, raising=False)
    monkeypatch.setattr(board, "GATE_SHUT", 4, raising=False)
    factory.pin(DOOR).drive_low()  # shut
    r = await start(**GATED)
    for pin in (OUTER, INNER):
        factory.pin(pin).drive_low()
    await _stops(factory, 4, 2, open_level=True, waves=1)
    await wait_until(lambda: len(r.rec.of(Crossing)) == 8, 1, f"the riders counted {r.rec.counts} {len(r.rec.of(Crossing))}")
    await wait_until(lambda: r.rec.counts["beam_door_closed"] == 4, 1, "the waves judged")
    assert r.rec.counts["door_gate_inverted"] == 0


async def test_a_contact_stuck_shut_after_some_stops_is_no_contact_the_wrong_way_round(
    start: Start, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # three stops counted, then the magnet comes off: every walk dropped after, all in the
    # one time since the last opening. door_silent's fault, not active_high's
    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.02, raising=False)
    monkeypatch.setattr(board, "GATE_SHUT", 4, raising=False)
    factory.pin(DOOR).drive_low()  # shut
    r = await start(**GATED)
    for pin in (OUTER, INNER):
        factory.pin(pin).drive_low()
    await _stops(factory, 3, 2, open_level=True)
    await _walks(factory, 8)  # the door read shut at the next stops
    await wait_until(lambda: r.rec.counts["beam_door_closed"] == 8, 1, "the walks judged")
    assert len(r.rec.of(Crossing)) == 6
    assert r.rec.counts["door_gate_inverted"] == 0


async def test_a_night_of_walks_at_a_shut_door_then_a_morning_stop_is_no_contact_the_wrong_way_round(
    start: Start, factory: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the last stops of the day, a cleaner through the beams at the depot, the first stop
    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.02, raising=False)
    monkeypatch.setattr(board, "GATE_SHUT", 4, raising=False)
    factory.pin(DOOR).drive_low()  # shut
    r = await start(**GATED)
    for pin in (OUTER, INNER):
        factory.pin(pin).drive_low()
    await _stops(factory, 3, 2, open_level=True)
    await _walks(factory, 8)
    await asyncio.sleep(0.04)  # the night
    await _stops(factory, 1, 2, open_level=True)
    await wait_until(lambda: len(r.rec.of(Crossing)) == 8, 1, "the riders counted")
    assert r.rec.counts["beam_door_closed"] == 8
    assert r.rec.counts["door_gate_inverted"] == 0


async def test_a_door_contact_put_right_after_its_report_says_so_once_and_reports_no_more(
    start: Start,
    factory: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(board, "DOOR_GRACE_S", 0.02, raising=False)
    monkeypatch.setattr(board, "GATE_SHUT", 4, raising=False)
    factory.pin(DOOR).drive_high()  # shut, read open
    r = await start(**GATED)
    for pin in (OUTER, INNER):
        factory.pin(pin).drive_low()
    await _stops(factory, 4, 2, open_level=False)
    await wait_until(lambda: r.rec.counts["door_gate_inverted"] == 1, 1, "the report")
    with caplog.at_level(logging.INFO):
        await _stops(factory, 3, 2, open_level=True)  # the reed wired as the config says
        await wait_until(lambda: len(r.rec.of(Crossing)) >= 6, 1, "the riders counted")
    assert len([m for m in caplog.messages if "count again" in m]) == 1
    assert r.rec.counts["door_gate_inverted"] == 1

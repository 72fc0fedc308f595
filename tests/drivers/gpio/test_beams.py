"""The direction machine, one doorway situation per test. Steps: "O+" the outer beam is
blocked, "I-" the inner one clears; 100 ms apart unless a number of seconds comes first."""

import pytest

from drivers.gpio.beams import (
    ONE_SIDED_BACKOUTS,
    RESTS_BLOCKED,
    Beam,
    BeamCounter,
    Glitch,
    Moving,
    OneSided,
    Output,
    Passage,
    RestsBlocked,
    RestsClear,
    Stuck,
)

MIN, MAX = 0.03, 5.0


def walk(*steps: str | float, counter: BeamCounter | None = None) -> list[Output]:
    c = counter or BeamCounter(MIN, MAX)
    t, out = 0.0, []
    gap = 0.1
    for step in steps:
        if isinstance(step, float):
            gap = step
            continue
        t += gap
        gap = 0.1
        beam = "outer" if step[0] == "O" else "inner"
        out += c.feed(beam, step[1] == "+", t)
    out += c.advance(t + 1.0)
    return out


def passages(out: list[Output]) -> list[str]:
    return [o.direction for o in out if isinstance(o, Passage)]


IN = ("O+", "I+", "O-", "I-")
OUT = ("I+", "O+", "I-", "O-")


def test_outer_then_inner_is_one_in() -> None:
    assert passages(walk(*IN)) == ["in"]


def test_inner_then_outer_is_one_out() -> None:
    assert passages(walk(*OUT)) == ["out"]


def test_passage_is_dated_when_the_last_beam_cleared_not_when_confirmed() -> None:
    out = walk(*IN)
    assert [o.ts for o in out if isinstance(o, Passage)] == [pytest.approx(0.4)]


def test_stepping_in_and_backing_out_counts_nothing() -> None:
    assert passages(walk("O+", "I+", "I-", "O-")) == []


def test_touching_only_the_outer_beam_counts_nothing() -> None:
    assert passages(walk("O+", "O-")) == []


def test_hesitating_on_the_inner_beam_still_counts_once() -> None:
    assert passages(walk("O+", "I+", "I-", "I+", "O-", "I-")) == ["in"]


def test_leaning_back_onto_both_beams_still_counts_once() -> None:
    assert passages(walk("O+", "I+", "O-", "I-")) == ["in"]
    assert passages(walk("O+", "I+", "O-", "O+", "O-", "I-")) == ["in"]


def test_two_people_with_a_brief_gap_count_two() -> None:
    assert passages(walk(*IN, 0.005, *IN)) == ["in", "in"]


def test_follower_on_the_outer_beam_before_the_first_clears_the_inner_counts_two() -> None:
    steps = ("O+", "I+", "O-", "O+", "I-", "I+", "O-", "I-")
    assert passages(walk(*steps)) == ["in", "in"]


def test_a_packed_queue_of_five_counts_five() -> None:
    steps = ["O+", "I+", "O-"] + ["O+", "I-", "I+", "O-"] * 4 + ["I-"]
    assert passages(walk(*steps)) == ["in"] * 5


def test_queue_counts_as_it_goes_holding_back_at_most_one() -> None:
    c = BeamCounter(MIN, MAX)
    steps = ["O+", "I+", "O-"] + ["O+", "I-", "I+", "O-"] * 3
    out = walk(*steps, counter=c)
    assert passages(out) == ["in", "in"]  # the third leader waits for how the doorway empties


def test_going_past_the_outer_beam_and_turning_back_counts_nothing() -> None:
    assert passages(walk("O+", "I+", "O-", "O+", "I-", "O-")) == []


def test_follower_backing_out_drops_only_the_unconfirmed_passage() -> None:
    steps = ("O+", "I+", "O-", "O+", "I-", "I+", "O-", "O+", "I-", "O-")
    assert passages(walk(*steps)) == ["in"]


def test_one_out_and_one_in_with_a_gap_count_one_each() -> None:
    assert passages(walk(*OUT, *IN)) == ["out", "in"]


def test_in_and_out_meeting_in_the_doorway_never_counts_against_the_shape_seen() -> None:
    # someone on the outer beam going in; someone from inside blocks the inner one; the
    # one going in yields (clears the outer beam), the one going out passes, then goes in.
    meet = ("O+", "I+", "O-", "O+", "I-", "O-")
    out = walk(*meet, *IN)
    assert passages(out) == ["in"]  # the out is lost, never turned into an extra in


def test_short_block_is_a_glitch_not_a_person() -> None:
    out = walk("O+", 0.01, "O-")
    assert passages(out) == []
    assert [type(o) for o in out] == [Glitch]


def test_short_drop_out_of_a_blocked_beam_does_not_break_a_passage() -> None:
    out = walk("O+", "I+", 0.01, "I-", 0.01, "I+", "O-", "I-")
    assert passages(out) == ["in"]


def test_block_of_exactly_min_block_s_counts() -> None:
    c = BeamCounter(0.05, MAX)
    c.feed("outer", True, 1.0)
    out = c.feed("outer", False, 1.05)
    assert out == []  # not a glitch
    assert c.blocked("outer")  # the block is confirmed; the clear now waits its turn


def test_beam_stuck_blocked_is_reported_once_and_a_back_out_after_it_counts_nothing() -> None:
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0) + c.feed("inner", True, 0.1)
    out += c.advance(10.0) + c.advance(20.0)
    stuck = [o for o in out if isinstance(o, Stuck)]
    assert stuck == [Stuck(2.0, ("outer",))]  # outer blocked 2 s; inner only 1.9 s then
    out = c.feed("inner", False, 21.0) + c.feed("outer", False, 21.5) + c.advance(22.0)
    assert passages(out) == []
    assert c.idle


@pytest.mark.parametrize("direction", ["in", "out"])
def test_a_rider_standing_in_the_door_past_max_transit_s_then_walking_on_counts_once(
    direction: str,
) -> None:
    # paying the driver on the step, a walker, a pram lifted up the steps: on both beams
    # far longer than a walk, then through; the stuck report is for ops, the rider counts
    entry, exit_ = ("outer", "inner") if direction == "in" else ("inner", "outer")
    c = BeamCounter(MIN, 2.0)
    out = c.feed(entry, True, 0.0) + c.feed(exit_, True, 0.4) + c.advance(30.0)
    out += c.feed(entry, False, 30.5) + c.feed(exit_, False, 30.9) + c.advance(32.0)
    # each beam named once it has been blocked that long and the other is clear
    assert [o for o in out if isinstance(o, Stuck)] == [Stuck(2.0, (entry,)), Stuck(2.4, (exit_,))]
    assert passages(out) == [direction]
    assert c.idle


def test_a_leader_held_while_the_follower_stands_in_the_door_counts_with_the_follower() -> None:
    c = BeamCounter(MIN, 2.0)
    out = walk("O+", "I+", "O-", "O+", "I-", counter=c)  # the leader is through, held
    out += c.advance(20.0)  # the follower stands on the outer beam
    out += c.feed("inner", True, 20.1) + c.feed("outer", False, 20.2)
    out += c.feed("inner", False, 20.3) + c.advance(21.0)
    assert passages(out) == ["in", "in"]


def test_a_lens_stuck_blocked_counts_nobody_crossing_the_other_beam() -> None:
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0)  # a dirty outer lens
    for k in range(20):
        out += c.feed("inner", True, 3.0 + k) + c.feed("inner", False, 3.4 + k)
    out += c.feed("outer", False, 30.0) + c.advance(31.0)  # wiped
    assert passages(out) == []
    assert c.idle


def test_a_stuck_beam_wiped_while_someone_is_on_the_other_counts_one_phantom_at_most() -> None:
    """The one phantom a beam stuck blocked can make since stuck no longer drops the walk:
    a dirty outer lens, people crossing the inner beam (none counted), the lens wiped while
    someone stands on the inner beam, who then steps back inside: one "in", dated from the
    stuck beam's first edge. Levels alone cannot tell it from a rider who stood on the
    outer beam and walked in (who must count); it is one per stuck episode, and counting is
    exact again at once."""
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0)
    for k in range(5):
        out += c.feed("inner", True, 3.0 + k) + c.feed("inner", False, 3.4 + k)
    out += c.feed("inner", True, 10.0) + c.feed("outer", False, 10.5)  # wiped
    out += c.feed("inner", False, 11.0) + c.advance(12.0)  # back inside
    assert [(o.direction, o.began) for o in out if isinstance(o, Passage)] == [("in", 0.0)]
    assert c.idle
    for i, (beam, level) in enumerate((("inner", True), ("outer", True), ("inner", False))):
        out += c.feed(beam, level, 13.0 + i * 0.1)  # type: ignore[arg-type]
    out += c.feed("outer", False, 13.3) + c.advance(14.0)
    assert passages(out) == ["in", "out"]


def test_after_a_stuck_beam_clears_counting_resumes() -> None:
    c = BeamCounter(MIN, 2.0)
    c.feed("outer", True, 0.0)
    c.advance(5.0)
    out = c.feed("outer", False, 6.0)
    edges = [("outer", True), ("inner", True), ("outer", False), ("inner", False)]
    for i, (beam, level) in enumerate(edges):
        out += c.feed(beam, level, 7.0 + i * 0.1)  # type: ignore[arg-type]
    out += c.advance(9.0)
    assert passages(out) == ["in"]


def test_starting_with_a_beam_blocked_waits_for_both_clear() -> None:
    c = BeamCounter(MIN, MAX, inner_blocked=True)
    out = c.feed("outer", True, 0.1) + c.feed("inner", False, 0.2)
    out += c.feed("outer", False, 0.3) + c.advance(1.0)
    assert passages(out) == []
    assert c.idle


def test_a_blockage_moved_from_one_beam_to_the_other_is_reported_stuck_again() -> None:
    # a trolley parked on the outer beam, then pushed onto the inner one and left there:
    # nothing counts until both are clear, so the inner beam must be named too, or the
    # door stays silently uncounted behind a warning about a beam that is clear again
    # (docs/drivers.md, counting beams: "a warning naming the beam(s) blocked that long")
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0) + c.feed("inner", True, 5.0)
    out += c.feed("outer", False, 6.0) + c.advance(20.0)
    assert [o for o in out if isinstance(o, Stuck)] == [
        Stuck(2.0, ("outer",)),
        Stuck(7.0, ("inner",)),
    ]


def test_a_stuck_beam_is_not_reported_again_while_people_cross_the_other() -> None:
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0)
    for k in range(10):
        out += c.feed("inner", True, 3.0 + k) + c.feed("inner", False, 3.4 + k)
    out += c.advance(20.0)
    assert [o for o in out if isinstance(o, Stuck)] == [Stuck(2.0, ("outer",))]


def test_a_beam_blocked_max_transit_s_is_stuck_however_busy_the_other_beam() -> None:
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0)  # lens covered
    t = 0.0
    while t < 5.0:  # people keep crossing the inner beam, every 0.4 s
        out += c.feed("inner", True, t + 0.2) + c.feed("inner", False, t + 0.4)
        t += 0.4
    assert [o for o in out if isinstance(o, Stuck)] == [Stuck(2.0, ("outer",))]


def outer_back_outs(c: BeamCounter, n: int, t: float) -> tuple[list[Output], float]:
    out: list[Output] = []
    for _ in range(n):
        out += c.feed("outer", True, t) + c.feed("outer", False, t + 0.35)
        t += 0.5
    return out + c.advance(t), t


def test_ten_back_outs_with_the_other_beam_silent_is_one_sided() -> None:
    c = BeamCounter(MIN, MAX)
    out, _ = outer_back_outs(c, 20, 1.0)
    one_sided = [o for o in out if isinstance(o, OneSided)]
    assert ONE_SIDED_BACKOUTS == 10
    assert one_sided == [OneSided("inner", "outer", pytest.approx(5.85), 10)]


def test_nine_back_outs_are_not_one_sided() -> None:
    c = BeamCounter(MIN, MAX)
    out, _ = outer_back_outs(c, 9, 1.0)
    assert not any(isinstance(o, OneSided) for o in out)


def test_any_change_of_the_silent_beam_restarts_the_back_out_count() -> None:
    c = BeamCounter(MIN, MAX)
    out, t = outer_back_outs(c, 9, 1.0)
    for k, (beam, blocked) in enumerate(
        [("outer", True), ("inner", True), ("outer", False), ("inner", False)]
    ):  # someone goes through: the inner beam works
        out += c.feed(beam, blocked, t + 0.1 * k)  # type: ignore[arg-type]
    out += c.advance(t + 0.5)
    out2, _ = outer_back_outs(c, 9, t + 1.0)
    assert passages(out) == ["in"]
    assert not any(isinstance(o, OneSided) for o in out + out2)


def test_the_silent_beam_moving_again_is_reported_once() -> None:
    c = BeamCounter(MIN, MAX)
    out, t = outer_back_outs(c, 10, 1.0)
    out = c.feed("inner", True, t) + c.feed("inner", False, t + 0.3) + c.advance(t + 1.0)
    assert [o for o in out if isinstance(o, Moving)] == [Moving("inner", t)]


def test_next_deadline_is_when_a_pending_change_confirms() -> None:
    c = BeamCounter(0.05, MAX)
    c.feed("outer", True, 1.0)
    assert c.next_deadline() == pytest.approx(1.05)
    c.advance(1.05)
    assert c.next_deadline() == pytest.approx(1.0 + MAX)  # now: when it would be stuck


def test_clock_going_backwards_is_clamped() -> None:
    c = BeamCounter(MIN, MAX)
    out = c.feed("outer", True, 5.0) + c.feed("inner", True, 1.0)
    out += c.feed("outer", False, 5.2) + c.feed("inner", False, 5.3) + c.advance(6.0)
    assert passages(out) == ["in"]


def test_nonsense_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="min_block_s"):
        BeamCounter(1.0, 0.5)


def test_each_passage_says_when_its_walk_began_a_held_leader_its_own() -> None:
    # the driver judges a walk by the door's state during it (a shut door gates the beams)
    out = walk("O+", "I+", "O-", "O+", "I-", "I+", "O-", "I-")
    assert [(p.began, p.ts) for p in out if isinstance(p, Passage)] == [
        pytest.approx((0.1, 0.5)),
        pytest.approx((0.4, 0.8)),
    ]


def inverted_riders(
    c: BeamCounter, riders: int, t: float, dwell: float
) -> tuple[list[Output], float]:
    """Receivers of the opposite output to the config's: the pair reads blocked at rest,
    and a rider going in reads as the cycle of a rider going in, inverted, `dwell` s apart."""
    out: list[Output] = []
    for _ in range(riders):
        for beam, blocked in (("outer", False), ("inner", False), ("outer", True), ("inner", True)):
            t += 0.1
            out += c.feed(beam, blocked, t)
        t += dwell
        out += c.advance(t)
    return out, t


def test_a_pair_resting_blocked_and_clearing_for_moments_is_reported_once() -> None:
    # dark-on receivers where the config says light-on: three stops, a quiet ride between
    c = BeamCounter(MIN, MAX, outer_blocked=True, inner_blocked=True)
    out, _ = inverted_riders(c, 2 * RESTS_BLOCKED + 2, 0.0, MAX + 1.0)
    reports = [o for o in out if isinstance(o, RestsBlocked)]
    assert len(reports) == 1 and reports[0].rests == RESTS_BLOCKED


def test_a_case_shoved_about_on_both_beams_is_no_pair_resting_blocked() -> None:
    # a case parked across both beams, nudged now and then: one beam clears for a moment,
    # then the other, never both at once; each nudge restarts a beam's time, so the pair is
    # Stuck again and again with both blocked, but never clear between
    c = BeamCounter(MIN, MAX)
    out = c.feed("outer", True, 1.0) + c.feed("inner", True, 1.1) + c.advance(1.0 + 2 * MAX)
    for _ in range(2 * RESTS_BLOCKED):
        t = c._now + 0.1
        nudge: list[tuple[Beam, bool, float]] = [
            ("outer", False, 0),
            ("outer", True, 0.1),
            ("inner", False, 0.2),
            ("inner", True, 0.3),
        ]
        for beam, blocked, dt in nudge:
            out += c.feed(beam, blocked, t + dt)
        out += c.advance(t + 2 * MAX)
    assert len([o for o in out if isinstance(o, Stuck)]) > 2 * RESTS_BLOCKED
    assert not any(isinstance(o, RestsBlocked) for o in out)


def test_riders_standing_in_the_door_between_clear_rests_are_no_pair_resting_blocked() -> None:
    # each stands on both beams longer than max_transit_s, then goes; the pair rests clear
    c = BeamCounter(MIN, MAX)
    out: list[Output] = []
    t = 0.0
    for _ in range(RESTS_BLOCKED + 2):
        out += walk(*IN[:2], counter=c)
        t = c._now + MAX + 1.0
        out += c.advance(t)
        out += c.feed("outer", False, t + 0.1) + c.feed("inner", False, t + 0.2)
        out += c.advance(t + MAX + 1.0)
    assert passages(out) == ["in"] * (RESTS_BLOCKED + 2)
    assert not any(isinstance(o, RestsBlocked) for o in out)


def test_a_pair_reported_resting_blocked_is_reported_clear_max_transit_s_after_it_clears() -> None:
    # rewired at the depot: nobody comes by, the line is due all the same
    c = BeamCounter(MIN, MAX, outer_blocked=True, inner_blocked=True)
    _, t = inverted_riders(c, RESTS_BLOCKED + 1, 0.0, MAX + 1.0)
    c.feed("outer", False, t)
    c.feed("inner", False, t + 0.1)
    c.advance(t + 0.2)  # both clear confirmed
    assert c.next_deadline() == pytest.approx(t + 0.1 + MAX)
    clear = [o.ts for o in c.advance(t + 0.1 + MAX) if isinstance(o, RestsClear)]
    assert clear == [pytest.approx(t + 0.1 + MAX)]
    assert c.next_deadline() is None


def test_a_pair_reported_resting_blocked_that_rests_clear_again_is_reported_clear() -> None:
    c = BeamCounter(MIN, MAX, outer_blocked=True, inner_blocked=True)
    _, t = inverted_riders(c, RESTS_BLOCKED + 1, 0.0, MAX + 1.0)
    out = c.feed("outer", False, t) + c.feed("inner", False, t + 0.1)  # rewired
    out += c.feed("outer", True, t + MAX + 2.0) + c.advance(t + MAX + 3.0)  # the next rider
    clear = [o.ts for o in out if isinstance(o, RestsClear)]
    assert clear == [pytest.approx(t + 0.1 + MAX)]


def shape(
    parts: list[tuple[float, float]], speed: float, gap: float = 0.10
) -> list[tuple[float, Beam, bool]]:
    """A body going in at `speed` m/s through beams `gap` m apart: `parts` are its solid
    stretches (m from its front, apart); the edges each beam sees, in time order."""
    edges: list[tuple[float, Beam, bool]] = []
    beams: tuple[tuple[Beam, float], ...] = (("outer", 0.0), ("inner", gap))
    for beam, at in beams:
        for front, back in parts:
            edges += [((at + front) / speed, beam, True), ((at + back) / speed, beam, False)]
    return sorted(edges)


def counted(parts: list[tuple[float, float]], min_block_s: float, speed: float = 1.2) -> list[str]:
    c = BeamCounter(min_block_s, MAX)
    out = [o for t, beam, blocked in shape(parts, speed) for o in c.feed(beam, blocked, 1.0 + t)]
    return passages(out + c.advance(10.0))


TORSO = 0.25


@pytest.mark.parametrize(
    ("thing", "ahead", "min_block_s", "seen"),
    [
        (0.08, 0.06, 0.03, []),  # shallow and close: the rider is lost
        (0.08, 0.06, 0.08, ["in"]),  # min_block_s spans the gap: one shape
        (0.08, 0.12, 0.03, ["in"]),  # held further ahead than the beams' gap: a back-out
        (0.12, 0.06, 0.03, ["in", "in"]),  # deeper than the beams' gap: one more
    ],
)
def test_a_thing_carried_ahead_of_a_rider_counts_as_docs_drivers_md_says(
    thing: float, ahead: float, min_block_s: float, seen: list[str]
) -> None:
    # docs/drivers.md, counting beams: a thing carried ahead and min_block_s; beams 10 cm
    parts = [(0.0, thing), (thing + ahead, thing + ahead + TORSO)]
    assert counted(parts, min_block_s) == seen


@pytest.mark.parametrize(("min_block_s", "seen"), [(0.03, ["in"]), (0.05, [])])
def test_a_slim_child_running_is_lost_to_a_longer_min_block_s(
    min_block_s: float, seen: list[str]
) -> None:
    assert counted([(0.0, 0.12)], min_block_s, speed=2.5) == seen  # 48 ms on each beam


@pytest.mark.parametrize(("min_block_s", "seen"), [(0.03, ["in", "in"]), (0.05, ["in"])])
def test_two_people_5_cm_apart_are_one_to_a_longer_min_block_s(
    min_block_s: float, seen: list[str]
) -> None:
    assert counted([(0.0, TORSO), (TORSO + 0.05, 2 * TORSO + 0.05)], min_block_s) == seen


def test_a_pair_resting_blocked_between_openings_of_its_door_is_reported() -> None:
    # the pair reversed, its door known: a rider at each stop, the door opening for each
    c = BeamCounter(MIN, MAX, outer_blocked=True, inner_blocked=True)
    out, t = c.advance(MAX + 1.0), MAX + 1.0
    for _ in range(RESTS_BLOCKED):
        c.door_opened()
        more, t = inverted_riders(c, 1, t, MAX + 1.0)
        out += more
    assert [o.rests for o in out if isinstance(o, RestsBlocked)] == [RESTS_BLOCKED]


def test_riders_standing_in_the_door_one_after_another_within_one_opening_rest_once() -> None:
    # the door known: a queue standing on the beams within one opening is one rest
    c = BeamCounter(MIN, MAX)
    c.door_opened()
    out: list[Output] = []
    for _ in range(RESTS_BLOCKED + 2):
        t = c._now + 0.5
        out += c.feed("outer", True, t) + c.feed("inner", True, t + 0.1)
        out += c.advance(t + MAX + 1.0)
        out += c.feed("outer", False, t + MAX + 1.1) + c.feed("inner", False, t + MAX + 1.2)
    out += c.advance(c._now + 1.0)
    assert passages(out) == ["in"] * (RESTS_BLOCKED + 2)
    assert not any(isinstance(o, RestsBlocked) for o in out)

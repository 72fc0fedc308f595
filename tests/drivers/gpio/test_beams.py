"""The direction machine, one doorway situation per test. Steps: "O+" the outer beam is
blocked, "I-" the inner one clears; 100 ms apart unless a number of seconds comes first."""

import pytest

from drivers.gpio.beams import BeamCounter, Glitch, Output, Passage, Stuck

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


def test_beam_stuck_blocked_is_reported_once_and_nothing_counts_until_clear() -> None:
    c = BeamCounter(MIN, 2.0)
    out = c.feed("outer", True, 0.0) + c.feed("inner", True, 0.1)
    out += c.advance(10.0) + c.advance(20.0)
    stuck = [o for o in out if isinstance(o, Stuck)]
    assert stuck == [Stuck(2.1, ("outer", "inner"))]
    out = c.feed("outer", False, 21.0) + c.feed("inner", False, 21.5) + c.advance(22.0)
    assert passages(out) == []
    assert c.idle


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

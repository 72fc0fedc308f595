"""The flap guard of a door contact, alone: debounced changes in, reports out."""

import random

import pytest

from drivers.gpio.flapping import FlapGuard, FlapOutput, Flapping, Report, Steady


def feed(guard: FlapGuard, times: list[float], start: bool = True) -> list[FlapOutput]:
    """Alternate the level at each time, beginning with `not start`."""
    out: list[FlapOutput] = []
    level = start
    for t in times:
        level = not level
        out += guard.advance(t) + guard.change(level, t)
    return out


def reports(out: list[FlapOutput]) -> list[tuple[bool, float]]:
    return [(o.value, o.ts) for o in out if isinstance(o, Report)]


def test_a_door_opened_and_closed_quickly_reports_both_changes() -> None:
    g = FlapGuard(False)
    out = feed(g, [10.0, 10.3], start=False)
    assert reports(out) == [(True, 10.0), (False, 10.3)]


def test_a_door_used_at_its_fastest_for_a_minute_is_never_flapping() -> None:
    # open and closed every half second: one full cycle a second, the ceiling for a door
    g = FlapGuard(False)
    out = feed(g, [i * 0.5 for i in range(1, 121)], start=False)
    assert len(reports(out)) == 120
    assert not any(isinstance(o, Flapping) for o in out)


def test_four_changes_within_a_second_is_flapping_and_the_fourth_is_not_reported() -> None:
    g = FlapGuard(True)
    out = feed(g, [1.0, 1.1, 1.2, 1.3])
    assert reports(out) == [(False, 1.0), (True, 1.1), (False, 1.2)]
    assert out[-1] == Flapping(1.3)
    assert g.flapping


def test_nothing_is_reported_while_it_keeps_flapping() -> None:
    g = FlapGuard(True)
    rng = random.Random(7)
    t, times = 0.0, []
    while t < 60.0:  # a minute of a loose wire, levels of 60-120 ms
        t += rng.uniform(0.06, 0.12)
        times.append(t)
    out = feed(g, times)
    assert len(reports(out)) == 3
    assert [o for o in out if isinstance(o, Flapping)] == [Flapping(times[3])]


def test_steady_after_flapping_reports_the_settled_level_once_dated_when_it_began() -> None:
    g = FlapGuard(True, steady_s=2.0)
    feed(g, [1.0, 1.1, 1.2, 1.3, 1.4])  # last reported: closed (1.2); now closed again (1.4)
    g.change(True, 1.5)  # settles open
    assert g.next_deadline() == pytest.approx(3.5)
    assert g.advance(3.4) == []
    assert g.advance(3.5) == [Steady(1.5), Report(True, 1.5)]
    assert g.advance(10.0) == []
    assert not g.flapping


def test_settling_on_the_level_last_reported_reports_nothing_new() -> None:
    g = FlapGuard(True, steady_s=2.0)
    feed(g, [1.0, 1.1, 1.2, 1.3, 1.4])  # reported closed at 1.2; settles closed at 1.4
    assert g.advance(5.0) == [Steady(1.4)]
    assert g.reported is False


def test_after_settling_a_new_flap_is_detected_again() -> None:
    g = FlapGuard(True, steady_s=2.0)
    out = feed(g, [1.0, 1.1, 1.2, 1.3])
    out += g.advance(4.0)
    out += feed(g, [10.0, 10.1, 10.2, 10.3], start=g.level)
    assert [o for o in out if isinstance(o, Flapping)] == [Flapping(1.3), Flapping(10.3)]


def test_a_repeated_level_is_not_a_change() -> None:
    g = FlapGuard(False)
    assert g.change(False, 1.0) == []
    assert g.change(True, 1.1) == [Report(True, 1.1)]
    assert g.change(True, 1.2) == []


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="changes"):
        FlapGuard(False, changes=1)

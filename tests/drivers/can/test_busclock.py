"""BusClock: the bus's time of each frame, from its timestamp within what the monotonic
clock allows (drivers/can/busclock.py)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.can.busclock import WINDOW_S, BusClock

WALL = 1.7e9  # a wall-clock timestamp (SocketCAN, slcan, virtual)


def test_frames_processed_late_keep_the_times_they_had_on_the_bus() -> None:
    clock = BusClock()
    assert clock.frame(WALL, 100.0) == 100.0
    # the thread stalled for a second: the next frames were on the bus 50 ms apart
    assert clock.frame(WALL + 0.05, 101.0) == pytest.approx(100.05)
    assert clock.frame(WALL + 0.10, 101.001) == pytest.approx(100.10)


def test_a_frame_is_never_on_the_bus_after_it_is_processed() -> None:
    clock = BusClock()
    clock.frame(WALL, 100.0)
    assert clock.frame(WALL + 3600, 100.01) == 100.01  # the clock stepped forward an hour
    assert clock.frame(WALL + 3600.05, 100.06) == pytest.approx(100.06)  # and goes on from there


@pytest.mark.parametrize("stamp", [WALL - 3600, WALL - 0.001, 0.0, -1.0, math.nan, math.inf, None])
def test_a_frame_stamped_back_or_not_at_all_is_placed_by_its_processing(
    stamp: float | None,
) -> None:
    clock = BusClock()
    clock.frame(WALL, 100.0)
    assert clock.frame(stamp, 100.3) == pytest.approx(100.3)  # quiet for 0.3 s: it says 0.3
    clock.frame(WALL + 0.5, 100.5)
    assert clock.frame(stamp, 100.5) == pytest.approx(100.5)  # back to back: no time between


def test_after_a_step_back_the_frames_go_on_from_where_the_bus_was() -> None:
    clock = BusClock()
    clock.frame(WALL, 100.0)
    clock.frame(WALL + 0.05, 101.0)  # a stall: on the bus at 100.05
    assert clock.frame(5.0, 101.001) == pytest.approx(100.051)  # adapter reset
    assert clock.frame(5.05, 101.002) == pytest.approx(100.101)


def test_the_bus_time_never_goes_back() -> None:
    clock = BusClock()
    times = [clock.frame(s, m) for s, m in [(WALL, 1.0), (WALL - 5, 1.1), (WALL + 1, 1.2)]]
    times += [clock.frame(WALL + 0.5, 1.3), clock.frame(None, 1.4)]
    assert times == sorted(times)


def test_when_no_frame_waits_the_bus_time_moves_with_the_node() -> None:
    clock = BusClock()
    assert clock.idle(5.0) is None  # no frame yet: no bus time
    clock.frame(WALL, 100.0)
    clock.frame(WALL + 0.05, 101.0)  # processed a second late: on the bus at 100.05
    assert clock.idle(101.5) == pytest.approx(100.55)  # quiet since, at least 0.5 s
    # a clock that stands still cannot hold it back
    assert clock.frame(WALL + 0.05, 101.6) == pytest.approx(100.55)


def test_a_frame_clock_that_stands_still_on_a_busy_bus_is_anchored_anew() -> None:
    clock = BusClock()
    mono = 100.0
    bus = clock.frame(WALL, mono)
    lags = []
    while mono < 100.0 + 5 * WINDOW_S:
        mono += 0.01
        bus = clock.frame(WALL, mono)  # every frame stamped alike
        lags.append(mono - bus)
    assert max(lags) <= 2 * WINDOW_S + 0.02  # never held back longer than two windows


def test_a_slow_frame_clock_is_anchored_anew_and_a_stall_is_not() -> None:
    clock = BusClock()
    mono, stamp = 100.0, WALL
    for _ in range(1000):  # 10 s of frames, the frame clock 1 % slow
        mono += 0.01
        stamp += 0.0099
        bus = clock.frame(stamp, mono)
    assert mono - bus < 0.03  # not the 0.1 s it drifted
    mono += 1.0  # the thread stalls for a second; the frames go on on the bus
    stamp += 0.0099
    assert clock.frame(stamp, mono) == pytest.approx(bus + 0.0099, abs=0.02)


stamps = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 2e9),
    st.sampled_from([0.0, WALL]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(stamps, st.floats(0, 3), st.booleans()),  # stamp, time since, idle first
        min_size=1,
        max_size=60,
    )
)
def test_whatever_the_stamps_the_bus_time_goes_forward_and_never_lags_far(
    frames: list[tuple[float | None, float, bool]],
) -> None:
    # the bus time never goes back, never passes the node's clock, and never lags it by
    # more than two windows plus the longest the receiver went without a frame (which may
    # be a stall, whose frames were on the bus right after the one before): a frame clock,
    # however wrong, holds no session open for good
    clock = BusClock()
    mono, last, longest = 1000.0, -math.inf, 0.0
    for stamp, step, idle in frames:
        mono += step
        if idle and (t := clock.idle(mono)) is not None:
            assert last <= t <= mono
            last = t
        else:
            longest = max(longest, step)
        bus = clock.frame(stamp, mono)
        assert last <= bus <= mono
        assert mono - bus <= 2 * WINDOW_S + longest + 1e-9
        last = bus


def test_a_backlog_worked_off_over_several_windows_keeps_its_frames_times() -> None:
    # 1,000 frames/s on the bus; the thread stalls 2 s, then works the backlog off at
    # 1,500 frames/s (a loaded Pi Zero): 4 s, several windows, with every frame late. The
    # frames were 1 ms apart on the bus, and so they stay: a BAM among them keeps its T1
    clock = BusClock()
    mono, stamp = 100.0, WALL
    for _ in range(2000):
        mono += 0.001
        stamp += 0.001
        clock.frame(stamp, mono)
    mono += 2.0
    backlog = 2000.0
    bus = clock.frame(stamp, mono)
    gaps = []
    while backlog > 0:
        mono += 1 / 1500
        stamp += 0.001
        backlog -= 1 - 1000 / 1500
        gaps.append(-bus + (bus := clock.frame(stamp, mono)))
    assert max(gaps) == pytest.approx(0.001, abs=1e-6)
    assert mono - bus < 0.01  # worked off: prompt again

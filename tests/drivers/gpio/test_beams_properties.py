"""Properties of the direction machine over generated doorway traffic (hypothesis).

Times are whole milliseconds so that "shorter than min_block_s" never depends on rounding.
"""

from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers.gpio.beams import Beam, BeamCounter, Output, Passage

MIN_MS, MAX_S = 30, 10.0

# One person's pattern on the entry beam F and the exit beam S, and what it counts.
EPISODES: dict[str, tuple[tuple[str, ...], int]] = {
    "pass": (("F+", "S+", "F-", "S-"), 1),
    "touch_and_back": (("F+", "F-"), 0),
    "back_out": (("F+", "S+", "S-", "F-"), 0),
    "hesitate": (("F+", "S+", "S-", "S+", "F-", "S-"), 1),
    "lean_back": (("F+", "S+", "F-", "F+", "F-", "S-"), 1),
    "follower": (("F+", "S+", "F-", "F+", "S-", "S+", "F-", "S-"), 2),
    "turn_back_past_outer": (("F+", "S+", "F-", "F+", "S-", "F-"), 0),
}


@dataclass(frozen=True)
class Edge:
    t_ms: int
    beam: Beam
    blocked: bool


episode = st.tuples(
    st.sampled_from(sorted(EPISODES)),
    st.sampled_from(["in", "out"]),
    st.lists(st.integers(40, 400), min_size=8, max_size=8),  # ms between its edges
    st.integers(40, 2000),  # ms of empty doorway before it
)
glitch = st.tuples(
    st.sampled_from(["outer", "inner"]),
    st.integers(0, 10_000),  # which constant stretch of that beam, modulo how many
    st.floats(0, 1),  # where in the stretch
    st.integers(1, MIN_MS - 1),  # width
)


def real_edges(episodes: list[tuple[str, str, list[int], int]]) -> tuple[list[Edge], list[str]]:
    t = 0
    edges: list[Edge] = []
    expected: list[str] = []
    for kind, direction, gaps, idle in episodes:
        steps, count = EPISODES[kind]
        entry, exit_ = ("outer", "inner") if direction == "in" else ("inner", "outer")
        t += idle
        for i, step in enumerate(steps):
            if i:
                t += gaps[i - 1]
            edges.append(Edge(t, entry if step[0] == "F" else exit_, step[1] == "+"))
        expected += [direction] * count
    return edges, expected


def with_glitches(edges: list[Edge], glitches: list[tuple[str, int, float, int]]) -> list[Edge]:
    """Short opposite pulses inside stretches where a beam is steady, starting at least
    min_block_s after the beam's last real change (before that the change is still being
    confirmed, and a pulse then would be a second change, not noise)."""
    end = (edges[-1].t_ms if edges else 0) + 500
    out = list(edges)
    for beam in ("outer", "inner"):
        times = [0] + [e.t_ms for e in edges if e.beam == beam] + [end]
        levels = [False] + [e.blocked for e in edges if e.beam == beam]
        taken: list[tuple[int, int]] = []
        for g_beam, which, where, width in glitches:
            if g_beam != beam:
                continue
            k = which % (len(times) - 1)
            lo, hi = times[k] + MIN_MS, times[k + 1] - 1
            width = min(width, hi - lo - 1)
            if width < 1:
                continue
            start = lo + int(where * (hi - lo - width))
            if any(start <= b + 1 and a <= start + width + 1 for a, b in taken):
                continue
            taken.append((start, start + width))
            level = levels[k]
            out.append(Edge(start, beam, not level))  # type: ignore[arg-type]
            out.append(Edge(start + width, beam, level))  # type: ignore[arg-type]
    return sorted(out, key=lambda e: e.t_ms)


def run(edges: list[Edge], counter: BeamCounter, ticks: list[int] = ()) -> list[Output]:  # type: ignore[assignment]
    out: list[Output] = []
    pending_ticks = sorted(ticks)
    for e in edges:
        while pending_ticks and pending_ticks[0] < e.t_ms:
            out += counter.advance(pending_ticks.pop(0) / 1000)
        out += counter.feed(e.beam, e.blocked, e.t_ms / 1000)
    last = edges[-1].t_ms / 1000 if edges else 0.0
    out += counter.advance(last + 1.0)
    return out


def directions(out: list[Output]) -> list[str]:
    return [o.direction for o in out if isinstance(o, Passage)]


@settings(max_examples=300, deadline=None)
@given(st.lists(episode, max_size=12), st.lists(glitch, max_size=30))
@example(  # a glitch exactly min_block_s after a real change: 4.022 + 0.03 > 4.052 in floats
    [("follower", "in", [400, 40, 40, 199, 400, 400, 40, 40], 40)], [("outer", 4, 0.0, 11)]
)
def test_separate_crossings_count_exactly_whatever_the_glitches(
    episodes: list[tuple[str, str, list[int], int]], glitches: list[tuple[str, int, float, int]]
) -> None:
    edges, expected = real_edges(episodes)
    out = run(with_glitches(edges, glitches), BeamCounter(MIN_MS / 1000, MAX_S))
    assert directions(out) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(episode, min_size=1, max_size=6), st.lists(st.integers(0, 20_000), max_size=40))
def test_when_the_timer_fires_does_not_change_the_count(
    episodes: list[tuple[str, str, list[int], int]], ticks: list[int]
) -> None:
    edges, expected = real_edges(episodes)
    out = run(edges, BeamCounter(MIN_MS / 1000, MAX_S), ticks)
    assert directions(out) == expected


raw_edge = st.tuples(st.sampled_from(["outer", "inner"]), st.booleans(), st.integers(-50, 3000))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(raw_edge, max_size=80),
    st.sampled_from([0, 1, 30, 100]),
    st.sampled_from([0.5, 2.0, 10.0]),
)
def test_any_edges_never_crash_never_overcount_and_reset(
    raw: list[tuple[Beam, bool, int]], min_ms: int, max_s: float
) -> None:
    counter = BeamCounter(min_ms / 1000, max_s)
    t = 0
    out: list[Output] = []
    level = {"outer": False, "inner": False}
    pairs = {"outer": 0, "inner": 0}
    for beam, blocked, dt in [*raw, ("outer", False, 5000), ("inner", False, 0)]:
        t += dt  # sometimes backwards: the machine clamps
        if level[beam] and not blocked:
            pairs[beam] += 1
        level[beam] = blocked
        out += counter.feed(beam, blocked, t / 1000)
    out += counter.advance(t / 1000 + 100)
    assert len(directions(out)) <= min(pairs.values())
    assert counter.idle
    assert counter.next_deadline() is None

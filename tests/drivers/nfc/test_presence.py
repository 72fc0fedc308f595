from hypothesis import given
from hypothesis import strategies as st

from drivers.nfc.presence import TURNS, Presence

A, B = b"\x04\xa1\xb2\xc3", b"\x04\x11\x22\x33\x44\x55\x66"
POLL = 0.05


def run(presence: Presence, polls: list[tuple[float, list[bytes]]]) -> list[tuple[float, bytes]]:
    return [(now, uid) for now, seen in polls for uid in presence.update(seen, now)]


def held(uid: bytes, start: float, seconds: float) -> list[tuple[float, list[bytes]]]:
    return [(start + i * POLL, [uid]) for i in range(round(seconds / POLL))]


def test_a_card_held_for_seconds_taps_once_when_first_seen() -> None:
    assert run(Presence(0.3), held(A, 0.0, 5.0)) == [(0.0, A)]


def test_a_card_taken_off_for_longer_than_release_taps_again() -> None:
    polls = held(A, 0.0, 1.0) + [(1.0 + i * POLL, []) for i in range(8)] + held(A, 1.4, 1.0)
    assert run(Presence(0.3), polls) == [(0.0, A), (1.4, A)]


def test_a_card_missed_by_one_poll_is_the_same_presentation() -> None:
    polls = [*held(A, 0.0, 1.0), (1.0, []), *held(A, 1.05, 1.0)]
    assert run(Presence(0.3), polls) == [(0.0, A)]


def test_a_different_card_taps_at_once_while_the_first_is_held() -> None:
    polls = [*held(A, 0.0, 0.5), (0.5, [A, B]), *held(A, 0.55, 0.5)]
    assert run(Presence(0.3), polls) == [(0.0, A), (0.5, B)]


def test_two_cards_seen_alternately_by_anticollision_tap_once_each() -> None:
    polls = [(i * POLL, [A if i % 2 else B]) for i in range(40)]
    assert run(Presence(0.3), polls) == [(0.0, B), (POLL, A)]


def test_without_a_completed_poll_a_card_is_not_taken_off() -> None:
    """Failed or stalled polls do not call update: a card seen after a 2 s stall is held."""
    presence = Presence(0.3)
    assert presence.update([A], 0.0) == [A]
    assert presence.update([A], 2.0) == []


def test_repeat_s_taps_a_held_card_again_every_repeat_s() -> None:
    taps = run(Presence(0.3, repeat_s=1.0), held(A, 0.0, 3.5))
    assert [round(t, 2) for t, _ in taps] == [0.0, 1.0, 2.0, 3.0]


def test_cards_gone_are_forgotten() -> None:
    """A card after another, each once: the one before may still be held beside it (its
    turn), the others are off."""
    presence = Presence(0.3)
    for i in range(100):
        presence.update([i.to_bytes(4, "big")], i * 1.0)
    assert len(presence) == TURNS
    presence.update([], 100.0)
    assert len(presence) == 0


def test_two_cards_seen_alternately_by_slow_polls_tap_once_each() -> None:
    """Polls further apart than release_s (a loaded node): each card is missing longer
    than release_s from every other poll, still held."""
    polls = [(i * 0.35, [A if i % 2 else B]) for i in range(20)]
    assert run(Presence(0.3), polls) == [(0.0, B), (0.35, A)]


def test_one_of_two_cards_taken_off_is_off_after_release_and_two_polls_without_it() -> None:
    polls = [(i * POLL, [A if i % 2 else B]) for i in range(10)]  # both held
    polls += [(0.5 + i * POLL, [A]) for i in range(10)]  # B taken off at 0.45
    polls += [(1.0, [B])]  # and put back
    assert run(Presence(0.3), polls) == [(0.0, B), (POLL, A), (1.0, B)]


@given(st.lists(st.tuples(st.floats(0.05, 3.0), st.floats(0.31, 3.0)), min_size=1, max_size=20))
def test_each_presentation_with_gaps_longer_than_release_taps_exactly_once(
    spans: list[tuple[float, float]],
) -> None:
    """(held s, then off s) spans of one card, polled every 10 ms: one tap per span."""
    presence, now, taps = Presence(0.3), 0.0, 0
    for on, off in spans:
        end = now + on
        while now < end:
            taps += len(presence.update([A], now))
            now += 0.01
        end = now + off
        while now < end:
            presence.update([], now)
            now += 0.01
    assert taps == len(spans)

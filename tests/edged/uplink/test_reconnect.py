"""The reconnect delay: reset by a session that worked, grown by one taken over."""

import random

from edged.uplink.reasons import asks_for_room
from edged.uplink.reconnect import SHORT_IN_A_ROW, Reconnect, SessionEnd

WORKED = SessionEnd(worked=True, lasted_s=30.0, taken_over=False, closed_under_us=True)
NEVER = SessionEnd(worked=False, lasted_s=0.0, taken_over=False, closed_under_us=False)
SHORT = SessionEnd(worked=True, lasted_s=0.05, taken_over=False, closed_under_us=True)
TAKEN = SessionEnd(worked=True, lasted_s=0.05, taken_over=True, closed_under_us=False)


def policy() -> Reconnect:
    return Reconnect(1.0, 60.0, random.Random(3))


def test_sessions_that_worked_keep_the_shortest_delay() -> None:
    r = policy()
    assert all(r.delay(WORKED, takeover=False) <= 1.0 for _ in range(20))


def test_attempts_that_never_worked_double_the_delay_up_to_the_cap() -> None:
    r = policy()
    got = [r.delay(NEVER, takeover=False) for _ in range(10)]
    assert got[0] <= 1.0 and 4.0 <= got[3] <= 8.0 and 30.0 <= got[-1] <= 60.0


def test_a_session_that_worked_resets_a_grown_delay() -> None:
    r = policy()
    for _ in range(6):
        r.delay(NEVER, takeover=False)
    assert r.delay(WORKED, takeover=False) <= 1.0


def test_a_session_taken_over_grows_the_delay_though_it_worked() -> None:
    r = policy()
    got = [r.delay(TAKEN, takeover=True) for _ in range(5)]
    assert got[-1] >= 8.0


def test_short_sessions_lost_in_a_row_are_taken_for_a_takeover_from_the_third() -> None:
    r = policy()
    seen = [r.probable_takeover(SHORT) for _ in range(SHORT_IN_A_ROW + 1)]
    assert seen == [False] * (SHORT_IN_A_ROW - 1) + [True, True]


def test_a_long_session_between_short_ones_clears_the_suspicion() -> None:
    r = policy()
    for _ in range(SHORT_IN_A_ROW - 1):
        r.probable_takeover(SHORT)
    assert not r.probable_takeover(WORKED)
    assert not r.probable_takeover(SHORT)


def test_a_session_the_broker_ended_asking_for_room_grows_the_delay_though_it_worked() -> None:
    """DISCONNECT 0x89 server busy, 0x97 quota exceeded, 0x9F connection rate exceeded."""
    busy = SessionEnd(
        worked=True, lasted_s=0.5, taken_over=False, closed_under_us=False, pushed_back=True
    )
    r = policy()
    got = [r.delay(busy, takeover=False) for _ in range(5)]
    assert got[-1] >= 8.0


def test_which_disconnect_reasons_ask_for_room() -> None:
    assert all(asks_for_room(code) for code in (0x80, 0x89, 0x93, 0x97, 0x98, 0x9F))
    assert not any(asks_for_room(code) for code in (0x00, 0x04, 0x8B, 0x8D))


def test_a_broker_out_of_reach_for_days_still_gets_the_capped_delay() -> None:
    """A bus parked for a long weekend where no network reaches: about 1030 attempts in 17
    hours at the 60 s cap, and 2 ** 1024 is no float (OverflowError, the uplink's end)."""
    r = policy()
    got = [r.delay(NEVER, takeover=False) for _ in range(1100)]
    assert 30.0 <= got[-1] <= 60.0

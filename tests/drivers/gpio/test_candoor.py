"""The gate a door on the CAN bus makes for its beams: what a walk's window is judged, from
DC2 statuses as the node took them (times in seconds; CAN_SILENT_S is 3)."""

from drivers.gpio.candoor import CAN_HISTORY, CAN_SILENT_S, CanDoor

CLOSED, OPEN, ERROR, NOT_AVAILABLE = 0, 1, 2, 3


def door(*frames: tuple[float, int | None]) -> CanDoor:
    gate = CanDoor("front")
    for ts, status in frames:
        gate.status(status, ts)
    return gate


def every(status: int | None, start: float, end: float, period: float = 1.0) -> list[tuple]:
    n = round((end - start) / period)
    return [(start + i * period, status) for i in range(n + 1)]


def test_a_window_closed_all_along_is_closed_once_a_frame_after_it_came() -> None:
    assert door(*every(CLOSED, 0, 20)).verdict(10, 14, now=20) == "closed"


def test_a_window_not_yet_followed_by_a_frame_waits_for_one() -> None:
    """The frame that says the door opened at the end of the window may be on its way."""
    gate = door(*every(CLOSED, 0, 13))
    assert gate.verdict(10, 14, now=14.5) == 14 + CAN_SILENT_S
    gate.status(CLOSED, 14.2)
    assert gate.verdict(10, 14, now=14.5) == "closed"


def test_the_first_frame_after_the_window_saying_open_counts_the_walk() -> None:
    """Frames a second apart: the door opened between the last frame in the window and the
    first after it, maybe within the window."""
    gate = door(*every(CLOSED, 0, 13), (14.8, OPEN))
    assert gate.verdict(10, 14, now=15) == "open"


def test_an_opening_within_the_window_counts_at_once() -> None:
    gate = door(*every(CLOSED, 0, 11), (11.5, OPEN))
    assert gate.verdict(10, 14, now=11.6) == "open"


def test_an_opening_long_before_the_window_does_not_count() -> None:
    gate = door((0, OPEN), *every(CLOSED, 1, 20))
    assert gate.verdict(10, 14, now=20) == "closed"


def test_no_frame_by_the_end_of_the_wait_is_unheard() -> None:
    gate = door(*every(CLOSED, 0, 12))
    assert gate.verdict(10, 14, now=14 + CAN_SILENT_S) == "unheard"


def test_a_silence_inside_the_window_is_unheard_though_frames_came_after() -> None:
    """The bus quiet for 4 s during the walk: the door may have opened and shut unseen."""
    gate = door(*every(CLOSED, 0, 9), *every(CLOSED, 13.5, 20))
    assert gate.verdict(10, 14, now=20) == "unheard"


def test_a_window_before_the_first_frame_heard_is_unheard() -> None:
    gate = door(*every(CLOSED, 13.5, 20))
    assert gate.verdict(10, 14, now=20) == "unheard"


def test_error_or_not_available_in_the_window_is_unknown() -> None:
    for status in (ERROR, NOT_AVAILABLE, None):
        gate = door(*every(CLOSED, 0, 11), (12, status), *every(CLOSED, 13, 20))
        assert gate.verdict(10, 14, now=20) == "unknown", status


def test_a_status_changing_with_every_frame_beyond_the_history_is_unknown() -> None:
    """A device on the FMS port alternating closed and error faster than the history keeps."""
    frames = [(10 + i * 0.01, (CLOSED, ERROR)[i % 2]) for i in range(CAN_HISTORY * 2)]
    gate = door(*frames, (20, CLOSED))
    assert gate.verdict(10, 14, now=20) == "unknown"


def test_only_a_change_to_open_tells_the_beams_the_door_opened() -> None:
    gate = CanDoor("front")
    openings: list[int] = []
    gate.opened.append(lambda: openings.append(1))
    for ts, status in [(0, CLOSED), (1, OPEN), (2, OPEN), (3, CLOSED), (4, OPEN)]:
        gate.status(status, ts)
    assert len(openings) == 2


def test_an_opening_shut_before_the_grace_does_not_count_though_its_last_frame_is_recent() -> None:
    """The door shut between its last "open" frame (7.1) and the first "closed" one (7.2),
    2.8 s before the window: a hand waved then is behind a shut door, as with a contact."""
    gate = door(*every(OPEN, 0, 7.1, 0.1), *every(CLOSED, 7.2, 20, 0.1))
    assert gate.verdict(10, 14, now=20) == "closed"


def test_a_silence_before_the_window_is_unheard_though_the_history_is_full() -> None:
    """A day of stops fills the history; the bus quiet until just before the walk (ignition
    off at the terminus) is a bus unheard, not a door in error."""
    frames = [(float(i), (OPEN, CLOSED)[i % 2]) for i in range(CAN_HISTORY * 2)]
    gate = door(*frames, *every(CLOSED, 200.5, 220, 0.1))
    assert gate.verdict(198, 202, now=220) == "unheard"


def test_a_status_flapping_open_and_closed_is_not_an_opening_per_frame() -> None:
    """A loose door switch or a device on the FMS port: 4 s of 0/1 at 10 Hz is not twenty
    openings with nobody through the beams (a dead pair, `beam_silent`), as with a contact."""
    gate = CanDoor("front")
    openings: list[int] = []
    gate.opened.append(lambda: openings.append(1))
    for i in range(40):
        gate.status((OPEN, CLOSED)[i % 2], i * 0.1)
    assert len(openings) <= 2


def test_frames_further_apart_than_a_short_opening_leave_the_window_unheard_not_closed() -> None:
    """`min_interval_s = 3` lets one DC2 through every 2.3 s: a 2 s opening for one rider
    (10.0 to 12.0) falls between two "closed" frames. Judged "closed", the rider is lost."""
    gate = door(*every(CLOSED, 0, 23, 2.3))
    assert gate.verdict(8, 12.5, now=23) == "unheard"


def test_a_receive_stall_that_stamps_the_frames_before_the_opening_late_drops_no_rider() -> None:
    """The CAN thread stalls 2.95 s (9.0 to 11.95) as the door opens at 9.5: the backlog,
    "closed" frames from before the opening, is stamped 11.95, past the window of a rider
    through at 9.6 to 9.9 (7.6 to 11.9), and "open" comes after it."""
    gate = door(*every(CLOSED, 0, 9, 0.1), (11.95, CLOSED), (11.96, OPEN))
    assert gate.verdict(7.6, 11.9, now=11.96) != "closed"

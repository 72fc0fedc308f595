"""The last trusted time: a lower bound on now that only ever holds true time."""

from pathlib import Path
from typing import Any

import pytest

from edged.access.lasttrusted import GPS_SLACK_MS, STATE_KEY, LastTrustedTime, boot_id
from edged.clock import ClockSource

from .support import SetClock

T = 1_795_000_000_000  # UTC ms, late 2026


class Disk:
    """The node's small state, as the outbox keeps it."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.writes = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def set(self, key: str, value: Any, *, may_wait: bool = False) -> None:
        self.writes += 1
        self.state[key] = value


class Mono:
    def __init__(self, t: float = 500.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(
    disk: Disk, clock: SetClock, mono: Mono, boot: str = "boot-1", **kw: Any
) -> LastTrustedTime:
    return LastTrustedTime(clock, disk.get, disk.set, boot=boot, monotonic=mono, **kw)


def test_a_trusted_reading_is_the_time_now_and_is_kept() -> None:
    disk, mono = Disk(), Mono()
    reading = make(disk, SetClock(T), mono).read()
    assert (reading.ms, reading.trusted) == (T, True)
    assert disk.state[STATE_KEY]["ms"] == T


def test_without_a_trusted_clock_the_bound_advances_with_the_monotonic_clock() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    last = make(disk, clock, mono)
    last.read()
    clock.trusted, clock.ms = False, 0  # NTP lost, the system clock says 1970
    mono.t += 3600
    reading = last.read()
    assert (reading.ms, reading.trusted) == (T + 3_600_000, False)


def test_after_a_reboot_the_bound_is_the_stored_time() -> None:
    disk, clock = Disk(), SetClock(T)
    make(disk, clock, Mono(10_000.0)).read()
    clock.trusted = False
    after = make(disk, clock, Mono(12.0), boot="boot-2")  # the monotonic clock restarted
    assert after.read().ms == T


def test_a_restart_within_the_same_boot_keeps_counting_the_monotonic_time() -> None:
    disk, clock = Disk(), SetClock(T)
    make(disk, clock, Mono(1000.0)).read()
    clock.trusted = False
    after = make(disk, clock, Mono(1600.0))  # same boot, ten minutes later
    assert after.read().ms == T + 600_000


def test_a_monotonic_clock_behind_the_stored_one_is_taken_for_another_boot() -> None:
    disk, clock = Disk(), SetClock(T)
    make(disk, clock, Mono(1000.0)).read()
    clock.trusted = False
    assert make(disk, clock, Mono(10.0)).read().ms == T  # no boot id to compare: be safe


def test_a_node_that_never_had_a_trusted_clock_has_no_bound() -> None:
    reading = make(Disk(), SetClock(0, trusted=False), Mono()).read()
    assert (reading.ms, reading.trusted) == (None, False)


@pytest.mark.parametrize(
    "stored",
    [
        *(None, "x", 5, {}, {"ms": "late"}, {"ms": True}, {"ms": -4}, {"ms": 1.5e12}, [T]),
        *({"ms": 10**17}, {"ms": 253_402_300_800_000}),  # past any clock: years 3170843, 10000
    ],
)
def test_an_unreadable_stored_bound_is_no_bound(stored: Any) -> None:
    disk = Disk()
    disk.state[STATE_KEY] = stored
    assert make(disk, SetClock(0, trusted=False), Mono()).read().ms is None


def test_a_stored_bound_with_a_bad_monotonic_value_falls_back_to_the_stored_time() -> None:
    disk = Disk()
    disk.state[STATE_KEY] = {"ms": T, "mono": "soon", "boot": "boot-1"}
    assert make(disk, SetClock(0, trusted=False), Mono()).read().ms == T


def test_the_bound_is_written_at_most_every_save_interval() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    last = make(disk, clock, mono, save_every_s=600)
    for _ in range(100):  # 100 taps in 99 seconds
        last.read()
        mono.t += 1
        clock.ms += 1000
    assert disk.writes == 1
    mono.t += 600
    clock.ms += 600_000
    last.read()
    assert disk.writes == 2


def test_a_trusted_clock_below_the_bound_replaces_it() -> None:
    # a clock once wrong in the future must not refuse every pass once it is corrected
    disk, mono, clock = Disk(), Mono(), SetClock(T + 10**10)
    last = make(disk, clock, mono)
    last.read()
    clock.ms = T
    assert last.read().ms == T and disk.state[STATE_KEY]["ms"] == T


def test_boot_id_reads_the_kernels_and_tolerates_its_absence(tmp_path: Path) -> None:
    assert boot_id(tmp_path / "missing") is None
    (tmp_path / "id").write_text("abc-123\n")
    assert boot_id(tmp_path / "id") == "abc-123"


def test_a_gps_time_below_the_last_ntp_time_is_not_trusted() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    last = make(disk, clock, mono)
    last.read()  # NTP
    clock.kind, clock.ms = ClockSource.GPS, T - 30 * 86_400_000  # NTP lost, GPS a month back
    mono.t += 3600
    reading = last.read()
    assert (reading.ms, reading.trusted) == (T + 3_600_000, False)


def test_the_ntp_floor_for_gps_survives_a_reboot() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    make(disk, clock, mono).read()
    clock.kind, clock.ms = ClockSource.GPS, T + 86_400_000
    make(disk, clock, Mono(3.0), boot="boot-2").read()  # a true GPS fix a day on: the bound
    clock.ms = T - 86_400_000  # then a spoofer, after another power cycle
    reading = make(disk, clock, Mono(9.0), boot="boot-3").read()
    assert (reading.ms, reading.trusted) == (T + 86_400_000, False)


def test_a_gps_time_after_the_last_ntp_time_is_trusted() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    last = make(disk, clock, mono)
    last.read()
    clock.kind, clock.ms = ClockSource.GPS, T + 3 * 86_400_000  # a bus parked for a weekend
    reading = make(disk, clock, Mono(3.0), boot="boot-2").read()
    assert (reading.ms, reading.trusted) == (T + 3 * 86_400_000, True)


def test_ntp_below_the_bound_a_gps_time_set_is_trusted() -> None:
    # GPS spoofed ahead once: NTP, when it comes back, sets the time right
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    last = make(disk, clock, mono)
    last.read()
    clock.kind, clock.ms = ClockSource.GPS, T + 10**10
    last.read()
    clock.kind, clock.ms = ClockSource.NTP, T + 5000
    assert (last.read().ms, last.read().trusted) == (T + 5000, True)


def test_a_gps_time_that_jumps_ahead_under_a_running_node_is_not_trusted() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    clock.kind = ClockSource.GPS
    last = make(disk, clock, mono)
    last.read()  # the receiver's true time
    mono.t += 60
    clock.ms = T + 86_400_000  # a spoofer: tomorrow, a minute later
    reading = last.read()
    assert (reading.ms, reading.trusted) == (T + 60_000, False)


def test_a_gps_time_that_agrees_again_after_a_jump_is_trusted() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    clock.kind = ClockSource.GPS
    last = make(disk, clock, mono)
    last.read()
    clock.ms = T + 86_400_000
    last.read()
    mono.t += 600
    clock.ms = T + 600_500  # the spoofer gone: the receiver's time, half a second apart
    assert (last.read().ms, last.read().trusted) == (T + 600_500, True)


def test_a_gps_time_walked_ahead_in_steps_under_the_slack_is_not_trusted() -> None:
    """Each believed GPS reading carried the time on from itself: a spoofer moving the time
    100 s at each reading (a tap of an unknown card makes one every 2 s) took it to a
    booking's slot hours away in minutes, never jumping more than the slack."""
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    clock.kind = ClockSource.GPS
    last = make(disk, clock, mono)
    last.read()  # the receiver's true time
    for step in range(1, 301):  # 10 minutes of taps, 100 s further at each
        mono.t += 2
        clock.ms = T + step * 2_000 + step * 100_000
        reading = last.read()
    assert clock.ms - (T + 600_000) > 8 * 3_600_000  # the spoofer's time: 8 hours ahead
    assert not reading.trusted
    assert reading.ms is not None and reading.ms - (T + 600_000) <= GPS_SLACK_MS


def test_a_gps_time_is_believed_after_a_month_of_a_monotonic_clock_drifting() -> None:
    disk, mono, clock = Disk(), Mono(), SetClock(T)
    clock.kind = ClockSource.GPS
    last = make(disk, clock, mono)
    last.read()
    for day in range(1, 31):  # no NTP for a month; the Pi's crystal 100 ppm slow
        mono.t += 86_400 * (1 - 100e-6)
        clock.ms = T + day * 86_400_000
        assert last.read().trusted, f"day {day}"

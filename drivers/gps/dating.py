"""Which day an NMEA time of day is on: the receiver's date, carried forward, or a guess.

NMEA times are times of day; only RMC (`ddmmyy`) and ZDA (`dd,mm,yyyy`) say the date.

- An epoch with a date of its own is on that date. Receivers with the GPS week-number
  rollover bug report dates 1024 weeks (19.6 years) early — the Telit HE910 sent
  `220899` on 7 April 2019 — so a date before 1 January 2017 (the last leap second: no
  receiver working today can be before it) is a rollover candidate. It is moved forward
  by 1024 weeks, as gpsd does, as many times as it takes to reach 2017 (a receiver two
  rollovers behind), and counted as `week_rollover`, but only to a date the system clock
  allows. A receiver with the bug reports the true date less whole rollovers, so a
  correction is now: one that lands later is a recording, a simulator or a spoofer
  (rgm3800's test log, a valid fix of `010108`, became 17 August 2027 on a node in 2026),
  and so is one that lands before a clock that is never ahead (a 2005 log becomes March
  2025, 21 months before a node in December 2026): whatever the clock, a correction is
  `date_known` only within a day (`SLACK`) of the clock's date, either side (past an
  unsynchronised one, within `PARKED`, 60 days: how long a node may have been off):
  * a synchronised clock (adjtimex) is now: the date is moved to the latest candidate at
    most a day past it; when even the first is later, the date is refused
    (counted `implausible_date`): like a garbled date, it dates nothing.
  * an unsynchronised clock on or after 2017 may be right, or behind, never ahead: a Pi
    without RTC boots on fake-hwclock's last saved time, or the image's. The date is moved
    to the latest candidate up to `CLOCK_LAG` (2 years) past the clock's date, and refused
    beyond (a 2015 recording replayed in 2026 would land in 2034); a correction more than
    60 days past the clock is kept, but with `date_known=False`: nothing proves it, and as
    the node's clock it would put the node up to 2 years ahead (every signed command
    stale, every access list expired). The clock waits for NTP, or a date within that.
  * a clock before 2017 (1970 on a Pi without fake-hwclock) cannot say anything: the
    first candidate from 2017 on is taken (a receiver that says 2006 in 2025 gives 2025),
    with `date_known=False` for the same reason.
  A refused date makes the epoch's day the one of the reference below if there is one;
  else the fix keeps the receiver's date as sent with `date_known=False`: it must not set
  the node's clock, and a day guessed from the system clock would mix two time scales in
  one stream (a replayed log stays consistent with itself).
- The date of an epoch with a valid fix, or of a ZDA sent without fix sentences, becomes
  the reference, known or not as that date is (a void epoch's date, RMC's or ZDA's, may
  be the receiver's RTC default, `060180` / `06,01,1980`, and dates nothing); an epoch
  without a date of its own is put on the day that brings it closest to the reference
  carried forward by the monotonic clock (the time between their arrivals), so GGA-only
  epochs after an RMC or ZDA, across midnight or after an outage of hours, get the right day.
  Such an epoch counts as dated: its day comes from the receiver.
- Before any reference the day is the one that brings the time closest to the system
  clock, and the fix says `date_known=False`: on a Pi without a synchronised clock that day
  may be wrong, so such a fix never sets the node's clock.
- A leap second, 23:59:60, is put in the last millisecond of 23:59:59 (µs 999_000 plus its
  milliseconds): a datetime has no second 60, and rolling it to 00:00:00 would give two
  fixes one time. Fix times so stay strictly increasing across it at any receiver rate
  up to 1 kHz; they are off by up to a second during it, as any clock without a second 60.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from core.libc import kernel_clock_synced

ROLLOVER_FLOOR = date(2017, 1, 1)
ROLLOVER = timedelta(weeks=1024)
CLOCK_LAG = timedelta(days=2 * 365)
"""How far a plausible but unsynchronised system clock may be behind the true date: an SD
image a release or two old, a spare kept on a shelf. A rollover correction may land this
far past the clock, no farther: beyond it, a wrong date would become the node's clock, and
a node clock years ahead refuses every signed command as stale."""
PARKED = timedelta(days=60)
"""How far past an unsynchronised clock a correction may land and still be known: such a
clock is fake-hwclock's (or timesyncd's) last saved time, as far behind as the node was off
(a weekend in the depot, a summer's holidays). A rollover receiver is then the node's only
way to the date offline: at a day's margin, a node parked three days lost it until NTP. A
correction farther on (a recording, rgm3800's 8 months) is kept, unknown."""
SLACK = timedelta(days=1)
"""How far from a clock's date, either side, a correction may land and be known: the
clock's date is UTC midnight, so a fix late in the day, or one of yesterday read just after
midnight, is within it; a correction farther is no rollover of a receiver working now
(module docstring)."""
DAY_US = 86_400_000_000
_LEAP_AT = DAY_US - 1000  # 23:59:60.000 is put at 23:59:59.999000
_DAY = timedelta(days=1)
_HALF_DAY = timedelta(hours=12)


def on_clock(time_us: int) -> int:
    """A time of day in µs as a datetime can hold it: the leap second (µs 86,400,000,000 to
    86,400,999,999) squeezed into the last millisecond of 23:59:59, in order."""
    if time_us < DAY_US:
        return time_us
    return _LEAP_AT + min(time_us - DAY_US, 999_999) // 1000


def nearest_day(time_us: int, ref: datetime) -> datetime:
    """The UTC datetime with this time of day that is closest to `ref`."""
    midnight = datetime(ref.year, ref.month, ref.day, tzinfo=UTC)
    when = midnight + timedelta(microseconds=on_clock(time_us))
    if when < ref - _HALF_DAY:
        return when + _DAY
    if when > ref + _HALF_DAY:
        return when - _DAY
    return when


class Dating:
    """Puts times of day on days (the rules are in the module docstring)."""

    def __init__(
        self,
        now: Callable[[], datetime] | None = None,
        count: Callable[[str, int], None] = lambda key, n: None,
        synced: Callable[[], bool | None] | None = None,
    ) -> None:
        """`now`: the system clock; `synced`: whether it is synchronised (default: the
        kernel's answer for the system clock, False for a clock passed without it: a
        made-up clock, a test's, proves nothing)."""
        if now is None:
            self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
            self.synced = synced or kernel_clock_synced
        else:
            self.now = now
            self.synced = synced or (lambda: False)
        self.count = count
        self._ref: tuple[datetime, float, bool] | None = None  # a fix time, arrival, known
        self._midnight: tuple[date | None, datetime] = (None, datetime.min)

    def unroll(self, day: date, *, count: bool = True) -> tuple[date, bool] | None:
        """(`day` moved past the week-number rollover of a receiver that has the bug, known)
        or None when the clock rules that out (module docstring); `count`: as
        `week_rollover` or `implausible_date` (not for the default date of a receiver
        without fix)."""
        if day >= ROLLOVER_FLOOR:
            return day, True
        moved = day + ROLLOVER
        while moved < ROLLOVER_FLOOR:
            moved += ROLLOVER
        today = self.now().date()
        known = False
        if today >= ROLLOVER_FLOOR:  # a clock that may be right, or behind, never ahead
            synced = self.synced()
            horizon = today + (SLACK if synced else CLOCK_LAG)
            if moved > horizon:
                if count:
                    self.count("implausible_date", 1)
                return None
            while moved + ROLLOVER <= horizon:
                moved += ROLLOVER
            known = today - SLACK <= moved <= today + (SLACK if synced else PARKED)
        if count:
            self.count("week_rollover", 1)
        return moved, known

    def stamp(
        self, time_us: int, day: date | None, at: float, *, reference: bool
    ) -> tuple[datetime, bool]:
        """(fix time, date known) of a time of day that arrived at `at` (monotonic s), on
        `day` if the epoch gave one; `reference`: this date may date later epochs."""
        if day is not None:
            unrolled = self.unroll(day, count=reference)
            if unrolled is not None:
                moved, known = unrolled
                when = self._on(moved, time_us)
                if reference:
                    self._ref = (when, at, known)
                return when, known
            if self._ref is None:  # refused: as sent, and said to be unknown
                return self._on(day, time_us), False
        if self._ref is not None:
            ref, ref_at, known = self._ref
            return nearest_day(time_us, ref + timedelta(seconds=at - ref_at)), known
        return nearest_day(time_us, self.now()), False

    def _on(self, day: date, time_us: int) -> datetime:
        if self._midnight[0] != day:  # one datetime per day, not per epoch
            self._midnight = (day, datetime(day.year, day.month, day.day, tzinfo=UTC))
        return self._midnight[1] + timedelta(microseconds=on_clock(time_us))

    def note(self, time_us: int, day: date, at: float) -> None:
        """A date from a sentence whose epoch was already emitted: a reference all the same."""
        self.stamp(time_us, day, at, reference=True)

"""Which day an NMEA time of day is on: the receiver's date, carried forward, or a guess.

NMEA times are times of day; only RMC (`ddmmyy`) and ZDA (`dd,mm,yyyy`) say the date.

- An epoch with a date of its own is on that date. Receivers with the GPS week-number
  rollover bug report dates 1024 weeks (19.6 years) early — the Telit HE910 sent
  `220899` on 7 April 2019 — so a date before 1 January 2017 (the last leap second: no
  receiver working today can be before it) is moved forward by 1024 weeks, as gpsd does,
  and counted as `week_rollover`; again while that stays before the system clock's date
  (a receiver two rollovers behind), never into the future of a plausible clock.
- The date of an epoch with a valid fix, or of a ZDA, becomes the reference; an epoch
  without a date of its own is put on the day that brings it closest to the reference
  carried forward by the monotonic clock (the time between their arrivals), so GGA-only
  epochs after an RMC or ZDA, across midnight or after an outage of hours, get the right day.
  Such an epoch counts as dated: its day comes from the receiver.
- Before any reference the day is the one that brings the time closest to the system
  clock, and the fix says `date_known=False`: on a Pi without a synchronised clock that day
  may be wrong, so such a fix never sets the node's clock.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

ROLLOVER_FLOOR = date(2017, 1, 1)
ROLLOVER = timedelta(weeks=1024)
_DAY = timedelta(days=1)
_HALF_DAY = timedelta(hours=12)


def nearest_day(time_us: int, ref: datetime) -> datetime:
    """The UTC datetime with this time of day that is closest to `ref`."""
    when = datetime(ref.year, ref.month, ref.day, tzinfo=UTC) + timedelta(microseconds=time_us)
    if when < ref - _HALF_DAY:
        return when + _DAY
    if when > ref + _HALF_DAY:
        return when - _DAY
    return when


class Dating:
    """Puts times of day on days (the rules are in the module docstring)."""

    def __init__(
        self,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        count: Callable[[str, int], None] = lambda key, n: None,
    ) -> None:
        self.now = now
        self.count = count
        self._ref: tuple[datetime, float] | None = None  # a dated fix time, its arrival
        self._midnight: tuple[date | None, datetime] = (None, datetime.min)

    def unroll(self, day: date, *, count: bool = True) -> date:
        """`day` moved past the week-number rollover of a receiver that has the bug;
        `count`: as `week_rollover` (not for the default date of a receiver without fix)."""
        if day >= ROLLOVER_FLOOR:
            return day
        if count:
            self.count("week_rollover", 1)
        day += ROLLOVER
        today = max(self.now().date(), ROLLOVER_FLOOR)
        while day + ROLLOVER <= today:
            day += ROLLOVER
        return day

    def stamp(
        self, time_us: int, day: date | None, at: float, *, reference: bool
    ) -> tuple[datetime, bool]:
        """(fix time, date known) of a time of day that arrived at `at` (monotonic s), on
        `day` if the epoch gave one; `reference`: this date may date later epochs."""
        if day is not None:
            day = self.unroll(day, count=reference)
            if self._midnight[0] != day:  # one datetime per day, not per epoch
                self._midnight = (day, datetime(day.year, day.month, day.day, tzinfo=UTC))
            when = self._midnight[1] + timedelta(microseconds=time_us)
            if reference:
                self._ref = (when, at)
            return when, True
        if self._ref is not None:
            ref, ref_at = self._ref
            return nearest_day(time_us, ref + timedelta(seconds=at - ref_at)), True
        return nearest_day(time_us, self.now()), False

    def note(self, time_us: int, day: date, at: float) -> None:
        """A date from a sentence whose epoch was already emitted: a reference all the same."""
        self.stamp(time_us, day, at, reference=True)

"""Which clock stamps a payload: NTP-synced system time, GPS time, or an unsynced guess.

A Raspberry Pi has no battery-backed clock: after a cold boot without network its clock
can be days or years off. When the kernel says the clock is not synchronised, GPS time
(from the last valid fix, carried forward on the monotonic clock) is used instead.
"""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from core.libc import kernel_clock_synced as kernel_clock_synced  # where callers look

log = logging.getLogger(__name__)

_RELEASED = datetime(2025, 1, 1, tzinfo=UTC)
_EARLIEST_PLAUSIBLE = _RELEASED.timestamp()
"""No true time is before this release: a system clock or a GPS time before it is a Pi that
booted in 1970, a receiver one GPS week rollover (1024 weeks) behind, or a spoofer."""
GPS_HORIZON_YEARS = 10
_LATEST_PLAUSIBLE = _RELEASED.replace(year=_RELEASED.year + GPS_HORIZON_YEARS).timestamp()
"""No GPS time after this is believed: a node runs a release for a few years, not ten,
while a receiver one week rollover ahead (19.6 years), a two-digit year read in the wrong
century or a spoofer can say any later date — and a node clock years ahead refuses every
signed command as stale and every card's pass as expired, and stamps years-ahead `ts`.
Moves with `_RELEASED`; NTP, when synchronised, is believed whatever it says."""


ENABLE_NTP = (
    "enable network time: `sudo timedatectl set-ntp true` (systemd-timesyncd) or install chrony"
)


class ClockSource(StrEnum):
    NTP = "ntp"
    GPS = "gps"
    UNSYNCED = "unsynced"


class Clock:
    """Millisecond UTC timestamps with the name of the clock that produced them."""

    def __init__(
        self,
        *,
        recheck_s: float = 60.0,
        trust_system_clock: bool = False,
        kernel_synced: Callable[[], bool | None] | None = None,
    ) -> None:
        """`kernel_synced`: how to ask whether the kernel's clock is synchronised (default
        adjtimex); a test passes its own so the answer does not depend on the host's NTP."""
        self._trust = trust_system_clock
        self._kernel_synced = kernel_synced
        self._gps_offset: float | None = None  # gps_time - monotonic
        self._refusing = False  # the last GPS time was refused (said once, not per fix)
        self._synced: bool = False
        self._checked_at = float("-inf")
        self._recheck_s = recheck_s
        self._refresh()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._recheck_s:
            return
        self._checked_at = now
        synced = self._trust or (self._kernel_synced or kernel_clock_synced)()
        self._synced = bool(synced) and time.time() > _EARLIEST_PLAUSIBLE

    def discipline(self, gps_time: datetime, at: float | None = None) -> bool:
        """Feed the time of a valid fix; used while the system clock is not synced. `at`:
        the monotonic time the receiver sent it (default now), as a fix is emitted once
        its epoch is over, a fraction of a second after its first sentence. False (and
        ignored, logged once until a time is taken again) when the time is before any
        plausible date or more than `GPS_HORIZON_YEARS` past this release: a drivers'
        rollover handling (gpsd's, a receiver's firmware) is not to be relied on for the
        node's clock, nor a signal that may be spoofed."""
        when = gps_time.timestamp()
        if not _EARLIEST_PLAUSIBLE < when < _LATEST_PLAUSIBLE:
            if not self._refusing:
                self._refusing = True
                self._say_refused(when)
            return False
        self._refusing = False
        self._gps_offset = when - (time.monotonic() if at is None else at)
        return True

    def _say_refused(self, when: float) -> None:
        early = when <= _EARLIEST_PLAUSIBLE
        log.warning(
            "GPS says it is %s, %s: not used as the node's clock (a receiver with a "
            "week-rollover bug, or a spoofed signal); payloads keep `clock` %r. Check the "
            "receiver's firmware and antenna, or %s",
            _utc(when),
            f"before {_RELEASED:%Y}"
            if early
            else f"more than {GPS_HORIZON_YEARS} years after this release",
            self.source.value,
            ENABLE_NTP,
        )

    @property
    def source(self) -> ClockSource:
        self._refresh()
        if self._synced:
            return ClockSource.NTP
        if self._gps_offset is not None:
            return ClockSource.GPS
        return ClockSource.UNSYNCED

    @property
    def synced(self) -> bool:
        """The system clock is synchronised (or trusted by config), as `source` decides."""
        self._refresh()
        return self._synced

    def describe(self) -> str:
        """What the system clock says and whether it is synchronised, and GPS time when a
        fix gave one: for a message about time (a certificate that looks expired)."""
        system = time.time()
        text = f"it says {_utc(system)}, {'synchronised' if self.synced else 'not synchronised'}"
        days = self._gps_ahead_days(system)
        if days is None:
            return text
        if abs(days) < 1:
            return f"{text}; GPS agrees"
        gps = _utc(system + days * 86400)
        return f"{text}; GPS says {gps}, {abs(days):.0f} days {'later' if days > 0 else 'earlier'}"

    def system_clock_right(self) -> bool | None:
        """Whether the system clock can be believed: True when synchronised or a fix's time
        agrees within a day; False when a fix says otherwise, or it is before any plausible
        date; None when nothing says."""
        system = time.time()
        days = self._gps_ahead_days(system)
        if days is not None:
            return abs(days) < 1
        if system <= _EARLIEST_PLAUSIBLE:
            return False
        return True if self.synced else None

    def _gps_ahead_days(self, system: float) -> float | None:
        if self._gps_offset is None:
            return None
        return (time.monotonic() + self._gps_offset - system) / 86400

    def now(self) -> tuple[int, ClockSource]:
        """(UTC milliseconds, source) from the best clock available now."""
        source = self.source
        if source is ClockSource.GPS and self._gps_offset is not None:
            return int((time.monotonic() + self._gps_offset) * 1000), source
        return int(time.time() * 1000), source


def _utc(when: float) -> str:
    return f"{datetime.fromtimestamp(when, UTC):%Y-%m-%d %H:%M} UTC"

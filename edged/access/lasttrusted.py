"""The last trusted time: a lower bound on "now" that survives an unsynced clock and a restart.

A Pi has no battery-backed clock. After a power cycle with the uplink cut (no NTP) and no
GPS fix, the system clock is a guess, and a card's `valid_until` cannot be read against it:
an expired pass would board. Time only moves forward, so the last time a trusted clock (NTP
or GPS) gave, plus the monotonic time since, is a lower bound on the true time; across a
reboot the monotonic clock restarts and the bound is the stored time itself (across a
restart of the daemon within the same boot, the monotonic clock still counts).

The bound proves a card expired, or started, but never that a card is still valid: that
needs a trusted clock (`decide` applies the configured policy to what it cannot decide).

Stored in the node's small state (the outbox database) at most every `save_every_s` while
it advances, so the SD card sees a few small writes an hour.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edged.clock import Clock, ClockSource

STATE_KEY = "clock.last_trusted"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
SAVE_EVERY_S = 600.0
LATEST_MS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp() * 1000)
"""No clock gives a time past this (Linux's clock ends in 2262): a stored bound beyond it is
a corrupt state, and a date near the end of the calendar (year 9999) failed every tap."""


def boot_id(path: Path = BOOT_ID) -> str | None:
    """This boot's id (the monotonic clock's epoch); None where the kernel does not say."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Reading:
    ms: int | None  # UTC ms: the time now when trusted, else a lower bound (None: no bound)
    trusted: bool


class LastTrustedTime:
    def __init__(
        self,
        clock: Clock,
        get_state: Callable[[str, Any], Any],
        set_state: Callable[[str, Any], None],
        *,
        save_every_s: float = SAVE_EVERY_S,
        boot: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._set_state = set_state
        self._save_every_ms = save_every_s * 1000
        self._boot = boot if boot is not None else boot_id()
        self._monotonic = monotonic
        self._ms: int | None = None  # the bound at `_mono` (monotonic seconds)
        self._mono = 0.0
        self._saved_ms: int | None = None
        self._restore(get_state(STATE_KEY, None))

    def _restore(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        ms, mono, boot = raw.get("ms"), raw.get("mono"), raw.get("boot")
        if not isinstance(ms, int) or isinstance(ms, bool) or not 0 < ms < LATEST_MS:
            return
        self._ms = self._saved_ms = ms
        self._mono = self._monotonic()
        same_boot = self._boot is not None and boot == self._boot
        if same_boot and isinstance(mono, int | float) and 0 <= mono <= self._mono:
            # the daemon restarted, the machine did not: the monotonic clock kept counting
            self._ms = ms + int((self._mono - mono) * 1000)

    def bound(self) -> int | None:
        """The lower bound now, from the last trusted reading and the monotonic time since."""
        if self._ms is None:
            return None
        return self._ms + int((self._monotonic() - self._mono) * 1000)

    def read(self) -> Reading:
        """The time now if a clock can be trusted (and remember it), else the lower bound."""
        ms, source = self.clock.now()
        if source is not ClockSource.UNSYNCED:
            # a trusted clock wins, even below the stored bound: a clock that was wrong
            # once (and trusted) must not refuse every pass forever after it is corrected
            self._ms, self._mono = ms, self._monotonic()
            self.save()
            return Reading(ms, True)
        bound = self.bound()
        self.save()
        return Reading(bound, False)

    def save(self, *, force: bool = False) -> None:
        """Store the bound when it moved `save_every_s` past the stored one (or when forced)."""
        bound = self.bound()
        if bound is None:
            return
        moved = None if self._saved_ms is None else bound - self._saved_ms
        if not force and moved is not None and 0 <= moved < self._save_every_ms:
            return
        self._saved_ms = bound
        mono = self._monotonic()
        self._set_state(STATE_KEY, {"ms": bound, "mono": round(mono, 3), "boot": self._boot})

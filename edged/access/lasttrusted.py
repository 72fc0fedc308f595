"""The last trusted time: a lower bound on "now" that survives an unsynced clock and a restart.

A Pi has no battery-backed clock. After a power cycle with the uplink cut (no NTP) and no
GPS fix, the system clock is a guess, and a card's `valid_until` cannot be read against it:
an expired pass would board. Time only moves forward, so the last time a trusted clock (NTP
or GPS) gave, plus the monotonic time since, is a lower bound on the true time; across a
reboot the monotonic clock restarts and the bound is the stored time itself (across a
restart of the daemon within the same boot, the monotonic clock still counts).

The bound proves a card expired, or started, but never that a card is still valid: that
needs a trusted clock (`decide` applies the configured policy to what it cannot decide).

GPS time is trusted, but not below the last time NTP gave (plus the monotonic time since, in
the same boot), nor away from the time the first trusted reading of this run (or the last
NTP one) carried on the monotonic clock (true time moves with it, within `MONO_DRIFT`; a
spoofed one jumps, or walks away in steps: a GPS reading never moves that anchor): a
rider with a GPS spoofer on a node whose kernel clock has lost NTP (hours offline) could
otherwise set the time back to a day an expired pass was valid, or on to the slot of a
booking not yet begun.
Such a GPS time is read as no trusted clock (the bound decides) until it agrees again, NTP
comes back or the daemon restarts (a spoofer present from the start is not told apart).
NTP, when synchronised, wins over everything, even below the bound: a clock once wrong
must be correctable.

Stored in the node's small state (the outbox database) at most every `save_every_s` while
it advances, so the SD card sees a few small writes an hour.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.boot import boot_id
from edged.clock import Clock, ClockSource

log = logging.getLogger(__name__)

STATE_KEY = "clock.last_trusted"
SAVE_EVERY_S = 600.0
LATEST_MS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp() * 1000)
"""No clock gives a time past this (Linux's clock ends in 2262): a stored bound beyond it is
a corrupt state, and a date near the end of the calendar (year 9999) failed every tap."""
GPS_SLACK_MS = 120_000
"""How far a GPS time may be from the NTP floor or the time carried on since the last
trusted reading and still be believed (a receiver's time and NTP's agree within a second;
the floor is saved every `save_every_s`; a monotonic clock drifts some 10 s a day)."""
MONO_DRIFT = 200e-6
"""How fast the monotonic clock may drift from true time (a Pi's crystal: some 100 ppm, 10 s
a day): the time carried on from the anchor is believed to within `GPS_SLACK_MS` plus this
much of the time since."""


@dataclass(frozen=True, slots=True)
class Reading:
    ms: int | None  # UTC ms: the time now when trusted, else a lower bound (None: no bound)
    trusted: bool


def carried_ms(ms: int, mono: Any, same_boot: bool, now: float) -> int:
    """`ms`, stored at the monotonic instant `mono`, carried to `now`: plus the time since
    when the daemon restarted and the machine did not (the monotonic clock kept counting);
    as stored otherwise."""
    if same_boot and isinstance(mono, int | float) and 0 <= mono <= now:
        return ms + int((now - mono) * 1000)
    return ms


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
        self._ntp_ms: int | None = None  # the last NTP time at `_ntp_mono`: GPS's floor
        self._ntp_mono = 0.0
        self._gps_refused = False  # a GPS time was refused (logged once until one is taken)
        # the first trusted reading of this run, or the last NTP one: (ms, monotonic s).
        # Not moved by GPS readings, or a spoofer walks the time away in steps under the slack
        self._anchor: tuple[int, float] | None = None
        self._restore(get_state(STATE_KEY, None))

    def _restore(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        same_boot = self._boot is not None and raw.get("boot") == self._boot
        restored = self._restored(raw.get("ms"), raw.get("mono"), same_boot)
        if restored is None:
            return
        self._ms, self._mono = restored
        self._saved_ms = raw["ms"]
        ntp = self._restored(raw.get("ntp"), raw.get("ntp_mono"), same_boot)
        if ntp is not None:
            self._ntp_ms, self._ntp_mono = ntp

    def _restored(self, ms: Any, mono: Any, same_boot: bool) -> tuple[int, float] | None:
        """(bound, at monotonic now) from a stored time, or None when it is unreadable."""
        if not isinstance(ms, int) or isinstance(ms, bool) or not 0 < ms < LATEST_MS:
            return None
        now = self._monotonic()
        return carried_ms(ms, mono, same_boot, now), now

    def ntp_floor(self) -> int | None:
        """The last NTP time plus the monotonic time since: no GPS time below is believed."""
        if self._ntp_ms is None:
            return None
        return self._ntp_ms + int((self._monotonic() - self._ntp_mono) * 1000)

    def _gps_doubt(self, ms: int) -> str | None:
        """Why a GPS time is not believed, or None: below the NTP floor, or away from the
        time a trusted reading of this run carried on the monotonic clock (a GPS time
        moving under a running node is a spoofer's; one right after a start is not told)."""
        floor = self.ntp_floor()
        if floor is not None and ms < floor - GPS_SLACK_MS:
            return f"before the last time NTP gave ({_utc(floor)})"
        if self._anchor is None:
            return None
        at_ms, at_mono = self._anchor
        since = max(0.0, self._monotonic() - at_mono)
        expected = at_ms + int(since * 1000)
        if abs(ms - expected) > GPS_SLACK_MS + since * 1000 * MONO_DRIFT:
            return f"while the time this node keeps since a trusted reading is {_utc(expected)}"
        return None

    def bound(self) -> int | None:
        """The lower bound now, from the last trusted reading and the monotonic time since."""
        if self._ms is None:
            return None
        return self._ms + int((self._monotonic() - self._mono) * 1000)

    def read(self) -> Reading:
        """The time now if a clock can be trusted (and remember it), else the lower bound."""
        ms, source = self.clock.now()
        if source is ClockSource.GPS:
            doubt = self._gps_doubt(ms)
            if doubt is not None:
                if not self._gps_refused:
                    self._gps_refused = True
                    log.warning(
                        "GPS says it is %s, %s: a spoofed or faulty GPS time is not trusted "
                        "for card dates and bookings",
                        _utc(ms),
                        doubt,
                    )
                bound, floor = self.bound(), self.ntp_floor()
                self.save()
                if bound is None or floor is None:
                    return Reading(floor if bound is None else bound, False)
                return Reading(max(bound, floor), False)
            self._gps_refused = False
        if source is not ClockSource.UNSYNCED:
            # a trusted clock wins, even below the stored bound: a clock that was wrong
            # once (and trusted) must not refuse every pass forever after it is corrected
            self._ms, self._mono = ms, self._monotonic()
            if source is ClockSource.NTP:
                self._ntp_ms, self._ntp_mono = ms, self._mono
            if source is ClockSource.NTP or self._anchor is None:
                self._anchor = (ms, self._mono)
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
        state: dict[str, Any] = {"ms": bound, "mono": round(mono, 3), "boot": self._boot}
        ntp = self.ntp_floor()
        if ntp is not None:
            state |= {"ntp": ntp, "ntp_mono": round(mono, 3)}
        self._set_state(STATE_KEY, state)


def _utc(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M} UTC"

"""How old the access lists in force are, judged without believing a clock that can jump.

Dispatch may sign into the lists when it issued them (`issued`) and until when it vouches
for them (`expires`): a card revoked centrally reaches a node only with new lists, so a
node offline for weeks keeps letting it in; past `expires` the node knows its lists may be
missing such revocations, says so (health, every tap) and applies `expired_lists`.

"Past `expires`" must be proven, not guessed from the system clock: a Pi without a
battery-backed clock boots at an old time, GPS can jump, and whoever sets the clock back
would keep old lists fresh for ever (set on, they expire: a denial of service, which a
clock trusted by config allows anyway). So the lists' time is judged on a lower bound of
the true time, the largest of:

- the time now when a clock is trusted, else the last trusted time carried on the
  monotonic clock (`LastTrustedTime`: a GPS time that jumps is not trusted);
- `issued` plus the time the node has held the lists, counted on the monotonic clock and
  kept on disk (`held`): no clock setting moves it, and it needs no clock at all, so a node
  that never had NTP or GPS still sees its lists expire at `expires - issued` of running;
- the lower bound the node had when it took them plus the time held.

Held time is counted while the node runs: time powered off is not (it cannot be told
without a clock), and up to `save_every_s` of it is lost at each power cut (a daemon
restart within a boot loses none). The bound is therefore late, never early: lists are
called expired only when they are.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from core.boot import boot_id
from edged.access.lasttrusted import SAVE_EVERY_S, Reading, carried_ms
from edged.access.lists import AccessLists

STATE_KEY = "access.lists.held"


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Age:
    """What the node can say of its lists' age now (UTC ms; None: not known)."""

    issued: int | None
    expires: int | None
    received: int | None  # the node's clock when they came (see `received_clock`)
    received_clock: str | None
    held_s: float  # how long the node has run with them, at least
    floor: int | None  # a lower bound on the true time now
    expired: bool  # proven past `expires`

    @property
    def age_s(self) -> float | None:
        """Since `issued`, at least (a lower bound; None without `issued`)."""
        if self.issued is None:
            return None
        since = (self.floor - self.issued) / 1000 if self.floor is not None else 0.0
        return max(since, self.held_s, 0.0)


class ListsAge:
    """The held time of the lists in force, kept across restarts like the last trusted time."""

    def __init__(
        self,
        get_state: Callable[[str, Any], Any],
        set_state: Callable[[str, Any], None],
        *,
        save_every_s: float = SAVE_EVERY_S,
        boot: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._set_state = set_state
        self._save_every_ms = save_every_s * 1000
        self._boot = boot if boot is not None else boot_id()
        self._monotonic = monotonic
        self._version: int | None = None  # the lists the rest is about
        self._held_ms = 0  # at `_mono`
        self._mono = monotonic()
        self._saved_ms = 0
        self._received: int | None = None
        self._received_clock: str | None = None
        self._received_floor: int | None = None
        self._raw = get_state(STATE_KEY, None)

    def restore(self, version: int) -> None:
        """Carry on the held time stored for lists of `version` (those in force at start);
        anything else stored (other lists, an unreadable entry) counts from now."""
        raw, self._raw = self._raw, None
        self._version = version
        if not isinstance(raw, dict) or raw.get("version") != version:
            return
        held, mono = raw.get("held_ms"), raw.get("mono")
        if not _count(held):
            return
        now = self._monotonic()
        held = carried_ms(held, mono, raw.get("boot") == self._boot, now)
        self._held_ms, self._mono, self._saved_ms = held, now, held
        received, clock, floor = raw.get("received"), raw.get("clock"), raw.get("floor")
        self._received = received if _count(received) else None
        self._received_clock = clock if isinstance(clock, str) else None
        self._received_floor = floor if _count(floor) else None

    def taken(self, version: int, received: tuple[int, str], reading: Reading) -> None:
        """New lists are in force: held from zero, received now (the node's clock and its
        source, for ops), with the lower bound on the time the node had then."""
        self._version = version
        self._held_ms, self._mono, self._saved_ms = 0, self._monotonic(), 0
        self._received, self._received_clock = received
        self._received_floor = reading.ms
        self.save(force=True)

    def renamed(self, version: int) -> None:
        """New lists with the same `issued` (a delta that keeps the validity: a revocation,
        no renewal): still the same word from dispatch, so the time held goes on (from
        zero, `issued` plus it would make lists a week old fresh for another week)."""
        self._version = version
        self.save(force=True)

    def held_ms(self) -> int:
        return self._held_ms + int((self._monotonic() - self._mono) * 1000)

    def age(self, lists: AccessLists, reading: Reading) -> Age:
        """The lists' age now, `reading` being the last trusted time's (`LastTrustedTime`)."""
        held = self.held_ms()
        issued, expires = _ms(lists.issued), _ms(lists.expires)
        bounds = [
            b
            for b in (
                reading.ms,
                None if issued is None else issued + held,
                None if self._received_floor is None else self._received_floor + held,
            )
            if b is not None
        ]
        floor = max(bounds) if bounds else None
        expired = expires is not None and floor is not None and floor > expires
        self.save()
        return Age(
            issued, expires, self._received, self._received_clock, held / 1000, floor, expired
        )

    def save(self, *, force: bool = False) -> None:
        """Store the held time when it moved `save_every_s` past the stored one."""
        if self._version is None:
            return
        held = self.held_ms()
        if not force and held - self._saved_ms < self._save_every_ms:
            return
        self._saved_ms = held
        state: dict[str, Any] = {
            "version": self._version,
            "held_ms": held,
            "mono": round(self._monotonic(), 3),
            "boot": self._boot,
        }
        extra = {
            "received": self._received,
            "clock": self._received_clock,
            "floor": self._received_floor,
        }
        self._set_state(STATE_KEY, state | {k: v for k, v in extra.items() if v is not None})


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

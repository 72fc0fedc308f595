"""Live and backlog lanes by age: what was written in the last `live_window_s` goes first.

Within a priority class the uplink sends the live lane (rows committed within the window)
before the backlog (older rows), each in write order. Age, not "written during this MQTT
session": on a link that drops every minute, a session-based live lane would turn every
new tap into backlog at the next reconnect, behind everything queued before it.

Age is measured on the monotonic clock at commit, so a clock step does not reorder lanes;
rows from before this start count as backlog. Which rows were handed to the uplink in the
current session is kept as a few id intervals per class, so a row is never handed out
twice in one session even when it moves from the live lane to the backlog meanwhile.
The event loop records commits and sessions, the outbox's thread reads: one lock.
"""

import threading
import time
from collections import deque
from collections.abc import Callable


class Lanes:
    def __init__(self, window_s: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.monotonic = monotonic
        self._base = 0  # newest id known to be older than the window
        self._commits: deque[tuple[float, int]] = deque()  # (when, last id) per commit
        self._taken: dict[int, list[list[int]]] = {}  # prio -> sorted [lo, hi] id intervals
        self._lock = threading.Lock()
        self.session = 0  # a fetch that began in an earlier session records nothing

    def start(self, last_id: int) -> None:
        """At open: everything already stored is backlog."""
        with self._lock:
            self._base = last_id
            self._commits.clear()

    def committed(self, last_id: int) -> None:
        """Rows up to `last_id` were just committed. Commits older than the window are
        forgotten here too, not only when the uplink reads (`boundary`): offline for days,
        the node commits every second or so and nothing reads, and the deque grew by
        ~100 bytes a commit (10 MB a day) until the link came back."""
        now = self.monotonic()
        with self._lock:
            self._commits.append((now, last_id))
            self._age(now - self.window_s)

    def boundary(self) -> int:
        """Rows with an id above this are live."""
        horizon = self.monotonic() - self.window_s
        with self._lock:
            self._age(horizon)
            return self._base

    def _age(self, horizon: float) -> None:
        """Commits made at `horizon` or before are backlog now (call with the lock held)."""
        commits = self._commits
        while commits and commits[0][0] <= horizon:
            self._base = max(self._base, commits.popleft()[1])

    def reset(self) -> None:
        """A new session: nothing has been handed out in it yet."""
        with self._lock:
            self._taken.clear()
            self.session += 1

    def gaps(self, prio: int, lo: int, hi: int | None) -> list[tuple[int, int | None]]:
        """Id ranges (after, upto] within (lo, hi] not handed out yet; upto None: no end."""
        out: list[tuple[int, int | None]] = []
        after = lo
        with self._lock:
            for a, b in self._taken.get(prio, []):
                if hi is not None and a >= hi:
                    break
                if b <= after:
                    continue
                if a > after:
                    out.append((after, a))
                after = b
        if hi is None or after < hi:
            out.append((after, hi))
        return out

    def take(self, prio: int, after: int, upto: int, session: int) -> None:
        """Ids in (after, upto] are handed out (or do not exist) in `session`."""
        if upto <= after:
            return
        with self._lock:
            if session != self.session:
                return
            intervals = [*self._taken.get(prio, []), [after, upto]]
            intervals.sort()
            merged: list[list[int]] = []
            for a, b in intervals:
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            self._taken[prio] = merged

"""Live and backlog lanes by age: what was written in the last `live_window_s` goes first.

Within a priority class the uplink sends the live lane (rows committed within the window)
before the backlog (older rows), each in write order. Age, not "written during this MQTT
session": on a link that drops every minute, a session-based live lane would turn every
new tap into backlog at the next reconnect, behind everything queued before it.

Age is measured on the monotonic clock at commit, so a clock step does not reorder lanes;
rows from before this start count as backlog. Which rows were handed to the uplink in the
current session is kept as a few id intervals per class, so a row is never handed out
twice in one session even when it moves from the live lane to the backlog meanwhile.
"""

import time
from collections import deque
from collections.abc import Callable, Iterator


class Lanes:
    def __init__(self, window_s: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.monotonic = monotonic
        self._base = 0  # newest id known to be older than the window
        self._commits: deque[tuple[float, int]] = deque()  # (when, last id) per commit
        self._taken: dict[int, list[list[int]]] = {}  # prio -> sorted [lo, hi] id intervals

    def start(self, last_id: int) -> None:
        """At open: everything already stored is backlog."""
        self._base = last_id
        self._commits.clear()

    def committed(self, last_id: int) -> None:
        """Rows up to `last_id` were just committed."""
        self._commits.append((self.monotonic(), last_id))

    def boundary(self) -> int:
        """Rows with an id above this are live."""
        horizon = self.monotonic() - self.window_s
        while self._commits and self._commits[0][0] <= horizon:
            self._base = max(self._base, self._commits.popleft()[1])
        return self._base

    def reset(self) -> None:
        """A new session: nothing has been handed out in it yet."""
        self._taken.clear()

    def gaps(self, prio: int, lo: int, hi: int | None) -> Iterator[tuple[int, int | None]]:
        """Id ranges (after, upto] within (lo, hi] not handed out yet; upto None: no end."""
        after = lo
        for a, b in self._taken.get(prio, []):
            if hi is not None and a >= hi:
                break
            if b <= after:
                continue
            if a > after:
                yield after, a
            after = b
        if hi is None or after < hi:
            yield after, hi

    def take(self, prio: int, after: int, upto: int) -> None:
        """Ids in (after, upto] are handed out (or do not exist)."""
        if upto <= after:
            return
        intervals = self._taken.setdefault(prio, [])
        intervals.append([after, upto])
        intervals.sort()
        merged: list[list[int]] = []
        for a, b in intervals:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._taken[prio] = merged

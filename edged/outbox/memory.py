"""Messages the disk refused, kept in memory and sent while the link holds.

When a commit fails (a full disk, a failing SD card, a page gone bad) the messages of that
batch cannot be made durable, but they are not thrown away: they wait here and go out with
the live lane of their class. Once the disk takes writes again, the first commit that
succeeds stores them in the outbox (`Outbox._store_again`) and they leave memory. They are lost
if the process stops before either; their callers were told so (`NotDurableError`), and
`alarm/outbox_full` says the disk refuses writes. Bounded: past `max_rows` the oldest of
the lowest class goes first; a latest-only topic (retained state, health) keeps only its
newest message.

The event loop adds and acknowledges, the outbox's thread hands out: each method holds the
lane's lock.
"""

import threading

from edged.outbox.publication import Stored
from edged.topics import Priority, urgent

MAX_ROWS = 2000


class MemoryLane:
    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._rows: dict[int, Stored] = {}
        self._latest_only: set[int] = set()
        self._handed: set[int] = set()
        self._next_id = -1  # negative: never an outbox row id
        self.dropped = 0
        self._lock = threading.Lock()
        self.session = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, msg: Stored, *, latest_only: bool) -> int:
        """Keep `msg` (its id is replaced by a negative one, returned)."""
        with self._lock:
            return self._add(msg, latest_only)

    def holds(self, mids: list[int]) -> bool:
        """Whether any of these messages is still here (not acknowledged, not pushed out)."""
        with self._lock:
            return any(mid in self._rows for mid in mids)

    def has_urgent(self) -> bool:
        """Whether an alarm a person raised (`edged.topics.urgent`) is here."""
        with self._lock:
            return any(urgent(m.priority, m.topic) for m in self._rows.values())

    def drop(self, mids: list[int]) -> None:
        """These messages are stored in the outbox now: it sends them from there."""
        with self._lock:
            for mid in mids:
                self._forget(mid)

    def _add(self, msg: Stored, latest_only: bool) -> int:
        if latest_only:
            for old_id in [i for i in self._latest_only if self._rows[i].topic == msg.topic]:
                if old_id not in self._handed:
                    self._forget(old_id)
                    if msg.priority == Priority.SAMPLE:  # a sample lost, not a state replaced
                        self.dropped += 1
        mid, self._next_id = self._next_id, self._next_id - 1
        self._rows[mid] = Stored(
            mid,
            msg.topic,
            msg.payload,
            msg.qos,
            msg.retain,
            msg.correlation,
            msg.size,
            msg.priority,
            live=True,
        )
        if latest_only:
            self._latest_only.add(mid)
        while len(self._rows) > self.max_rows:
            victim = max(self._rows.values(), key=lambda m: (m.priority, -abs(m.id)))
            self._forget(victim.id)
            self.dropped += 1
        return mid

    def take(self, prio: int, limit: int, session: int) -> list[Stored]:
        """Up to `limit` messages of class `prio` not handed out in `session` (the current
        one, else nothing), oldest first."""
        out: list[Stored] = []
        with self._lock:
            if session != self.session:
                return out
            for mid, msg in self._rows.items():
                if len(out) >= limit:
                    break
                if msg.priority == prio and mid not in self._handed:
                    self._handed.add(mid)
                    out.append(msg)
        return out

    def ack(self, mid: int) -> None:
        with self._lock:
            self._forget(mid)

    def reset(self) -> None:
        """A new session: what was handed out and not acknowledged goes again."""
        with self._lock:
            self._handed.clear()
            self.session += 1

    def _forget(self, mid: int) -> None:
        self._rows.pop(mid, None)
        self._latest_only.discard(mid)
        self._handed.discard(mid)

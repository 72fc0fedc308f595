"""Samples gathered into one message: what a position costs on a cellular SIM.

A position alone is about 105 bytes deflated, and its publish another ~35 of MQTT and TLS
framing; in a message of ten, each costs about 45 (deflate finds the keys, the epoch and
most digits in the one before it, and the framing is paid once). So the drain puts the
samples (`Priority.SAMPLE`: `position`, `vehicle`) of one topic into one publish whose
payload is a JSON list, a *batch* (docs/topics.md): every message in it exactly as it would
have gone alone, in `seq` order. Every edged reader takes a batch as its messages.

- A backlog (rows left by a dead zone or a restart) goes in batches at once: nothing waits.
- A live sample waits at most `batch_s` for the next ones of its topic (`[broker] batch_s`;
  0: it goes at once, alone unless others are already there).
- A batch holds at most `batch_max` messages (1: never batch) and `MAX_BATCH_BYTES` of JSON,
  less when the broker's Maximum Packet Size (MQTT 5 CONNACK) leaves less room (`room`): a
  batch of samples is never built too large for the broker, so only a sample too large on
  its own is held back (`edged.uplink.sender`).

Nothing else is batched: an event, an alarm, a reply, a retained or latest-only message
goes by itself, as fast as before. A row stays in the outbox until the publish that carries
it is acknowledged (PUBACK, or written for QoS 0); a session that ends with a batch held or
unacknowledged leaves its rows to the next session, as for any message.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edged.outbox import Stored
from edged.topics import Priority

MAX_BATCH_BYTES = 32 * 1024
"""JSON bytes in one batch at most: a few hundred positions, far below any broker's limit."""
OUTBOX_SHARE_MAX_S = 10.0


def outbox_share(batch_s: float) -> float:
    """Of the `batch_s` a live sample may wait, how long it waits in the outbox for others
    to share its commit (`Outbox.sample_gather_s`: each commit writes whole pages to the SD
    card); the drain waits the rest, so a sample still goes within `batch_s` of its put."""
    return min(batch_s / 2, OUTBOX_SHARE_MAX_S)


@dataclass(slots=True)
class Batch:
    """Messages of one topic, QoS and lane that will go in one publish."""

    topic: str
    qos: int
    live: bool
    due: float  # loop time at which it goes, full or not
    cap: int = MAX_BATCH_BYTES  # JSON bytes it may hold
    messages: list[Stored] = field(default_factory=list)
    size: int = 2  # the JSON list's brackets, then each payload and its comma

    def payload(self) -> bytes:
        """The stored JSON payloads as one JSON list (a lone message goes as itself)."""
        if len(self.messages) == 1:
            return self.messages[0].payload
        return b"[" + b",".join(m.payload for m in self.messages) + b"]"


class Batcher:
    """Gathers the samples the drain reads; says which batches are due and when the next is."""

    def __init__(self, batch_s: float, batch_max: int, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self.batch_s = batch_s
        self.batch_max = batch_max
        self.max_bytes = max_bytes
        self.room: Callable[[str, int], int] | None = None
        """JSON bytes the publish of a batch of (topic, QoS) has room for, when the broker
        limits a packet's size (set per session; None: `max_bytes`)."""
        self._open: dict[tuple[str, int, bool], Batch] = {}
        self._ready: deque[Batch] = deque()
        self.held = 0  # messages gathered and not yet handed out

    def takes(self, msg: Stored) -> bool:
        """Whether `msg` may share a publish with others of its topic."""
        return (
            self.batch_max > 1
            and msg.priority == Priority.SAMPLE
            and not msg.retain
            and msg.correlation is None
        )

    @property
    def ready(self) -> int:
        """Batches full (or closed by size) and waiting only for room in the window."""
        return len(self._ready)

    def add(self, msg: Stored, now: float) -> None:
        """Into its topic's open batch; a live message gives a new batch `batch_s` to wait."""
        key = (msg.topic, msg.qos, msg.live)
        batch = self._open.get(key)
        if batch is not None and batch.size + len(msg.payload) + 1 > batch.cap:
            self._close(key, batch)
            batch = None
        if batch is None:
            due = now + self.batch_s if msg.live else now
            cap = self.max_bytes
            if self.room is not None:
                cap = min(cap, self.room(msg.topic, msg.qos))
            batch = self._open[key] = Batch(msg.topic, msg.qos, msg.live, due, cap)
        batch.messages.append(msg)
        batch.size += len(msg.payload) + 1
        self.held += 1
        if len(batch.messages) >= self.batch_max:
            self._close(key, batch)

    def _close(self, key: tuple[str, int, bool], batch: Batch) -> None:
        del self._open[key]
        self._ready.append(batch)

    def put_back(self, batch: Batch) -> None:
        """A batch handed out but not sent (split: its second half), to go first again."""
        self._ready.appendleft(batch)
        self.held += len(batch.messages)

    def take(self, now: float, most: int) -> list[Batch]:
        """Up to `most` batches that must go now: full ones first, then those due."""
        out: list[Batch] = []
        while self._ready and len(out) < most:
            out.append(self._ready.popleft())
        if len(out) < most:
            for key, batch in list(self._open.items()):
                if batch.due <= now:
                    del self._open[key]
                    out.append(batch)
                    if len(out) >= most:
                        break
        self.held -= sum(len(b.messages) for b in out)
        return out

    def hurry(self) -> None:
        """No sample waits for company from now on, those waiting included: the node is
        stopping, and what it can send goes before it says `offline`."""
        self.batch_s = 0.0
        for batch in self._open.values():
            batch.due = 0.0

    def next_due(self) -> float | None:
        """When the earliest open batch is due; None when nothing waits."""
        return min((b.due for b in self._open.values()), default=None)

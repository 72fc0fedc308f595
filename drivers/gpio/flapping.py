"""A door contact that changes faster than a door can move is flapping, not a door.

A loose reed wire on a vibrating bus makes and breaks for seconds, each level lasting longer
than any debounce (60–120 ms seen): every change would be a door event, a QoS 1 message,
and with `door_cycles` a passenger. A real door cannot open and close more than about once
a second (a bus door takes 1–3 s each way, a swing door half a second at the very least),
so at most about two changes a second, three in any one-second window. `FLAP_CHANGES` (4)
changes within `FLAP_WITHIN_S` (1 s) — each level lasting a third of a second on average —
is twice that ceiling: the contact is declared flapping. From then on nothing is reported
until it has been steady for `FLAP_STEADY_S` (2 s: twice the window, some twenty times the
levels a flapping wire shows), and then its settled level once, dated when it began, if it
differs from the last one reported. A door opened and closed quickly (two changes, even a
slammed door bouncing once on its frame) is reported as before.

The cost: the first three changes of a flap go out before it can be told from a door, and
a real door that moves while its contact flaps is reported only once it is steady.

Pure: debounced changes in, reports out, the caller brings the clock and the timer (the
board feeds it on the event loop, as it does the beam machine).
"""

from collections import deque
from dataclasses import dataclass

FLAP_CHANGES = 4
FLAP_WITHIN_S = 1.0
FLAP_STEADY_S = 2.0
EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Report:
    """Tell the services: the contact is at `value` since `ts`."""

    value: bool
    ts: float


@dataclass(frozen=True, slots=True)
class Flapping:
    """The contact began flapping at `ts`: reports stop until it is steady."""

    ts: float


@dataclass(frozen=True, slots=True)
class Steady:
    """The contact has not changed since `ts`, `steady_s` ago: reports resume."""

    ts: float


FlapOutput = Report | Flapping | Steady


class FlapGuard:
    """Debounced changes of one contact in, in time order; what to report out."""

    def __init__(
        self,
        value: bool,
        *,
        changes: int = FLAP_CHANGES,
        within_s: float = FLAP_WITHIN_S,
        steady_s: float = FLAP_STEADY_S,
    ) -> None:
        if changes < 2 or within_s <= 0 or steady_s <= 0:
            raise ValueError("need changes >= 2, within_s > 0, steady_s > 0")
        self.changes = changes
        self.within_s = within_s
        self.steady_s = steady_s
        self.reported = value  # what the services were last told
        self.level = value  # the debounced level now
        self.flapping = False
        self._recent: deque[float] = deque()  # times of the last changes reported
        self._last_change = 0.0

    def change(self, value: bool, ts: float) -> list[FlapOutput]:
        """A debounced change of the contact, dated when it began."""
        if value == self.level:
            return []
        self.level = value
        self._last_change = ts
        if self.flapping:
            return []
        recent = self._recent
        recent.append(ts)
        while recent and recent[0] < ts - self.within_s - EPSILON:
            recent.popleft()
        if len(recent) >= self.changes:
            self.flapping = True
            recent.clear()
            return [Flapping(ts)]
        self.reported = value
        return [Report(value, ts)]

    def next_deadline(self) -> float | None:
        """When `advance` next has something to do: the end of a flap, if it stays steady."""
        return self._last_change + self.steady_s if self.flapping else None

    def advance(self, now: float) -> list[FlapOutput]:
        """Let time pass: a flapping contact steady for steady_s reports its level."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline - EPSILON:
            return []
        self.flapping = False
        out: list[FlapOutput] = [Steady(self._last_change)]
        if self.level != self.reported:
            self.reported = self.level
            out.append(Report(self.level, self._last_change))
        return out

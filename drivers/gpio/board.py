"""`gpio.gpiozero`: door contacts, counting beams, panic button, ignition sense, the lock
relay, LEDs and buzzer of one node, on the Pi's GPIO header through gpiozero.

Inputs: gpiozero calls `pin.when_changed` in its own thread (lgpio's alert thread, RPi.GPIO's
edge thread; the caller's thread for MockFactory). That callback only takes
`time.monotonic()` and hops to the event loop (`call_soon_threadsafe`); everything else —
debouncing, the door flap guard, the panic hold, the beam direction machine — runs on
the loop, which owns their timers and their state, so there are no locks. Events go out
with `ctx.emit` from there. One hop per edge costs tens of µs; doors and beams make a few
edges a second. An input storming (`EDGE_STORM`) is handed over every `STORM_POLL_S` instead,
at the level it was at most of that time, until it is quiet (`_EdgeGate`).

Debouncing is done here, not with gpiozero's `bounce_time`: its meaning depends on the pin
factory (lgpio: the level must be stable that long; RPi.GPIO: edges are ignored that long
after one, which can lose the final level; MockFactory: not implemented), so it could not
be tested and would change with the Pi model. Here a change, from its first edge away from
the level last reported, is decided by whichever comes first:

- the line steady at one level for `bounce_s`: a clean edge is confirmed `bounce_s` after
  it, a bounce that settles at the latest `bounce_s` after its last edge;
- the line having been at one level `bounce_s` longer than at the other since the change
  began: a worn or oxidised contact that makes and breaks every few ms for as long as it
  is held (5-15 ms made, 1-5 ms broken) is never steady `bounce_s`, yet is mostly made; a
  panic press like that is confirmed in some 35 ms (20 ms debounce), a door in some 95 ms.

At the new level the change counts, dated at its first edge; back at the old level it was
noise. Spikes shorter than `bounce_s` (EMI on a long cable) stay noise however many come,
as long as each is shorter than the gap after it: they never lead by `bounce_s`. The levels
between edges are those gpiozero passes with them; when a decision falls due the pin is
read, and if it disagrees (gpiozero warns the level passed may be stale; an edge can be
lost) the stretch it contradicts counts for neither level and nothing is decided then.

Outputs: see drivers.gpio.outputs (loop timers, safe state). Unlock and Feedback arrive by
`ctx.subscribe` on the loop thread and write the pin before returning: measured on
MockFactory, an Unlock reaches the relay pin in a few µs.

Start and stop: the current state of every door and of the ignition is emitted once the
pins are open, so services know it without waiting for a change, and a panic button that
is up is reported released (`PanicInput(False)`: one let go while the driver was down);
one down begins its hold; then `ready`. The outputs are opened
first, at rest, so a start that fails on an input still puts a relay left energised (a
killed daemon: the kernel keeps a released output's level) at rest. However the driver ends
(cancelled, failed), the relay is de-energised and the buzzer and LEDs turned off before
the pins are released. With `pin_factory = "mock"`, the levels a test or
the rig drove on the inputs are kept across a restart, as the outside circuit would keep
them (a MockPin drives itself to its pull when opened or closed), so a restarted driver
does not see every door open.

Wiring note: after the daemon exits, and while the Pi boots, the pins are inputs. The lock
relay's driver must stay off when its pin floats (a pull-down on an active-high driver;
active-low relay boards have their own pull-up), or the door opens when edged stops. The
relay only lets people in: egress must not depend on it (docs/drivers.md, "Lock relay
policy").
"""

import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast, get_args

from gpiozero import LED, Buzzer, Device, InputDevice, OutputDevice
from gpiozero.exc import BadPinFactory, GPIOPinInUse

from core.driver import DriverContext, DriverOptions, Opens
from core.errors import DriverError
from core.events import (
    COUNT_DOUBTS,
    DOOR_HEARD,
    CountDoubt,
    CountDoubtName,
    CountDoubtsHeld,
    Crossing,
    DoorInput,
    Feedback,
    FeedbackPattern,
    IgnitionInput,
    PanicInput,
    Unlock,
    VehicleDoorStatus,
    VehicleDoorUnheard,
)
from core.logs import flood_key
from drivers.gpio import candoor
from drivers.gpio.beams import (
    Beam,
    BeamCounter,
    Glitch,
    Moving,
    OneSided,
    Output,
    Passage,
    RestsBlocked,
    RestsClear,
    Stuck,
)
from drivers.gpio.candoor import CanDoor, Verdict
from drivers.gpio.flapping import FlapGuard, FlapOutput, Flapping, Report, Steady
from drivers.gpio.options import BeamPair, DoorContact, GpioOptions, PanicButton, Pull
from drivers.gpio.outputs import INDICATORS, Indicator, Indicators, LockRelay
from drivers.gpio.pins import name

if TYPE_CHECKING:  # the mock pins and their control socket: only with pin_factory = "mock"
    from gpiozero.pins.mock import MockFactory

    from drivers.gpio.mockwire import MockWire

log = logging.getLogger(__name__)

PULL_UP: dict[Pull, bool | None] = {"up": True, "down": False, "none": None}
FEEDBACK_PATTERNS = frozenset(get_args(FeedbackPattern))

EDGE_STORM = 500
"""Edges in one second on one input beyond which it is storming: a floating line (a cut
cable on a pin with `pull = "none"`), a receiver oscillating at its threshold, a worn
contact chattering at kHz. A door, a beam or a button makes a few changes a second, each
with at most a few dozen bounce edges; a storm makes thousands, each a hop to the loop
(~8 µs on a PC, several times that on a Pi Zero 2 W: a 10 kHz storm would take a core
from the taps and the uplink)."""
STORM_POLL_S = 0.25
"""While an input storms, its edges stay in gpiozero's thread, which only adds up how long
the line was at each level; the loop is handed, this often, the level it was at most of
that time (a worn panic button held down chattering is pressed, whatever instant one
would read). It is quiet again once a poll finds fewer edges since the last than a tenth
of the storm rate."""


class _EdgeGate:
    """One input's edges from gpiozero's thread to the loop, with a storm brake. The
    counters are plain values shared by the two threads (the GIL keeps each update whole;
    a race misplaces one edge's time, which changes nothing)."""

    def __init__(self, board: "_Board", role: str, handler: Callable[[int, float], None]) -> None:
        self.board = board
        self.role = role
        self.handler = handler
        self.window = 0.0  # the second being counted began then
        self.edges = 0  # in that second
        self.storming = False
        self.dropped = 0  # edges kept from the loop since the last poll
        self.state = 0  # the level of the last edge (storming)
        self.at = 0.0  # the time of the last edge, or of the last poll (storming)
        self.high = 0.0  # seconds at each level since the last poll (storming)
        self.low = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def changed(self, ticks: float, state: int) -> None:  # gpiozero's thread
        ts = time.monotonic()
        if self.storming:
            self._spent(ts)
            self.dropped += 1
            if state in (0, 1):
                self.state = state
            return
        if ts - self.window >= 1.0:
            self.window, self.edges = ts, 0
        self.edges += 1
        board = self.board
        with contextlib.suppress(RuntimeError):  # loop closed: the driver is gone
            if self.edges > EDGE_STORM:
                self.state = state if state in (0, 1) else int(bool(self.state))
                self.at, self.high, self.low, self.dropped = ts, 0.0, 0.0, 0
                self.storming = True
                board.loop.call_soon_threadsafe(board._guarded, self._storm)
            else:
                board.loop.call_soon_threadsafe(board._guarded, self.handler, state, ts)

    def _spent(self, ts: float) -> None:
        """The line was at `state` from `at` to `ts`."""
        if self.state:
            self.high += ts - self.at
        else:
            self.low += ts - self.at
        self.at = ts

    def _storm(self) -> None:
        ctx = self.board.ctx
        ctx.count("edge_storm")
        ctx.log.warning(
            "%s: more than %d edges in a second, faster than any door, beam or button: a "
            "floating or oscillating line (a cut cable, a receiver at its threshold)? Its "
            "level is taken every %g s, as it was most of the time, until it is quiet "
            "(edge_storm)",
            self.role,
            EDGE_STORM,
            STORM_POLL_S,
            extra=flood_key(self.role),
        )
        self.timer = self.board.later(time.monotonic() + STORM_POLL_S, self._poll)

    def _poll(self) -> None:
        self.timer = None
        now = time.monotonic()
        self._spent(now)
        mostly = 1 if self.high > self.low else 0
        dropped, self.dropped, self.high, self.low = self.dropped, 0, 0.0, 0.0
        if dropped < EDGE_STORM * STORM_POLL_S / 10:
            self.window, self.edges = now, 0
            self.storming = False
            self.board.ctx.log.info("%s: quiet again", self.role, extra=flood_key(self.role))
            self.handler(2, now)  # quiet: the level now is the line's (2: read the pin)
            return
        self.handler(mostly, now)
        self.timer = self.board.later(now + STORM_POLL_S, self._poll)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(frozen=True, slots=True)
class PinUse:
    """A pin the board opened: what it is for, which way, gpiozero's pin object."""

    role: str
    direction: Literal["in", "out"]
    pin: Any


class _OutLine:
    """An output at the logical level (True = energised). Every call writes the pin (a
    safe-state "off" must not trust a cache); watchers (mockwire) hear of real changes,
    with the electrical level and the time of the write."""

    def __init__(self, device: OutputDevice, bcm: int, active_high: bool, board: "_Board") -> None:
        self.device = device
        self.bcm = bcm
        self.active_high = active_high
        self.board = board
        self.on = False

    def set(self, on: bool) -> None:
        if on:
            self.device.on()
        else:
            self.device.off()
        changed, self.on = on != self.on, on
        if changed and self.board.watchers:
            ts = time.monotonic()
            for watcher in list(self.board.watchers):
                watcher(self.bcm, on == self.active_high, ts)


class _Debounced:
    """A contact whose changes are debounced (the rule: the module docstring). `value` is
    the level last reported; a change being decided began at `began`, and `lead` is how
    much longer the line has been at the new level than back at the old one since then,
    up to `since`, when it went to `level`."""

    def __init__(
        self,
        board: "_Board",
        device: InputDevice,
        active_high: bool,
        bounce_s: float,
        report: Callable[[bool, float], None],
        *,
        mostly: bool = True,
    ) -> None:
        """`mostly`: the second rule (a level leading by bounce_s) decides too; without
        it only a steady level does, as for the ignition (`_Board`)."""
        self.board = board
        self.device = device
        self.active_high = active_high
        self.bounce_s = bounce_s
        self.report = report
        self.mostly = mostly
        self.value = self.read()
        self.level = self.value  # the line, as its edges tell
        self.since = 0.0  # at `level` since then
        self.began: float | None = None  # the first edge of the change being decided
        self.lead = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def read(self) -> bool:
        return bool(self.device.pin.state) == self.active_high

    def edge(self, state: int, ts: float) -> None:
        """An edge and the level gpiozero gave with it (lgpio: 2, no level, for a watchdog
        timeout: then read). A decision due before it is made first: the loop ran late."""
        level = bool(state) == self.active_high if state in (0, 1) else self.read()
        deadline = self.deadline()
        if deadline is not None and deadline <= ts:
            self._decide()
        self._move(level, max(ts, self.since))  # not before a stretch settle() began

    def deadline(self) -> float | None:
        """When the change being decided is decided if the line stays at `level`: steady
        bounce_s, or leading the other level by bounce_s, whichever comes first."""
        if self.began is None:
            return None
        if not self.mostly:
            return self.since + self.bounce_s
        return self.since + self.bounce_s - max(self._toward() * self.lead, 0.0)

    def _toward(self) -> float:
        """1 while the line is at the new level, -1 while it is back at the old one."""
        return 1.0 if self.level != self.value else -1.0

    def _move(self, level: bool, ts: float) -> None:
        if level == self.level:
            return
        if self.began is None:
            self.began, self.lead = ts, 0.0
        else:
            self.lead += self._toward() * (ts - self.since)
        self.level, self.since = level, ts
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.deadline()
        self.timer = None if deadline is None else self.board.later(deadline, self.settle)

    def settle(self) -> None:
        """The deadline: decide on `level` if the pin agrees. If not, an edge is on its way
        or was lost (gpiozero warns the level it passes may be stale): how long the line
        stayed at `level` is unknown, so that stretch counts for neither side."""
        self.timer = None
        if self.began is None:
            return
        level = self.read()
        if level != self.level:
            self.level, self.since = level, time.monotonic()
            self._arm()
            return
        self._decide()

    def _decide(self) -> None:
        """The line is at the new level (report it, dated at its first edge) or back at the
        old one (it was noise)."""
        began, self.began, self.lead = self.began, None, 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if began is not None and self.level != self.value:
            self.value = self.level
            self.report(self.level, began)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Door:
    """A door contact: debounced, then guarded against flapping; DoorInput events out."""

    def __init__(self, board: "_Board", options: DoorContact, device: InputDevice) -> None:
        self.board = board
        self.options = options
        self.contact = _Debounced(
            board, device, options.active_high, options.bounce_s, self.changed
        )
        self.guard = FlapGuard(
            self.contact.value,
            changes=options.flap_changes,
            within_s=options.flap_within_s,
            steady_s=options.flap_steady_s,
        )
        self.timer: asyncio.TimerHandle | None = None
        self.warned = False  # one warning per door and run; the counter counts every flap
        # what the services were told and since when (a gate for the door's beams)
        self.history: deque[tuple[float, bool]] = deque(
            [(float("-inf"), self.value)], maxlen=DOOR_HISTORY
        )
        self.opened: list[Callable[[], None]] = []  # its beams, told of each opening

    @property
    def value(self) -> bool:
        """Open, as the services were last told."""
        return self.guard.reported

    def open_between(self, start: float, end: float) -> bool:
        """Was the door open at some moment from `start` to `end` (as reported)? Yes while
        its contact flaps (it cannot tell), or before what the history remembers."""
        if self.guard.flapping or self.history[0][0] > start:
            return True
        was = self.history[0][1]
        for ts, is_open in self.history:
            if ts <= start:
                was = is_open
            elif ts <= end and is_open:
                return True
        return was

    def deciding(self, by: float) -> float | None:
        """When a change of the contact that began by `by` and is still being debounced
        (a reed chattering as the door is pushed open slowly) will be decided; None if none."""
        began = self.contact.began
        return None if began is None or began > by else self.contact.deadline()

    def verdict(self, start: float, end: float, now: float) -> "Verdict | float":
        """Was the door open at some moment from `start` to `end` (the grace around a
        walk)? "open" or "closed", or when to ask again: the contact reports a change a
        debounce after it began, and a change begun by `end` still being debounced (a reed
        chattering as the door is pushed open slowly) is waited for, `DOOR_GRACE_S` more at
        most (undecided then: "open", as while the contact flaps)."""
        due = end + self.options.bounce_s + 0.01
        pending = self.deciding(end)
        if self.open_between(start, now) or (pending is not None and now >= due + DOOR_GRACE_S):
            return "open"
        if now >= due and pending is None:
            return "closed"
        if pending is None or now < due:
            return due
        return min(max(pending, now) + 0.01, due + DOOR_GRACE_S)

    def changed(self, is_open: bool, ts: float) -> None:
        self.handle(self.guard.change(is_open, ts))

    def tick(self) -> None:
        self.timer = None
        self.handle(self.guard.advance(time.monotonic()))

    def handle(self, outputs: list[FlapOutput]) -> None:
        ctx, o = self.board.ctx, self.options
        for out in outputs:
            if isinstance(out, Report):
                self.history.append((out.ts, out.value))
                ctx.emit(DoorInput(o.name, out.value, out.ts))
                if out.value:
                    for opened in self.opened:
                        opened()
            elif isinstance(out, Flapping):
                ctx.count("door_flapping")
                if not self.warned:
                    ctx.log.warning(
                        "door %s: contact flapping (%d changes within %g s, faster than a "
                        "door moves): a loose wire or a worn reed contact? No door events "
                        "until it is steady %g s; further flaps are only counted "
                        "(door_flapping)",
                        o.name,
                        o.flap_changes,
                        o.flap_within_s,
                        o.flap_steady_s,
                        extra=flood_key(o.name),
                    )
            elif isinstance(out, Steady) and not self.warned:
                self.warned = True
                ctx.log.info(
                    "door %s: contact steady again, %s",
                    o.name,
                    "open" if self.value else "closed",
                    extra=flood_key(o.name),
                )
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.guard.next_deadline()
        if deadline is not None:
            self.timer = self.board.later(deadline, self.tick)

    def stop(self) -> None:
        self.contact.stop()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


DOOR_GRACE_S = 2.0
"""A walk through the beams of a door that has a contact counts only if the door was open
at some moment of it, give or take this: a rider who boards as the door closes behind them
clears the inner beam a second or so after it shut, and one leaving reaches the handle as
the contact opens. A walk wholly inside a closed door's time is no one going through it:
someone inside moving about the door, a hand waved through the beams."""
DOOR_HISTORY = 32
"""The door changes kept to judge walks by: far more than happen during one walk."""
SILENT_OPENINGS = 20
"""Openings of a door in a row with not one edge on either of its beams that report the
beams `beam_silent`. A pair that sees nothing makes no edge, and nothing else tells: a
receiver whose output reads clear however dark (unplugged where the wiring reads that as
clear, `active_high = false` with the pull-up; a shorted output), both beams on pins no
one wired. A door opens for someone going through it almost every time (a venue's door
closer, a bus at a stop with riders at that door); twenty in a row with no edge at all is
a dead pair far more often than twenty stops where nobody used the door."""
DOOR_SILENT_WALKS = 20
"""Walks through a door's beams in a row not counted because its contact read shut, with
no opening of the door between them, that report the contact `door_silent`. A contact
stuck shut (a reed whose magnet came off the door, a wire shorted to ground, a pin that
is not the door's) drops every walk at that door for ever: nobody is counted in or out,
and a venue's count never reaches its limit. Each walk is `beam_door_closed` with a
warning that may as well mean a hand waved through the beams; twenty with the door never
once reported open say the contact is the likelier fault, once, in words. Counting stays
gated: a hand waved twenty times must not open the gate."""

GATE_OPENINGS = 3
"""The door's last openings, and the walks judged by its contact since the first of them,
that say whether the contact reads the wrong way round: at least `GATE_SHUT` walks gated
shut, more than were let through. A contact whose `active_high` is the opposite of its
wiring (a reed wired NC where the config says NO) reads open while the door is shut and
shut while it is open: riders at each stop are dropped, bar those within `DOOR_GRACE_S` of
the door's moves, a hand waved while the door is really shut counts, and each reported
opening (its real closing) cleared the count `door_silent` keeps, so only the per-walk
warning said so. An honest door gates shut a hand, or someone inside moving about, now
and then: far fewer walks than it lets through while it keeps opening."""
GATE_SHUT = 10
GATE_SPREAD = 2
"""Of the times between those openings, how many must each have gated more walks shut than
they let through. Read the wrong way round, a contact drops the riders of each stop, in
the time that ends with its next (false) opening, so nearly every such time is one. Walks
gated shut all in one time are something else: a contact stuck shut (`door_silent`'s
fault: the dropped walks pile up after its last opening, and flipping `active_high` would
open the gate for good) or a night at the depot with a cleaner in the doorway."""

SERIES_PRESS_MIN_S = 0.1
"""A press counts towards `presses` once down this long: a deliberate jab lasts longer, a
knock from a bag or an elbow is shorter."""


class _Panic:
    """The panic button: debounced presses in, PanicInput out.

    A press begins at a debounced press and ends when the button has been up longer than
    `dropout_s`: a shorter drop-out (a worn contact on a bump) is inside the press, and so is
    a press back that began within it but is still being debounced (a chattering contact
    can take longer than bounce_s: `_dropout_over` waits for the decision). A press
    that lasts `hold_s` raises (PanicInput(True), dated when it began); so does the
    `presses`-th press within `presses_within_s` once it has been down
    SERIES_PRESS_MIN_S (dated when the first of them began). Each stretch down within a
    press counts as one of those presses: jabs quicker than `dropout_s` apart (a person
    taps 5-7 times a second at most) are one press for the hold, and each still a jab.
    A press that raised nothing is counted `panic_brush` when it ends; one that raised
    emits PanicInput(False) when it ends, dated when it was let go. A button up at the
    driver's start is reported PanicInput(False) too (`_Board.start`).
    """

    def __init__(self, board: "_Board", options: PanicButton, device: InputDevice) -> None:
        self.board = board
        self.options = options
        self.contact = _Debounced(
            board, device, options.active_high, options.bounce_s, self.changed
        )
        self.start: float | None = None  # the press going on began then; None: no press
        self.down = False  # the debounced contact
        self.segment: float | None = None  # down since then, within the press (drop-outs)
        self.released_at: float | None = None  # in a drop-out since then
        self.raised = False  # this press raised the alarm
        self.hold_due = False  # hold_s elapsed during a drop-out: raise if it comes back
        self.series: deque[float] = deque()  # starts of recent presses (the `presses` rule)
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def _set(self, which: str, when: float, callback: Callable[[], None]) -> None:
        self._cancel(which)
        self.timers[which] = self.board.later(when, self._fired, which, callback)

    def _fired(self, which: str, callback: Callable[[], None]) -> None:
        self.timers.pop(which, None)
        callback()

    def _cancel(self, which: str) -> None:
        timer = self.timers.pop(which, None)
        if timer is not None:
            timer.cancel()

    def changed(self, pressed: bool, ts: float) -> None:
        o = self.options
        self.down = pressed
        if pressed:
            if self.start is not None and self.released_at is not None:
                if ts - self.released_at <= o.dropout_s:  # a drop-out: the press goes on
                    self.released_at = None
                    self._cancel("dropout")
                    if self.hold_due:
                        self._raise(self.start)
                    elif o.presses and not self.raised:  # a quick jab again: one more
                        self.segment = ts
                        self._set("jab", ts + SERIES_PRESS_MIN_S, self._jab)
                    return
                self._end()  # up longer than a drop-out: that press ended, a new one begins
            if self.start is not None:
                return
            self.start = self.segment = ts
            self._set("hold", ts + o.hold_s, self._held)
            if o.presses:
                self._set("jab", ts + SERIES_PRESS_MIN_S, self._jab)
        elif self.start is not None and self.released_at is None:
            self.released_at = ts
            # a press back within dropout_s is confirmed bounce_s later at the soonest: wait
            self._set("dropout", ts + o.dropout_s + o.bounce_s + 0.001, self._dropout_over)

    def _dropout_over(self) -> None:
        """Up longer than dropout_s: the press ended, unless a press back that began in time
        is still being decided (a worn contact chattering takes longer than bounce_s)."""
        began, due = self.contact.began, self.contact.deadline()
        released = self.released_at
        if (
            released is not None
            and began is not None
            and due is not None
            and began - released <= self.options.dropout_s
        ):
            self._set("dropout", due + 0.001, self._dropout_over)
            return
        self._end()

    def _held(self) -> None:
        if self.start is None or self.raised:
            return
        if self.released_at is not None:
            self.hold_due = True  # let go just now: held only if it comes back in time
        else:
            self._raise(self.start)

    def _jab(self) -> None:
        o = self.options
        segment = self.segment
        if self.start is None or segment is None or self.raised or not self.down:
            return
        self.series.append(segment)
        while self.series and self.series[0] < segment - o.presses_within_s:
            self.series.popleft()
        if len(self.series) >= o.presses:
            self._raise(self.series[0])

    def _raise(self, ts: float) -> None:
        self.raised = True
        self.hold_due = False
        self.series.clear()  # another series after this one is "pressed again"
        self._cancel("hold")
        self._cancel("jab")
        self.board.ctx.emit(PanicInput(True, ts))

    def _end(self) -> None:
        """The press is over: it let go at `released_at` and stayed up."""
        released = self.released_at
        for timer in list(self.timers):
            self._cancel(timer)
        raised = self.raised
        self.start = self.released_at = self.segment = None
        self.raised = self.hold_due = False
        if raised:
            assert released is not None
            self.board.ctx.emit(PanicInput(False, released))
        else:
            self.board.ctx.count("panic_brush")

    def stop(self) -> None:
        self.contact.stop()
        for timer in list(self.timers):
            self._cancel(timer)


class _Doorway:
    """A pair of beams feeding the direction machine; Crossing events out.

    Where the board has a contact on the same door (`door` of the beams = `name` of the
    contact), or else the vehicle's bus reports a door of that name (`attach`,
    drivers/gpio/candoor.py), a walk counts only if that door was open at some moment of
    it, give or take `DOOR_GRACE_S`: one wholly inside the door's closed time is counted
    `beam_door_closed` and no Crossing. A walk that ends with the door closed waits until
    the grace is over (the contact may report the opening a debounce later, the bus with
    its next frame), and those after it wait with it, so Crossings keep their order."""

    def __init__(
        self,
        board: "_Board",
        options: BeamPair,
        outer: InputDevice,
        inner: InputDevice,
        door: "_Door | CanDoor | None" = None,
    ) -> None:
        self.board = board
        self.options = options
        self.devices = {"outer": outer, "inner": inner}
        self.door = door
        self.waiting: deque[Passage] = deque()  # walks not yet judged against the door
        self.gate_timer: asyncio.TimerHandle | None = None
        self.quiet_openings = 0  # of the door since the last edge of either beam
        self.silent = False  # reported beam_silent, no edge since
        self.shut_walks = 0  # walks not counted, the door shut, since it last opened
        self.door_silent = False  # reported door_silent, the door not opened since
        # walks judged by a contact, [shut, let through], since each of its last openings
        self.gated: deque[list[int]] = deque([[0, 0]], maxlen=GATE_OPENINGS + 1)
        self.gate_doubt = False  # reported the contact the wrong way round, not cleared
        # findings that make this pair's count unreliable while they last (`CountDoubt`)
        self.doubts: set[CountDoubtName] = set()
        self.stuck_beams: set[Beam] = set()  # reported Stuck and still blocked
        self.silent_beams: set[Beam] = set()  # reported OneSided, not Moving since
        if door is not None:
            door.opened.append(self.door_opened)
        self.counter = BeamCounter(
            options.min_block_s,
            options.max_transit_s,
            outer_blocked=self.read("outer"),
            inner_blocked=self.read("inner"),
            now=time.monotonic(),
        )
        self.timer: asyncio.TimerHandle | None = None

    def read(self, beam: Literal["outer", "inner"]) -> bool:
        return bool(self.devices[beam].pin.state) == self.options.active_high

    def doubt(self, finding: CountDoubtName, doubted: bool) -> None:
        """A finding of this pair began or cleared: the board tells the services when the
        door's count is doubted or no longer is (`CountDoubt`)."""
        if doubted == (finding in self.doubts):
            return
        if doubted:
            self.doubts.add(finding)
        else:
            self.doubts.discard(finding)
        self.board.doubt_changed(self.options.door, finding)

    def restore(self, findings: set[str]) -> None:
        """Findings held from before this start (`CountDoubtsHeld`), taken as reported
        again, so that each clears as it does when found in this run: a beam stuck
        blocked when it is clear (at once, if it is clear now); a beam stuck clear when
        both beams have moved (which was silent is not known); a pair resting blocked once
        it rested clear `max_transit_s`; dead beams at their next edge; a contact (or a
        door on the vehicle's bus, not heard yet in this start) stuck shut at the door's
        next opening, or a walk let through while no door gates the pair; one read the
        wrong way round once walks counted outnumber those dropped, over its last openings
        (those of before this start taken as `GATE_SHUT` dropped, until they leave the
        window: `GATE_OPENINGS` + 1 openings)."""
        if "beam_stuck" in findings and not self.stuck_beams:
            self.stuck_beams = {b for b in ("outer", "inner") if self.counter.blocked(b)}
            if self.stuck_beams:
                self.doubt("beam_stuck", True)
        if "beam_one_sided" in findings and not self.silent_beams:
            self.counter.restore(one_sided=True)
            self.silent_beams = {"outer", "inner"}
            self.doubt("beam_one_sided", True)
        if "beam_rests_blocked" in findings and "beam_rests_blocked" not in self.doubts:
            self.counter.restore(rests_blocked=True)
            self.doubt("beam_rests_blocked", True)
        if "beam_silent" in findings and not self.silent:
            self.silent = True
            self.doubt("beam_silent", True)
        if "door_silent" in findings and not self.door_silent:
            # a pair with no door now too: one on the vehicle's bus is not heard yet (its
            # first frame attaches it); a walk let through ungated meanwhile clears it
            self.door_silent = True
            self.doubt("door_silent", True)
        if "door_gate_inverted" in findings and isinstance(self.door, _Door):
            if not self.gate_doubt:  # the walks dropped before the stop, as GATE_SHUT of
                self.gated[-1][0] += GATE_SHUT  # them: one walk counted does not clear it
            self.gate_doubt = True
            self.doubt("door_gate_inverted", True)
        self.handle([])  # the counter's next deadline may be a rest clear now

    def edge(self, beam: Literal["outer", "inner"], state: int, ts: float) -> None:
        # lgpio reports 2 for a watchdog timeout: no level, so read it
        blocked = bool(state) == self.options.active_high if state in (0, 1) else self.read(beam)
        self.quiet_openings = 0
        if self.silent:
            self.silent = False
            self.doubt("beam_silent", False)
            self.board.ctx.log.info(
                "door %s: the beams change again",
                self.options.door,
                extra=flood_key(self.options.door),
            )
        self.handle(self.counter.feed(beam, blocked, ts))

    def tick(self) -> None:
        self.timer = None
        self.handle(self.counter.advance(time.monotonic()))

    def handle(self, outputs: list[Output]) -> None:
        ctx, door = self.board.ctx, self.options.door
        for out in outputs:
            if isinstance(out, Passage):
                self.waiting.append(out)
                self.judge()
            elif isinstance(out, Glitch):
                ctx.count("beam_glitch")
            elif isinstance(out, Stuck):
                ctx.count("beam_stuck")
                self.stuck_beams |= set(out.blocked) or {
                    b for b in ("outer", "inner") if self.counter.blocked(b)
                }
                self.doubt("beam_stuck", True)
                ctx.log.warning(
                    "door %s: %s beam blocked for %g s: dirty or misaligned, or someone "
                    "standing in the door (who counts if they walk on; a beam stuck blocked "
                    "counts nobody crossing the other)",
                    door,
                    " and ".join(out.blocked) or "a",
                    self.options.max_transit_s,
                    extra=flood_key(door),
                )
            elif isinstance(out, OneSided):
                ctx.count("beam_one_sided")
                self.silent_beams.add(out.silent)
                self.doubt("beam_one_sided", True)
                ctx.log.warning(
                    "door %s: %d back-outs in a row on the %s beam and no change at all on "
                    "the %s beam: is the %s receiver stuck clear (seeing light whatever is in "
                    "the way: misaligned onto a reflection, a shorted output)? Nobody can be "
                    "counted until it works",
                    door,
                    out.backouts,
                    out.active,
                    out.silent,
                    out.silent,
                    extra=flood_key(door),
                )
            elif isinstance(out, Moving):
                ctx.log.info(
                    "door %s: the %s beam changes again", door, out.beam, extra=flood_key(door)
                )
                self.silent_beams.discard(out.beam)
                if not self.silent_beams:
                    self.doubt("beam_one_sided", False)
            elif isinstance(out, RestsBlocked):
                ctx.count("beam_rests_blocked")
                self.doubt("beam_rests_blocked", True)
                ctx.log.warning(
                    "door %s: %d times in a row both beams stayed blocked %g s, clearing only "
                    "for moments between: are the receivers' outputs the opposite of the "
                    "config's (dark-on or NC where it says light-on or NO: set active_high = "
                    "%s)? Then the pair reads blocked at rest and each rider as a moment "
                    "clear, and the count is nonsense. Or riders stand in the doorway from "
                    "stop to stop, or one after another (beam_rests_blocked)",
                    door,
                    out.rests,
                    self.options.max_transit_s,
                    "false" if self.options.active_high else "true",
                    extra=flood_key(f"{door} rests"),
                )
            elif isinstance(out, RestsClear):
                ctx.log.info(
                    "door %s: the beams rest clear again", door, extra=flood_key(f"{door} rests")
                )
                self.doubt("beam_rests_blocked", False)
        if self.stuck_beams and not any(self.counter.blocked(b) for b in self.stuck_beams):
            self.stuck_beams.clear()  # what was stuck is clear: the pair counts again
            self.doubt("beam_stuck", False)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.counter.next_deadline()
        if deadline is not None:
            self.timer = self.board.later(deadline, self.tick)

    def door_opened(self) -> None:
        """The door opened: twenty times with not one edge on the beams is a dead pair."""
        self.counter.door_opened()
        self.shut_walks = 0
        self.gated.append([0, 0])
        if self.door_silent:
            self.door_silent = False
            self.doubt("door_silent", False)
            self.board.ctx.log.info(
                "door %s: it opens again",
                self.options.door,
                extra=flood_key(self.options.door),
            )
        self.quiet_openings += 1
        if self.quiet_openings == SILENT_OPENINGS and not self.silent:
            self.silent = True
            self.doubt("beam_silent", True)
            self.board.ctx.count("beam_silent")
            self.board.ctx.log.warning(
                "door %s: opened %d times in a row and not one edge on either beam: are the "
                "beams dead (a receiver that reads clear however dark: unplugged with "
                "active_high = false, a shorted output; pins nobody wired)? Nobody is "
                "counted at this door (beam_silent)",
                self.options.door,
                SILENT_OPENINGS,
                extra=flood_key(self.options.door),
            )

    def attach(self, door: CanDoor) -> None:
        """Gate the beams by a door the vehicle's bus reports (no contact of that name)."""
        self.door = door
        door.opened.append(self.door_opened)
        door.heard.append(self.heard)

    def heard(self) -> None:
        """A frame of the door's status: a walk waiting for one is judged now."""
        if self.waiting:
            self.judge()

    def judge(self) -> None:
        """Let through, in order, the walks the door was open for; count those it was
        closed for all along; wait for the rest. A door on the CAN bus that did not say
        (`unknown`: status error or not available; `unheard`: the bus quiet) lets the walk
        through, counted and reported: a door nobody sees must not drop every rider."""
        if self.gate_timer is not None:
            self.gate_timer.cancel()
            self.gate_timer = None
        ctx, name_ = self.board.ctx, self.options.door
        now = time.monotonic()
        while self.waiting:
            walk = self.waiting[0]
            door = self.door
            verdict = (
                "open"
                if door is None
                else door.verdict(walk.began - DOOR_GRACE_S, walk.ts + DOOR_GRACE_S, now)
            )
            if isinstance(verdict, float):  # the grace not over, or the door not yet known
                self.gate_timer = self.board.later(verdict, self.judge)
                return
            self.waiting.popleft()
            if isinstance(door, _Door):
                self.gate(door, verdict == "closed")
            if verdict == "closed":
                self.shut(walk)
                continue
            self.shut_walks = 0
            if door is None and self.door_silent:  # held from before this start: no door
                self.door_silent = False  # gates these beams, so none of their walks drops
                self.doubt("door_silent", False)
            if verdict != "open":
                self.unseen(walk, verdict)
            elif door is None and name_ in self.board.never_heard:
                ctx.count("beam_door_never_heard")  # ungated: the bus never told the door
            ctx.emit(Crossing(name_, walk.direction, walk.ts))

    def gate(self, door: "_Door", shut: bool) -> None:
        """One more walk judged by the contact: most walks gated shut while the door kept
        opening is a contact read the wrong way round (`GATE_OPENINGS`)."""
        self.gated[-1][0 if shut else 1] += 1
        ctx, name_ = self.board.ctx, self.options.door
        dropped = sum(c[0] for c in self.gated)
        counted = sum(c[1] for c in self.gated)
        if self.gate_doubt:
            if dropped < counted:
                self.gate_doubt = False
                self.doubt("door_gate_inverted", False)
                ctx.log.info(
                    "door %s: most walks through its beams count again",
                    name_,
                    extra=flood_key(f"{name_} gate"),
                )
            return
        if len(self.gated) <= GATE_OPENINGS or dropped < GATE_SHUT or dropped <= counted:
            return
        ended = list(self.gated)[:-1]  # the times each ended by an opening
        if sum(shut > through for shut, through in ended) < GATE_SPREAD:
            return
        self.gate_doubt = True
        self.doubt("door_gate_inverted", True)
        ctx.count("door_gate_inverted")
        ctx.log.warning(
            "door %s: %d walks through its beams not counted as the door read shut, %d "
            "counted, while it opened %d times: does its contact read the wrong way round "
            "(set active_high = %s on its pin %s)? Riders are dropped and a hand waved "
            "while it is shut counts. Or someone keeps waving through the beams while it "
            "is shut (door_gate_inverted)",
            name_,
            dropped,
            counted,
            GATE_OPENINGS,
            "false" if door.options.active_high else "true",
            door.options.pin,
            extra=flood_key(f"{name_} gate"),
        )

    def unseen(self, walk: Passage, verdict: str) -> None:
        """A walk counted though its door's CAN status did not say whether it was open."""
        self.board.ctx.count(f"beam_door_{verdict}")
        why = (
            "its status was error or not available (2 or 3) in DC2, or ECUs sending DC2 "
            "disagreed on it (vehicle.door_sources_disagree)"
            if verdict == "unknown"
            else f"no DC2 status of it for {candoor.CAN_SILENT_S:g} s (ignition off, the bus "
            "or the CAN adapter down, or a gateway no longer passing DC2 on? the CAN "
            "driver's health says whether the bus still talks)"
        )
        self.board.ctx.log.warning(
            "door %s: a walk %s through the beams counted without knowing whether the door "
            "was open: %s (beam_door_%s)",
            self.options.door,
            walk.direction,
            why,
            verdict,
            extra=flood_key(f"{self.options.door} {verdict}"),
        )

    def shut(self, walk: Passage) -> None:
        """A walk wholly inside the door's closed time: not counted, and reported."""
        ctx, name_ = self.board.ctx, self.options.door
        ctx.count("beam_door_closed")
        self.shut_walks += 1
        if self.shut_walks == DOOR_SILENT_WALKS and not self.door_silent:
            self.door_silent = True
            self.doubt("door_silent", True)
            ctx.count("door_silent")
            ctx.log.warning(
                "door %s: %d walks in a row through its beams not counted, the door "
                "not once reported open: is its %s stuck shut (%s)? "
                "Nobody in or out is counted at this door until it opens, or "
                "someone keeps waving through the beams (door_silent)",
                name_,
                DOOR_SILENT_WALKS,
                *(
                    ("CAN status", "DC2 from the wrong door, a door controller fault")
                    if isinstance(self.door, CanDoor)
                    else ("contact", "a magnet off the door, a wire to ground, the wrong pin")
                ),
                extra=flood_key(name_),
            )
        ctx.log.warning(
            "door %s: a walk %s through the beams while the door was closed (no "
            "opening from %g s before it to %g s after): not counted. Someone inside "
            "moving about the door, a hand waved through the beams, or a door "
            "%s that reads closed when open? (beam_door_closed)",
            name_,
            walk.direction,
            DOOR_GRACE_S,
            DOOR_GRACE_S,
            "status on the CAN bus"
            if isinstance(self.door, CanDoor)
            else "contact (its pin, active_high)",
            extra=flood_key(f"{name_} closed"),
        )

    def stop(self) -> None:
        for timer in (self.timer, self.gate_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.gate_timer = None


class _Board:
    """The open pins of one run of the driver; `close` always leaves outputs safe."""

    def __init__(
        self, options: GpioOptions, ctx: DriverContext, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.options = options
        self.ctx = ctx
        self.loop = loop
        self.factory: MockFactory | None = None
        if options.pin_factory == "mock":
            from drivers.gpio.mock import mock_factory

            self.factory = mock_factory()
        self.devices: list[Device] = []
        self.pins: dict[int, PinUse] = {}
        self.watchers: list[Callable[[int, bool, float], None]] = []
        self.failed: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self._callbacks: list[Callable[[float, int], None]] = []  # gpiozero keeps weak refs
        self.gates: list[_EdgeGate] = []
        self.doors: list[_Door] = []
        self.doorways: list[_Doorway] = []
        self.can_doors: dict[str, CanDoor] = {}  # doors the vehicle's bus told of, gating beams
        # doors of beams with no contact that the vehicle's bus talks without (reported)
        self.never_heard: dict[str, VehicleDoorUnheard] = {}
        self.doubted: set[tuple[str, str]] = set()  # (door, finding) told as CountDoubt
        self.panic: _Panic | None = None
        self.ignition: _Debounced | None = None
        self.lock: LockRelay | None = None
        self.indicators: Indicators | None = None

    # -- plumbing -----------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Something broke in a callback: `run` raises it, the supervisor restarts."""
        if not self.failed.done():
            self.failed.set_exception(exc)

    def later(self, when: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """Call back at a time.monotonic() instant, on the loop, failing the board on error."""
        delay = max(0.0, when - time.monotonic())
        return self.loop.call_later(delay, self._guarded, callback, *args)

    def _guarded(self, callback: Callable[..., None], *args: Any) -> None:
        if self.closed:
            return  # queued before the stop; the pins are gone
        try:
            callback(*args)
        except Exception as exc:  # a failed write, or a service raising behind emit
            self.fail(exc)

    def _open(self, role: str, bcm: int, make: Callable[[], Device]) -> Any:
        try:
            device = make()
        except BadPinFactory as exc:
            raise DriverError(
                f"no GPIO here ({exc}): on a Raspberry Pi install python3-lgpio (or "
                "RPi.GPIO); elsewhere use pin_factory = 'mock'"
            ) from exc
        except GPIOPinInUse as exc:
            raise DriverError(
                f"{role}: {name(bcm)} is already in use in this process ({exc}); is it "
                "in two gpio drivers of the config?"
            ) from exc
        except Exception as exc:  # lgpio 'GPIO busy', permissions...
            raise DriverError(
                f"cannot open {role} on {name(bcm)}: {type(exc).__name__}: {exc}; is another "
                "program using it, and may this user open /dev/gpiochip* (group gpio)?"
            ) from exc
        self.devices.append(device)
        return device

    def _driven(self, bcm: int) -> bool | None:
        """The level on a mock input before we open it: a test or the rig drove it."""
        if self.factory is None:
            return None
        for info, pin in self.factory.pins.items():
            if info.name == name(bcm) and pin.function == "input":
                return bool(pin.state)
        return None

    def _input(self, role: str, bcm: int, pull: Pull) -> InputDevice:
        pull_up = PULL_UP[pull]
        driven = self._driven(bcm)
        device: InputDevice = self._open(
            role,
            bcm,
            lambda: InputDevice(
                bcm,
                pull_up=pull_up,
                active_state=True if pull_up is None else None,
                pin_factory=self.factory,
            ),
        )
        self.pins[bcm] = PinUse(role, "in", device.pin)
        if driven is not None:  # MockPin drives to the pull when opened; the circuit wins
            (device.pin.drive_high if driven else device.pin.drive_low)()
        return device

    def _watch(self, role: str, device: InputDevice, handler: Callable[[int, float], None]) -> None:
        """Edges of the pin, from gpiozero's thread to `handler(state, ts)` on the loop
        (state 2: no level, read the pin), through a storm brake (`_EdgeGate`)."""
        gate = _EdgeGate(self, role, handler)
        self.gates.append(gate)
        self._callbacks.append(gate.changed)
        pin = device.pin
        pin.bounce = None  # debounced here, the same on every pin factory
        pin.edges = "both"
        pin.when_changed = gate.changed

    def _output(self, role: str, cls: type[OutputDevice], bcm: int, active_high: bool) -> _OutLine:
        device: OutputDevice = self._open(
            role,
            bcm,
            lambda: cls(
                bcm, active_high=active_high, initial_value=False, pin_factory=self.factory
            ),
        )
        self.pins[bcm] = PinUse(role, "out", device.pin)
        return _OutLine(device, bcm, active_high, self)

    # -- opening ------------------------------------------------------------------------

    def open(self) -> None:
        """Open every pin; on any failure, release those already open and raise."""
        try:
            self._open_all()
        except BaseException:
            self.close()
            raise

    def _open_all(self) -> None:
        """The outputs first: opening one writes its safe state, and a relay a killed daemon
        left energised (the pin keeps its level) must be at rest even if an input then
        fails to open, again at every restart."""
        o = self.options
        if o.lock is not None:
            line = self._output("lock relay", OutputDevice, o.lock.pin, o.lock.active_high)
            self.lock = LockRelay(self.loop, line, o.max_unlock_s, self.fail)
        lines: dict[Indicator, _OutLine] = {}
        for key in INDICATORS:
            part = getattr(o, key)
            if part is not None:
                cls = Buzzer if key == "buzzer" else LED
                lines[key] = self._output(f"{key} {cls.__name__}", cls, part.pin, part.active_high)
        if lines:
            self.indicators = Indicators(self.loop, lines, o.feedback, self.fail)
        for d in o.doors:
            dev = self._input(f"door {d.name}", d.pin, d.pull)
            door = _Door(self, d, dev)
            self._watch(f"door {d.name}", dev, door.contact.edge)
            self.doors.append(door)
        for b in o.beams:
            outer = self._input(f"door {b.door} outer beam", b.outer, b.pull)
            inner = self._input(f"door {b.door} inner beam", b.inner, b.pull)
            gate = next((d for d in self.doors if d.options.name == b.door), None)
            way = _Doorway(self, b, outer, inner, gate)
            self._watch(f"door {b.door} outer beam", outer, functools.partial(way.edge, "outer"))
            self._watch(f"door {b.door} inner beam", inner, functools.partial(way.edge, "inner"))
            self.doorways.append(way)
        if o.panic is not None:
            dev = self._input("panic button", o.panic.pin, o.panic.pull)
            self.panic = _Panic(self, o.panic, dev)
            self._watch("panic button", dev, self.panic.contact.edge)
        if o.ignition is not None:
            dev = self._input("ignition", o.ignition.pin, o.ignition.pull)
            # steady only: a starter's voltage dip that flickers must not read as "off"
            # (it would close the trip and free a parked update's switch); a missed flicker
            # costs nothing, and an ignition really off goes steady
            self.ignition = _Debounced(
                self,
                dev,
                o.ignition.active_high,
                o.ignition.bounce_s,
                self._ignition_changed,
                mostly=False,
            )
            self._watch("ignition", dev, self.ignition.edge)

    def start(self) -> None:
        """Tell the services the state of things now; a beam blocked now is timed as stuck
        (nothing else would set its timer until an edge); a panic held at start starts its hold,
        one up is reported released (let go while the driver was down, the services would
        otherwise believe it held: a stuck report, a hold that silences the next press)."""
        now = time.monotonic()
        for way in self.doorways:  # a beam blocked at the start is timed from it
            way.handle([])
        for d, door in zip(self.options.doors, self.doors, strict=True):
            self.ctx.emit(DoorInput(d.name, door.value, now))
        if self.ignition is not None:
            self.ctx.emit(IgnitionInput(self.ignition.value, now))
        if self.panic is not None:
            if self.panic.contact.value:
                self.panic.changed(True, now)
            else:
                self.ctx.emit(PanicInput(False, now))

    # -- inputs -------------------------------------------------------------------------

    def on_door_status(self, event: VehicleDoorStatus) -> None:
        """A door's status in a frame of the vehicle's bus: the first one makes it the gate
        of the beams of that name that have no contact on GPIO (a contact, on the door
        itself and debounced, outranks a bus)."""
        if event.status in DOOR_HEARD and self.never_heard.pop(event.door, None) is not None:
            self.ctx.log.info(
                "door %s: its status came on the CAN bus at last (status %d), after it was "
                "reported never heard (door_never_heard): its beams are gated by it",
                event.door,
                event.status,
                extra=flood_key(event.door),
            )
        door = self.can_doors.get(event.door)
        if door is None:
            ways = [w for w in self.doorways if w.door is None and w.options.door == event.door]
            if not ways:
                return
            door = self.can_doors[event.door] = CanDoor(event.door)
            for way in ways:
                way.attach(door)
            self.ctx.log.info(
                "door %s: its beams are gated by its status on the CAN bus", event.door
            )
        door.status(event.status, event.ts)

    def doubt_changed(self, door: str, finding: CountDoubtName) -> None:
        """A pair at `door` found or cleared `finding`: the door's count is doubted while
        any pair of it has the finding (two lanes, two pairs)."""
        doubted = any(finding in w.doubts for w in self.doorways if w.options.door == door)
        if doubted == ((door, finding) in self.doubted):
            return
        if doubted:
            self.doubted.add((door, finding))
        else:
            self.doubted.discard((door, finding))
        self.ctx.emit(CountDoubt(door, finding, doubted, time.monotonic()))

    def restore_doubts(self, event: CountDoubtsHeld) -> None:
        """The doubts the occupancy service kept from before this start: each pair of the
        door takes them as found (`_Doorway.restore`); those no pair keeps (what they said
        is not so now: the beam reported stuck is clear; no beams at that door any more, the
        config changed) are cleared at once: this driver is the only one that finds them."""
        for way in self.doorways:
            way.restore({f for d, f in event.doubts if d == way.options.door})
        for door, finding in event.doubts:
            if finding in COUNT_DOUBTS and (door, finding) not in self.doubted:
                name_ = cast(CountDoubtName, finding)
                self.ctx.emit(CountDoubt(door, name_, False, time.monotonic()))

    def on_door_unheard(self, event: VehicleDoorUnheard) -> None:
        """The vehicle's bus talks without ever giving a status of a door: its beams (those
        with no contact) count every walk ungated, hands waved behind the shut door too.
        Said once, a warning and `door_never_heard`; the walks are counted meanwhile. Told
        `again` to a later start (a restart loop), it is no new finding: only logged."""
        if event.door in self.never_heard:
            return  # told again as another driver started
        ways = [w for w in self.doorways if w.options.door == event.door]
        if not any(not isinstance(way.door, _Door) for way in ways):
            return  # no beams there, or a contact gates them
        self.never_heard[event.door] = event
        if event.again:  # counted and warned by the start that was running when found
            self.ctx.log.info(
                "door %s: still no status of it on the CAN bus (%s; door_never_heard, told "
                "before this start): its beams count every walk ungated until it comes",
                event.door,
                event.signal,
                extra=flood_key(event.door),
            )
            return
        self.ctx.count("door_never_heard")
        message = event.signal.split(".", 1)[0]
        if not event.message_heard:
            why = (
                f"not one {message} frame: does the vehicle send {message}, does its FMS "
                "gateway pass it on, does the CAN driver's `pgns` leave it out?"
            )
        else:
            gives = (
                f"it gives door{'s' if len(event.positions) > 1 else ''} "
                f"{', '.join(event.positions)}"
                if event.positions
                else "it gives no door's status either"
            )
            why = (
                f"{message} comes, never with this door's status (not available each time; "
                f"{gives}): is the door's number right in [services.vehicle.doors]?"
            )
        self.ctx.log.warning(
            "door %s: the CAN bus has talked for %g s and not once given the door's status "
            "(%s): %s Its beams count every walk ungated until it comes, hands waved "
            "through them behind the shut door too (door_never_heard; each walk counted "
            "beam_door_never_heard, or beam_door_unknown while the status says not available)",
            event.door,
            round(event.talked_s, 1),
            event.signal,
            why,
            extra=flood_key(event.door),
        )

    def _ignition_changed(self, on: bool, ts: float) -> None:
        self.ctx.emit(IgnitionInput(on, ts))

    # -- outputs: handlers subscribed to service events, on the loop thread ------------

    def on_unlock(self, event: Unlock) -> None:
        if self.closed:
            return
        assert self.lock is not None, "Unlock is subscribed only with a lock relay"
        try:
            accepted = self.lock.unlock(event.pulse_s)
        except Exception as exc:  # the write failed: the supervisor reopens the pins
            self.fail(exc)
            return
        self.ctx.count("unlock" if accepted else "unlock_refused")
        if not accepted:
            self.ctx.log.warning("Unlock with pulse_s=%r refused: not a duration", event.pulse_s)

    def on_feedback(self, event: Feedback) -> None:
        if self.closed or self.indicators is None:
            return
        if event.pattern not in FEEDBACK_PATTERNS:
            self.ctx.count("feedback_unknown")
            return
        try:
            self.indicators.show(event.pattern)
        except Exception as exc:
            self.fail(exc)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Outputs to their safe state first, then release every pin. Never raises."""
        if self.closed:
            return
        self.closed = True
        for safe in (self.lock, self.indicators):  # relay first: it is the one that matters
            if safe is not None:
                try:
                    safe.off()
                except Exception:
                    log.exception("could not put the %s in its safe state", type(safe).__name__)
        for item in (*self.gates, *self.doors, *self.doorways, self.panic, self.ignition):
            if item is not None:
                item.stop()
        mock = sys.modules.get("gpiozero.pins.mock")  # no pin is a MockPin unless it is loaded
        driven = [
            (use.pin, use.pin.state)
            for use in self.pins.values()
            if use.direction == "in" and mock is not None and isinstance(use.pin, mock.MockPin)
        ]
        for device in reversed(self.devices):
            try:
                device.close()
            except Exception:
                log.exception("could not release %r", device)
        for pin, state in driven:  # what the outside circuit would keep driving
            if pin.function == "input":
                (pin.drive_high if state else pin.drive_low)()
        self.watchers.clear()


class GpioBoard:
    """The node's GPIO: inputs to events, Unlock and Feedback to the outputs."""

    Options: ClassVar[type[DriverOptions]] = GpioOptions

    @classmethod
    def opens(cls, options: GpioOptions) -> Opens:
        if options.pin_factory == "mock":
            return Opens(simulated="simulated GPIO (mock pins)")
        return Opens(gpio_chips=options.pin_factory)

    def __init__(self, options: GpioOptions) -> None:
        self.options = options
        self.board: _Board | None = None  # the open pins while running (tests, the rig)

    async def run(self, ctx: DriverContext) -> None:
        loop = asyncio.get_running_loop()
        board = _Board(self.options, ctx, loop)
        wire: MockWire | None = None
        board.open()
        self.board = board
        try:
            if self.options.lock is not None:  # door.unlock says no_lock when nobody listens
                ctx.subscribe(Unlock, board.on_unlock)
            ctx.subscribe(Feedback, board.on_feedback)
            if any(way.door is None for way in board.doorways):  # beams a bus door may gate
                ctx.subscribe(VehicleDoorStatus, board.on_door_status)
                ctx.subscribe(VehicleDoorUnheard, board.on_door_unheard)
            ctx.subscribe(CountDoubtsHeld, board.restore_doubts)  # beams gone clear theirs
            board.start()
            if self.options.mock_control is not None:  # only with the mock factory (its options)
                from drivers.gpio import mockwire

                wire = mockwire.MockWire(board.pins, board.watchers, ctx.log)
                await wire.start(self.options.mock_control)
            ctx.log.info("gpio ready: %s", describe(board))
            ctx.ready()
            await board.failed
        finally:
            board.close()
            self.board = None
            if wire is not None:
                await wire.close()


def describe(board: _Board) -> str:
    """One log line: which pin does what."""
    uses = ", ".join(f"{use.role} {name(bcm)}" for bcm, use in sorted(board.pins.items()))
    factory = "mock" if board.factory is not None else "default"
    return f"{uses or 'no pins'} ({factory} pin factory)"

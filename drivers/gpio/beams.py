"""Which way people went through a doorway, from a pair of light beams across it.

Pure: edges in, passages out, the caller brings the clock. No gpiozero, no asyncio, so it is
tested alone and runs the same on every pin factory (the board feeds it on the event loop).

The beams are mounted parallel across the doorway, closer together than a person is deep
(5–15 cm apart: a body, even a child's, blocks both at once in the middle). Going in, a
person blocks the outer beam, then the inner, then clears the outer, then the inner; going
out is the reverse. Each edge changes one beam, so the pair walks a Gray cycle
(00 → 10 → 11 → 01 → 00 going in), like a quadrature encoder: a person who hesitates or
steps back walks it backwards for a step, and only a walk all the way round counts.

Noise first: a level change counts only once it has lasted `min_block_s` (a fly, a swinging
strap, a reflection; a short drop-out of a blocked beam alike). A change is reported with
the time it happened, not the time it was confirmed, so passages keep true timestamps.

What the machine decides, and its limits (no two-beam counter can do better: both beams
together only ever show "someone is on this beam"):

- Back-out: blocks the outer beam (maybe the inner too) and leaves by the outer: no count.
- Hesitation, leaning, shuffling while on the beams: no count until the walk completes.
- Two people with any gap between them (both beams clear, however briefly — the filter is
  per beam, so a few ms is enough): two passages, exactly.
- A follower: the first person is past the outer beam (on the inner only) and someone
  blocks the outer beam again. Levels alone cannot tell a follower from the first person
  stepping back; people in a doorway keep walking far more often than they turn round
  once past the first beam, so it is a follower, and the first person counts once the
  inner beam clears. If the doorway then empties by the outer beam (the "follower" backed
  out), that is taken as the first person having turned back: the one unconfirmed passage
  is dropped. At most one passage is ever held back like this; a queue of followers counts
  as it goes. So a person who goes fully past the outer beam and back out counts nothing,
  and a packed queue counts everyone.
- One person in while another is out at the same time: the beams show one shape for both.
  If one of them waits until the other is through, both count. If they overlap, the
  shape follows the beam blocked first: it counts at most one passage in that direction
  (when the other beam clears last) or none, and the other person is missed; it never
  counts a passage in a direction the shape did not show. Two-way doorways wide enough to
  pass in need one beam pair per lane.
- A beam blocked for `max_transit_s` (dirty lens, knocked reflector, a person standing in
  the door) is reported as `Stuck` once, and that is all it does: the walk in progress is
  kept. A rider who stands in the doorway that long (paying the driver on the step, an
  elderly rider with a walker, a wheelchair or a pram lifted up the steps) and then walks
  on counts once; one who backs out counts nothing, as ever. A beam really stuck (a dirty
  lens, a parked case) completes no walk by itself: people crossing the other beam read
  as stepping back and count nothing, and at most one passage counts when it clears while
  someone is on the other beam. The time is each beam's own: the other beam changing
  (people still squeezing past on it) does not restart it. If the beams reported clear
  while the other is still blocked (a trolley pushed from one beam onto the other), that
  one is timed and reported in turn.
- A beam stuck *clear* (a receiver that always sees light: misaligned onto a reflection, a
  shorted output) shows nothing by itself: everyone then makes edges on the other beam
  only, which read as back-outs. `ONE_SIDED_BACKOUTS` back-outs in a row on one beam with
  not one confirmed change of the other is reported as `OneSided` once, and `Moving` when
  the silent beam changes again. Why 10: the beams are closer together than a person is
  deep, so whoever goes through blocks both; a back-out without touching the other beam is
  someone leaning in or a swinging bag, and a few in a row happen (a person waiting at the
  door), but ten with nobody at all going through, while the doorway is that busy, is a
  dead beam far more often than a crowd that all turns back. It is only a report: counting
  goes on as before.
- A pair that *rests* blocked: both beams blocked `max_transit_s` (reported `Stuck`), then
  both clear for a moment (someone going through), then both blocked `max_transit_s` again,
  `RESTS_BLOCKED` times in a row with the pair never clear `max_transit_s` between, is
  reported as `RestsBlocked` once. That is what receivers of the opposite output to the
  config give (dark-on where the config says light-on, NC for NO, `active_high` the wrong
  way round): at rest the pair reads blocked, and each person passing reads as a brief
  clearing, so some walks count in the right direction, some in the wrong one, and most
  of a two-way stream none, with only `Stuck` to show, which blames dirt or someone in the
  door. A dirty lens or a parked case never clears both beams between; a rider who stands
  in the door and then goes leaves the pair clear. Riders standing in the door one after
  another (paying the driver on the step, a queue at a ticket check) look the same, edge
  for edge: where the doorway's door is known (`door_opened`), rests count only with an
  opening of it between them (the pair reversed rests blocked from stop to stop; a queue
  stands within one opening). Riders standing in the doorway all the way from stop to stop
  (a crush-loaded bus) still look the same, and so does a queue where no door is known: a
  report, counting goes on, and `RestsClear` once the pair has rested clear
  `max_transit_s` again.
"""

from dataclasses import dataclass
from typing import Literal

Beam = Literal["outer", "inner"]
Direction = Literal["in", "out"]

OUTER, INNER = 0, 1
_BEAMS: tuple[Beam, Beam] = ("outer", "inner")
_INDEX: dict[str, int] = {"outer": OUTER, "inner": INNER}

IDLE = 0
"""Both beams clear. Phases 1–3 walk the cycle for one person (1: on the entry beam only,
2: on both, 3: on the exit beam only); 4: both blocked by a leader on the exit beam and a
follower on the entry beam."""
SETTLING = -1
"""After a start with a beam blocked (what was going on is not known): wait until both are
clear."""
ONE_SIDED_BACKOUTS = 10
"""Back-outs in a row on one beam, the other never changing, that report it `OneSided`."""
RESTS_BLOCKED = 3
"""Rests of the pair with both beams blocked, both clearing only for a moment between, that
report it `RestsBlocked` (the receivers' output likely the opposite of the config's)."""
EPSILON = 1e-6
"""Times this close are the same instant: a block of exactly `min_block_s` counts, whatever
the rounding of `since + min_block_s` in binary floating point."""


@dataclass(frozen=True, slots=True)
class Passage:
    """One person went through; `ts` is when they cleared the inner (or outer) beam,
    `began` when they blocked the other one first (the walk's first edge)."""

    direction: Direction
    ts: float
    began: float


@dataclass(frozen=True, slots=True)
class Stuck:
    """A beam stayed blocked `max_transit_s`: a fault, or someone standing in the door (a
    report only: the walk in progress goes on). `blocked`: the beams blocked that long (at
    `ts`, when the first of them got there)."""

    ts: float
    blocked: tuple[Beam, ...]


@dataclass(frozen=True, slots=True)
class OneSided:
    """`backouts` back-outs in a row on `active`, and no change at all on `silent`: the
    silent beam is likely stuck clear (its receiver sees light whatever is in the way)."""

    silent: Beam
    active: Beam
    ts: float
    backouts: int


@dataclass(frozen=True, slots=True)
class Moving:
    """A beam reported `OneSided` changed again: it is alive."""

    beam: Beam
    ts: float


@dataclass(frozen=True, slots=True)
class RestsBlocked:
    """`rests` times in a row both beams were blocked `max_transit_s`, clearing only for a
    moment between: receivers whose output is the opposite of the config's (dark-on for
    light-on, NC for NO), or riders standing in the doorway from stop to stop. `ts`: when
    the last of those rests became `Stuck`."""

    ts: float
    rests: int


@dataclass(frozen=True, slots=True)
class RestsClear:
    """A pair reported `RestsBlocked` has been clear `max_transit_s`: it rests as it should."""

    ts: float


@dataclass(frozen=True, slots=True)
class Glitch:
    """A change shorter than `min_block_s`, ignored; counted so dirty lenses show in health."""

    beam: Beam
    ts: float
    width_s: float


Output = Passage | Stuck | Glitch | OneSided | Moving | RestsBlocked | RestsClear


class BeamCounter:
    """The direction state machine for one doorway. Feed edges in time order.

    `feed` takes an edge as the pins reported it; `advance` lets time pass with no edge
    (confirming a pending change, or declaring a beam stuck); `next_deadline` says when
    `advance` next has something to do, so the caller sets one timer, not a polling loop.
    Times going backwards are clamped: a pure machine must not be crashable by its clock.
    """

    def __init__(
        self,
        min_block_s: float,
        max_transit_s: float,
        *,
        outer_blocked: bool = False,
        inner_blocked: bool = False,
        now: float = 0.0,
        one_sided_backouts: int = ONE_SIDED_BACKOUTS,
        rests_blocked: int = RESTS_BLOCKED,
    ) -> None:
        if min_block_s < 0 or max_transit_s <= min_block_s:
            raise ValueError("need 0 <= min_block_s < max_transit_s")
        if one_sided_backouts < 1 or rests_blocked < 1:
            raise ValueError("need one_sided_backouts >= 1 and rests_blocked >= 1")
        self.min_block_s = min_block_s
        self.max_transit_s = max_transit_s
        self.one_sided_backouts = one_sided_backouts
        self._raw = [outer_blocked, inner_blocked]
        self._level = [outer_blocked, inner_blocked]  # confirmed
        self._since: list[float | None] = [None, None]  # a pending change began then
        self._phase = SETTLING if (outer_blocked or inner_blocked) else IDLE
        self._entry = OUTER  # the beam this pass came in by: OUTER going in
        self._held: tuple[float, float] | None = None  # a leader's passage not yet certain
        # (follower rule): when it ended, when it began
        self._began = now  # the walk going on began then (its first edge)
        self._follower_began = now  # the follower on the entry beam (phase 4) came then
        # since when each beam has been blocked (confirmed, dated at its edge); None: clear
        self._blocked_since: list[float | None] = [
            now if outer_blocked else None,
            now if inner_blocked else None,
        ]
        self._stuck_reported = False
        self._stuck_beams: tuple[int, ...] = ()  # the beams that report named
        self._backouts = [0, 0]  # back-outs in a row on each beam, the other one silent
        self._one_sided = [False, False]  # reported OneSided, this beam the silent one
        self.rests_blocked = rests_blocked
        self._rests = 0  # rests both blocked in a row, both clear only for moments between
        self._cleared = True  # both beams were clear since the last rest blocked
        self._clear_since: float | None = None if (outer_blocked or inner_blocked) else now
        self._rests_reported = False
        self._door_known = False  # told of the door's openings: rests count one an opening
        self._opened = False  # the door opened since the last rest counted
        self._now = now

    # -- queries ------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nobody in the doorway, nothing pending or held: a reset state."""
        return self._phase == IDLE and self._held is None and self._since == [None, None]

    def blocked(self, beam: Beam) -> bool:
        """The confirmed level of a beam."""
        return self._level[_INDEX[beam]]

    def next_deadline(self) -> float | None:
        """When `advance` next has something to do; None when only an edge can change things."""
        event = self._next_event()
        return None if event is None else event[1]

    # -- input --------------------------------------------------------------------------

    def door_opened(self) -> None:
        """The doorway's door opened: from now on a rest of the pair blocked counts towards
        `RestsBlocked` only with an opening since the last one counted (riders standing in
        the door one after another do so within one opening)."""
        self._door_known = True
        self._opened = True

    def restore(self, *, one_sided: bool = False, rests_blocked: bool = False) -> None:
        """Findings reported before a restart, taken as reported again (the machine starts
        knowing nothing): `one_sided`, either beam may be the silent one, so each reports
        `Moving` at its next change; `rests_blocked`, `RestsClear` once the pair has rested
        clear `max_transit_s`, as ever."""
        if one_sided:
            self._one_sided = [True, True]
        if rests_blocked:
            self._rests_reported = True

    def feed(self, beam: Beam, blocked: bool, t: float) -> list[Output]:
        """An edge on one beam at time t (a repeated level is ignored)."""
        i = _INDEX[beam]
        out = self.advance(t)
        t = self._now
        if blocked == self._raw[i]:
            return out
        self._raw[i] = blocked
        since = self._since[i]
        if blocked == self._level[i]:  # back before it was confirmed: noise
            if since is not None:
                out.append(Glitch(beam, since, t - since))
            self._since[i] = None
        else:
            self._since[i] = t
        out.extend(self.advance(t))  # min_block_s == 0 confirms at once
        return out

    def advance(self, t: float) -> list[Output]:
        """Let time pass to t: confirm changes that have lasted, report a stuck beam."""
        self._now = max(self._now, t)
        out: list[Output] = []
        while (event := self._next_event()) is not None and event[1] <= self._now + EPSILON:
            kind, _, i = event
            if kind == "stuck":
                out.append(self._report_stuck())
                self._rested(out)
            elif kind == "rested":
                self._rest_clear(out)
            else:
                since = self._since[i]
                assert since is not None
                self._since[i] = None
                self._confirm(i, self._raw[i], since, out)
        return out

    # -- internals ----------------------------------------------------------------------

    def _next_event(self) -> tuple[str, float, int] | None:
        """The earliest thing that happens with no edge, by when it happened.

        A pending change is decided `min_block_s` after it began but happened when it
        began, and a stuck beam is only stuck if nothing happened before its deadline, so
        events are ordered by when they happened, and the first is due at its decision time.
        """
        events: list[tuple[float, float, str, int]] = []  # (happened, due, kind, beam)
        for i, since in enumerate(self._since):
            if since is not None:
                events.append((since, since + self.min_block_s, "confirm", i))
        if not self._stuck_reported and (deadline := self._stuck_deadline()) is not None:
            events.append((deadline, deadline, "stuck", -1))
        if self._rests_reported and self._clear_since is not None:  # told when, not later
            rested = self._clear_since + self.max_transit_s
            events.append((rested, rested, "rested", -1))
        if not events:
            return None
        _, due, kind, i = min(events)
        return kind, due, i

    def _stuck_deadline(self) -> float | None:
        """When the beam blocked longest will have been blocked max_transit_s."""
        since = [s for s in self._blocked_since if s is not None]
        return min(since) + self.max_transit_s if since else None

    def _report_stuck(self) -> Stuck:
        deadline = self._stuck_deadline()
        assert deadline is not None
        self._stuck_reported = True  # a report only: someone standing in the door walks on
        self._stuck_beams = tuple(
            i
            for i, since in enumerate(self._blocked_since)
            if since is not None and since + self.max_transit_s <= deadline + EPSILON
        )
        return Stuck(deadline, tuple(_BEAMS[i] for i in self._stuck_beams))

    def _rested(self, out: list[Output]) -> None:
        """A Stuck report: one more rest both blocked if both beams are blocked (the one
        timed first is named) and both were clear at some moment since the last one."""
        stuck = out[-1]
        assert isinstance(stuck, Stuck)
        if not all(self._level) or not self._cleared:
            return
        if self._door_known and self._rests and not self._opened:
            return  # within the opening of the last one: riders standing one after another
        self._cleared = False
        self._opened = False
        self._rests += 1
        if self._rests >= self.rests_blocked and not self._rests_reported:
            self._rests_reported = True
            out.append(RestsBlocked(stuck.ts, self._rests))

    def _rest_clear(self, out: list[Output]) -> None:
        """Both beams clear `max_transit_s`: the pair rests as it should; `RestsClear` if it
        was reported resting blocked (due then, by `advance`: not only when someone comes)."""
        self._rests = 0
        if self._rests_reported and self._clear_since is not None:
            self._rests_reported = False
            out.append(RestsClear(self._clear_since + self.max_transit_s))

    def _confirm(self, i: int, blocked: bool, t: float, out: list[Output]) -> None:
        was_clear = not any(self._level)
        self._level[i] = blocked
        if not any(self._level):  # both clear: a moment between rests, or a rest clear
            self._cleared = True
            self._clear_since = t
        elif was_clear and self._clear_since is not None:
            if t - self._clear_since >= self.max_transit_s - EPSILON:  # rested clear
                self._rest_clear(out)
            self._clear_since = None
        self._blocked_since[i] = t if blocked else None
        other = 1 - i
        self._backouts[other] = 0  # this beam moved: the other's back-outs are not one-sided
        if self._one_sided[i]:
            self._one_sided[i] = False
            out.append(Moving(_BEAMS[i], t))
        if (
            self._stuck_reported
            and any(self._level)
            and not any(self._level[b] for b in self._stuck_beams)
        ):
            # what was reported stuck is clear, the other beam is still blocked (a blockage
            # moved across): time that one, or nothing says why nothing counts
            self._stuck_reported = False
        phase = self._phase
        if phase == SETTLING:
            if not any(self._level):
                self._idle()
            return
        if phase == IDLE:
            if blocked:  # from idle only a block can come
                self._entry = i
                self._phase = 1
                self._began = t
            return
        entering = i == self._entry  # an edge on the beam this pass came in by
        direction: Direction = "in" if self._entry == OUTER else "out"
        if phase == 1 and not entering and blocked:
            self._phase = 2
        elif phase == 1 and entering and not blocked:  # backed out, never on the other beam
            self._idle()
            self._backouts[i] += 1
            if self._backouts[i] == self.one_sided_backouts and not self._one_sided[other]:
                self._one_sided[other] = True
                out.append(OneSided(_BEAMS[other], _BEAMS[i], t, self._backouts[i]))
        elif phase == 2:
            self._phase = 3 if entering else 1  # past the entry beam, or stepping back
        elif phase == 3 and not entering and not blocked:  # through
            if self._held is not None:
                out.append(Passage(direction, *self._held))
            out.append(Passage(direction, t, self._began))
            self._idle()
        elif phase == 3 and entering and blocked:  # a follower on the entry beam
            self._phase = 4
            self._follower_began = t
        elif phase == 4 and not entering and not blocked:  # the leader went through
            if self._held is not None:  # a second one: the first is certain now
                out.append(Passage(direction, *self._held))
            self._held = (t, self._began)
            self._began = self._follower_began
            self._phase = 1
        elif phase == 4 and entering and not blocked:  # the follower stepped back
            self._phase = 3
        else:  # cannot happen while the phase matches the levels; never trust a guess
            self._held = None
            if any(self._level):
                self._phase = SETTLING
            else:
                self._idle()

    def _idle(self) -> None:
        self._phase = IDLE
        self._held = None
        self._stuck_reported = False

"""Is a fix where the vehicle is? Physics and the CAN bus's wheels as witnesses.

A receiver can be wrong without saying so: a spoofer (an SDR in a bag, a jammer then a
spoofer near a depot) puts the bus at a stop it never reached; a frozen receiver repeats
its last fix, valid, while the bus drives; a receiver stuck at speed 0 stops the odometer.
The judge says of each valid, measured fix whether it is `suspect`, and why:

- `jump`: farther from the last believed fix than the vehicle could have gone in between,
  by the odometer's rule (the fixes' speeds, a hard acceleration, at most
  `MAX_ROAD_SPEED_MPS`), in the receiver's time as far as the arrivals allow it (a
  spoofer moves the receiver's clock with its position), plus how far that clock fell
  behind the node's, as two fixes arriving apart say (a leap-second correction steps it
  back);
- `wheels`: farther from it than the wheels went (CCVS1 wheel-based speed, integrated),
  when the CAN bus spoke all the time in between: the straight line between two true
  fixes is never longer than the way the wheels rolled, plus the fixes' jitter;
- `frozen`: the wheels rolled `FROZEN_WHEEL_M` while the fixes stood within their jitter
  (no witness needed when the receiver repeats a fix time `FROZEN_REPEAT_S` after it
  first came). Identical positions with advancing time and no CAN are not flagged: a
  u-blox in static hold pins a parked vehicle's position so.

Hysteresis: a suspect fix does not become the reference; the next fixes are judged
against the last believed one, so one bad fix is one flag (the receiver comes back) and a
spoofer cannot walk the reference away fix by fix. A new place is believed once fixes
stayed consistent among themselves for `REACCEPT_S` of the node's time, and the wheels
(if the CAN bus speaks) never said otherwise meanwhile: a cold start's wrong first fix,
a tow truck or a ferry with the ignition off (no CAN) are believed after it; a spoofer
that holds a bus at a stop while its wheels roll is not. With the CAN bus speaking and
the wheels standing, a jump from a place fixes confirmed is believed only after
`REACCEPT_WITNESSED_S`; from a lone first fix (a cold start's wrong one, the engine
running) after `REACCEPT_S`.

The judge also gives the speed to believe: the wheels' when the receiver reports
standing still while they roll (a receiver stuck at 0 would freeze the odometer).
"""

import itertools
import math
from collections import deque
from dataclasses import dataclass

from core.events import Fix
from core.geo import haversine_m

MAX_ROAD_SPEED_MPS = 55.0
"""198 km/h: faster than any shuttle, bus or truck goes; a step implying more is a jump."""
SPEED_MARGIN_MPS = 3.0  # a Doppler speed's error, and what the vehicle gains within a second
ACCEL_MPS2 = 3.0  # harder than a bus or a truck speeds up or brakes in service
EXCURSION_MAX_S = 10.0
"""Multipath excursions last seconds; a receiver still away after this long is believed."""
EXCURSION_MAX_FIXES = 100  # the same, for a receiver whose fix times do not go forward


def jitter_m(fix: Fix) -> float:
    """How far a fix may be from the truth and still be the same place: 5 m per HDOP."""
    return max(10.0, 5.0 * (fix.hdop or 1.0))


def believed_s(a_received: float | None, b_received: float | None) -> float:
    """The most receiver time believed between two fixes that arrived at `a_received` and
    `b_received` (monotonic s): the node's time between, plus EXCURSION_MAX_S (a fix read
    late after a stalled read, the reference one among them); unbounded when either does
    not say when it arrived. A real receiver's clock runs no faster than the node's, and a
    spoofer moves it with the position (believed up to 20 times the arrivals' time, a clock
    60 s on with a teleport had 30 s to drive in: 1.35 km from standing). A recording
    replayed faster than driven still counts step by step (each step is far less than the
    10 s); a gap in it (a tunnel) longer than its arrivals' time plus 10 s is judged as
    that."""
    if a_received is None or b_received is None:
        return math.inf
    return max(0.0, b_received - a_received) + EXCURSION_MAX_S


ARRIVAL_JITTER_S = 0.5
"""How much a receiver's output latency and the reader's wake-up vary: an epoch's first
sentence arriving this much later after the one before than the receiver's time says is
not yet a clock that fell behind."""


def elapsed_s(a: Fix, b: Fix, lag_s: float = 0.0) -> float:
    """Seconds from fix `a` to fix `b` in the receiver's time plus `lag_s`, how far its
    clock fell behind the node's in between (`FixJudge.lag_s`), none if that went back, no
    more than `believed_s`. The lag is added before the clamp: a clock stepped back 15 s
    is 15 s behind, and its fix time 14 s before `a`'s; clamped first, the two seconds
    between them counted 14.5."""
    dt = max(0.0, (b.fix_time - a.fix_time).total_seconds() + lag_s)
    return min(dt, believed_s(a.received, b.received))


WHEEL_FRESH_S = 1.0
"""CCVS1 comes every 100 ms: older than this, the wheels' speed is not current."""
WHEEL_GAP_S = 1.0
"""A longer silence breaks the wheels' witness: the distance in between is unknown."""
WHEEL_MARGIN = 1.25
"""Wheel speed errs by a few % (tyre wear), by more on a vehicle whose tyre size or
tachograph constant was set wrong: after a 2 km tunnel such an error is hundreds of
metres, and a true fix judged `wheels` would stay suspect for REACCEPT_WITNESSED_S."""
WHEEL_WINDOW_S = 30.0
"""The wheels also judge a fix against the oldest believed fix of this window: the slack of
one step (two jitters and WHEEL_SLACK_M) is not given again at every step."""
WHEEL_SLACK_M = 20.0  # plus the two fixes' jitter and a second of latency between bus and fix
REST_ROLL_M = 20.0
"""The wheels also judge a fix against where they last came to rest: the believed fix from
which they rolled less than this (x WHEEL_MARGIN's error: 5 m) in an unbroken run. A bus
parked for hours keeps that one, so a spoofer walking it off slower than the 30 s window's
slack (1.3 m/s) is caught once it is REST_WANDER_M and the slack away, not at the stop."""
REST_WANDER_M = 40.0
"""What a parked receiver wanders over hours (multipath in a depot) beyond its jitter."""
FROZEN_WHEEL_M = 50.0
"""Wheels rolling this far with the fixes standing: the receiver is frozen (5 s at 36 km/h)."""
FROZEN_REPEAT_S = 3.0  # the same fix time still coming this long after: a repeating receiver
REACCEPT_S = EXCURSION_MAX_S
"""A new place held this long (node's time), consistent, with no wheels saying otherwise,
is believed, as the odometer believes it (a multipath excursion is shorter)."""
REACCEPT_WITNESSED_S = 600.0
"""With the CAN bus speaking and its wheels not accounting for the jump: 10 minutes. A
place believed so refutes the wheels (a tow, a sensor stuck at 0, CCVS1 from an ECU that
sends 0): they witness nothing until they roll again, or every move on from it would
wait 10 minutes more."""
WHEELS_MOVING_MPS = 1.0  # above it the wheels roll, whatever the receiver says
STATIONARY_MPS = 0.5  # a receiver's speed below it: standing (position.STATIONARY_SPEED)
STUCK_S = 10.0
STUCK_M = 60.0
STUCK_STEP_M = 2.0
"""A receiver saying it stands while its believed fixes went on STUCK_M in STUCK_S (22
km/h), each at least STUCK_STEP_M from the one before (a parked receiver drifts ±30 m
over minutes, a multipath jump is one step): its speed is stuck at 0, and taken as
unknown until it reports a speed again."""


@dataclass
class _Wheels:
    """The CAN bus's wheel speed, integrated into a distance over an unbroken run."""

    speed: float | None = None  # m/s, last value
    at: float | None = None  # monotonic s of it
    since: float | None = None  # start of the unbroken run
    metres: float = 0.0  # distance since `since`

    def feed(self, speed_mps: float, ts: float) -> None:
        if self.at is None or ts - self.at > WHEEL_GAP_S or ts < self.at:
            self.since, self.metres = ts, 0.0
        else:
            self.metres += (self.speed or 0.0) * (ts - self.at)
        self.speed, self.at = speed_mps, ts

    def live(self, now: float) -> bool:
        """The wheels spoke within WHEEL_FRESH_S of `now`, before or after it (a fix is
        judged when its epoch is complete, and timed when its first sentence came)."""
        return self.at is not None and abs(now - self.at) <= WHEEL_FRESH_S

    def since_ok(self, t: float) -> bool:
        """The run covers the time from `t` (monotonic s) on."""
        return self.since is not None and self.since <= t


@dataclass
class _Believed:
    fix: Fix
    at: float  # monotonic s it arrived
    wheel_m: float | None  # the wheels' distance then, if the run covered it
    speed: float | None  # the speed believed of it (the wheels' for a receiver saying 0)
    confirmed: bool = False  # a later fix was believed from it: not a lone first fix


class FixJudge:
    """Judges fixes in order; `judge` returns None (believed) or the reason it is not."""

    def __init__(self, pace: float = 1.0) -> None:
        self.pace = pace  # route seconds per second of every fix (a bench's sped-up route)
        self.wheels = _Wheels()
        self._trail: deque[_Believed] = deque()  # believed fixes of the last WHEEL_WINDOW_S
        self._believed: _Believed | None = None
        self._rest: _Believed | None = None  # where the wheels last stood (REST_ROLL_M)
        # a run of consistent suspect fixes: when its first arrived, its last and arrival
        # (only those: 10 minutes of them at 10 Hz were 6,000 kept, ~1.5 MB)
        self._candidate_since: float | None = None
        self._candidate_last: tuple[Fix, float] | None = None
        self._candidate_witnessed = False  # the wheels were live during the candidate
        # the first fix of a run standing within its jitter, the wheels' distance then and
        # the wheels' run it is of
        self._still: tuple[Fix, float | None, float | None] | None = None
        self._newest: tuple[Fix, float] | None = None  # the latest fix time, its arrival
        self._standing: deque[tuple[Fix, float]] = deque()  # believed, saying they stand
        self.speed_stuck = False  # the receiver's speed is stuck at 0 (no witness needed)
        self.wheels_refuted = False  # fixes held REACCEPT_WITNESSED_S against wheels at rest
        # the fixes judged within ARRIVAL_JITTER_S of the last one's arrival (5 at 10 Hz;
        # a stalled read's burst until the next read), and the latest judged before those,
        # with their arrivals (lag_s)
        self._recent: deque[tuple[Fix, float]] = deque()
        self._before: tuple[Fix, float] | None = None

    def on_wheels(self, speed_mps: float, ts: float) -> None:
        self.wheels.feed(speed_mps, ts)
        if speed_mps >= WHEELS_MOVING_MPS:
            self.wheels_refuted = False  # they roll: a witness again

    def _wheel_m(self, now: float) -> float | None:
        if not self.wheels.live(now):
            return None
        # on from the last value, or back to `now` from it: the same speed meanwhile
        shift = (self.wheels.speed or 0.0) * (now - (self.wheels.at or now))
        return max(0.0, self.wheels.metres + shift)

    def speed(self, fix: Fix, now: float) -> float | None:
        """The speed to believe of `fix`: the wheels' when they roll and the receiver
        says it stands (or says nothing)."""
        at = fix.received if fix.received is not None else now
        rolling = self.wheels.live(at) and (self.wheels.speed or 0.0) >= WHEELS_MOVING_MPS
        standing = fix.speed is None or fix.speed < STATIONARY_MPS
        if rolling and standing:
            return self.wheels.speed
        if self.speed_stuck and standing:
            return None  # as a receiver that gives no speed: judged by its positions
        return fix.speed

    def judge(self, fix: Fix, now: float) -> str | None:
        at = fix.received if fix.received is not None else now
        while self._recent and at - self._recent[0][1] >= ARRIVAL_JITTER_S:
            self._before = self._recent.popleft()
        try:
            return self._judge(fix, at)
        finally:
            self._recent.append((fix, at))

    def lag_s(self, ref: Fix, ref_at: float, fix: Fix, at: float) -> float:
        """How far the receiver's clock fell behind the node's since `ref` (arrived at
        `ref_at`), as `fix` and the latest fix judged that arrived ARRIVAL_JITTER_S or more
        before it both say (the one just before, at 1 Hz; five before, at 10 Hz): a
        leap-second correction (firmware older than the last leap second steps UTC back
        minutes after a cold start) or a reset to the receiver's RTC, the vehicle driving
        on. One late fix says nothing: a stalled read delays it, then delivers the fixes
        after it at once, none of them apart from it."""
        last = self._before
        if last is None or at - last[1] < ARRIVAL_JITTER_S:
            return 0.0

        def behind(f: Fix, t: float) -> float:  # node's clock minus the receiver's
            return t - f.fix_time.timestamp()

        lag = min(behind(*last), behind(fix, at)) - behind(ref, ref_at) - ARRIVAL_JITTER_S
        return max(0.0, lag)

    def _judge(self, fix: Fix, at: float) -> str | None:
        wheel_m = self._wheel_m(at)
        frozen = self._frozen(fix, at, wheel_m)
        believed = self._believed
        if believed is None:
            if frozen is None:
                self._believe(fix, at, wheel_m)
            return frozen
        reason = frozen or self._unreachable(believed, fix, at, wheel_m)
        if reason is None:
            self._believe(fix, at, wheel_m, confirmed=True)
            return None
        if frozen is not None:
            self._candidate_since = self._candidate_last = None
            return reason
        return self._maybe_reaccept(fix, at, wheel_m, reason)

    def _believe(
        self, fix: Fix, at: float, wheel_m: float | None, *, confirmed: bool = False
    ) -> None:
        """`fix` is the new reference; `confirmed`: it was reachable from the one before,
        which a lone first fix (a cold start's wrong one) or a place re-accepted is not."""
        self._watch_stuck(fix, at)
        self._believed = _Believed(fix, at, wheel_m, self.speed(fix, at), confirmed)
        if not confirmed:
            self._trail.clear()  # a new reference: the way to it is not the wheels' to judge
        self._trail.append(self._believed)
        rest = self._rest
        if (
            not confirmed
            or rest is None
            or rest.wheel_m is None
            or wheel_m is None
            or not self.wheels.since_ok(rest.at)
            or wheel_m - rest.wheel_m > REST_ROLL_M
        ):
            self._rest = self._believed  # moving, or a new reference or wheels' run
        while self._trail and at - self._trail[0].at > WHEEL_WINDOW_S:
            self._trail.popleft()
        self._candidate_since = self._candidate_last = None
        self._candidate_witnessed = False

    def _watch_stuck(self, fix: Fix, at: float) -> None:
        """Latch `speed_stuck` when the fixes believed over STUCK_S went STUCK_M, each a
        step on from the one before (a parked receiver's multipath jump is one step),
        while the receiver said it stood; a speed reported again unlatches it."""
        run = self._standing
        if fix.speed is None or fix.speed >= STATIONARY_MPS:
            run.clear()
            self.speed_stuck = False
            return
        if run and haversine_m(run[-1][0].lat, run[-1][0].lon, fix.lat, fix.lon) < STUCK_STEP_M:
            run.clear()
        run.append((fix, at))
        while at - run[0][1] > STUCK_S:
            run.popleft()
        first = run[0][0]
        if (
            at - run[0][1] >= STUCK_S - 2.0
            and haversine_m(first.lat, first.lon, fix.lat, fix.lon) >= STUCK_M
        ):
            self.speed_stuck = True

    def _unreachable(self, a: _Believed, fix: Fix, at: float, wheel_m: float | None) -> str | None:
        step = haversine_m(a.fix.lat, a.fix.lon, fix.lat, fix.lon)
        slack = jitter_m(a.fix) + jitter_m(fix)
        # the receiver's time, as far as the arrivals allow; a sped-up route's (Fix.pace)
        dt = elapsed_s(a.fix, fix, self.lag_s(a.fix, a.at, fix, at)) * max(fix.pace, self.pace, 1.0)
        # against the last believed fix, and against the oldest of the last WHEEL_WINDOW_S:
        # a spoofer dragging a parked bus by less than the slack each fix is caught over it
        # and against where the wheels last stood, however long ago, with a parked
        # receiver's wander: a spoofer walking a parked bus slower than that is caught too
        refs = [(r, 0.0) for r in (a, *itertools.islice(self._trail, 1))]
        if self._rest is not None:
            refs.append((self._rest, REST_WANDER_M))
        for ref, wander in refs:
            if (
                not self.wheels_refuted
                and wheel_m is not None
                and ref.wheel_m is not None
                and self.wheels.since_ok(ref.at)
                and haversine_m(ref.fix.lat, ref.fix.lon, fix.lat, fix.lon)
                > (wheel_m - ref.wheel_m) * WHEEL_MARGIN
                + jitter_m(ref.fix)
                + jitter_m(fix)
                + WHEEL_SLACK_M
                + wander
            ):
                return "wheels"
        if step > self._reach_mps(a.speed, self.speed(fix, at), dt) * dt + slack:
            return "jump"
        # the receiver's time is believed fix to fix up to EXCURSION_MAX_S past the node's
        # (a stalled read); a spoofer running it ahead by that at every fix is not, against
        # the oldest believed fix of the window: the node's time since it, given that once
        old = self._trail[0] if self._trail else a
        if old is not a:
            pace = max(fix.pace, self.pace, 1.0)
            node_dt = (max(0.0, at - old.at) + EXCURSION_MAX_S) * pace
            lag = self.lag_s(old.fix, old.at, fix, at)
            span = min(elapsed_s(old.fix, fix, lag) * pace, node_dt)
            far = haversine_m(old.fix.lat, old.fix.lon, fix.lat, fix.lon)
            if far > MAX_ROAD_SPEED_MPS * span + jitter_m(old.fix) + jitter_m(fix):
                return "jump"
        return None

    @staticmethod
    def _reach_mps(a: float | None, b: float | None, dt: float) -> float:
        """How fast the vehicle may have gone between two fixes: as the odometer's rule, the
        larger of their speeds plus SPEED_MARGIN_MPS and half ACCEL_MPS2 x dt, at most
        MAX_ROAD_SPEED_MPS; a speed under STATIONARY_MPS (a receiver stuck at 0) says
        nothing."""
        if a is None or b is None or min(a, b) < STATIONARY_MPS:
            return MAX_ROAD_SPEED_MPS
        return min(MAX_ROAD_SPEED_MPS, max(a, b) + SPEED_MARGIN_MPS + ACCEL_MPS2 * dt / 2)

    def _frozen(self, fix: Fix, at: float, wheel_m: float | None) -> str | None:
        # the same fix time again, seconds after the fix that had it: a receiver repeating
        new = self._newest
        if new is None or fix.fix_time != new[0].fix_time or fix.received is None:
            self._newest = (fix, at)  # a time gone back is a date learnt, or a glitch
        elif at - new[1] >= FROZEN_REPEAT_S:
            return "frozen"
        # standing within the jitter of where the run began, while the wheels rolled
        still = self._still
        moved = still is None or (
            haversine_m(still[0].lat, still[0].lon, fix.lat, fix.lon) > jitter_m(fix)
        )
        if still is None or moved or still[1] is None or still[2] != self.wheels.since:
            # a new run: the fixes moved, or the wheels' witness (re)began
            start = fix if still is None or moved else still[0]
            self._still = (start, wheel_m, self.wheels.since)
            return None
        if wheel_m is not None and wheel_m - still[1] >= FROZEN_WHEEL_M:
            return "frozen"
        return None

    def _maybe_reaccept(
        self, fix: Fix, at: float, wheel_m: float | None, reason: str
    ) -> str | None:
        """A run of suspect fixes consistent among themselves becomes believed after
        `REACCEPT_S` (`REACCEPT_WITNESSED_S` when the wheels spoke against it)."""
        if self._candidate_last is not None:
            prev, prev_at = self._candidate_last
            step = haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
            dt = (max(0.0, at - prev_at) + 1.0) * max(fix.pace, self.pace, 1.0)
            if step > MAX_ROAD_SPEED_MPS * dt + jitter_m(prev) + jitter_m(fix):
                self._candidate_since = None  # not even consistent among themselves
                self._candidate_witnessed = False
        if self._candidate_since is None:
            self._candidate_since = at
        self._candidate_last = (fix, at)
        if reason == "wheels":
            self._candidate_witnessed = True
        held = at - self._candidate_since
        # the wheels against a place confirmed by fixes before it: a spoofer's or a jump
        # the wheels cannot have made; against a lone first fix they speak of that fix
        confirmed = self._believed is not None and self._believed.confirmed
        wait = REACCEPT_WITNESSED_S if self._candidate_witnessed and confirmed else REACCEPT_S
        if held >= wait:
            if wait == REACCEPT_WITNESSED_S:
                self.wheels_refuted = True
            self._believe(fix, at, wheel_m)
            return None
        return reason

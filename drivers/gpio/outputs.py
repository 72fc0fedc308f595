"""The lock relay and the LEDs and buzzer, driven from event-loop timers.

Why not gpiozero's `blink(background=True)` / `beep()`: each pattern starts a thread and
each change of pattern stops one, and `_stop_blink` joins that thread on the caller's
thread — here the event loop. Measured on MockFactory on the dev machine: starting a blink
takes 108 µs at the median and up to 1.1 ms, stopping one 92 µs (a plain relay write:
2.4 µs); on a Pi Zero 2 W under load a join waits for the GIL and can take milliseconds.
Patterns change on every tap, and a granted or denied pattern during an alarm has to hand
the LEDs back to the alarm afterwards, so one owner of the outputs is simpler than three
threads and a coordinator. Here each output is a track of loop timers (`call_at` on an
absolute schedule, so blinks do not drift); a step costs a pin write and a timer. The only
cost is that a stalled loop stretches a blink — a stalled loop is a bug reported elsewhere.

Safety: `off()` puts everything in its safe state (relay de-energised, buzzer and LEDs off)
and is what the board calls when the driver stops for any reason. The relay pulse is capped
by `max_unlock_s` whatever the request says.
"""

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from drivers.gpio.options import FeedbackTimings

Indicator = Literal["green", "red", "buzzer"]
INDICATORS: tuple[Indicator, ...] = ("green", "red", "buzzer")


class Line(Protocol):
    """One output pin, logical level (True = energised / lit / sounding)."""

    def set(self, on: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Blink:
    """On `on_s`, off `off_s`, `n` times (None: until replaced), then off."""

    on_s: float
    off_s: float
    n: int | None = 1

    @property
    def duration(self) -> float:
        if self.n is None:
            return math.inf
        return self.n * self.on_s + (self.n - 1) * self.off_s


OFF = Blink(0.0, 0.0, 0)
"""Dark and silent."""

Pattern = Mapping[Indicator, Blink]


def patterns(t: FeedbackTimings) -> dict[str, Pattern]:
    """What each Feedback pattern shows, from the configured timings."""
    return {
        "granted": {"green": Blink(t.granted_s, 0), "red": OFF, "buzzer": Blink(t.beep_s, 0)},
        "denied": {
            "green": OFF,
            "red": Blink(t.denied_s, 0),
            "buzzer": Blink(t.beep_s, t.beep_s, t.denied_beeps),
        },
        "alarm": {
            "green": OFF,
            "red": Blink(t.alarm_blink_s, t.alarm_blink_s, None),
            "buzzer": Blink(t.alarm_beep_s, t.alarm_beep_s, None),
        },
        "alarm_acked": {
            "green": OFF,
            "red": Blink(t.acked_on_s, t.acked_off_s, None),
            "buzzer": OFF,
        },
        "alarm_off": {"green": OFF, "red": OFF, "buzzer": OFF},
    }


SHORT = frozenset(("granted", "denied"))
"""Shown for a moment on the indicators the alarm state leaves dark; the others set that
state."""


def changes(wave: Blink) -> Iterator[tuple[float, bool]]:
    """(seconds from the start, level) of every change the wave makes; the last is off."""
    if wave.n == 0 or wave.on_s <= 0:
        yield 0.0, False
        return
    if wave.off_s <= 0:  # blinks with no gap are one long "on"
        yield 0.0, True
        if wave.n is not None:
            yield wave.n * wave.on_s, False
        return
    period = wave.on_s + wave.off_s
    k = 0
    while wave.n is None or k < wave.n:
        yield k * period, True
        yield k * period + wave.on_s, False
        k += 1


class _Track:
    """Plays one Blink on one line with loop timers; playing another cancels it.

    Changes are due at absolute times from the start, so a late timer does not push every
    later change back (no drift over an alarm that lasts an hour).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, line: Line, guard: Callable[[BaseException], None]
    ) -> None:
        self.loop = loop
        self.line = line
        self.guard = guard
        self.handle: asyncio.TimerHandle | None = None

    def play(self, wave: Blink) -> None:
        self.stop()
        steps = changes(wave)
        _, level = next(steps)
        self.line.set(level)
        self._schedule(steps, self.loop.time())

    def _schedule(self, steps: Iterator[tuple[float, bool]], start: float) -> None:
        step = next(steps, None)
        if step is not None:
            self.handle = self.loop.call_at(start + step[0], self._change, steps, start, step[1])

    def _change(self, steps: Iterator[tuple[float, bool]], start: float, level: bool) -> None:
        self.handle = None
        try:
            self.line.set(level)
            self._schedule(steps, start)
        except Exception as exc:  # a pin write failed: the board fails the driver
            self.guard(exc)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def dark(wave: Blink) -> bool:
    """The wave never lights or sounds its indicator."""
    return wave.n == 0 or wave.on_s <= 0


class Indicators:
    """The green and red LEDs and the buzzer: an alarm state, and short patterns beside it.

    "alarm", "alarm_acked" and "alarm_off" set the lasting state; "granted" and "denied"
    show for their short duration on the indicators that state leaves dark, then give them
    back. An alarm keeps what it uses: during a panic a tap shows green, or nothing, and
    the red light and the buzzer go on. (A tap used to take every indicator for its
    second: someone tapping a card once a second kept a panic alarm dark and silent.)
    A new alarm takes every indicator at once, even from a short pattern; "alarm_acked" and
    "alarm_off" leave a short pattern the indicators they leave dark until its time is up.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        lines: Mapping[Indicator, Line],
        timings: FeedbackTimings,
        guard: Callable[[BaseException], None],
    ) -> None:
        self.loop = loop
        self.guard = guard
        self.patterns = patterns(timings)
        self.tracks = {k: _Track(loop, line, guard) for k, line in lines.items()}
        self.state = "alarm_off"
        self.short_until: asyncio.TimerHandle | None = None
        self.short: set[Indicator] = set()  # the indicators a short pattern shows on now

    def show(self, pattern: str) -> None:
        """Show a Feedback pattern (unknown names are the caller's to refuse)."""
        lasting = self.patterns[self.state]
        if pattern in SHORT:
            self._end_short()
            free = {key for key in self.tracks if dark(lasting[key])}
            short = self.patterns[pattern]
            self.short = free
            for key in free:
                self.tracks[key].play(short[key])
            duration = max((short[key].duration for key in free), default=0.0)
            if free:
                self.short_until = self.loop.call_later(duration, self._resume)
            return
        previous, self.state = self.state, pattern
        if pattern == previous:
            return  # already showing (a driver's ready, the service saying it again)
        lasting = self.patterns[pattern]
        # a new alarm takes every indicator at once; a calmer state leaves a tap's pattern
        # the indicators it leaves dark, until the tap's time is up
        if pattern == "alarm":
            self.short = set()
        self.short = {key for key in self.short if dark(lasting[key])}
        if not self.short:
            self._end_short()
        for key, track in self.tracks.items():
            if key not in self.short:
                track.play(lasting[key])

    def off(self) -> None:
        """Safe state: everything dark and silent, nothing scheduled."""
        self._end_short()
        self.short = set()
        self.state = "alarm_off"
        for track in self.tracks.values():
            track.stop()
            track.line.set(False)

    def _end_short(self) -> None:
        if self.short_until is not None:
            self.short_until.cancel()
            self.short_until = None

    def _resume(self) -> None:
        self.short_until = None
        taken, self.short = self.short, set()
        try:
            for key in taken:
                self.tracks[key].play(self.patterns[self.state][key])
        except Exception as exc:
            self.guard(exc)


class LockRelay:
    """Energises the lock relay for a pulse; a new unlock while energised extends it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        line: Line,
        max_s: float,
        guard: Callable[[BaseException], None],
    ) -> None:
        self.loop = loop
        self.line = line
        self.max_s = max_s
        self.guard = guard
        self.until = -math.inf
        self.handle: asyncio.TimerHandle | None = None

    @property
    def energised(self) -> bool:
        return self.handle is not None

    def unlock(self, pulse_s: float) -> bool:
        """Energise now for pulse_s (capped); False when pulse_s is not a usable duration."""
        if not math.isfinite(pulse_s) or pulse_s <= 0:
            return False
        now = self.loop.time()
        until = now + min(pulse_s, self.max_s)
        if until <= self.until and self.handle is not None:
            return True  # already energised for longer
        if self.handle is None:
            self.line.set(True)  # first: the write is what the user waits for
        else:
            self.handle.cancel()
        self.until = until
        self.handle = self.loop.call_at(until, self._release)
        return True

    def _release(self) -> None:
        self.handle = None
        self.until = -math.inf
        try:
            self.line.set(False)
        except Exception as exc:
            self.guard(exc)

    def off(self) -> None:
        """Safe state: de-energised, nothing scheduled."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.until = -math.inf
        self.line.set(False)

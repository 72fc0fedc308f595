"""A door known only from the vehicle's CAN bus, as a gate for the counting beams there.

A shuttle's doors are its own: their state comes from the door controller in DC2 (2-bit
open status: 0 closed, 1 open, 2 error, 3 not available), which the vehicle service passes
on frame by frame (`VehicleDoorStatus`). The beams of a door with that name and no contact
on GPIO are gated by it as by a contact (drivers/gpio/board.py `_Doorway`): a walk counts
only if the door was open at some moment of it, give or take the grace. What a bus is not,
a contact is: sampled (a frame every 100 ms to 1 s), late (stamped when the node took the
frame, behind the beams' edges), and able to go quiet or not know. So:

- a frame says how the door was since the one before it: the first frame after a walk's
  grace is part of its window (the door that opened as the rider pushed in, reported by the
  next frame), and a walk is judged shut only once a frame stamped after its window came;
- a walk whose window the bus did not cover (no frame for `CAN_SILENT_S` within it, or none
  after it by `CAN_SILENT_S`: ignition off, an FMS gateway asleep, the adapter unplugged,
  the CAN driver restarting) is `unheard`, and a walk in whose window the door said error
  or not available is `unknown`: both count, ungated, and are reported. A door nobody can
  see must not drop every real rider for ever; a hand waved then counts, as at a door
  without a contact, and health shows it;
- the gate exists only once a status for the door came since the GPIO driver started (the
  vehicle service tells a driver that starts the last one it had, stamped when it came, so
  a door that went quiet before a restart stays a gate, `unheard`): a bus
  that never spoke leaves the beams as without a door (the CAN driver's health says why);
  one that talks without ever giving the door's status is reported by the board
  (`VehicleDoorUnheard`: `door_never_heard`, and its walks `beam_door_never_heard`).
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from drivers.gpio.flapping import FlapGuard, Report

CAN_SILENT_S = 2.0
"""Frames of a door this far apart leave it unknown between them. A door opened for a
rider is open longer than this (1-3 s each way), so two "closed" frames closer together
cannot hide it; DC2 comes every 100 ms to 1 s (on a change at once), and a longer gap is a
bus gone quiet, a receive thread that stalled, or frames thinned by the throttle
(`min_interval_s` above 2 s). No more than the beams' grace (board.DOOR_GRACE_S): frames
stamped late by a shorter stall still fall in the window of a walk at the opening they
tell. Also how long a walk waits, past its grace, for the frame that closes its window
before it counts `unheard`."""
CAN_HISTORY = 64
"""Runs of one status kept per door: far more than one walk's window holds, unless the
status changes with every frame (a device on the FMS port): then the walks count, as while
a contact flaps."""

State = Literal["open", "closed", "unknown"]
Verdict = Literal["open", "closed", "unknown", "unheard"]
STATES: dict[int | None, State] = {0: "closed", 1: "open"}  # 2 error, 3 n/a, None: unknown


@dataclass
class _Run:
    """Frames of one status, each within `CAN_SILENT_S` of the one before."""

    first: float
    last: float
    state: State


class CanDoor:
    """One door's statuses from the bus, by when the node took them (monotonic)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs: deque[_Run] = deque(maxlen=CAN_HISTORY)
        self.forgot = float("-inf")  # until when the runs let go of told the door
        self.opened: list[Callable[[], None]] = []  # its beams, told of each opening
        # openings for the beams' `beam_silent`, guarded as a contact's: a status flapping
        # 0/1 (a loose door switch, a device on the FMS port) is not an opening per frame
        self.guard = FlapGuard(False)
        self.heard: list[Callable[[], None]] = []  # its beams, told of each frame

    @property
    def state(self) -> State | None:
        return self.runs[-1].state if self.runs else None

    def status(self, status: int | None, ts: float) -> None:
        """One frame's status of the door, taken at `ts`."""
        state = STATES.get(status, "unknown")
        last = self.runs[-1] if self.runs else None
        if last is not None:
            ts = max(ts, last.last)  # the bus's order is the order taken
        if last is not None and last.state == state and ts - last.last <= CAN_SILENT_S:
            last.last = ts
        else:
            if len(self.runs) == self.runs.maxlen:
                self.forgot = _until(self.runs[0], self.runs[1])
            self.runs.append(_Run(ts, ts, state))
        reports = [*self.guard.advance(ts), *self.guard.change(state == "open", ts)]
        if any(isinstance(out, Report) and out.value for out in reports):
            for opened in self.opened:
                opened()
        for heard in self.heard:
            heard()

    def verdict(self, start: float, end: float, now: float) -> Verdict | float:
        """Was the door open at some moment from `start` to `end`? "open" as soon as a frame
        says so; otherwise, once a frame after `end` came, "closed", or "unknown" if a frame
        said error or not available, or "unheard" if the bus left part of it uncovered; or
        when to ask again (no frame after `end` yet: at most `CAN_SILENT_S` more)."""
        window: list[_Run] = []
        runs = list(self.runs)
        for run, after in zip(runs, [*runs[1:], None], strict=True):
            if _until(run, after) < start:
                continue  # over before the window
            window.append(run)
            if run.last >= end:
                break
        if any(run.state == "open" for run in window):
            return "open"
        if not window or window[-1].last < end:
            wake = end + CAN_SILENT_S
            return "unheard" if now >= wake else wake
        if window[0] is self.runs[0] and window[0].first > start and self.forgot >= start:
            return "unknown"  # the history does not reach back: a status changing each frame
        covered = start  # known up to here: a frame tells the door for CAN_SILENT_S after it
        for run in window:
            if run.first > covered:
                return "unheard"
            covered = max(covered, run.last + CAN_SILENT_S)
        if any(run.state == "unknown" for run in window):
            return "unknown"
        return "closed"


def _until(run: _Run, after: _Run | None) -> float:
    """Until when `run` tells the door: `CAN_SILENT_S` after its last frame, or the first
    frame of the run `after` it if sooner (the door changed by then: an opening is not
    stretched past the frame that said it shut)."""
    until = run.last + CAN_SILENT_S
    return until if after is None else min(until, after.first)

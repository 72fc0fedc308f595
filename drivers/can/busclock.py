"""The bus's time on a live bus: when each frame was on the bus, from its python-can
`timestamp`, on the node's monotonic clock, for the transport protocol's timeouts.

J1939-21's T1 (0.75 s between two packets of a BAM) and T2/T3 (1.25 s in an RTS/CTS
session) are times on the bus. Judged on when the pipeline processes a frame, a receive
thread that stalls for a second (a busy Pi Zero, an SD card stall, a garbage collection)
drops every message that was being sent, although its packets were on time and wait in
the kernel's or the adapter's queue. So each frame is placed on the bus's time by its own
timestamp, which python-can takes from:

- `socketcan`: the kernel, when the frame reached the socket (SO_TIMESTAMPNS), on the wall
  clock (CLOCK_REALTIME): NTP, chrony or GPS steps it (a Pi without an RTC boots in the
  past and steps forward by days), and chrony may slew it by up to 8 %;
- `slcan`: the host, when the line is read (drivers/can/slcan.py stamps a whole chunk at
  its read; python-can's own reader, at parse): a frame that waited in the tty buffer
  while the thread was stalled is stamped late, unless the adapter stamps its frames
  (Lawicel `Z1`, which drivers/can/slcan.py turns into the host's clock);
- `virtual`: the sender's `time.time()` at send, or the message's own with
  `preserve_timestamps` (then anything);
- other interfaces: often the adapter's clock (seconds since it powered up, reset with it);
  a Message nobody stamped has 0.0.

None of these is the monotonic clock, and each can go wrong, so the frames' clock is used
for the time between frames only, within what the node's monotonic clock allows:

- a frame was on the bus no later than it is processed: the bus time never passes the
  monotonic clock (a clock stepped forward by hours, an adapter clock that runs fast);
- the bus time never goes back: a frame stamped before the previous one (a clock stepped
  back, an adapter reset) or not stamped (0, negative, NaN) is placed as long after the
  previous frame as it was processed after it; the frames after it go on from there;
- the frames' clock is anchored anew, by the least lag seen, when every frame of a window
  of `WINDOW_S` and the one that ends it were processed some time after their bus time,
  and the lag did not shrink over the window: a clock that runs slow or stands still
  cannot hold the bus time back by more than about two windows, while a consumer stall
  (prompt frames before it) and the backlog after it (worked off faster than the bus made
  it: the lag shrinks, for as many windows as that takes) leave the anchor alone, up to a
  lag of `BACKLOG_S`;
- when the receiver found its queue empty (`idle`), nothing waits, so the bus went quiet
  at least as long as the node waited since the last frame: the bus time moves on with
  the monotonic clock, and a session whose sender went quiet is expired even if no frame
  ever comes again, whatever the frames' clock.

A stall is thus forgiven only for the frames' own time between packets that were on the
bus: a sender that went quiet on the bus for longer than T1 is dropped as before.
"""

import math

WINDOW_S = 1.0
"""How long the frames' clock may lag the monotonic clock, on every frame, before it is
anchored anew: on a bus that never lets the receiver wait (an idle receiver moves the bus's
time on anyway), a slow or stuck frame clock holds a session at most about twice this long
beyond its timeout."""


BACKLOG_S = 3.0
"""The longest lag a backlog being worked off keeps (the anchor is left alone while the lag
shrinks): a kernel socket or tty buffer holds no more of a busy bus; beyond it, a lag that
shrinks is anchored anew too, so that frames' clocks that run fast after a stall cannot
hold a session for ever."""


class BusClock:
    """Bus time (monotonic seconds) of each frame, from its timestamp and when it is
    processed. Not thread-safe: the receive thread owns it."""

    __slots__ = (
        "_bus",
        "_mono",
        "_offset",
        "_stamp",
        "_window_end",
        "_window_lag",
        "_window_start_lag",
    )

    def __init__(self) -> None:
        self._bus: float | None = None  # the latest bus time given
        self._mono = 0.0  # the monotonic time it was given at
        self._offset: float | None = None  # bus time - frame timestamp, once one is usable
        self._stamp = -math.inf  # the latest usable frame timestamp
        self._window_lag = math.inf  # the least (monotonic - bus time) in this window
        self._window_start_lag = 0.0  # (monotonic - bus time) when this window began
        self._window_end = 0.0

    def frame(self, stamp: float | None, mono: float) -> float:
        """The bus time of a frame stamped `stamp`, processed at `mono` (monotonic)."""
        if stamp is not None and not 0.0 < stamp < math.inf:
            stamp = None  # not stamped (0.0, python-can's default), negative, NaN, infinite
        bus = self._bus
        if bus is None:
            bus = mono
            self._window_lag = 0.0
            self._window_end = mono + WINDOW_S
        else:
            offset = self._offset
            if stamp is not None and offset is not None and stamp >= self._stamp:
                bus = max(bus, min(stamp + offset, mono))
            else:  # no time of its own, or the clock went back: as long as processing took
                bus = min(bus + max(0.0, mono - self._mono), mono)
            lag = mono - bus
            if mono >= self._window_end:
                # every frame of the window and this one processed late, and no less late
                # at its end than at its start: the frames' clock runs slow or stands still,
                # not the consumer (a stall has prompt frames before it; the backlog after
                # it is worked off faster than the bus made it, so the lag shrinks, however
                # many windows that takes)
                shift = min(self._window_lag, lag)
                if shift > 0.0 and (lag >= self._window_start_lag or lag > BACKLOG_S):
                    bus += shift
                    lag -= shift
                self._window_lag = self._window_start_lag = lag
                self._window_end = mono + WINDOW_S
            elif lag < self._window_lag:
                self._window_lag = lag
        if stamp is not None:
            self._offset = bus - stamp
            self._stamp = stamp
        self._bus = bus
        self._mono = mono
        return bus

    def idle(self, mono: float) -> float | None:
        """The bus time at `mono` once the receiver found no frame waiting: the latest
        frame's, plus the time the node waited since (None before any frame)."""
        bus = self._bus
        if bus is None:
            return None
        bus = min(bus + max(0.0, mono - self._mono), mono)
        self._bus = bus
        self._mono = mono
        return bus

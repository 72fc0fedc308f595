"""The receive thread: python-can `recv` → pipeline → events handed to the loop in batches.

python-can buses block in `recv`, so they are read in a thread of their own, which also
decodes: the event loop only sees finished events. Handing each event over with
`call_soon_threadsafe` costs a self-pipe write and a loop wake-up per event, so events are
queued and the loop is woken at most once per `batch_s` (10 ms by default: nothing in a
vehicle summary needs less). Counters are accumulated in the thread and turned into
`ctx.count` calls from the loop, as the counters are not thread-safe.

A dedicated thread and our own loop rather than python-can's `Notifier`: the notifier
calls a listener per message (and, given an asyncio loop, `call_soon_threadsafe` per
message); `bench.can` measures both (notifier_fps against pipeline_fps, about 0.7x). The
loop also looks the PGN up inline, so the many frames of PGNs nobody decodes cost no
function call, and reads the clock once per 16 frames for its housekeeping. A python-can
bus that leaves `recv` to `BusABC` is read through its `_recv_internal` (the method every
interface implements): `BusABC.recv` makes a `LOG.log(9, ...)` call per frame, which costs
even when nothing is logged (9 % of the CAN thread in a profile at 3,450 frames/s).
"""

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Iterable

import can

from core.driver import DriverContext
from drivers.can.pipeline import Event, Pipeline

RECV_TIMEOUT_S = 0.2
TICK_S = 0.25
REPORT_S = 0.5
"""How often the thread's counters reach `ctx.count` (health publishes far less often)."""
MAX_PENDING = 20_000
"""Events waiting for the loop; beyond this (a loop stalled for seconds) they are dropped."""


class BusLost(Exception):
    """The interface failed under us (adapter unplugged, interface down)."""


class BusOff(Exception):
    """The controller went bus-off and the bus stayed silent."""


class Receiver:
    """Runs one bus through one pipeline in a thread until stopped or the bus fails."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        batch_s: float = 0.01,
        busoff_reopen_s: float = 5.0,
        extra_counts: Iterable[Callable[[], dict[str, int]]] = (),
    ) -> None:
        self.pipeline = pipeline
        self.batch_s = batch_s
        self.busoff_reopen_s = busoff_reopen_s
        self.extra_counts = list(extra_counts)
        self._pending: collections.deque[Event] = collections.deque()
        self._scheduled = False
        self._dropped = 0
        self._reported: dict[str, int] = {}
        self._stopping = False  # a plain flag: read once per frame, cheaper than an Event

    def stop(self) -> None:
        """End the run (from any thread): `run` returns once the thread has stopped."""
        self._stopping = True

    # -- the thread --------------------------------------------------------------------

    def _pump(
        self, bus: can.BusABC, loop: asyncio.AbstractEventLoop, flush: Callable[[], None]
    ) -> None:
        pipeline = self.pipeline
        recv = _receive(bus)
        route = pipeline.route
        routed = pipeline.routed
        pending = self._pending
        append = pending.append
        clock = time.monotonic
        batch_s = self.batch_s
        idle_s = RECV_TIMEOUT_S
        next_tick = clock() + TICK_S
        last_kick = 0.0
        n = pipeline.frames
        try:
            while True:
                garbled = False
                try:
                    msg = recv(batch_s if pending else idle_s)
                except can.CanError as exc:
                    raise BusLost(str(exc) or type(exc).__name__) from exc
                except (ValueError, IndexError, KeyError):
                    # slcan and serial adapters parse ASCII or bytes: a garbled line raises
                    # before a Message exists; the line is gone, the next one is fine
                    pipeline.counts["garbled"] = pipeline.counts.get("garbled", 0) + 1
                    msg = None
                    garbled = True
                if msg is not None:
                    n += 1
                    # Pipeline.process, with the PGN lookup inline: most frames end here
                    pgn = (msg.arbitration_id >> 8) & 0x3FFFF
                    if (pgn & 0xFF00) < 0xF000:  # PDU1: drop the destination address
                        pgn &= 0x3FF00
                    target = route(pgn)
                    if target is not None or msg.is_error_frame or not msg.is_extended_id:
                        event = routed(msg, pgn, target)
                        if event is not None:
                            if len(pending) < MAX_PENDING:
                                append(event)
                            else:
                                self._dropped += 1
                    if n & 15 and not pending:
                        continue  # the rest every 16 frames, a timeout, or events waiting
                if self._stopping:
                    break
                pipeline.frames = n
                now = clock()
                if pending and not self._scheduled and now - last_kick >= batch_s:
                    self._scheduled = True
                    last_kick = now
                    loop.call_soon_threadsafe(flush)
                if now >= next_tick:
                    next_tick = now + TICK_S
                    # the frame just read tells the bus's time; none read, the time the
                    # thread waited does (the queue is empty), or nothing (a garbled
                    # line: frames may wait behind it)
                    for event in pipeline.tick(now, msg, garbled=garbled):
                        append(event)
                    off = pipeline.bus_off_at
                    if off is not None and now - off > self.busoff_reopen_s:
                        raise BusOff(f"bus-off and no frame for {self.busoff_reopen_s:g} s")
        finally:
            pipeline.frames = n

    # -- the loop side -----------------------------------------------------------------

    def _drain(self, ctx: DriverContext) -> None:
        self._scheduled = False
        pending = self._pending
        emit = ctx.emit
        while pending:
            emit(pending.popleft())

    def report(self, ctx: DriverContext) -> None:
        """Turn the thread's cumulative counters into `ctx.count` deltas."""
        snapshot = self.pipeline.snapshot()
        for source in self.extra_counts:
            snapshot.update(source())
        snapshot["dropped"] = self._dropped
        for key, value in snapshot.items():
            delta = value - self._reported.get(key, 0)
            if delta:
                ctx.count(key, delta)
                self._reported[key] = value

    async def run(self, bus: can.BusABC, ctx: DriverContext) -> None:
        """Read `bus` until cancelled; raises BusLost or BusOff when the bus fails."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def flush() -> None:
            self._drain(ctx)

        def target() -> None:
            try:
                self._pump(bus, loop, flush)
            except BaseException as exc:  # handed to the loop, which raises it
                loop.call_soon_threadsafe(_settle, done, exc)
            else:
                loop.call_soon_threadsafe(_settle, done, None)

        thread = threading.Thread(target=target, name=f"can-rx-{ctx.name}", daemon=True)
        thread.start()
        try:
            while not done.done():
                await asyncio.wait([done], timeout=REPORT_S)
                self.report(ctx)
            done.result()
        finally:
            self._stopping = True
            if thread.is_alive():
                await asyncio.shield(asyncio.to_thread(thread.join, 2 * RECV_TIMEOUT_S + 1))
            self._drain(ctx)
            self.report(ctx)


def _receive(bus: can.BusABC) -> Callable[[float | None], can.Message | None]:
    """`bus.recv`, or the same without `BusABC.recv`'s per-frame log call where the bus
    leaves `recv` to BusABC. A frame that software filters drop gives None: the loop reads
    again (BusABC.recv would wait out the rest of the time-out instead)."""
    if not isinstance(bus, can.BusABC) or type(bus).recv is not can.BusABC.recv:
        return bus.recv
    internal = bus._recv_internal
    matches = bus._matches_filters

    def recv(timeout: float | None) -> can.Message | None:
        msg, filtered = internal(timeout)
        if msg is None or filtered or matches(msg):
            return msg
        return None

    return recv


def _settle(future: "asyncio.Future[None]", exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)

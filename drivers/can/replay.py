"""`can.replay`: a recording played onto python-can's virtual bus, read back like a real bus.

The recording is a `candump -L` log, or a Vector ASC or BLF or PEAK TRC file, which
python-can reads (`drivers.can.recordings`).

A sender thread paces the log (`speed` log seconds per real second) onto a private virtual
channel; the receiving side is the very same Receiver and Pipeline as `can.bus`, so the
demo and the tests exercise the real receive and decode path. Malformed lines are counted
(`malformed_lines`) and skipped; the first few of each pass are logged with their line
number.

Pacing follows the time between consecutive frames, never more than `max_gap_s` (log
seconds): a capture whose clock was set mid-way (10.0 -> 1.7e9) or that paused for a
night would otherwise wait for decades or hours. A longer gap, or a step back in time, is
replayed as `max_gap_s` or as none, counted (`time_jumps`) and logged. The sender thread
never dies quietly: whatever stops it other than the end of the log fails the driver,
which the supervisor then restarts.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable

import can
from pydantic import Field

from core.driver import DriverContext, Opens
from core.errors import DriverError
from core.paths import ExistingConfigPath
from drivers.can import table
from drivers.can.candump import EXAMPLE, LogFrame, LogLineError
from drivers.can.options import CanDecodeOptions
from drivers.can.pipeline import Pipeline
from drivers.can.receiver import Receiver
from drivers.can.recordings import FORMATS, read_recording

RX_QUEUE = 10_000
"""Frames the receiving side buffers; a faster sender waits (no frame of a log is lost)."""
LOGGED_BAD_LINES = 5
SEAM_S = 60.0
"""What a seam in the log stands for on the frames' clock (which times the transport
protocol): a jump of the capture's clock beyond max_gap_s, forward or back, and a looped
log's return to its start. Longer than any transport timeout (T1 0.75 s, T2 1.25 s): the
frames either side are not one moment of a bus, and no BAM or RTS/CTS session spans them."""


class CanReplayOptions(CanDecodeOptions):
    log: ExistingConfigPath = Field(
        description="candump -L log, or a .asc, .blf or .trc recording, relative to the config file"
    )
    speed: float = Field(default=1.0, gt=0, le=1_000_000, description="log seconds per real s")
    loop: bool = Field(default=False, description="start again at the end of the log")
    max_gap_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="longest pause between two frames, in log seconds; longer gaps and steps "
        "back in time (a capture's clock set mid-way) are cut short, counted as time_jumps",
    )


class _Sender:
    """Plays the log onto the sender bus, in its own thread."""

    def __init__(self, options: CanReplayOptions, log: logging.Logger) -> None:
        self.options = options
        self.log = log
        self.on_failure: Callable[[], None] = lambda: None
        self.stop = threading.Event()
        self.counts: dict[str, int] = {"replayed": 0, "malformed_lines": 0, "time_jumps": 0}
        self.failure: BaseException | None = None
        self.log_now = 0.0
        """The log's time as replayed, each frame's timestamp: its steps are the pacing's
        (a step back within max_gap_s is none), and a seam (SEAM_S) at a jump beyond
        max_gap_s or the start of a looped log again."""

    def _bad_line(self, lineno: int, exc: LogLineError, shown: int) -> None:
        self.counts["malformed_lines"] += 1
        if shown < LOGGED_BAD_LINES:
            kind = FORMATS.get(self.options.log.suffix.lower())
            self.log.warning(
                "%s:%d: skipped, %s",
                self.options.log,
                lineno,
                f"{exc} ({kind}, frame {lineno})"
                if kind
                else f"not a candump -L line ({exc}); expected e.g. {EXAMPLE!r}",
            )
        elif shown == LOGGED_BAD_LINES:
            self.log.warning("%s: more malformed lines are counted, not logged", self.options.log)

    def _send(self, bus: can.BusABC, frame: LogFrame) -> None:
        msg = can.Message(
            timestamp=self.log_now,
            arbitration_id=frame.can_id,
            is_extended_id=frame.extended,
            is_remote_frame=frame.remote,
            is_error_frame=frame.error,
            data=frame.data,
            check=False,
        )
        while not self.stop.is_set():
            try:
                bus.send(msg, timeout=0.5)
                self.counts["replayed"] += 1
                return
            except can.CanOperationError:
                continue  # the receiver is behind: wait for it, a log has no frames to lose

    def _jump(self, lineno: int, step: float) -> None:
        self.counts["time_jumps"] += 1
        if self.counts["time_jumps"] <= LOGGED_BAD_LINES:
            self.log.warning(
                "%s:%d: the timestamps jump by %.6g s; replayed as %g s (max_gap_s)",
                self.options.log,
                lineno,
                step,
                min(max(step, 0.0), self.options.max_gap_s),
            )

    def play(self, bus: can.BusABC) -> None:
        """The thread's body: whatever ends it but the log's end or a stop fails the driver."""
        try:
            self._play(bus)
        except Exception as exc:  # an OSError on the log, or a bug: never a silent death
            self.failure = exc
            self.on_failure()

    def _play(self, bus: can.BusABC) -> None:
        speed = self.options.speed
        max_gap = self.options.max_gap_s
        clock = time.monotonic
        while not self.stop.is_set():
            sent_before = self.counts["replayed"]
            if sent_before:  # looped: the log's end and its start are no one moment
                self.log_now += SEAM_S
            last_ts: float | None = None
            due = clock()
            shown = 0
            for lineno, item in read_recording(self.options.log):
                if self.stop.is_set():
                    return
                if isinstance(item, LogLineError):
                    self._bad_line(lineno, item, shown)
                    shown += 1
                    continue
                if last_ts is not None:
                    step = item.ts - last_ts
                    if not 0.0 <= step <= max_gap:
                        self._jump(lineno, step)
                        if abs(step) > max_gap:  # a clock set, two captures joined
                            self.log_now += SEAM_S
                        step = max_gap if step > max_gap else 0.0
                    due += step / speed
                    self.log_now += step
                last_ts = item.ts
                delay = due - clock()
                if delay > 0.001 and self.stop.wait(delay):
                    return
                self._send(bus, item)
            if self.counts["replayed"] == sent_before:
                self.log.error("%s has no frame to replay", self.options.log)
                return
            if not self.options.loop:
                self.log.info("replay of %s finished", self.options.log)
                return


class CanReplayDriver:
    """Replays a log until cancelled (and keeps the bus open, silent, once it ends)."""

    Options = CanReplayOptions

    @classmethod
    def opens(cls, options: CanReplayOptions) -> Opens:
        return Opens(simulated="simulated CAN (replays a log)")

    def __init__(self, options: CanReplayOptions) -> None:
        self.options = options
        self.decoders = options.decoders()

    async def run(self, ctx: DriverContext) -> None:
        table.forget()  # the decoders are built: the node holds no more of the DBC than them
        for note in self.decoders.notes:
            ctx.log.warning("%s", note)
        channel = f"edged-replay-{uuid.uuid4().hex}"
        rx = can.Bus(interface="virtual", channel=channel, rx_queue_size=RX_QUEUE)
        # frames carry the log's time to the pipeline, which times the transport protocol
        # on it: a pause in the log is judged as on the bus, at any replay speed
        tx = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
        pipeline = Pipeline(
            self.decoders,
            min_interval_s=self.options.min_interval_s,
            pace=self.options.speed,
            frame_clock=True,
            doors=self.options.door_signals,
        )
        sender = _Sender(self.options, ctx.log)
        receiver = Receiver(pipeline, extra_counts=[sender.counts.copy])
        sender.on_failure = receiver.stop
        thread = threading.Thread(
            target=sender.play, args=(tx,), name=f"can-replay-{ctx.name}", daemon=True
        )
        ctx.log.info(
            "replaying %s at %gx%s",
            self.options.log,
            self.options.speed,
            ", looping" if self.options.loop else "",
        )
        ctx.ready()
        thread.start()
        try:
            await receiver.run(rx, ctx)  # returns only when the sender failed
            failure = sender.failure
            if isinstance(failure, OSError):
                raise DriverError(f"cannot read {self.options.log}: {failure}")
            raise DriverError(
                f"the replay of {self.options.log} stopped ({type(failure).__name__}: "
                f"{failure}); it is started again"
            )
        finally:
            sender.stop.set()
            receiver.stop()
            await asyncio.shield(asyncio.to_thread(thread.join, 2.0))
            tx.shutdown()
            rx.shutdown()

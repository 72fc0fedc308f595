"""CAN receive path benchmark: python-can → J1939 → decode → events, on the virtual bus.

    python -m bench.can --json [--quick]

Prints one JSON object:
- pipeline_fps: frames/s through the whole path (the driver's own Receiver and Pipeline,
  events handed through the real DriverContext and Bus to a subscriber), from frames
  already queued in python-can's virtual bus, so the sender's cost is not in it;
- baseline_fps: a bare `bus.recv()` loop over the same queued frames, in the same run;
- ratio: pipeline_fps / baseline_fps (aim >= 0.7);
- cpu_s_per_mframe: CPU seconds per million frames through the pipeline (and
  baseline_cpu_s_per_mframe for the bare loop; cpu_ratio, their ratio, is the same
  comparison as `ratio` but hardly moved by other processes on the machine);
- saturated_500k_lost: frames lost following a saturated 500 kbit/s bus (3,450 frames/s,
  half of them PGNs not decoded) for 60 s (10 s with --quick), with a 256-frame receive
  queue (about what a SocketCAN socket buffers by default); saturated_500k_lost_1mib_rcvbuf
  the same with 1,400 frames, what the 1 MiB buffer the driver asks for holds;
- cpu_pct_3450fps: CPU % of one core spent receiving and decoding while following it (the
  sender thread's own CPU is measured and left out) (aim < 25);
- notifier_fps: the alternative the driver did not choose, python-can's Notifier calling a
  listener per frame and `call_soon_threadsafe` per event, on the same frames;
- unthrottled_fps: the pipeline with min_interval_s = 0 (every message decoded, an event
  each), and unthrottled_per_event_handoff_fps the same waking the loop for every event
  instead of once per 10 ms batch: what the throttle and the batching buy;
- slcan_fps, slcan_cpu_pct_1700fps: the whole path reading an slcan adapter emulated on a
  pty by another process at 1,700 frames/s (a saturated 250 kbit/s bus), and
  slcan_stock_reader_cpu_pct_1700fps the same with python-can's byte-by-byte reader;
- dc2_{flood}_{rule}_us_per_frame and dc2_{flood}_{rule}_opens: µs per DC2 frame through
  the pipeline's throttle, and the door controller's "open"s decoded (of dc2_frames / 200),
  under a device's DC2 flood at its address (`door_throttle`), the throttle told the doors
  in use (`door_bits`) or not (`every_bit`).

Throughput figures are the best of 5 (--quick: 3) interleaved runs, baseline and pipeline
alike, as a shared machine slows runs at random; `loadavg_1m` says how busy it was. The
driver's default throttle (`min_interval_s`) is in force, as in the field.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import can

from bench.common import say
from core.bus import Bus
from core.counters import Counters
from core.driver import DriverContext
from core.events import ActiveFaults, J1939Signals
from drivers.can.bus import CanBusOptions
from drivers.can.decoder import SHIPPED_DBC, Decoders
from drivers.can.j1939 import make_id
from drivers.can.pipeline import Pipeline
from drivers.can.receiver import Receiver
from drivers.can.slcan import BufferedSlcanBus
from edged.config.services import VehicleServiceConfig
from hil.can.fms import flood

SATURATED_FPS = 3450
INTERVAL_S = CanBusOptions().min_interval_s  # the driver's default throttle
RX_QUEUE_DEFAULT = 256
"""Frames a SocketCAN socket queues with the default 208 KiB buffer (~750 bytes a frame)."""
RX_QUEUE_1MIB = 1400
"""... and with the 1 MiB buffer the driver asks for (`receive_buffer_bytes`)."""
SLCAN_FPS = 1700
LAST_SOURCE = 0xFD


class Consumer:
    """The driver's real context on a real bus, with a subscriber that counts the events
    as a service would take them."""

    def __init__(self) -> None:
        counters = Counters()
        self.bus = Bus(counters)
        self.ctx = DriverContext("bench", self.bus, counters)
        self.events = 0
        self.done = asyncio.Event()  # set by the last frame's event: no polling meanwhile
        for kind in (J1939Signals, ActiveFaults):
            self.bus.subscribe(kind, self._take)

    def _take(self, event: J1939Signals | ActiveFaults) -> None:
        self.events += 1
        if event.source == LAST_SOURCE:
            self.done.set()


def messages(n: int) -> list[can.Message]:
    """`n` frames of a saturated bus, the last one a CCVS1 from a source address no other
    frame has: its event tells the consumer that every frame went through."""
    frames = [*flood(n - 1), (make_id(65265, LAST_SOURCE), bytes(8))]
    return [
        can.Message(arbitration_id=i, data=d, is_extended_id=True, check=False) for i, d in frames
    ]


def preload(msgs: list[can.Message], rx_queue: int = 0) -> tuple[can.BusABC, can.BusABC]:
    """A receiver with every frame already queued, and the sender that queued them."""
    channel = f"bench-{uuid.uuid4().hex}"
    rx = can.Bus(interface="virtual", channel=channel, rx_queue_size=rx_queue)
    tx = can.Bus(interface="virtual", channel=channel)
    for m in msgs:
        tx.send(m)
    return rx, tx


def baseline(msgs: list[can.Message]) -> tuple[float, float]:
    """(frames/s, CPU s) of a bare receive loop over the queued frames."""
    rx, tx = preload(msgs)
    n = len(msgs)
    c, t = time.process_time(), time.perf_counter()
    got = 0
    while got < n:
        if rx.recv(1.0) is not None:
            got += 1
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    rx.shutdown()
    tx.shutdown()
    return n / dt, cpu


async def pipeline_run(
    decoders: Decoders,
    msgs: list[can.Message],
    *,
    batch_s: float = 0.01,
    interval_s: float = INTERVAL_S,
) -> tuple[float, float, int]:
    """(frames/s, CPU s, events) through the driver's receiver, frames already queued."""
    rx, tx = preload(msgs)
    c = Consumer()
    pipeline = Pipeline(decoders, min_interval_s=interval_s)
    receiver = Receiver(pipeline, batch_s=batch_s)
    c0, t0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(receiver.run(rx, c.ctx))
    await asyncio.wait_for(c.done.wait(), 120)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    events = c.events
    receiver.stop()
    await task
    rx.shutdown()
    tx.shutdown()
    return len(msgs) / dt, cpu, events


DOORS_IN_USE = tuple(VehicleServiceConfig().doors.values())  # the default doors: DC2's 1, 2


def door_throttle(
    decoders: Decoders, doors: tuple[str, ...] | None, n: int, flood: str
) -> tuple[float, int]:
    """(µs a frame, the door controller's "open"s decoded of n / 200) through the
    pipeline's throttle: DC2 under the door controller's address, 2000 frames a second
    of bus time, its "open" every 100 ms among a device's flood (on the FMS port): `steady`
    "closed" all alike, `other_byte` "closed" with another byte changed in each frame,
    `door_flap` "closed" and "not available" in turn. `doors` None: every bit of DC2 is
    a door's, as when the driver is not told the doors in use."""
    shut = bytes([0xF3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    opened = bytes([0xF7]) + shut[1:]
    ident = make_id(64933, 0x21)

    def data(i: int) -> bytes:
        if i % 200 == 137:
            return opened
        if flood == "other_byte":
            return shut[:3] + bytes([i % 256]) + shut[4:]
        if flood == "door_flap":
            return shut if i % 2 else bytes([0xFF] * 8)
        return shut

    frames = [
        can.Message(arbitration_id=ident, data=data(i), is_extended_id=True) for i in range(n)
    ]
    pipeline = Pipeline(decoders, min_interval_s=INTERVAL_S, doors=doors)
    process = pipeline.process
    out = []
    t = time.perf_counter()
    for i, msg in enumerate(frames):
        out.append(process(msg, i / 2000))
    dt = time.perf_counter() - t
    opens = sum(
        1 for e in out if isinstance(e, J1939Signals) and e.signals.get("Door1OpenStatus") == 1
    )
    return dt / n * 1e6, opens


async def notifier_run(decoders: Decoders, msgs: list[can.Message]) -> float:
    """The alternative: python-can's Notifier, a listener per frame, a loop call per event."""
    rx, tx = preload(msgs)
    c = Consumer()
    pipeline = Pipeline(decoders, min_interval_s=INTERVAL_S)
    loop = asyncio.get_running_loop()
    clock = time.monotonic

    class Listener(can.Listener):
        def on_message_received(self, msg: can.Message) -> None:
            event = pipeline.process(msg, clock())
            if event is not None:
                loop.call_soon_threadsafe(c.ctx.emit, event)

    t0 = time.perf_counter()
    notifier = can.Notifier(rx, [Listener()], timeout=0.2)
    await asyncio.wait_for(c.done.wait(), 120)
    dt = time.perf_counter() - t0
    notifier.stop()
    rx.shutdown()
    tx.shutdown()
    return len(msgs) / dt


class PacedSender(threading.Thread):
    """Sends `rate` frames/s onto the bus; a frame that finds the receive queue full is lost."""

    def __init__(self, bus: can.BusABC, msgs: list[can.Message], rate: float, seconds: float):
        super().__init__(name="bench-sender", daemon=True)
        self.bus, self.msgs, self.rate, self.seconds = bus, msgs, rate, seconds
        self.sent = 0
        self.lost = 0
        self.cpu_s = 0.0

    def run(self) -> None:
        c0 = time.thread_time()
        t0 = time.monotonic()
        total = int(self.rate * self.seconds)
        i = 0
        n = len(self.msgs)
        while i < total:
            due = min(total, int((time.monotonic() - t0) * self.rate))
            while i < due:
                try:
                    self.bus.send(self.msgs[i % n], timeout=0)
                    self.sent += 1
                except can.CanOperationError:
                    self.lost += 1
                i += 1
            time.sleep(0.001)
        self.cpu_s = time.thread_time() - c0


async def saturated(
    decoders: Decoders, msgs: list[can.Message], seconds: float, queue: int
) -> tuple[int, float]:
    """(frames lost, CPU % of one core) following a saturated 500 kbit/s bus."""
    channel = f"bench-{uuid.uuid4().hex}"
    rx = can.Bus(interface="virtual", channel=channel, rx_queue_size=queue)
    tx = can.Bus(interface="virtual", channel=channel)
    c = Consumer()
    pipeline = Pipeline(decoders, min_interval_s=INTERVAL_S)
    receiver = Receiver(pipeline)
    task = asyncio.create_task(receiver.run(rx, c.ctx))
    await asyncio.sleep(0.2)
    sender = PacedSender(tx, msgs, SATURATED_FPS, seconds)
    c0, t0 = time.process_time(), time.perf_counter()
    sender.start()
    await asyncio.to_thread(sender.join)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await asyncio.sleep(0.5)  # let the receiver finish what is queued
    receiver.stop()
    await task
    received = pipeline.frames  # exact once the receive loop has ended
    rx.shutdown()
    tx.shutdown()
    lost = sender.lost + (sender.sent - received)
    return lost, 100 * (cpu - sender.cpu_s) / wall


async def slcan_run(decoders: Decoders, seconds: float, *, stock: bool) -> tuple[float, float]:
    """(frames/s, CPU %) of the whole path reading an slcan adapter emulated in another
    process at 1,700 frames/s (a saturated 250 kbit/s FMS bus); `stock`: python-can's own
    slcan reader instead of the driver's chunked one."""
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "ttyCAN"
        emulator = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hil.can.slcan", "--link", str(link)),
            *("--flood", str(SLCAN_FPS)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not link.exists():
                if time.monotonic() > deadline or emulator.returncode is not None:
                    raise RuntimeError("the slcan emulator did not start")
                await asyncio.sleep(0.05)
            kwargs: dict[str, Any] = {
                "bitrate": 250_000,
                "sleep_after_open": 0,
                "listen_only": True,
            }
            if stock:
                bus = can.Bus(interface="slcan", channel=str(link), **kwargs)
            else:
                bus = BufferedSlcanBus(channel=str(link), **kwargs)
            c = Consumer()
            pipeline = Pipeline(decoders, min_interval_s=INTERVAL_S)
            receiver = Receiver(pipeline)
            task = asyncio.create_task(receiver.run(bus, c.ctx))
            await asyncio.sleep(0.5)
            def seen() -> int:  # the chunked reader drops other PGNs before parsing them
                return pipeline.frames + int(getattr(bus, "filtered", 0))

            f0, c0, t0 = seen(), time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            frames = seen() - f0
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            receiver.stop()
            await task
            bus.shutdown()
        finally:
            emulator.terminate()
            await emulator.wait()
    return frames / wall, 100 * cpu / wall


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n = 100_000 if args.quick else 200_000
    seconds = 10.0 if args.quick else 60.0
    decoders = Decoders(SHIPPED_DBC)
    msgs = messages(n)
    repeats = args.repeats or (3 if args.quick else 5)
    say(args.quiet, f"{n} frames, half of them of PGNs in the DBC; best of {repeats} runs")
    bases, runs, notifiers, unthrottled, per_events = [], [], [], [], []
    for _ in range(repeats):  # interleaved, so a noisy neighbour hits both sides alike
        bases.append(baseline(msgs))
        runs.append(await pipeline_run(decoders, msgs))
        notifiers.append(await notifier_run(decoders, msgs))
        unthrottled.append((await pipeline_run(decoders, msgs, interval_s=0))[0])
        per_events.append((await pipeline_run(decoders, msgs, batch_s=0, interval_s=0))[0])
        say(
            args.quiet,
            f"baseline {bases[-1][0]:,.0f}, pipeline {runs[-1][0]:,.0f}, notifier "
            f"{notifiers[-1]:,.0f}, unthrottled {unthrottled[-1]:,.0f}, unthrottled with a "
            f"per-event handoff {per_events[-1]:,.0f} frames/s",
        )
    base = max(b[0] for b in bases)
    base_cpu = min(b[1] for b in bases)
    pipe_cpu = min(r[1] for r in runs)
    fps, _, events = max(runs)
    door_n = 20_000 if args.quick else 100_000
    doors: dict[str, list[tuple[float, int]]] = {}
    for _ in range(repeats):  # every bit of DC2 and the doors' bits, interleaved
        for device in ("steady", "other_byte", "door_flap"):
            for rule, use in (("every_bit", None), ("door_bits", DOORS_IN_USE)):
                got = door_throttle(decoders, use, door_n, device)
                doors.setdefault(f"{device}_{rule}", []).append(got)
    door_us = {name: min(r[0] for r in runs_) for name, runs_ in doors.items()}
    door_opens = {name: runs_[0][1] for name, runs_ in doors.items()}
    say(args.quiet, f"DC2 throttle µs/frame {door_us}, opens of {door_n // 200}: {door_opens}")
    say(args.quiet, f"following {SATURATED_FPS} frames/s for {seconds:g} s")
    lost, cpu_pct = await saturated(decoders, msgs, seconds, RX_QUEUE_DEFAULT)
    say(args.quiet, f"lost {lost}, {cpu_pct:.1f} % CPU; again with a 1 MiB socket buffer")
    lost_1mib, _ = await saturated(decoders, msgs, seconds, RX_QUEUE_1MIB)
    say(args.quiet, f"lost {lost_1mib}")
    slcan_s = 5.0 if args.quick else 15.0
    slcan_fps, slcan_cpu = await slcan_run(decoders, slcan_s, stock=False)
    stock_fps, stock_cpu = await slcan_run(decoders, slcan_s, stock=True)
    say(
        args.quiet,
        f"slcan {slcan_fps:,.0f} frames/s at {slcan_cpu:.1f} % CPU; python-can's "
        f"own reader {stock_fps:,.0f} frames/s at {stock_cpu:.1f} %",
    )
    return {
        "pipeline_fps": round(fps),
        "baseline_fps": round(base),
        "ratio": round(fps / base, 3),
        "cpu_s_per_mframe": round(pipe_cpu / n * 1e6, 2),
        "baseline_cpu_s_per_mframe": round(base_cpu / n * 1e6, 2),
        "cpu_ratio": round(base_cpu / pipe_cpu, 3),
        "saturated_500k_lost": lost,
        "cpu_pct_3450fps": round(cpu_pct, 1),
        "saturated_500k_lost_1mib_rcvbuf": lost_1mib,
        "notifier_fps": round(max(notifiers)),
        "unthrottled_fps": round(max(unthrottled)),
        "unthrottled_per_event_handoff_fps": round(max(per_events)),
        **{f"dc2_{name}_us_per_frame": round(us, 3) for name, us in door_us.items()},
        **{f"dc2_{name}_opens": opens for name, opens in door_opens.items()},
        "dc2_frames": door_n,
        "slcan_fps": round(slcan_fps),
        "slcan_cpu_pct_1700fps": round(slcan_cpu, 1),
        "slcan_stock_reader_cpu_pct_1700fps": round(stock_cpu, 1),
        "frames": n,
        "events_per_run": events,
        "min_interval_s": INTERVAL_S,
        "saturated_s": seconds,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the JSON result only")
    ap.add_argument("--quick", action="store_true", help="fewer frames, 10 s saturated run")
    ap.add_argument("--repeats", type=int, default=0, help="best of N (default 5, quick 3)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
    else:
        json.dump(result, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()

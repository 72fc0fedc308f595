"""How long from a card put on the (emulated) PN532 to the `Tap` the nfc.libnfc driver emits.

`measure_tap_latency` runs the real driver — pynfc, libnfc's pn532_uart, a pty — against
the emulator and presents `presentations` cards one after the other, each a fresh UID put
on at a random phase of the poll cycle (so the samples cover the whole poll interval, as
cards arriving at random do), held until its tap arrives, then taken off. A latency is
from the instant of `put` to the tap reaching the event loop (what the services see);
`driver_ms` is to the driver's own `Tap.ts`. The result has p50/p99/max, and `as_dict()`
for a benchmark's JSON.

By hand: `python -m hil.nfc --measure 100` (see `python -m hil.nfc --help`).
"""

import asyncio
import math
import random
import statistics
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.bus import Bus
from core.counters import Counters
from core.driver import DriverContext
from core.events import Tap
from drivers.nfc.libnfc import LibnfcOptions, LibnfcReader
from hil.nfc.emulator import Pn532Emulator

T = TypeVar("T")


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0–100), nearest rank; the samples need not be sorted."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class TapLatency:
    loop_ms: list[float]  # put → Tap on the event loop
    driver_ms: list[float]  # put → Tap.ts (the driver's clock reading)
    poll_interval_s: float
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return percentile(self.loop_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.loop_ms, 99)

    @property
    def max_ms(self) -> float:
        return max(self.loop_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "presentations": len(self.loop_ms),
            "poll_interval_ms": round(self.poll_interval_s * 1000, 3),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "mean_ms": round(statistics.fmean(self.loop_ms), 2),
            "driver_p50_ms": round(percentile(self.driver_ms, 50), 2),
            "driver_p99_ms": round(percentile(self.driver_ms, 99), 2),
            "counters": self.counters,
        }


class _Probe:
    """The reader's real context on a real bus; its taps go to a queue, stamped with the
    instant each reached the loop."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.bus = Bus(self.counters)
        self.opened = asyncio.Event()
        self.ctx = DriverContext("latency-probe", self.bus, self.counters, on_ready=self.opened.set)
        self.taps: asyncio.Queue[tuple[Tap, float]] = asyncio.Queue()
        self.bus.subscribe(Tap, lambda tap: self.taps.put_nowait((tap, time.monotonic())))

    def counted(self) -> dict[str, int]:
        return {
            k.removeprefix("driver.latency-probe."): n for k, n in self.counters.snapshot().items()
        }


async def measure_tap_latency(
    presentations: int = 100,
    *,
    options: Mapping[str, Any] | None = None,
    emulator: Pn532Emulator | None = None,
    seed: int = 0,
    timeout_s: float = 5.0,
) -> TapLatency:
    """Put `presentations` cards on the emulator, one at a time; time each one's tap.

    `options` are nfc.libnfc options over the defaults (the connection string is the
    emulator's). Without `emulator`, one is started for the run and closed after it.
    """
    own = emulator is None
    emu = Pn532Emulator().start() if emulator is None else emulator
    opts = LibnfcOptions.model_validate({**(options or {}), "connstring": emu.connstring})
    rng = random.Random(seed)
    probe = _Probe()
    task = asyncio.create_task(LibnfcReader(opts).run(probe.ctx))
    loop_ms: list[float] = []
    driver_ms: list[float] = []
    try:
        await _first(probe.opened.wait(), task, timeout_s, "the reader to open")
        for i in range(presentations):
            await asyncio.sleep(rng.uniform(0, opts.poll_interval_s))  # a random poll phase
            uid = (0x04000000 + i).to_bytes(4, "big")
            put_at = emu.put(uid)
            tap, arrived = await _first(
                probe.taps.get(), task, timeout_s, f"the tap of {uid.hex()}"
            )
            emu.remove()
            if tap.uid != uid:
                raise AssertionError(f"tap of {tap.uid.hex()} while {uid.hex()} was on")
            loop_ms.append((arrived - put_at) * 1000)
            driver_ms.append((tap.ts - put_at) * 1000)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if own:
            emu.close()
    return TapLatency(loop_ms, driver_ms, opts.poll_interval_s, probe.counted())


async def _first(
    awaitable: Awaitable[T], task: "asyncio.Task[None]", timeout: float, what: str
) -> T:
    """What `awaitable` gives, unless the driver task fails or `timeout` passes first."""
    waiter: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    both: set[asyncio.Future[Any]] = {waiter, task}
    done, _ = await asyncio.wait(both, timeout=timeout, return_when="FIRST_COMPLETED")
    if waiter in done:
        return waiter.result()
    waiter.cancel()
    if task in done:
        task.result()  # the driver's error
        raise RuntimeError("the NFC driver stopped")
    raise TimeoutError(f"waited {timeout} s for {what}")

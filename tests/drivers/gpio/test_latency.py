"""Unlock -> relay pin on MockFactory: the handler writes the pin before it returns.

The decision's `ts` is taken just before the service hands the event over; the watcher
stamps the write just after gpiozero returns. Run with `-s` to see the numbers."""

import asyncio
import statistics
import time

from gpiozero.pins.mock import MockFactory

from core.events import Unlock
from tests.drivers.gpio.conftest import Start

LOCK = 17
N = 1000


async def test_unlock_reaches_the_relay_pin_well_under_a_millisecond(
    start: Start, factory: MockFactory
) -> None:
    r = await start(lock={"pin": LOCK})
    assert r.driver.board is not None
    relay = factory.pin(LOCK)
    written: list[float] = []
    r.driver.board.watchers.append(lambda pin, level, ts: level and written.append(ts))
    latencies = []
    for _ in range(N):
        event = Unlock(0.0002, time.monotonic())
        r.rec.send(event)
        latencies.append(written[-1] - event.ts)
        while relay.state:  # the 0.2 ms pulse ends on a loop timer
            await asyncio.sleep(0.0002)
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[int(N * 0.99)]
    print(
        f"\nUnlock -> relay on MockFactory over {N}: p50 {p50 * 1e6:.1f} µs, p99 {p99 * 1e6:.1f} µs, max {latencies[-1] * 1e6:.1f} µs"
    )
    assert p50 < 200e-6
    assert p99 < 1e-3

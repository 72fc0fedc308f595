"""What the GPIO driver tests share: a recording context that takes subscriptions, pin
timelines from MockFactory, a running driver."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero.pins.mock import MockPin

from drivers.gpio.board import GpioBoard


class RecordingContext:
    """A `DriverContext` that keeps what the driver emitted, counted and subscribed to.

    `close` does what the supervisor's context does when `run` ends: it drops the
    handlers, so a test can see that nothing the driver left behind is still called."""

    name = "gpio"

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.counts: Counter[str] = Counter()
        self.readies = 0
        self.handlers: dict[type, list[Callable[[Any], None]]] = {}
        self.log = logging.getLogger("test.gpio")
        self.fail_on: type | None = None  # emit raises for this event type (a broken service)

    def emit(self, event: Any) -> None:
        if self.fail_on is not None and isinstance(event, self.fail_on):
            raise RuntimeError(f"service failed on {event}")
        self.events.append(event)

    def emit_threadsafe(self, event: Any) -> None:
        self.events.append(event)

    def ready(self) -> None:
        self.readies += 1

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        self.handlers.setdefault(event_type, []).append(handler)

    def publish(self, event: Any) -> None:
        """What the node's bus does: call every handler of the event's type."""
        for handler in list(self.handlers.get(type(event), [])):
            handler(event)

    def close(self) -> None:
        self.handlers.clear()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class Running:
    driver: GpioBoard
    ctx: RecordingContext
    task: "asyncio.Task[None]"


def fresh(*pins: MockPin) -> None:
    """Forget the pins' history: timelines count from now."""
    for pin in pins:
        pin.clear_states()


def timeline(pin: MockPin) -> list[tuple[float, bool]]:
    """The pin's changes as (seconds since `fresh`, or since gpiozero made it, level)."""
    out: list[tuple[float, bool]] = []
    t = 0.0
    for change in pin.states[1:]:
        t += change.timestamp
        out.append((t, bool(change.state)))
    return out


def assert_timeline(
    pin: MockPin,
    expected: list[tuple[float, bool]],
    tol: float = 0.03,
    until: float | None = None,
) -> None:
    """The pin changed as expected, each within tol seconds (changes after `until` aside)."""
    got = [(t, lv) for t, lv in timeline(pin) if until is None or t < until]
    assert [lv for _, lv in got] == [lv for _, lv in expected], f"levels: {got} vs {expected}"
    for (t, _), (want, _) in zip(got, expected, strict=True):
        assert abs(t - want) <= tol, f"timeline {got} vs {expected}"


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)

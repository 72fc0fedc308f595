"""What the GPIO driver tests share: a running driver with what went through its real
context (tests/helpers/drivers.py), pin timelines from MockFactory."""

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from drivers.gpio.board import GpioBoard
from tests.helpers import drivers as helpers
from tests.helpers.drivers import Recorder


@contextlib.contextmanager
def mock_pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins, fresh (a reused pin raises GPIOPinInUse), as the pin factory
    until the block ends."""
    previous = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    try:
        yield mock
    finally:
        mock.reset()
        Device.pin_factory = previous


@dataclass
class Running:
    driver: GpioBoard
    rec: Recorder
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
    """Polled every 2 ms: pin timelines are measured in milliseconds."""
    await helpers.wait_until(predicate, timeout, what, step=0.002)


async def chatter(
    pin: MockPin,
    made: bool,
    seconds: float,
    seed: int = 1,
    made_s: tuple[float, float] = (0.005, 0.015),
    broken_s: tuple[float, float] = (0.001, 0.005),
) -> "Stretches":
    """A worn or oxidised contact held made (`made`: the level it drives then) that keeps
    breaking: at `made` 5-15 ms, away 1-5 ms (`made_s`, `broken_s`), irregularly, for
    `seconds`; ends at `made`.

    Why that shape: a sound switch bounces for a few ms at each transition and is then
    steady (Ganssle, "A Guide to Debouncing", ganssle.com/debouncing.htm: 16 of 18 switches
    bounced 1.6 ms on average, 6.2 ms at most). An oxidised contact is different: the Pi's
    pull-up passes some 60 µA, far below the 1-20 mA wetting current that breaks through
    the oxide film, so held at a light or uneven pressure the contact stays partly open and
    makes and breaks for as long as it is held (en.wikipedia.org/wiki/Wetting_current), as
    a reed contact does under shock and vibration (reed-sensor.com/glossary/bounce). No
    level here lasts the 20 ms (panic) or 50 ms (door) a sound contact is debounced with.
    """
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    make, brk = (pin.drive_high, pin.drive_low) if made else (pin.drive_low, pin.drive_high)
    longest = Stretches()
    while True:
        make()
        t = loop.time()
        await asyncio.sleep(rng.uniform(*made_s))
        longest.made = max(longest.made, loop.time() - t)
        if loop.time() >= end:
            return longest
        brk()
        t = loop.time()
        await asyncio.sleep(rng.uniform(*broken_s))
        longest.broken = max(longest.broken, loop.time() - t)


@dataclass
class Stretches:
    """The longest time `chatter` held each level, as it happened: on a loaded machine a
    3 ms sleep can last 80 ms, and such a stretch is a real change of the contact, past any
    debounce. A test checks its exact outcome only when the pattern was the one meant."""

    made: float = 0.0
    broken: float = 0.0

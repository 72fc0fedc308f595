"""What the GPIO driver tests share: a running driver with what went through its real
context (tests/helpers/drivers.py), the driver under a real supervisor, pin timelines from
MockFactory."""

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from core.bus import Bus
from core.counters import Counters
from drivers.gpio.board import GpioBoard, _Board
from drivers.gpio.options import GpioOptions
from edged.config.models import SupervisorConfig
from edged.supervisor import Supervised, Supervisor
from tests.helpers import drivers as helpers
from tests.helpers.drivers import FAST, Recorder


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


class OnABus(Protocol):
    """Where a supervised driver runs: a service's test host, a Recorder."""

    bus: Bus
    counters: Counters


H = TypeVar("H", bound=OnABus)


class SupervisedBoard(Generic[H]):
    """The real GPIO driver (`gpio`) on mock pins under a real Supervisor on `host`'s bus,
    as the node runs it: every start's GpioBoard kept, a failure made on demand."""

    def __init__(self, host: H, *, config: SupervisorConfig = FAST, **options: Any) -> None:
        self.host = host
        self.boards: list[GpioBoard] = []
        self.supervisor = Supervisor(config, host.bus, host.counters)
        self.options = GpioOptions(pin_factory="mock", **options)
        self.task: asyncio.Task[None] | None = None

    def _make(self) -> GpioBoard:
        board = GpioBoard(self.options)
        self.boards.append(board)
        return board

    async def start(self) -> None:
        self.task = asyncio.create_task(self.supervisor.supervise("gpio", "gpio", self._make))
        await wait_until(self.running, 2, "the gpio driver to run")

    @property
    def status(self) -> Supervised:
        return self.supervisor.drivers["gpio"]

    def running(self) -> bool:
        board = self.boards[-1].board if self.boards else None
        return board is not None and self.status.state == "running"

    @property
    def board(self) -> _Board:
        """The open pins of the start running now."""
        board = self.boards[-1].board
        assert board is not None, "the gpio driver is not running"
        return board

    def fail(self) -> None:
        """A pin write fails (what the board does with a callback's exception): the driver
        stops and the supervisor will start it again."""
        self.board.fail(OSError("pin write failed"))

    async def restarted(self, starts: int, timeout: float = 3.0) -> None:
        """Wait until the `starts`-th start of the driver runs."""
        await wait_until(
            lambda: len(self.boards) >= starts and self.running(), timeout, "a restart"
        )

    async def fail_once(self) -> float:
        """A failure, then the next start running; returns the seconds between them, the
        time the inputs were blind."""
        starts = len(self.boards) + 1
        failed = time.monotonic()
        self.fail()
        await self.restarted(starts)
        return time.monotonic() - failed

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


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

"""The contract every GPIO backend keeps, run on each one the registry lists: gpio.gpiozero
on gpiozero's MockFactory (pins driven as the hardware drives them).

Built from the registry as the node builds it, in the real DriverContext on a real Bus,
under a real Supervisor: the board becomes ready and says the state of its inputs at once,
a contact that changes is a `DoorInput`, an `Unlock` on the bus pulses the lock relay, and
when the board stops it leaves no subscription on the bus.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from core.events import DoorInput, Feedback, Unlock
from drivers.registry import backends
from edged.supervisor import Supervised
from tests.drivers.gpio.fakes import fresh, timeline
from tests.helpers.drivers import Recorder, configured

DOOR, LOCK = 5, 17


@dataclass
class Board:
    """A backend, its options, and its pins as the test drives and reads them."""

    driver: str
    options: dict[str, Any]
    pin: Callable[[int], MockPin]
    rec: Recorder = field(default_factory=lambda: Recorder("gpio"))
    tasks: list["asyncio.Task[None]"] = field(default_factory=list)

    async def start(self) -> Supervised:
        status, task = await self.rec.supervised(configured("gpio", self.driver, self.options))
        self.tasks.append(task)
        return status


@contextlib.asynccontextmanager
async def gpiozero_mock(factory: MockFactory, tmp_path: Path) -> AsyncIterator[Board]:
    options = {
        "pin_factory": "mock",
        "doors": [{"name": "front", "pin": DOOR, "bounce_s": 0}],
        "lock": {"pin": LOCK},
    }
    yield Board("gpio.gpiozero", options, factory.pin)


BOARDS: dict[str, Callable[[MockFactory, Path], contextlib.AbstractAsyncContextManager[Board]]] = {
    "gpio.gpiozero": gpiozero_mock,
}
"""Each backend's pins."""


def test_every_registered_gpio_backend_keeps_the_contract() -> None:
    assert set(BOARDS) == set(backends("gpio")), "a GPIO backend without a board here is untested"


@pytest.fixture(params=backends("gpio"))
async def board(
    request: pytest.FixtureRequest, factory: MockFactory, tmp_path: Path
) -> AsyncIterator[Board]:
    async with BOARDS[request.param](factory, tmp_path) as b:
        yield b
        for task in b.tasks:
            task.cancel()
        await asyncio.gather(*b.tasks, return_exceptions=True)


async def test_the_inputs_state_comes_at_start_and_each_change_after(board: Board) -> None:
    status = await board.start()
    assert [(e.door, e.open) for e in board.rec.of(DoorInput)] == [("front", True)]
    board.pin(DOOR).drive_low()  # the door closes
    await board.rec.wait_for(lambda: len(board.rec.of(DoorInput)) == 2, "the change")
    assert board.rec.of(DoorInput)[-1].open is False and status.restarts == 0


async def test_an_unlock_on_the_bus_pulses_the_lock_relay(board: Board) -> None:
    await board.start()
    relay = board.pin(LOCK)
    fresh(relay)
    board.rec.send(Unlock(0.1, time.monotonic()))
    assert relay.state  # written before the bus handed the event on
    await asyncio.sleep(0.2)
    levels = [level for _, level in timeline(relay)]
    assert levels == [True, False]


async def test_a_stopped_board_leaves_no_subscription_on_the_bus(board: Board) -> None:
    await board.start()
    assert board.rec.bus.has_subscribers(Unlock) and board.rec.bus.has_subscribers(Feedback)
    for task in board.tasks:
        task.cancel()
    await asyncio.gather(*board.tasks, return_exceptions=True)
    assert not board.rec.bus.has_subscribers(Unlock)
    assert not board.rec.bus.has_subscribers(Feedback)
    board.rec.send(Unlock(5.0, time.monotonic()))
    assert not board.pin(LOCK).state

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio.board import GpioBoard
from drivers.gpio.options import GpioOptions
from tests.drivers.gpio.fakes import Running, mock_pins, wait_until
from tests.helpers.drivers import Recorder

Start = Callable[..., Awaitable[Running]]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's mock pins, fresh for each test (a reused pin raises GPIOPinInUse)."""
    with mock_pins() as mock:
        yield mock


@pytest.fixture
async def start(factory: MockFactory) -> AsyncIterator[Start]:
    """Start a GpioBoard on the mock pins, wait for ready; stopped at the test's end."""
    running: list[Running] = []

    async def _start(**options: Any) -> Running:
        rec = Recorder("gpio")
        driver = GpioBoard(GpioOptions(pin_factory="mock", **options))

        async def run() -> None:
            try:
                await driver.run(rec.ctx)
            finally:
                rec.close()  # as the supervisor does

        task = asyncio.create_task(run())
        await wait_until(lambda: rec.readies > 0 or task.done(), 2, "the driver to be ready")
        if task.done():
            task.result()
        r = Running(driver, rec, task)
        running.append(r)
        return r

    yield _start
    for r in running:
        r.task.cancel()
    await asyncio.gather(*(r.task for r in running), return_exceptions=True)

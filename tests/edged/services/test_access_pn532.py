"""Two cards held together, from a PN532 (the emulator on a pty, through libnfc's
pn532_uart and nfc.libnfc) to the access service: one presentation, one boarding."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.driver import DriverContext
from core.events import Feedback, Unlock
from drivers.nfc.libnfc import LibnfcOptions, LibnfcReader
from hil.nfc.emulator import Pn532Emulator
from tests.edged.access.support import (
    UID_RESIDENT,
    UID_SENIOR,
    SetClock,
    full_lists,
    host,
    service_on,
    signed,
)
from tests.helpers.drivers import wait_until


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Pn532Emulator]:
    with Pn532Emulator(tmp_path / "nfc0") as e:
        yield e


async def test_two_passes_held_together_at_a_pn532_board_one_rider(
    emu: Pn532Emulator, tmp_path: Path
) -> None:
    node = host(clock=SetClock(1_796_112_000_000))
    service = service_on(node, tmp_path)
    await service.command_update(signed(full_lists(1)))
    ready = asyncio.Event()
    ctx = DriverContext("front", node.bus, node.counters, on_ready=ready.set)
    # the driver's defaults: a poll every 50 ms, one target each, in turn
    driver = LibnfcReader(LibnfcOptions(connstring=emu.connstring))
    task = asyncio.create_task(driver.run(ctx))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        emu.put(UID_RESIDENT)
        emu.add(UID_SENIOR)  # a wallet with two passes
        await wait_until(lambda: len(node.bodies("events/tap")) == 2, 3, "both cards read")
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    reasons = sorted(t.reason for t in node.bodies("events/tap"))
    assert reasons == ["ok", "together"]
    assert len(node.of_type(Unlock)) == 1
    assert [f.pattern for f in node.of_type(Feedback)] == ["granted"]
    assert len([t for t in node.bodies("events/tap") if t.fare_cents is not None]) == 1

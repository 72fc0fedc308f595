"""A node whose disk fills up: doors still open, alarms still reach dispatch.

The outbox's caps are the first protection (`hard_max_bytes` below the free space, which
`edged doctor` checks); this is what happens when something else fills the disk. The
outbox sits on a small tmpfs that a filler file then fills to the last block."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.rig.rig import PIN_DOOR, PIN_LOCK, Cards, Rig, RigSetup
from tests.helpers.disk import fill, mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


@pytest.mark.slow
async def test_a_full_disk_keeps_doors_working_and_raises_the_alarm_directly(
    tmp_path: Path, small_disk: Path
) -> None:
    (tmp_path / "rig").mkdir()
    async with Rig(tmp_path / "rig", RigSetup(profile="venue", outbox_dir=small_disk)) as rig:
        filler = fill(small_disk)
        for i in range(40):  # door events that cannot be stored
            await rig.set_pin(PIN_DOOR, i % 2)
            await asyncio.sleep(0.07)
        alarm = await rig.expect(
            "alarm/outbox_full",
            lambda m: m.payload.get("active") is True,
            15,
            "the alarm sent around the outbox",
        )
        assert "cannot write the outbox" in alarm.payload["reason"]
        await asyncio.sleep(5.5)  # the last granted pulse is over
        await rig.present(Cards.STAFF, 0.4)  # decided from the lists in memory
        assert await rig.get_pin(PIN_LOCK) == 1, "the door did not open on a full disk"
        filler.unlink()
        await rig.set_pin(PIN_DOOR, 1)
        await rig.expect(
            "alarm/outbox_full", lambda m: m.payload.get("active") is False, 15, "the clear"
        )
        assert rig.daemon.alive
        fill(small_disk)
        await rig.press_panic()  # the disk refuses it: it goes out from memory
        panic = await rig.expect("alarm/panic", lambda m: m.payload.get("active") is True, 15)
        assert panic.payload["details"]["presses"] == 1

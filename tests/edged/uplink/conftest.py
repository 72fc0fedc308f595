"""What the uplink's tests share: an outbox on disk with its writer running."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.outbox import Outbox


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(OutboxConfig(path=tmp_path / "outbox.sqlite"), Clock())
    await box.open()
    writer = asyncio.create_task(box.run_writer())
    yield box
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    await box.close()

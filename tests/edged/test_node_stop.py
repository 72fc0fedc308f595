"""The node's stop (edged.node), in-process, no broker: the order of its cancels."""

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from edged.config import load_config
from edged.node import Node
from edged.services import table
from tests.helpers.broker import free_port
from tests.helpers.nodes import write_config

CLEAN_UP_S = 0.3


class SlowToStop:
    """A service whose clean-up, once cancelled, takes a while (the kiosk's streams)."""

    def __init__(self) -> None:
        self.cancels = 0
        self.cleaned_up = False

    def commands(self) -> list[Any]:
        return []

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancels += 1
        try:
            await asyncio.sleep(CLEAN_UP_S)
            self.cleaned_up = True
        except asyncio.CancelledError:
            self.cancels += 1
        raise asyncio.CancelledError


async def test_a_service_the_stop_cancelled_first_cleans_up_uncut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node cancels its services as it starts to stop; its last pass must not cancel
    them again before `AGAIN_S`: a clean-up (the kiosk's last chunks) would be cut."""
    slow = SlowToStop()
    build = table.build
    monkeypatch.setattr(table, "build", lambda host, config: {**build(host, config), "slow": slow})
    node = Node(load_config(write_config(tmp_path, free_port(), gps=False)))
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    await asyncio.wait_for(node.ready.wait(), 5)
    began = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert slow.cleaned_up, f"cut short ({slow.cancels} cancels)"
    assert slow.cancels == 1
    assert time.monotonic() - began < 1.5

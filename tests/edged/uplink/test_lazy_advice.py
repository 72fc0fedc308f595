"""The TLS failure advice (`edged.uplink.tlsfail`) loads on the first failed connection
(tests/edged/uplink/test_daemon_imports.py). That import can itself fail at that moment: a
process out of descriptors (EMFILE) cannot open the module's file, and the connection
failed for the same reason. The uplink must go on trying, as it did with the module
loaded at start, not end (its task ending stops the whole node)."""

import asyncio
import errno
import importlib.abc
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

import edged.uplink
from core.counters import Counters
from edged.config.models import BrokerConfig
from edged.outbox import Outbox
from edged.payloads import State
from edged.topics import Topics
from edged.uplink.client import Uplink
from tests.helpers.drivers import wait_until


class NoDescriptorLeft(importlib.abc.MetaPathFinder):
    """What importlib raises for a module whose file cannot be opened (EMFILE)."""

    def __init__(self) -> None:
        self.on = True
        self.refused = 0

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if self.on and name == "edged.uplink.tlsfail":
            self.refused += 1
            raise OSError(errno.EMFILE, "Too many open files", "edged/uplink/tlsfail.py")
        return None


async def _ignore(_: object) -> None:
    return None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_uplink_goes_on_when_the_advice_on_a_failure_cannot_load(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    finder = NoDescriptorLeft()
    monkeypatch.delitem(sys.modules, "edged.uplink.tlsfail", raising=False)
    monkeypatch.delattr(edged.uplink, "tlsfail", raising=False)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    counters = Counters()
    uplink = Uplink(
        BrokerConfig(host="127.0.0.1", port=_closed_port(), reconnect_min_s=0.05,
                     reconnect_max_s=0.1),
        Topics("rnst/v1", "test", "n1"),
        outbox,
        client_id="edged-test-n1",
        birth=lambda since: State(state="online", since=since),
        on_command=_ignore,
        counters=counters,
    )  # fmt: skip
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: finder.refused > 0 or task.done(), 5, "a failed connection")
        await asyncio.sleep(0.3)  # the next attempts, the descriptors still short
        assert not task.done(), f"the uplink ended: {task.exception()!r}"
        finder.on = False  # descriptors free again: the advice loads, the failure is told
        await wait_until(
            lambda: "cannot reach the broker" in (uplink.last_error or "") or task.done(), 5,
            "the failure told",
        )
        assert not task.done(), f"the uplink ended: {task.exception()!r}"
    finally:
        uplink.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

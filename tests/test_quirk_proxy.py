"""tests/helpers/quirks.py: a connection through the proxy ends without an exception nobody
reads. The pump of the side that hung up ended with `IncompleteReadError`, never read: at
every connection's end, asyncio logged "Task exception was never retrieved" with its
traceback (123 of them in tests/ops/test_brokercheck.py and tests/cli/test_ctl_brokers.py),
noise that hid what a failing test printed."""

import asyncio
import gc
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.broker import Mosquitto
from tests.helpers.quirks import QuirkProxy, Quirks

CONNECT_311 = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04quir"


@pytest.fixture
def proxy(broker: Mosquitto) -> Iterator[QuirkProxy]:
    p = QuirkProxy(broker.port, Quirks()).start()
    yield p
    p.stop()


def unread_exceptions(p: QuirkProxy) -> list[dict[str, Any]]:
    """What the proxy's loop is told at the end of a task or future nobody read."""
    unread: list[dict[str, Any]] = []
    p._loop.call_soon_threadsafe(
        p._loop.set_exception_handler, lambda loop, context: unread.append(context)
    )
    return unread


def tasks_left(p: QuirkProxy) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1

    return asyncio.run_coroutine_threadsafe(count(), p._loop).result(5)


def test_a_client_hanging_up_leaves_no_unread_task_exception(proxy: QuirkProxy) -> None:
    unread = unread_exceptions(proxy)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
        client.sendall(CONNECT_311)
        assert client.recv(4)[:1] == b"\x20", "a CONNACK through the proxy"
    deadline = time.monotonic() + 5
    while tasks_left(proxy) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tasks_left(proxy) == 0, "the connection's tasks ended"
    gc.collect()
    assert unread == [], [c.get("message") for c in unread]

"""The node ending on a failure of one of its tasks (edged.node), in-process, with a broker."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edged.config import load_config
from edged.node import Node
from edged.services import table
from edged.topics import STATE
from edged.uplink import Uplink
from tests.helpers.broker import Mosquitto
from tests.helpers.drivers import wait_until
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config


class Failing:
    """A service with a defect: it fails once the node is up (a fault injected: no real
    service is known to fail, which is why the node must still say it went)."""

    def __init__(self) -> None:
        self.fail = asyncio.Event()

    def commands(self) -> list[Any]:
        return []

    async def run(self) -> None:
        await self.fail.wait()
        raise RuntimeError("a defect in a service")


async def test_a_node_ended_by_a_failing_task_is_offline_for_dispatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task fails: the node's TaskGroup cancels the others and the process ends, no
    stop run. Its uplink ended its session with a DISCONNECT, which drops the will: the
    node stayed `online` at dispatch while it was gone (throughout, for a node that fails
    at each start: systemd restarts it for ever, `StartLimitIntervalSec=0`)."""
    broker = Mosquitto(tmp_path).start()
    failing = Failing()
    build = table.build
    monkeypatch.setattr(table, "build", lambda host, c: {**build(host, c), "failing": failing})
    node = Node(load_config(write_config(tmp_path, broker.port, gps=False)))
    state = node.topics.of(STATE)
    try:
        task = asyncio.create_task(node.run(asyncio.Event()))
        async with Collector(broker.port, state) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await c.wait_for(lambda: said()[-1:] == ["online"], 10, "online")
            failing.fail.set()
            with pytest.raises(BaseExceptionGroup):
                await asyncio.wait_for(task, 10)
            await c.wait_for(lambda: said()[-1:] == ["offline"], 5, "offline")
    finally:
        broker.stop()


async def test_a_node_whose_uplink_session_fails_as_it_ends_still_ends_and_says_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task fails and, in the same turn of the loop, the uplink's session fails too (a
    common cause; injected here: the drain fails, in every session, on the event that
    fails the service). The session's TaskGroup raises that error, not the node's cancel
    (a TaskGroup's errors come first), and the uplink, taking it for a session lost,
    dropped the count (`drop_stale_cancels`): it took another session up, said `online`,
    and the node waited for it for good (no `cancel_and_wait` on this path), until the
    watchdog killed it 30 s on."""
    broker = Mosquitto(tmp_path).start()
    failing = Failing()
    build = table.build
    monkeypatch.setattr(table, "build", lambda host, c: {**build(host, c), "failing": failing})

    async def drain_failing_with_it(self: Uplink, client: Any) -> None:
        await failing.fail.wait()
        raise RuntimeError("the same defect, met by the uplink's session")

    monkeypatch.setattr(Uplink, "_drain", drain_failing_with_it)
    node = Node(load_config(write_config(tmp_path, broker.port, gps=False)))
    state = node.topics.of(STATE)
    try:
        task = asyncio.create_task(node.run(asyncio.Event()))
        async with Collector(broker.port, state) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await c.wait_for(lambda: said()[-1:] == ["online"], 10, "online")
            await wait_until(lambda: node.uplink.connected, 10, "the uplink in its drain")
            failing.fail.set()
            ended, _ = await asyncio.wait({task}, timeout=5)  # not cancelled if it hangs
            assert ended, f"the node still runs; its uplink said {said()}"
            await c.wait_for(lambda: said()[-1:] == ["offline"], 5, f"offline: {said()}")
            with pytest.raises(BaseExceptionGroup):
                task.result()
    finally:
        node.uplink.close()  # a node left hanging ends all the same
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        broker.stop()


async def test_a_node_whose_stop_fails_as_its_uplink_session_fails_still_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's own stop raises (a defect injected in its last words) and, in the same
    turn of the loop, the uplink's session fails. The node's TaskGroup cancels the uplink
    once, with no `cancel_and_wait` after it on this path; the session's TaskGroup raised
    its error in place of that cancel (Python 3.11), and the uplink, not closed, took it
    for a session lost and went on: the node never ended (until the watchdog killed it)."""
    from edged import node as node_module

    broker = Mosquitto(tmp_path).start()
    fail = asyncio.Event()

    async def drain_failing_with_it(self: Uplink, client: Any) -> None:
        await fail.wait()
        raise RuntimeError("the same defect, met by the uplink's session")

    async def last_words_failing(*_: Any) -> None:
        fail.set()
        raise RuntimeError("a defect in the node's stop")

    monkeypatch.setattr(Uplink, "_drain", drain_failing_with_it)
    monkeypatch.setattr(node_module, "drain_and_say_offline", last_words_failing)
    node = Node(load_config(write_config(tmp_path, broker.port, gps=False)))
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        async with Collector(broker.port, node.topics.of(STATE)) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await wait_until(lambda: node.uplink.connected, 10, "the uplink in its drain")
            stop.set()
            ended, _ = await asyncio.wait({task}, timeout=5)  # a hang lasts (7 sessions and on)
            assert ended, f"the node still runs, its uplink in session {node.uplink.sessions}"
            with pytest.raises(BaseExceptionGroup):
                task.result()
            await c.wait_for(lambda: said()[-1:] == ["offline"], 5, f"offline: {said()}")
    finally:
        node.uplink.close()  # a node left hanging ends all the same
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        broker.stop()

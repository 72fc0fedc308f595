"""`alarm/outbox_lost`: raised at the start that found the loss, kept across restarts until
`alarm.ack {"kind": "outbox_lost"}`; `alarm.ack` still acknowledges the panic by default.
`alarm/outbox_full` at the caps: every refusal read, counted and said once, not per event."""

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from edged.commands.router import IncomingCommand
from edged.config import load_config
from edged.node import Node
from edged.payloads import DoorEvent
from edged.topics import DOOR
from tests.helpers.broker import free_port
from tests.helpers.disk import rows_on_disk
from tests.helpers.journal import FEW, Journal
from tests.helpers.nodes import write_config


class Run:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.stop = asyncio.Event()
        self.node = Node(load_config(config), base_dir=config.parent)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Node:
        self.task = asyncio.create_task(self.node.run(self.stop))
        await asyncio.wait_for(self.node.ready.wait(), 5)
        return self.node

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, free_port(), gps=False)
    async with Run(path):  # a node that ran once: its outbox has counters
        pass
    return path


def outbox(config: Path) -> Path:
    return Path(load_config(config).outbox.path)


async def command(node: Node, name: str, args: dict[str, Any]) -> dict[str, Any]:
    cmd = json.dumps({"id": f"c{os.urandom(4).hex()}", "args": args}).encode()
    outcome = await node.router.handle(IncomingCommand(name, cmd, topic=f"x/cmd/{name}"))
    return outcome.reply.model_dump(mode="json", exclude_none=True)


def alarms(config: Path) -> list[dict[str, Any]]:
    rows = rows_on_disk(
        outbox(config), "SELECT payload FROM msg WHERE topic LIKE '%/alarm/outbox_lost' ORDER BY id"
    )
    return [json.loads(r[0]) for r in rows]


async def test_a_loss_found_at_start_is_raised_and_stays_until_acknowledged(
    config: Path,
) -> None:
    os.truncate(outbox(config), 0)
    async with Run(config):
        pass
    (raised,) = alarms(config)
    assert raised["active"] and raised["details"]["losses"][0]["cause"] == "missing"
    async with Run(config) as node:  # a restart does not clear it
        reply = await command(node, "alarm.ack", {"kind": "outbox_lost", "by": "ops"})
        again = await command(node, "alarm.ack", {"kind": "outbox_lost"})
    assert reply["ok"] and reply["result"] == {"kind": "outbox_lost", "acked": True}
    assert not again["ok"] and again["error"]["code"] == "no_alarm"
    cleared = alarms(config)[-1]
    assert cleared["active"] is False and cleared["details"]["acked_by"] == "ops"


async def test_alarm_ack_still_means_the_panic_without_a_kind(config: Path) -> None:
    async with Run(config) as node:
        panic = await command(node, "alarm.ack", {})
        unknown = await command(node, "alarm.ack", {"kind": "fire"})
        stray = await command(node, "alarm.ack", {"kind": "outbox_lost", "alarm_id": "x"})
    assert panic["error"]["code"] == "no_alarm" and "panic" in panic["error"]["message"]
    assert unknown["error"]["code"] == "bad_args"
    assert stray["error"]["code"] == "bad_args"


async def test_events_refused_at_the_hard_cap_are_each_read_and_leave_a_few_lines(
    tmp_path: Path, journal: Journal
) -> None:
    """A long outage: the services go on publishing past the hard cap, each publication a
    future the service does not wait for. The node's front door reads every refusal (a
    refusal unread was a "Future exception was never retrieved" with its traceback per
    event: a flood in the journal exactly when the node is full); the alarm is raised
    once, the log says the first ones and counts the rest."""
    config = write_config(
        tmp_path, free_port(), gps=False, outbox="max_rows = 10\nhard_max_rows = 10\n"
    )
    async with Run(config) as node:
        told = [
            node.host.publish(DOOR, DoorEvent(door="front", open=i % 2 == 0)) for i in range(300)
        ]
        await node.outbox.flush()
        await asyncio.sleep(0)  # the done-callbacks: the node's reading
        stats = await node.outbox.stats()
        pressure = node.counters.snapshot().get("outbox.full")
    # `_log_traceback`: set while a future's exception is unread (asyncio says so at its
    # collection); read before this test reads them
    unread = [f for f in told if f._log_traceback]
    refused = [f for f in told if f.exception() is not None]
    assert unread == [], "the node reads each refusal"
    assert len(refused) == stats.refused > 250
    assert pressure == 1, "one alarm for the episode"
    assert 1 <= len(journal.with_("refused; the uplink has been down")) <= FEW + 1

"""The node's handling of commands around a stop (edged.node), in-process, no broker."""

import asyncio
from pathlib import Path

from edged.commands.router import IncomingCommand, Outcome
from edged.config import load_config
from edged.node import Node
from tests.helpers.broker import free_port
from tests.helpers.nodes import write_config


async def test_a_restart_stopped_while_its_reply_is_sent_is_not_answered_again(
    tmp_path: Path,
) -> None:
    """`restart` stores its reply, then waits for it to leave before it stops the node; a
    stop that cuts that wait short (SIGTERM, another lane's switch of release, a card slow
    to commit) must not add an `interrupted` reply: it was answered, once."""
    extra = "[security]\nsigned_commands = []\n"
    node = Node(load_config(write_config(tmp_path, free_port(), gps=False, extra=extra)))
    await node.outbox.open()
    stored: list[Outcome] = []
    store = node._store_reply

    def spy(outcome: Outcome) -> "asyncio.Future[object] | None":
        stored.append(outcome)
        return store(outcome)

    node._store_reply = spy  # type: ignore[method-assign]
    try:
        node._start_services()
        topic = node.topics.command_topic("restart")
        await node.lanes.put(IncomingCommand("restart", b'{"id": "r1"}', topic=topic))
        async with asyncio.timeout(5):
            while not stored:  # no writer runs: the restart waits for its reply's commit
                await asyncio.sleep(0.01)
        await node.lanes.close(0.05)
    finally:
        await node.outbox.close()
    assert [(o.reply.id, o.reply.ok) for o in stored] == [("r1", True)], [o.reply for o in stored]

"""Commands one at a time per lane, lanes side by side, a bounded number held
(edged.commands.lanes), on the real router."""

import asyncio
import dataclasses
import json
from typing import Any

from core.counters import Counters
from edged.commands.lanes import Lanes
from edged.commands.router import UNKNOWN_LANE, CommandRouter, IncomingCommand, Outcome
from edged.commands.spec import MAX_COMMAND_BYTES, CommandSpec


class Node:
    """A router with a slow command (`slow`, lane `update`, held until `release` is set),
    quick ones in other lanes, and the lanes in front; every reply in `replies`."""

    def __init__(self, *, max_held: int = 64, max_lane: int = 16) -> None:
        self.router = CommandRouter(Counters())
        self.release = asyncio.Event()
        self.ran: list[str] = []
        self.replies: list[Outcome] = []

        async def slow(args: dict[str, Any]) -> dict[str, Any]:
            self.ran.append(f"slow:{args.get('n')}")
            await self.release.wait()
            return {"n": args.get("n")}

        async def quick(args: dict[str, Any]) -> dict[str, Any]:
            self.ran.append(f"quick:{args.get('n')}")
            return {"n": args.get("n")}

        self.router.add(CommandSpec("update.cancel", slow), lane="update")
        self.router.add(CommandSpec("update.status", quick), lane="update")
        self.router.add(CommandSpec("access.update", quick, max_bytes=4 << 20), lane="access")
        self.router.add(CommandSpec("door.unlock", quick), lane="doors")
        self.router.add(CommandSpec("ping", quick, lane="ping"), lane="node")
        self.lanes = Lanes(
            self.run,
            self.router.lane_of,
            self.interrupted,
            self.router.counters,
            max_held=max_held,
            max_lane=max_lane,
        )

    async def run(self, cmd: IncomingCommand) -> None:
        self.replies.append(await self.router.handle(cmd))

    def interrupted(self, cmd: IncomingCommand, ran: bool) -> None:
        self.replies.append(self.router.refuse(cmd, "interrupted", f"ran: {ran}"))

    def reply(self, cmd_id: str) -> list[Outcome]:
        return [o for o in self.replies if o.reply.id == cmd_id]

    async def until(self, predicate: Any, what: str) -> None:
        async with asyncio.timeout(5):
            while not predicate():
                await asyncio.sleep(0.001)


def cmd(name: str, cmd_id: str, args: dict[str, Any] | None = None) -> IncomingCommand:
    payload = json.dumps({"id": cmd_id, "args": args or {}}).encode()
    return IncomingCommand(name, payload, topic=f"b/cmd/{name}")


async def test_a_command_of_another_lane_is_answered_while_a_slow_one_runs() -> None:
    node = Node()
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.until(lambda: node.ran == ["slow:None"], "the slow command running")
    await node.lanes.put(cmd("door.unlock", "d1"))
    await node.lanes.put(cmd("ping", "p1"))
    await node.until(lambda: node.reply("d1") and node.reply("p1"), "the other lanes' replies")
    assert not node.reply("c1"), "the slow one is still running"
    node.release.set()
    await node.until(lambda: node.reply("c1"), "the slow one's reply")


async def test_a_command_waits_for_the_earlier_ones_of_its_lane() -> None:
    node = Node()
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.lanes.put(cmd("update.status", "s1"))
    await node.lanes.put(cmd("ping", "p1"))
    await node.until(lambda: node.reply("p1"), "the ping")
    assert not node.reply("s1") and node.ran == ["slow:None", "quick:None"]
    node.release.set()
    await node.until(lambda: node.reply("s1"), "update.status after update.cancel")
    assert [o.reply.id for o in node.replies] == ["p1", "c1", "s1"]


async def test_a_lanes_commands_run_in_the_order_they_came_a_big_one_first() -> None:
    """A big command is read in a worker thread; a small one behind it in its lane, read on
    the loop at once, still runs after it (access updates apply in the order they came)."""
    node = Node()
    pad = "x" * (2 * MAX_COMMAND_BYTES)
    await node.lanes.put(cmd("access.update", "big", {"n": 1, "pad": pad}))
    await node.lanes.put(cmd("access.update", "small", {"n": 2}))
    await node.until(lambda: len(node.replies) == 2, "both replies")
    assert node.ran == ["quick:1", "quick:2"]


async def test_the_same_bytes_twice_in_a_row_run_once_and_get_one_reply_each() -> None:
    node = Node()
    await node.lanes.put(cmd("update.cancel", "c1", {"n": 1}))
    await node.lanes.put(cmd("update.cancel", "c1", {"n": 1}))
    node.release.set()
    await node.until(lambda: len(node.reply("c1")) == 2, "two replies")
    first, again = node.reply("c1")
    assert node.ran == ["slow:1"] and again.reply == first.reply


async def test_an_id_running_in_one_lane_is_refused_in_another() -> None:
    node = Node()
    await node.lanes.put(cmd("update.cancel", "same"))
    await node.until(lambda: node.ran == ["slow:None"], "the slow command running")
    await node.lanes.put(cmd("door.unlock", "same"))
    await node.until(lambda: len(node.reply("same")) == 1, "the door's reply")
    (door,) = node.reply("same")
    assert door.name == "door.unlock" and door.reply.error is not None
    assert door.reply.error.code == "reused_id" and node.ran == ["slow:None"]
    node.release.set()
    await node.until(lambda: len(node.reply("same")) == 2, "the slow one's reply")
    assert node.reply("same")[1].reply.ok


async def test_no_more_than_max_held_commands_are_taken() -> None:
    node = Node(max_held=3)
    for i in range(3):
        await node.lanes.put(cmd("update.cancel", f"c{i}", {"n": i}))
    fourth = asyncio.create_task(node.lanes.put(cmd("ping", "p1")))
    await asyncio.sleep(0.05)
    assert not fourth.done() and node.lanes.held == 3, "a fourth command was taken"
    node.release.set()
    await fourth
    await node.until(lambda: len(node.replies) == 4, "every reply")


async def test_a_full_lane_holds_its_next_command_not_the_other_lanes_before() -> None:
    node = Node(max_lane=2)
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.lanes.put(cmd("update.status", "s1"))
    await node.lanes.put(cmd("ping", "p1"))  # another lane: taken, answered
    third = asyncio.create_task(node.lanes.put(cmd("update.status", "s2")))
    await node.until(lambda: node.reply("p1"), "the ping")
    assert not third.done()
    node.release.set()
    await third
    await node.until(lambda: node.reply("s2"), "the third update command")


async def test_a_flood_of_made_up_names_makes_one_lane() -> None:
    node = Node()
    names = [f"made.up{i}" for i in range(200)]
    assert {node.router.lane_of(cmd(n, "x")) for n in names} == {UNKNOWN_LANE}
    for i, name in enumerate(names):
        await node.lanes.put(cmd(name, f"m{i}"))
    await node.until(lambda: len(node.replies) == 200, "a reply to each")
    assert all(o.reply.error and o.reply.error.code == "unknown_command" for o in node.replies)


async def test_at_a_stop_what_is_taken_finishes_within_the_time_given() -> None:
    node = Node()
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.lanes.put(cmd("update.status", "s1"))
    asyncio.get_running_loop().call_later(0.05, node.release.set)
    await node.lanes.close(2.0)
    assert [o.reply.ok for o in node.replies] == [True, True]


async def test_at_a_stop_what_is_still_running_or_queued_is_answered_interrupted() -> None:
    node = Node()
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.lanes.put(cmd("update.status", "s1"))
    await node.until(lambda: node.ran == ["slow:None"], "the slow command running")
    await node.lanes.close(0.05)
    (c1,), (s1,) = node.reply("c1"), node.reply("s1")
    assert (
        c1.reply.error and c1.reply.error.code == "interrupted" and "True" in c1.reply.error.message
    )
    assert (
        s1.reply.error
        and s1.reply.error.code == "interrupted"
        and "False" in s1.reply.error.message
    )
    assert node.ran == ["slow:None"] and node.lanes.held == 0
    assert node.router.replies.get("c1") is None, "an interrupted command is remembered"


async def test_after_a_stop_a_command_is_not_taken() -> None:
    node = Node()
    await node.lanes.close(0.1)
    await node.lanes.put(cmd("ping", "late"))
    assert node.lanes.held == 0 and node.router.counters["cmd.not_taken"] == 1


async def test_a_command_waiting_for_room_when_the_session_ends_is_still_answered() -> None:
    """The uplink's reader waits in `put` (a full lane) when the connection drops: its
    session's tasks are cancelled. The broker had the command acknowledged on receipt,
    so it is never sent again: cut off there, it got no reply at all."""
    node = Node(max_lane=2)
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.lanes.put(cmd("update.status", "s1"))
    waiting = asyncio.create_task(node.lanes.put(cmd("update.status", "s2")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    waiting.cancel()  # the session ends
    await asyncio.gather(waiting, return_exceptions=True)
    node.release.set()
    await node.until(lambda: len(node.replies) == 3, "a reply to each of the three")
    assert [o.reply.id for o in node.replies] == ["c1", "s1", "s2"]


async def test_big_commands_behind_a_slow_one_hold_at_most_16_mib() -> None:
    """Each command taken leaves the MQTT client's queue (bounded at 16 MiB) for a lane, its
    payload with it, before its size is checked: 64 commands of up to 8 MiB (the packet size
    the node takes) were up to 512 MB held, a Pi Zero's memory."""
    node = Node()
    size = 2 << 20
    await node.lanes.put(cmd("update.cancel", "c1"))
    await node.until(lambda: node.ran == ["slow:None"], "the slow command running")

    async def flood() -> None:
        for i in range(15):
            await node.lanes.put(cmd("update.status", f"s{i}", {"pad": "x" * size}))

    flooding = asyncio.create_task(flood())
    await asyncio.sleep(0.1)
    assert not flooding.done(), "15 commands of 2 MiB were all taken"
    assert (node.lanes.held - 1) * size <= 16 << 20
    node.release.set()
    await flooding
    await node.until(lambda: len(node.replies) == 16, "a reply to each")


async def test_a_big_command_cut_short_at_a_stop_is_answered_with_its_id() -> None:
    """The `interrupted` reply names the command's id, read from its payload when small;
    a big one (a 4 MB `access.update`, the slowest, so the likeliest to be running at a
    stop) is not read again at the stop, but the router read it before it ran."""
    node = Node()

    async def slow_big(args: dict[str, Any]) -> None:
        await node.release.wait()

    node.router.add(CommandSpec("access.load", slow_big, max_bytes=4 << 20), lane="access")
    pad = "x" * (2 * MAX_COMMAND_BYTES)
    await node.lanes.put(cmd("access.load", "big", {"pad": pad}))
    await node.until(lambda: "big" in node.router._running, "the big command running")
    await node.lanes.close(0.05)
    (only,) = node.replies
    assert only.reply.error is not None and only.reply.error.code == "interrupted"
    assert only.reply.id == "big"


async def test_a_big_command_still_queued_at_a_stop_is_answered_with_its_id() -> None:
    """Two 4 MB `access.update`s in a row and the node stops while the first is checked:
    the second, never read, was answered `interrupted` with no id (dispatch could not tell
    which update did not run); its id is read from the head of its payload."""
    node = Node()

    async def slow_big(args: dict[str, Any]) -> None:
        await node.release.wait()

    node.router.add(CommandSpec("access.load", slow_big, max_bytes=4 << 20), lane="access")
    pad = "x" * (2 * MAX_COMMAND_BYTES)
    await node.lanes.put(cmd("access.load", "first", {"pad": pad}))
    await node.lanes.put(cmd("access.load", "second", {"pad": pad}))
    await node.until(lambda: "first" in node.router._running, "the first one running")
    await node.lanes.close(0.05)
    assert [o.reply.id for o in node.replies] == ["first", "second"]
    assert all(o.reply.error is not None for o in node.replies)
    assert [o.reply.error.code for o in node.replies if o.reply.error] == ["interrupted"] * 2


async def test_a_command_waiting_for_room_when_the_node_stops_is_answered() -> None:
    """The reader waits in `put` (a full lane) with a command the broker already has
    acknowledged (the node acknowledges one as it starts to wait: a connection that drops
    meanwhile must not have it sent and answered twice); the node stops. It gave up without
    a reply: the command was lost."""
    node = Node(max_lane=2)
    acked: list[str] = []

    def acking(name: str, cmd_id: str) -> IncomingCommand:
        return dataclasses.replace(cmd(name, cmd_id), ack=lambda: acked.append(cmd_id))

    await node.lanes.put(acking("update.cancel", "c1"))
    await node.lanes.put(acking("update.status", "s1"))
    waiting = asyncio.create_task(node.lanes.put(acking("update.status", "s2")))
    await asyncio.sleep(0.05)
    assert not waiting.done() and acked == ["c1", "s1", "s2"]
    await node.lanes.close(0.05)
    await waiting
    assert sorted(str(o.reply.id) for o in node.replies) == ["c1", "s1", "s2"]
    assert {o.reply.error.code for o in node.replies if o.reply.error} == {"interrupted"}


async def test_a_command_that_comes_once_the_node_stops_is_not_acknowledged() -> None:
    """Left for the broker to send again when the node is back (its session kept)."""
    node = Node()
    acked: list[str] = []
    await node.lanes.close(0.05)
    late = dataclasses.replace(cmd("ping", "late"), ack=lambda: acked.append("late"))
    await node.lanes.put(late)
    assert acked == [] and node.replies == [] and node.router.counters["cmd.not_taken"] == 1

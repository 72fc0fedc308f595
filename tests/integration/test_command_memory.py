"""A command id the node answered, delivered again after the node restarted (a QoS 1 resend,
the broker's persistent session, dispatch sending again): the first reply again, the
command not run again (docs/topics.md, `reply/{name}`; edged.commands.replies)."""

from pathlib import Path
from typing import Any

from tests.helpers.broker import Mosquitto
from tests.helpers.commands import online, replies, send
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

OLD = b'{"id":"m-old","args":{"mode":"out-of-service"}}'


def answers(c: Collector, cmd_id: str) -> list[dict[str, Any]]:
    """The replies to `cmd_id`, without their envelope (each publication has its own)."""
    body = ("id", "ok", "result", "error")
    return [{k: r[k] for k in body if k in r} for r in replies(c) if r.get("id") == cmd_id]


async def answered(c: Collector, cmd_id: str, count: int = 1) -> list[dict[str, Any]]:
    await c.wait_for(lambda: len(answers(c, cmd_id)) >= count, 10, f"reply {count} to {cmd_id}")
    return answers(c, cmd_id)


async def restart_between(c: Collector, broker: Mosquitto, tmp_path: Path, spawn: Any) -> None:
    """`mode.set out-of-service` (m-old) answered, then the node restarted."""
    config = write_config(tmp_path, broker.port, gps=False, health_s=1)
    proc = await online(c, config, spawn)
    await send(broker.port, "cmd/mode/set", OLD)
    await answered(c, "m-old")
    await proc.stop()
    await online(c, config, spawn, after=1)


async def test_an_old_command_delivered_after_a_restart_does_not_undo_a_newer_one(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await restart_between(c, broker, tmp_path, spawn)
        await send(broker.port, "cmd/mode/set", b'{"id":"m-new","args":{"mode":"school"}}')
        await answered(c, "m-new")
        await send(broker.port, "cmd/mode/set", OLD)  # the old one again
        first, again = await answered(c, "m-old", 2)
        await send(broker.port, "cmd/mode/set", b'{"id":"m-check","args":{"mode":"school"}}')
        (check,) = await answered(c, "m-check")
    assert again == first
    assert check["result"]["previous"] == "school", "m-old ran again over the newer mode.set"


async def test_an_answered_id_with_other_content_after_a_restart_is_refused_reused_id(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await restart_between(c, broker, tmp_path, spawn)
        await send(broker.port, "cmd/mode/set", b'{"id":"m-old","args":{"mode":"school"}}')
        _, other = await answered(c, "m-old", 2)
        await send(broker.port, "cmd/mode/set", b'{"id":"m-check","args":{"mode":"school"}}')
        (check,) = await answered(c, "m-check")
    assert other["error"]["code"] == "reused_id"
    assert check["result"]["previous"] == "out-of-service"

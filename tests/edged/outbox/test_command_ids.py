"""The command ids the node spent (`security.seen_ids`, in the state store) survive a power
cut at any instant after the command acted: a signed `door.unlock` replayed after the
node came back is refused `replayed`, not run again. A real ext4 card, cut."""

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.counters import Counters
from edged.clock import Clock
from edged.commands.authorize import Authorizer
from edged.commands.router import CommandRouter, IncomingCommand
from edged.commands.spec import CommandSpec
from edged.config.models import OutboxConfig
from edged.config.security import KeyConfig, SecurityConfig
from edged.outbox import Outbox
from edged.security.signing import public_key_text, sign
from tests.helpers.disk import power_back, power_cut, sd_card

TOPIC = "rnst/v1/test/n1/cmd/door.unlock"
DISPATCH = Ed25519PrivateKey.generate()


def unlock_command() -> bytes:
    ts, args = int(time.time() * 1000), {"pulse_s": 1}
    return json.dumps(
        {"id": "u1", "ts": ts, "args": args, "sig": sign(DISPATCH, TOPIC, "u1", ts, args)}
    ).encode()


def router(box: Outbox, opened: list[int], cut: Any = None, after_s: float = 0) -> CommandRouter:
    """The node's command router as `edged.node` builds it, its ids in `box`'s state."""
    config = SecurityConfig(
        keys=[KeyConfig(id="d", public_key=public_key_text(DISPATCH.public_key()), scopes=["door"])]
    )
    auth = Authorizer(
        config,
        Clock(trust_system_clock=True),
        get_state=box.get_state,
        set_state=box.set_state,
        sync_state=box.sync_state,
    )
    commands = CommandRouter(Counters(), authorizer=auth)

    async def unlock(args: dict[str, Any]) -> dict[str, Any]:
        opened.append(1)
        if cut is not None:  # the power goes `after_s` after the door opened
            if after_s:
                await asyncio.sleep(after_s)
            cut()
        return {}

    commands.add(CommandSpec("door.unlock", unlock, scope="door"))
    return commands


@pytest.mark.parametrize("after_s", [0, 0.2])
async def test_a_command_id_spent_before_a_power_cut_is_still_spent_after_it(
    tmp_path: Path, after_s: float
) -> None:
    """The power goes (the ignition) the instant the door opens, or while its handler still
    runs, after the outbox committed the spent id with the state alone (not waiting for
    the card: `synchronous=NORMAL`): the id must be on the card before the door moves, or
    the replay opens it again."""
    command = unlock_command()
    opened: list[int] = []
    with sd_card(tmp_path / "sd") as card:
        config = OutboxConfig(path=card / "outbox.sqlite")
        box = Outbox(config, Clock())
        await box.open()
        writer = asyncio.create_task(box.run_writer())
        first = router(box, opened, lambda: power_cut(card), after_s)
        await first.handle(IncomingCommand(name="door.unlock", payload=command, topic=TOPIC))
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, sqlite3.Error, OSError):
            await writer
        with contextlib.suppress(sqlite3.Error, OSError):
            await box.close()
        power_back(card)
        box = Outbox(config, Clock())
        await box.open()
        writer = asyncio.create_task(box.run_writer())
        again = router(box, opened)
        out = await again.handle(IncomingCommand(name="door.unlock", payload=command, topic=TOPIC))
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await box.close()
    assert opened == [1], "the replay opened the door again"
    assert out.reply.error is not None and out.reply.error.code == "replayed"

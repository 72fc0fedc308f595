"""A power cut during an `access.update`, on a real ext4 card cut as the power goes: after
it the node decides on the old lists or the new ones, whole, never on none or half; and
once the reply saying the new ones are in force is on the card (and so may have reached
dispatch), they are the ones in force after it. A stolen card dispatch was told is
refused must not come back with the ignition."""

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from core.counters import Counters
from edged.clock import Clock
from edged.commands.replies import ReplyMemory
from edged.commands.router import CommandRouter, IncomingCommand
from edged.config.models import OutboxConfig
from edged.host import OutboxState
from edged.outbox import Outbox
from edged.outbox.publication import Publication
from edged.services.access import AccessService
from edged.topics import REPLY, Topics
from tests.edged.access.support import FLEET, REFS, UID_LOST, config, full_lists, host, signed
from tests.helpers.disk import power_back, power_cut, sd_card

TOPICS = Topics("rnst/v1", FLEET, "node-1")


async def service_on(box: Outbox, tmp: Path) -> AccessService:
    node = host()
    node.state = OutboxState(box)  # type: ignore[assignment]
    return AccessService(node, config(tmp))


@pytest.mark.parametrize("reply_stored", [False, True])
async def test_a_power_cut_during_a_list_update_leaves_the_old_lists_or_the_new_whole(
    tmp_path: Path, reply_stored: bool
) -> None:
    with sd_card(tmp_path / "sd") as card:
        options = OutboxConfig(path=card / "outbox.sqlite")
        box = Outbox(options, Clock())
        await box.open()
        writer = asyncio.create_task(box.run_writer())
        service = await service_on(box, tmp_path)
        await service.command_update(signed(full_lists(1, deny={})))  # the card not lost yet
        assert await box.sync_state()
        state = service.host.state
        router = CommandRouter(
            Counters(), replies=ReplyMemory(get_state=state.get, set_state=state.set)
        )
        for spec in service.commands():
            router.add(spec)
        lost = full_lists(2, deny={REFS(UID_LOST): {"reason": "stolen"}})
        payload = json.dumps({"id": "u2", "args": signed(lost)}).encode()
        topic = f"{TOPICS.base}/cmd/access.update"
        out = await router.handle(
            IncomingCommand(name="access.update", payload=payload, topic=topic)
        )
        assert out.reply.ok, out.reply
        stored = box.put_nowait(Publication.make(TOPICS, REPLY, out.reply, name="access.update"))
        if reply_stored:
            await stored
        power_cut(card)
        writer.cancel()
        for step in (writer, box.close()):
            with contextlib.suppress(BaseException):
                await step
        if not stored.done():
            stored.cancel()
        with contextlib.suppress(BaseException):
            stored.exception()
        power_back(card)
        box = Outbox(options, Clock())
        await box.open()
        after = (await service_on(box, tmp_path)).lists
        await box.close()
    assert after.version in (1, 2)
    assert (REFS(UID_LOST) in after.deny) == (after.version == 2), "half a list"
    if reply_stored:
        assert after.version == 2, "dispatch was told the card is refused; it is not"

"""The node's last words at SIGTERM: commit, send what fits in the time left, say offline."""

import asyncio
import logging
import sqlite3
import time

from core.errors import EdgedError
from edged.outbox import Outbox
from edged.uplink.client import Uplink

log = logging.getLogger(__name__)


async def drain_and_say_offline(outbox: Outbox, uplink: Uplink, budget_s: float) -> None:
    """Commit, send what fits in the budget, say offline; a disk that refuses the commits
    (full, failing) must not keep the node from saying offline."""
    deadline = time.monotonic() + budget_s
    try:
        async with asyncio.timeout(budget_s - 0.5):
            await _flush(outbox)
            await uplink.wait_idle(max(0.0, deadline - time.monotonic() - 1.5))
            # closed before `offline`, said or not: a link lost from here on (in the last
            # commit, on a slow disk) took a session up again, its birth after `offline`,
            # and the stop's cancel ended it with a DISCONNECT, which drops the will
            uplink.close()
            await uplink.say_offline()
            await _flush(outbox)
    except TimeoutError:
        log.warning(
            "shutdown: the broker did not answer in time; queued messages stay "
            "in the outbox for the next start"
        )


async def _flush(outbox: Outbox) -> None:
    try:
        await outbox.flush()
    except (sqlite3.Error, OSError, EdgedError) as exc:
        log.error("shutdown: the outbox could not be committed (%s)", exc)

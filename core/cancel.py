"""Cancelling tasks so that they end.

One cancel can be lost: Python 3.11's `asyncio.wait_for` drops a cancel that comes in the same
turn of the loop as the answer it waits for (CPython gh-86296, fixed in 3.12), and a library
may catch `CancelledError` and go on. A task that outlives its only cancel keeps the task
group that holds it, and so the node, from ever stopping; systemd then kills it and nothing
says `offline`. So a task that goes on is cancelled again.

Not at once: a cancelled task may have a bounded clean-up to do (the kiosk's web server ends
its streams with a last chunk, in up to 3 x 0.5 s), and a second cancel would cut it short.
A task cancelled before (the node cancels its services when it starts to stop) is not
cancelled again on the first pass either."""

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

AGAIN_S = 1.6
"""How long a cancelled task has to end before it is cancelled again: longer than the
longest bounded clean-up of a task of the node (`edged.web.server`: 3 x `stop_grace_s`)."""


async def cancel_and_wait(tasks: Iterable["asyncio.Task[Any]"], *, again_s: float = AGAIN_S) -> int:
    """Cancel those of `tasks` not cancelled yet and return once each has ended, cancelling
    again every `again_s` those that go on. Returns how many cancels were sent again (0:
    each task ended after its first)."""
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        if not task.cancelling():
            task.cancel()
    said: set[str] = set()
    again = 0
    while pending:
        _, pending = await asyncio.wait(pending, timeout=again_s)
        for task in pending:
            name = task.get_name()
            if name not in said:
                said.add(name)
                log.warning("task %s went on after it was cancelled: cancelling it again", name)
            task.cancel()
            again += 1
    return again

"""Cancelling tasks so that they end.

One cancel can be lost: Python 3.11's `asyncio.wait_for` drops a cancel that comes in the same
turn of the loop as the answer it waits for (CPython gh-86296, fixed in 3.12), and a library
may catch `CancelledError` and go on. A task that outlives its only cancel keeps the task
group that holds it, and so the node, from ever stopping; systemd then kills it and nothing
says `offline`. So a task that goes on is cancelled again.

Not at once: a cancelled task may have a bounded clean-up to do (the kiosk's web server ends
its streams with a last chunk, in up to 3 x 0.5 s), and a second cancel would cut it short.
A task the caller cancelled before (the node cancels its services when it starts to stop:
`cancelled`) is not cancelled again on the first pass either.

`Task.cancelling()` does not say whether a task was cancelled: Python 3.11's TaskGroup
cancels the task around it when a child fails while the group waits for the others in its
`__aexit__`, and never takes that cancel back (`uncancel` comes before the wait: CPython
moved it after in 3.12). The task handles the group's errors and goes on, its count above
0 for good: the uplink after each lost session. Taken for cancelled already, it was not
cancelled at the node's stop, which then waited `AGAIN_S` for it. `drop_stale_cancels`
takes such counts back where a task handles a group's errors and goes on."""

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

AGAIN_S = 1.6
"""How long a cancelled task has to end before it is cancelled again: longer than the
longest bounded clean-up of a task of the node (`edged.web.server`: 3 x `stop_grace_s`)."""


async def cancel_and_wait(
    tasks: Iterable["asyncio.Task[Any]"],
    *,
    cancelled: Iterable["asyncio.Task[Any]"] = (),
    again_s: float = AGAIN_S,
) -> int:
    """Cancel those of `tasks` not in `cancelled` (cancelled by the caller already) and
    return once each has ended, cancelling again every `again_s` those that go on. Returns
    how many cancels were sent again (0: each task ended after its first)."""
    pending = {task for task in tasks if not task.done()}
    before = set(cancelled)
    for task in pending:
        if task not in before:
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


def drop_stale_cancels(before: int) -> None:
    """Take back the cancel requests the current task gained above `before` (its
    `cancelling()` when it entered the TaskGroup whose errors it handled and goes on past):
    on Python 3.11 the group leaves one when a child fails during its `__aexit__`. A real
    cancel the group swallowed with them is lost either way (`cancel_and_wait` sends it
    again). Left, such a count kills the task on bookworm's Python 3.11.2, whose
    `asyncio.timeout` compares `uncancel()` to 0 (CPython gh-102780, fixed in 3.11.3): a
    timeout that expires there raises CancelledError, not TimeoutError. CI's 3.11.7 does not
    show it."""
    task = asyncio.current_task()
    while task is not None and task.cancelling() > before:
        task.uncancel()

"""cancel_and_wait: a task that goes on after its cancel is cancelled again, until it ends."""

import asyncio
import contextlib
import logging

import pytest

from core.cancel import AGAIN_S, cancel_and_wait, drop_stale_cancels
from edged.web.server import Limits


async def _goes_on_after_one_cancel(ended: list[str]) -> None:
    with contextlib.suppress(asyncio.CancelledError):  # lost, as 3.11's wait_for can
        await asyncio.sleep(60)
    try:
        await asyncio.sleep(60)
    finally:
        ended.append("stubborn")


async def _ends_at_its_cancel(ended: list[str]) -> None:
    try:
        await asyncio.sleep(60)
    finally:
        ended.append("plain")


async def test_a_task_that_goes_on_after_its_cancel_is_cancelled_again_and_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended: list[str] = []
    stubborn = asyncio.create_task(_goes_on_after_one_cancel(ended), name="stubborn")
    plain = asyncio.create_task(_ends_at_its_cancel(ended), name="plain")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="core.cancel"):
        again = await cancel_and_wait([stubborn, plain], again_s=0.05)
    assert again == 1
    assert sorted(ended) == ["plain", "stubborn"]
    assert stubborn.cancelled() and plain.cancelled()
    said = [r.getMessage() for r in caplog.records]
    assert said == ["task stubborn went on after it was cancelled: cancelling it again"]


async def test_tasks_that_end_at_their_cancel_are_cancelled_once() -> None:
    ended: list[str] = []
    tasks = [asyncio.create_task(_ends_at_its_cancel(ended)) for _ in range(3)]
    await asyncio.sleep(0)
    assert await cancel_and_wait(tasks, again_s=0.05) == 0
    assert ended == ["plain"] * 3


async def test_tasks_already_done_are_left_as_they_are() -> None:
    async def answer() -> int:
        return 42

    done = asyncio.create_task(answer())
    await done
    assert await cancel_and_wait([done]) == 0
    assert done.result() == 42


async def _cleans_up_after_its_cancel(ended: list[str], cleanup_s: float) -> None:
    try:
        await asyncio.sleep(60)
    finally:
        await asyncio.sleep(cleanup_s)  # a bounded clean-up: the kiosk ending its streams
        ended.append("cleaned up")


async def test_a_task_cancelled_before_finishes_its_clean_up_uncut() -> None:
    ended: list[str] = []
    task = asyncio.create_task(_cleans_up_after_its_cancel(ended, 0.1))
    await asyncio.sleep(0)
    task.cancel()  # the node cancels its services when it starts to stop
    await asyncio.sleep(0.01)  # it is in its clean-up
    assert await cancel_and_wait([task], cancelled=[task], again_s=1.0) == 0
    assert ended == ["cleaned up"]


async def test_the_kiosks_clean_up_is_not_taken_for_a_lost_cancel() -> None:
    """The web server's stop waits up to 3 x `stop_grace_s` for its connections: the
    default wait before a second cancel is longer."""
    grace = 3 * Limits(head_timeout_s=1, write_timeout_s=1).stop_grace_s
    assert grace < AGAIN_S
    ended: list[str] = []
    task = asyncio.create_task(_cleans_up_after_its_cancel(ended, grace - 0.1))
    await asyncio.sleep(0)
    assert await cancel_and_wait([task]) == 0
    assert ended == ["cleaned up"]


async def _child_fails_while_the_group_waits(started: asyncio.Event) -> None:
    """A TaskGroup whose body is done, waiting in its `__aexit__` when a child fails (the
    uplink's session at a lost link); the errors handled, the task goes on."""

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise OSError("link lost")

    with contextlib.suppress(ExceptionGroup):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fails())
            tg.create_task(asyncio.sleep(60))
    started.set()
    await asyncio.sleep(60)


async def test_a_task_that_handled_a_failed_task_group_is_cancelled_at_once() -> None:
    """Python 3.11's TaskGroup left the task a cancel request it never took back: the task
    was taken for cancelled already and left running until the second pass (1.6 s)."""
    started = asyncio.Event()
    task = asyncio.create_task(_child_fails_while_the_group_waits(started))
    await asyncio.wait_for(started.wait(), 5)
    assert await cancel_and_wait([task], again_s=5.0) == 0
    assert task.cancelled()


async def test_stale_cancel_requests_a_failed_task_group_left_are_taken_back() -> None:
    async def body() -> tuple[int, int]:
        me = asyncio.current_task()
        assert me is not None
        before = me.cancelling()
        with contextlib.suppress(ExceptionGroup):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(asyncio.sleep(0.01))
                tg.create_task(_raise_soon())
        left = me.cancelling()
        drop_stale_cancels(before)
        return left - before, me.cancelling()

    stale, after = await asyncio.create_task(body())
    assert after == 0
    assert stale in (0, 1)  # 1 on Python 3.11, 0 where TaskGroup takes it back itself


async def _raise_soon() -> None:
    await asyncio.sleep(0.005)
    raise OSError("failed")

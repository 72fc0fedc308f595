"""cancel_and_wait: a task that goes on after its cancel is cancelled again, until it ends."""

import asyncio
import contextlib
import logging

import pytest

from core.cancel import AGAIN_S, cancel_and_wait
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
    assert await cancel_and_wait([task], again_s=1.0) == 0
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

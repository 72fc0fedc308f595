"""cancel_and_wait: a task that goes on after its cancel is cancelled again, until it ends."""

import asyncio
import contextlib
import logging

import pytest

from core.cancel import cancel_and_wait


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

"""Ending a foreground tool cleanly: on Ctrl-C, SIGTERM, a duration, or a task that failed."""

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` instead of raising, so shutdown runs its course."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_until(
    stop: asyncio.Event, duration: float | None, *tasks: "asyncio.Task[Any]"
) -> str:
    """Wait for `stop`, `duration` seconds, or the first of `tasks` to end.

    Returns why it returned ("stop", "duration" or the finished task's name); a task that
    failed re-raises its exception here.
    """
    waiter = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait(
            [waiter, *tasks], timeout=duration, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
    for task in tasks:
        if task in done:
            task.result()
            return task.get_name()
    return "stop" if waiter in done else "duration"

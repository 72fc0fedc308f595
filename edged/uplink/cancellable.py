"""aiomqtt's client, made to end when it is cancelled.

aiomqtt's every wait (CONNACK, SUBACK, PUBACK, DISCONNECT) goes through Python 3.11's
`asyncio.wait_for`, which returns the answer and drops the cancel when both come in the same
turn of the loop (CPython gh-86296, fixed in 3.12). A task publishing at QoS 1 that is
cancelled as a PUBACK comes in then goes on: the node's uplink after SIGTERM (it never
stopped), a tool after Ctrl-C, a simulator at a test's teardown (CI waited 180 s for one).
Every client of the node, its tools and its test rigs is this one.
"""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import aiomqtt

T = TypeVar("T")


class CancellableClient(aiomqtt.Client):
    """aiomqtt's client whose waits keep a cancel that comes with their answer."""

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
        """The task still counts a cancel that `asyncio.wait_for` dropped
        (`Task.cancelling`), so it is raised here."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        result = await super()._wait_for(fut, timeout)
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
        return result

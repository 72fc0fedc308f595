"""aiomqtt's client, made to end when it is cancelled, and to leave no error unread.

aiomqtt's every wait (CONNACK, SUBACK, PUBACK, DISCONNECT) goes through Python 3.11's
`asyncio.wait_for`, which returns the answer and drops the cancel when both come in the same
turn of the loop (CPython gh-86296, fixed in 3.12). A task publishing at QoS 1 that is
cancelled as a PUBACK comes in then goes on: the node's uplink after SIGTERM (it never
stopped), a tool after Ctrl-C, a simulator at a test's teardown (CI waited 180 s for one).
Every client of the node, its tools and its test rigs is this one.

A connection the broker closes sets aiomqtt's `_disconnected` future with the error;
read by nobody when the session's reader was cancelled before it (its TaskGroup ending on
another error, the stop), it said "Future exception was never retrieved:
MqttCodeError('Unexpected disconnection')" when collected.
"""

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

import aiomqtt

T = TypeVar("T")


class CancellableClient(aiomqtt.Client):
    """aiomqtt's client whose waits keep a cancel that comes with their answer, and whose
    end is always read."""

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
        """The task still counts a cancel that `asyncio.wait_for` dropped
        (`Task.cancelling`), so it is raised here."""
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        result = await super()._wait_for(fut, timeout)
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            self._read_end()

    def _read_end(self) -> None:
        """The connection's end is read: the session's owner learned it otherwise (a
        message iteration, a publish, paho's reason code) or no longer cares, and an
        error left unread is logged as "never retrieved" when the future is collected."""
        end = self._disconnected
        if end.done() and not end.cancelled():
            end.exception()

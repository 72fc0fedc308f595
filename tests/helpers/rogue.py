"""A fleet peer with a valid certificate gone hostile (DESIGN.md rule 7), against edgectl.

It publishes what it likes on its own topics over a real broker, and answers the commands
sent to it with whatever reply the test gives; `edgectl` runs as a process, so what the
tests read is the bytes that would reach the operator's terminal.
"""

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt

from edged.uplink.cancellable import CancellableClient
from tests.helpers.nodes import ROOT


async def publish_retained(port: int, *messages: tuple[str, Any]) -> None:
    """Each `(topic, body)` retained, as a node's birth, alarm or update topic is."""
    async with CancellableClient("127.0.0.1", port, identifier=f"rogue-{uuid.uuid4().hex[:8]}") as c:
        for topic, body in messages:
            await c.publish(topic, json.dumps(body).encode(), qos=1, retain=True)


@contextlib.asynccontextmanager
async def answering(
    port: int, base: str, reply: Callable[[str], dict[str, Any]]
) -> AsyncIterator[None]:
    """Answer every command under `base` on `base/reply/{name}` with `reply(command id)`."""
    async with CancellableClient("127.0.0.1", port, identifier=f"rogue-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(f"{base}/cmd/#", qos=1)

        async def serve() -> None:
            async for message in c.messages:
                name = str(message.topic)[len(f"{base}/cmd/") :]
                assert isinstance(message.payload, bytes)
                cmd_id = json.loads(message.payload)["id"]
                body = json.dumps(reply(cmd_id)).encode()  # ensure_ascii: "\ud800" stays JSON
                await c.publish(f"{base}/reply/{name}", body, qos=1)

        task = asyncio.create_task(serve())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def edgectl(*args: str) -> tuple[int, str, str]:
    """`edgectl ARGS` as a process: its exit code, and stdout and stderr as the terminal
    would get them (UTF-8, undecodable bytes shown as U+FFFD)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged.cli.ctl", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return (
        proc.returncode or 0,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def acts_on_a_terminal(text: str) -> list[str]:
    """The characters of `text` a terminal would act on rather than show (newlines aside)."""
    return sorted({c for c in text if not c.isprintable() and c not in "\n "})

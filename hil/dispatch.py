"""Dispatch's side of the broker: collects what the broker really delivers.

The tests, the benchmarks and the rig use it; every message keeps its arrival time,
so latency and order are measured on what dispatch would see."""

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from edged.codec import PayloadError, messages
from edged.uplink.cancellable import CancellableClient


@dataclass(frozen=True)
class Received:
    topic: str
    payload: dict[str, Any]
    at: float  # time.time() at arrival
    retain: bool


def _payloads(raw: bytes) -> list[dict[str, Any]]:
    """The messages a payload carries in any encoding, each of a batch on its own; what is
    not a message (hostile commands too) as `{"_raw": text}`."""
    try:
        items = messages(raw)
    except PayloadError:
        return [{"_raw": raw.decode(errors="replace")}]
    return [i if isinstance(i, dict) else {"_raw": raw.decode(errors="replace")} for i in items]


class Collector:
    """Subscribes with a persistent session, so a broker with persistence keeps queueing for
    it across a broker restart, and reconnects by itself."""

    def __init__(
        self,
        port: int,
        topic: str = "#",
        client_id: str = "test-dispatch",
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.tls = tls
        self.messages: list[Received] = []
        self._by_suffix: dict[str, list[Received]] = {}
        self.publishes: dict[str, list[int]] = {}  # by suffix: messages in each publish
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Collector":
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with CancellableClient(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    max_queued_incoming_messages=0,
                    tls_context=self.tls,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        raw = m.payload if isinstance(m.payload, bytes) else b""
                        payloads = _payloads(raw)
                        self.publishes.setdefault(_suffix(str(m.topic)), []).append(len(payloads))
                        for payload in payloads:
                            r = Received(str(m.topic), payload, time.time(), bool(m.retain))
                            self.messages.append(r)
                            self._by_suffix.setdefault(_suffix(r.topic), []).append(r)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    def on(self, suffix: str) -> list[Received]:
        """Messages on `{base}/{suffix}` of any node, in arrival order."""
        return self._by_suffix.get(suffix, [])

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.05)


async def publish(
    port: int,
    topic: str,
    payload: bytes,
    *,
    v5: bool = True,
    properties: Any = None,
    tls: ssl.SSLContext | None = None,
    retain: bool = False,
) -> None:
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with CancellableClient("127.0.0.1", port, protocol=protocol, tls_context=tls) as client:
        await client.publish(topic, payload, qos=1, properties=properties, retain=retain)


def _suffix(topic: str) -> str:
    """`rnst/v1/fleet/node/events/door` -> `events/door`."""
    return "/".join(topic.split("/")[4:])


def dedup_key(m: Received) -> tuple[str, Any, Any]:
    """What dispatch de-duplicates on (docs/topics.md): the topic, the outbox epoch when the
    envelope has one, and the seq."""
    return (m.topic, m.payload.get("epoch"), m.payload.get("seq"))


def unique_by_seq(messages: list[Received]) -> list[Received]:
    """De-duplicate as dispatch does (`dedup_key`); keeps arrival order."""
    seen: set[tuple[str, Any, Any]] = set()
    out = []
    for m in messages:
        key = dedup_key(m)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out

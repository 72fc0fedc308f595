"""The one MQTT connection: birth and will, commands in, the outbox drained out.

Each session: connect with the will (`state` offline, retained), subscribe to `cmd/#`,
publish the birth, restore retained topics (when the broker kept no session for the node,
so it may have lost them), then drain the outbox through a bounded window
of publishes awaiting PUBACK, while commands are handled as they arrive. Any MQTT error
ends the session; the next one starts after a jittered backoff. Nothing is lost on the way:
a message leaves the outbox only when the broker acknowledged it.
"""

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.backoff import jittered_backoff
from edged.commands.router import IncomingCommand
from edged.config.models import BrokerConfig
from edged.counters import Counters
from edged.errors import ConfigError
from edged.outbox import Outbox, Stored
from edged.payloads import State
from edged.topics import STATE, Topics
from edged.uplink.tls import tls_context

log = logging.getLogger(__name__)

BirthFactory = Callable[[int], State]
CommandSink = Callable[[IncomingCommand], Awaitable[None]]


class _Client(aiomqtt.Client):
    """aiomqtt's client, keeping CONNACK's session-present flag (aiomqtt drops it)."""

    session_present = False

    def _on_connect(
        self,
        client: Any,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any = None,
    ) -> None:
        self.session_present = bool(getattr(flags, "session_present", False))
        super()._on_connect(client, userdata, flags, reason_code, properties)


def read_password(config: BrokerConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            "broker.password_file", [f"cannot read {config.password_file}: {exc.strerror}"]
        ) from exc


class Uplink:
    def __init__(
        self,
        config: BrokerConfig,
        topics: Topics,
        outbox: Outbox,
        *,
        client_id: str,
        birth: BirthFactory,
        on_command: CommandSink,
        counters: Counters,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.topics = topics
        self.outbox = outbox
        self.client_id = client_id
        self.birth = birth
        self.on_command = on_command
        self.counters = counters
        self.rng = rng or random.Random()
        self.connected = False
        self.sessions = 0
        self.sent = 0
        self._client: aiomqtt.Client | None = None

    @property
    def reconnects(self) -> int:
        return max(0, self.sessions - 1)

    async def run(self) -> None:
        """Keep a session up for as long as the node runs."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except* (aiomqtt.MqttError, OSError) as group:
                self._lost(group.exceptions[0])
            except* Exception as group:  # a bug here must not end the node: log, retry
                log.error("uplink session failed", exc_info=group.exceptions[0])
                self.counters.inc("uplink.internal_error")
            finally:
                self.connected = False
                self._client = None
            if time.monotonic() - started > 60:
                failures = 0
            failures += 1
            delay = jittered_backoff(
                failures, self.config.reconnect_min_s, self.config.reconnect_max_s, self.rng
            )
            log.info("reconnecting to the broker in %.1f s", delay)
            await asyncio.sleep(delay)

    def _lost(self, exc: BaseException) -> None:
        self.counters.inc("uplink.disconnect")
        where = f"{self.config.host}:{self.config.port}"
        if self.connected:
            log.warning("lost the broker at %s: %s", where, exc)
        else:
            log.warning("cannot reach the broker at %s: %s", where, exc)

    def _client_for(self, will_payload: bytes) -> _Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        return _Client(
            hostname=cfg.host,
            port=cfg.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            username=cfg.username,
            password=read_password(cfg),
            keepalive=cfg.keepalive_s,
            tls_context=tls_context(cfg) if cfg.tls is not None else None,
            will=aiomqtt.Will(self.topics.of(STATE), will_payload, qos=1, retain=True),
            clean_session=None if v5 else False,
            timeout=cfg.publish_timeout_s,
            max_inflight_messages=cfg.window,
        )

    async def _session(self) -> None:
        since, _ = self.outbox.clock.now()
        # the birth is stamped before the will, so the will's seq is above the birth's:
        # dispatch ordering by seq keeps "offline" after a crash. No flush before connecting:
        # a disk that refuses writes must not keep the node off the broker, and the epoch
        # keeps (epoch, seq) unique whether or not these seqs reach the disk
        birth, _, _ = self.outbox.stamp(STATE.name, self.birth(since))
        will, _, _ = self.outbox.stamp(STATE.name, State(state="offline", since=since))
        async with self._client_for(will) as client:
            client.pending_calls_threshold = self.config.window + 16
            self._client = client
            await client.subscribe(self.topics.commands, qos=1)
            await client.publish(self.topics.of(STATE), birth, qos=1, retain=True)
            self.outbox.begin_session()
            if not client.session_present:
                # the broker kept no session for us: it may have lost its retained store
                # too (a restart without persistence). Restored messages are the ones
                # delivered before, byte for byte: the same (topic, epoch, seq)
                for topic, payload, qos in await self.outbox.retained():
                    await client.publish(topic, payload, qos=qos, retain=True)
            self.connected = True
            self.sessions += 1
            log.info("connected to %s:%s as %s", self.config.host, self.config.port, self.client_id)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._receive(client), name="uplink.receive")
                tg.create_task(self._drain(client, tg), name="uplink.drain")

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            name = self.topics.command_name(str(message.topic))
            if name is None:
                continue
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes | bytearray):
                payload = b"" if payload is None else str(payload).encode()
            props = message.properties
            response_topic = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
            await self.on_command(
                IncomingCommand(
                    name=name,
                    payload=bytes(payload),
                    response_topic=response_topic if isinstance(response_topic, str) else None,
                    correlation=bytes(correlation) if correlation is not None else None,
                    topic=str(message.topic),
                )
            )

    async def _drain(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        """Keep `window` publishes awaiting PUBACK, in outbox order; each acks on PUBACK.

        The workers take from a read-ahead of at most two windows; one fetch refills it
        when it falls below a window, so there is no task switch per message and the
        trip to the outbox thread overlaps with the publishes still ahead."""
        window = self.config.window
        ahead: deque[Stored] = deque()
        low, filled = asyncio.Event(), asyncio.Event()
        for i in range(window):
            tg.create_task(self._worker(client, ahead, low, filled), name=f"uplink.publish.{i}")
        while True:
            ahead.extend(await self.outbox.next_batch(2 * window - len(ahead)))
            filled.set()
            if len(ahead) >= window:
                low.clear()
                await low.wait()

    async def _worker(
        self,
        client: aiomqtt.Client,
        ahead: "deque[Stored]",
        low: asyncio.Event,
        filled: asyncio.Event,
    ) -> None:
        v5 = self.config.protocol == "5"
        window = self.config.window
        while True:
            while not ahead:
                filled.clear()
                low.set()
                await filled.wait()
            msg = ahead.popleft()
            if len(ahead) < window:
                low.set()
            properties = None
            if msg.correlation is not None and v5:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.CorrelationData = msg.correlation
            await client.publish(
                msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, properties=properties
            )
            self.outbox.ack(msg)
            self.sent += 1

    async def wait_idle(self, within_s: float) -> bool:
        """Wait (bounded) until everything stored has been acknowledged; for shutdown."""
        deadline = time.monotonic() + within_s
        while self.connected and time.monotonic() < deadline:
            if self.outbox.depth == 0:
                return True
            await asyncio.sleep(0.05)
        return self.outbox.depth == 0

    async def publish_direct(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, within_s: float = 2.0
    ) -> bool:
        """Publish outside the outbox (state offline on shutdown); False when not connected."""
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=within_s)
        except aiomqtt.MqttError as exc:
            log.warning("could not publish %s: %s", topic, exc)
            return False
        return True

    async def say_offline(self) -> bool:
        since, _ = self.outbox.clock.now()
        payload, _, _ = self.outbox.stamp(STATE.name, State(state="offline", since=since))
        return await self.publish_direct(self.topics.of(STATE), payload, qos=1, retain=True)

    async def republish(self) -> dict[str, Any]:
        """Birth and retained topics again (the `republish` command)."""
        if self._client is None or not self.connected:
            return {"birth": False, "retained": 0}
        since, _ = self.outbox.clock.now()
        birth, _, _ = self.outbox.stamp(STATE.name, self.birth(since))
        ok = await self.publish_direct(self.topics.of(STATE), birth, qos=1, retain=True)
        n = 0
        for topic, payload, qos in await self.outbox.retained():
            n += await self.publish_direct(topic, payload, qos=qos, retain=True)
        return {"birth": ok, "retained": n}

"""The data-budget levers against a real Mosquitto: topic aliases, TLS session resumption
and the compact encodings, as dispatch receives them (#20)."""

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edged.codec import decode, encoding_of
from edged.config.models import BrokerConfig, TlsConfig
from edged.uplink.aliases import TopicAliases
from edged.uplink.cancellable import CancellableClient
from edged.uplink.mqtt import MqttClient
from edged.uplink.tls import TlsSessions
from hil.fleetbroker import FleetBroker
from hil.proxy import MqttProxy
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import write_config

NODE = ("test", "shuttle-07")
BASE = "rnst/v1/test/shuttle-07"


@pytest.fixture
async def tls_proxy(fleet: FleetBroker) -> AsyncIterator[MqttProxy]:
    proxy = await MqttProxy(fleet.node_port, raw=True).start()
    yield proxy
    await proxy.close()


def node_broker_config(
    fleet: FleetBroker, port: int, *, resume: bool = True, max_version: str = "1.3"
) -> BrokerConfig:
    crt, key = fleet.cert(".".join(NODE))
    tls = TlsConfig(
        ca_file=fleet.ca, cert_file=crt, key_file=key, resume=resume, max_version=max_version
    )
    return BrokerConfig(host="localhost", port=port, tls=tls)


def handshake(sessions: TlsSessions, port: int) -> bool | None:
    """One TLS connection as paho makes it, an MQTT CONNECT and its CONNACK read (the
    broker's ticket comes before it), then what `TlsSessions` says after CONNACK."""
    context = sessions.context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        tls = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        tls.do_handshake()
        client_id = b"test.shuttle-07"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        tls.sendall(bytes([0x10, len(body)]) + body)
        assert tls.recv(4)[:1] == b"\x20", "no CONNACK"
        resumed = sessions.connected()
        tls.close()
    return resumed


async def test_a_reconnect_resumes_the_tls_session_and_sends_no_certificate(
    fleet: FleetBroker, tls_proxy: MqttProxy
) -> None:
    sessions = TlsSessions(node_broker_config(fleet, tls_proxy.port))
    resumed = [await asyncio.to_thread(handshake, sessions, tls_proxy.port) for _ in range(3)]
    assert resumed == [False, True, True]
    full, again = tls_proxy.connections[0], tls_proxy.connections[1]
    # the broker's certificate and its two tickets are not sent again (measured here: 2,640
    # bytes down for a full handshake, 938 resumed); up, the node's certificate and its
    # signature are replaced by the ticket it got (1,586 -> 1,103)
    assert again.down < full.down / 2, (full.down, again.down)
    assert again.up < full.up, (full.up, again.up)
    assert again.total < full.total / 1.5, (full.total, again.total)


async def test_tls_12_resumes_too_in_fewer_bytes_than_13(
    fleet: FleetBroker, tls_proxy: MqttProxy
) -> None:
    """TLS 1.3 resumption still carries the broker's new ticket (it holds the node's
    certificate); over 1.2 Mosquitto sends none (docs/budget.md weighs the two)."""
    for version in ("1.3", "1.2"):
        sessions = TlsSessions(node_broker_config(fleet, tls_proxy.port, max_version=version))
        resumed = [await asyncio.to_thread(handshake, sessions, tls_proxy.port) for _ in range(2)]
        assert resumed == [False, True], version
    v13, v12 = tls_proxy.connections[1], tls_proxy.connections[3]
    assert v12.total < v13.total, (v13.total, v12.total)


async def test_without_resume_every_handshake_is_full(
    fleet: FleetBroker, tls_proxy: MqttProxy
) -> None:
    sessions = TlsSessions(node_broker_config(fleet, tls_proxy.port, resume=False))
    resumed = [await asyncio.to_thread(handshake, sessions, tls_proxy.port) for _ in range(2)]
    assert resumed == [False, False]


async def test_renewed_certificate_files_start_a_new_context(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path
) -> None:
    crt, _key = fleet.cert(".".join(NODE))
    copy = tmp_path / "node.crt"
    copy.write_bytes(crt.read_bytes())
    cfg = node_broker_config(fleet, tls_proxy.port)
    cfg = cfg.model_copy(update={"tls": cfg.tls.model_copy(update={"cert_file": copy})})  # type: ignore[union-attr]
    sessions = TlsSessions(cfg)
    first = sessions.context()
    assert sessions.context() is first
    copy.write_bytes(crt.read_bytes() + b"\n")  # renewed: another size and mtime
    assert sessions.context() is not first


async def test_a_node_over_tls_resumes_after_a_dead_zone_in_its_fleet_encoding(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    crt, key = fleet.cert(".".join(NODE))
    tls = f'[broker.tls]\nca_file = "{fleet.ca}"\ncert_file = "{crt}"\nkey_file = "{key}"\n'
    config = write_config(
        tmp_path,
        tls_proxy.port,
        fleet="test",
        health_s=1,
        health_beat_s=300,  # the full report after the dead zone is the "on connect" one
        broker='encoding = "deflate"',
        extra=tls,
    )
    text = config.read_text().replace('host = "127.0.0.1"', 'host = "localhost"')
    config.write_text(text)
    await spawn(config)
    dispatch = fleet.tls_context("dispatch")
    async with Collector(fleet.ops_port, topic=f"{BASE}/#", tls=dispatch) as c:
        await c.wait_for(lambda: bool(c.on("position")), 20, "a position")
        birth = next(m for m in c.on("state") if m.payload["state"] == "online").payload
        assert birth["encoding"] == "deflate"
        tls_proxy.cut()  # a dead zone
        await c.wait_for(
            lambda: any(
                (m.payload.get("mqtt") or {}).get("tls_resumed") is True for m in c.on("health")
            ),
            20,
            "a full health report saying the session was resumed",
        )
        health = [m for m in c.on("health") if m.payload["mqtt"].get("tls_resumed")][-1]
        assert health.payload["reconnects"] >= 1
        assert health.payload["mqtt"]["topic_aliases"] > 0
        assert health.payload["errors"]["uplink.tls.resumed"] >= 1
        # positions keep their full precision and come under their own topic name
        assert all(isinstance(m.payload["lat"], float) for m in c.on("position"))


# -- topic aliases ------------------------------------------------------------------------


async def publish_through(
    proxy_port: int, use_aliases: bool, topics: list[str], rounds: int
) -> None:
    client = MqttClient(
        "127.0.0.1", proxy_port, identifier="alias-test", protocol=aiomqtt.ProtocolVersion.V5
    )
    async with client:
        aliases = TopicAliases(client.topic_alias_max if use_aliases else 0)
        for r in range(rounds):
            for i, topic in enumerate(topics):
                name, props = aliases.apply(topic, None)
                await client.publish(name, f'{{"r":{r},"i":{i}}}'.encode(), qos=1, properties=props)


async def test_topic_aliases_reach_subscribers_under_the_full_names_and_save_bytes(
    broker: Mosquitto,
) -> None:
    topics = [f"{BASE}/topic-{i}" for i in range(14)]  # more than Mosquitto's 10 aliases
    sizes = []
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        for use in (True, False):
            proxy = await MqttProxy(broker.port, raw=True).start()
            try:
                await publish_through(proxy.port, use, topics, rounds=5)
            finally:
                await proxy.close()
            sizes.append(proxy.connections[0].up)
        await c.wait_for(lambda: len(c.messages) == 2 * 5 * 14, 10, "every message")
    for topic in topics:
        got = sorted((m.payload["r"], m.payload["i"]) for m in c.messages if m.topic == topic)
        assert got == sorted([(r, topics.index(topic)) for r in range(5)] * 2), topic
    with_aliases, without = sizes
    # 10 topics × 4 later rounds go by alias: each saves its name (~34 bytes) less 3
    assert without - with_aliases > 10 * 4 * 25, sizes


def test_the_alias_table_never_passes_the_brokers_maximum() -> None:
    aliases = TopicAliases(2)
    assert [aliases.apply(t, None)[1].TopicAlias for t in ("a", "b")] == [1, 2]  # type: ignore[union-attr]
    assert aliases.apply("c", None) == ("c", None)
    assert aliases.apply("a", None)[0] == ""
    assert TopicAliases(0).apply("a", None) == ("a", None)


@pytest.mark.parametrize("encoding", ["cbor", "deflate"])
async def test_a_plain_node_in_a_compact_encoding_is_read_by_dispatch(
    broker: Mosquitto, tmp_path: Path, spawn: Any, encoding: str
) -> None:
    await spawn(write_config(tmp_path, broker.port, broker=f'encoding = "{encoding}"', health_s=1))
    raw: list[bytes] = []
    async with CancellableClient("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{BASE}/#")
        async with asyncio.timeout(20):
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                raw.append(m.payload)
                if str(m.topic).endswith("/position"):
                    break
    assert all(encoding_of(p) == encoding for p in raw)
    assert any(
        decode(p).get("state") == "online" and decode(p)["encoding"] == encoding for p in raw
    )


async def test_between_full_reports_the_node_sends_short_beats(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    await spawn(write_config(tmp_path, broker.port, health_s=1, health_beat_s=2, gps=False))
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await c.wait_for(lambda: len(c.on("health/beat")) >= 3, 15, "three beats")
        beat = c.on("health/beat")[-1]
        assert not beat.retain
        assert set(beat.payload) >= {"uptime_s", "rss_mb", "cpu_pct", "depth", "reconnects"}
        full = c.on("health")
        assert 1 <= len(full) < len(c.on("health/beat")), (len(full), len(c.on("health/beat")))
    async with Collector(broker.port, topic=f"{BASE}/health", client_id="late") as late:
        await late.wait_for(lambda: bool(late.on("health")), 5, "the retained report")
        assert late.on("health")[0].retain and "drivers" in late.on("health")[0].payload


async def test_a_resumed_session_keeps_its_subscription_and_commands_still_arrive(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    proxy = await MqttProxy(broker.port).start()
    try:
        await spawn(write_config(tmp_path, proxy.port, health_s=1, gps=False))
        async with Collector(broker.port, topic=f"{BASE}/#") as c:
            await c.wait_for(lambda: bool(c.on("state")), 10, "the birth")
            proxy.cut()
            await c.wait_for(
                lambda: any(
                    m.payload["errors"].get("uplink.subscription_kept") for m in c.on("health")
                ),
                15,
                "a session resumed without subscribing again",
            )
            await publish(broker.port, f"{BASE}/cmd/ping", b'{"id":"after-cut"}')
            await c.wait_for(lambda: bool(c.on("reply/ping")), 10, "the reply")
            assert c.on("reply/ping")[0].payload["id"] == "after-cut"
    finally:
        await proxy.close()


# -- batches ------------------------------------------------------------------------------


async def test_a_node_batches_its_positions_and_dispatch_gets_every_one_in_order(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(tmp_path, broker.port, broker='encoding = "deflate"\nbatch_s = 3.0')
    await spawn(config)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await c.wait_for(lambda: len(c.on("position")) >= 12, 40, "12 positions")
        published = c.publishes["position"]
        doors = c.publishes.get("events/door", [])
    assert max(published) > 1, published  # samples shared publishes
    assert len(published) < len(c.on("position"))
    assert set(doors) <= {1}  # an event always goes alone
    seqs = [m.payload["seq"] for m in c.on("position")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # each one, once, in order
    assert all(isinstance(m.payload["lat"], float) for m in c.on("position"))


async def test_a_batched_position_still_reaches_dispatch_within_batch_s_of_its_stamp(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """The outbox holds a live sample for part of `batch_s` (one commit for several: SD
    wear), the drain for the rest: together never longer than `batch_s`."""
    config = write_config(tmp_path, broker.port, broker="batch_s = 4.0")
    await spawn(config)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await c.wait_for(lambda: len(c.on("position")) >= 30, 40, "30 positions")
        lags = [m.at - m.payload["ts"] / 1000 for m in c.on("position")]
        published = c.publishes["position"]
    assert max(published) > 1  # batched
    assert max(lags) < 4.0 + 1.0, sorted(lags)[-5:]

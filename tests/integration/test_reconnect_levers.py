"""The reconnect's levers against a real Mosquitto (#20): a lean TLS 1.3 hello, TLS 1.2 with
ChaCha20-Poly1305, and the MQTT 5 will delay that spares a node back within it its birth.
Bytes are counted at the socket (hil.proxy) and named with bench.wire."""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.wire import breakdown, read_keylog
from edged.config.models import BrokerConfig, TlsConfig
from edged.uplink.tls import TlsSessions
from hil.fleetbroker import FleetBroker
from hil.proxy import MqttProxy
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

NODE = ("test", "shuttle-07")
BASE = "rnst/v1/test/shuttle-07"


@pytest.fixture
async def tls_proxy(fleet: FleetBroker) -> AsyncIterator[MqttProxy]:
    proxy = await MqttProxy(fleet.node_port, raw=True, keep_bytes=65536).start()
    yield proxy
    await proxy.close()


def sessions_for(fleet: FleetBroker, port: int, keylog: Path, **tls: Any) -> TlsSessions:
    crt, key = fleet.cert(".".join(NODE))
    cfg = TlsConfig(ca_file=fleet.ca, cert_file=crt, key_file=key, **tls)
    sessions = TlsSessions(BrokerConfig(host="localhost", port=port, tls=cfg))
    sessions.context().keylog_filename = str(keylog)
    return sessions


def connect(
    sessions: TlsSessions, port: int, close: Callable[[ssl.SSLSocket], None] | None = None
) -> tuple[bool | None, str]:
    """One TLS connection as paho makes it, an MQTT 3.1.1 CONNECT, its CONNACK (the
    broker's ticket before it), closed as paho closes it; (resumed, negotiated cipher)."""
    context = sessions.context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        tls = context.wrap_socket(raw, server_hostname="localhost")
        client_id = b"test.shuttle-07"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        tls.sendall(bytes([0x10, len(body)]) + body)
        assert tls.recv(4)[:1] == b"\x20", "no CONNACK"
        cipher = tls.cipher()
        resumed = sessions.connected()
        tls.close() if close is None else close(tls)
    assert cipher is not None
    return resumed, cipher[0]


async def resumed_connection(
    fleet: FleetBroker, proxy: MqttProxy, tmp_path: Path, name: str, **tls: Any
) -> tuple[dict[str, Any], int, str]:
    """A full handshake then a resumed one with these knobs: the resumed one named, and its
    bytes but for the close_notify alerts that end it."""
    keylog = tmp_path / f"{name}.keys"
    sessions = sessions_for(fleet, proxy.port, keylog, **tls)
    results = [await asyncio.to_thread(connect, sessions, proxy.port) for _ in range(2)]
    assert [r[0] for r in results] == [False, True], name
    await asyncio.sleep(0.2)  # the proxy has counted the close
    conn = proxy.connections[-1]
    named = breakdown(
        bytes(conn.head[True]), bytes(conn.head[False]), read_keylog(keylog.read_text())
    )
    out = named.json()
    assert out["decrypted"] and not out["truncated"] and out["bytes"] == conn.total, out
    # the closing close_notify alerts: the broker's answer crosses the proxy or not, by timing
    goodbye = sum(i["bytes"] for i in out["items"] if i["what"] == "Alert")
    return out, conn.total - goodbye, results[1][1]


def item(named: dict[str, Any], what: str) -> dict[str, Any]:
    return next(i for i in named["items"] if i["what"].startswith(what))


async def test_a_lean_tls13_hello_resumes_without_the_compat_session_id_or_tls12_suites(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path
) -> None:
    default, default_bytes, _ = await resumed_connection(fleet, tls_proxy, tmp_path, "default")
    lean, lean_bytes, cipher = await resumed_connection(
        fleet, tls_proxy, tmp_path, "lean", min_version="1.3", middlebox_compat=False
    )
    assert lean["tls_version"] == default["tls_version"] == "1.3" and cipher.startswith("TLS_")
    hello, lean_hello = item(default, "ClientHello"), item(lean, "ClientHello")
    # no 32-byte legacy session id (and none echoed), no TLS 1.2 suite, no fake CCS
    assert lean_hello["parts"]["random_version_session_id"] == 35
    assert hello["parts"]["random_version_session_id"] == 67
    # the three TLS 1.3 suites and the renegotiation SCSV
    assert lean_hello["parts"]["cipher_suites"] == 2 + 2 * 4 < hello["parts"]["cipher_suites"]
    assert item(lean, "ServerHello")["bytes"] == item(default, "ServerHello")["bytes"] - 32
    assert not any(i["what"] == "ChangeCipherSpec" and i["dir"] == "up" for i in lean["items"])
    assert default_bytes - lean_bytes >= 32 + 32 + 6 + 28, (default_bytes, lean_bytes)


async def test_tls12_with_chacha20_resumes_with_a_record_overhead_of_21_bytes(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path
) -> None:
    aes, _, aes_cipher = await resumed_connection(
        fleet, tls_proxy, tmp_path, "aes", max_version="1.2"
    )
    chacha, _, cipher = await resumed_connection(
        fleet, tls_proxy, tmp_path, "chacha", max_version="1.2", ciphers="ECDHE+CHACHA20"
    )
    assert "CHACHA20-POLY1305" in cipher and "GCM" in aes_cipher
    assert chacha["tls_version"] == aes["tls_version"] == "1.2"
    assert item(chacha, "CONNECT")["parts"]["tls_record_overhead"] == 5 + 16
    assert item(aes, "CONNECT")["parts"]["tls_record_overhead"] == 5 + 8 + 16
    # TLS 1.2 resumed: no certificate and no new ticket from the broker
    assert not any(i["what"] in ("Certificate", "NewSessionTicket") for i in chacha["items"])


async def test_tls12_without_tickets_resumes_by_session_id_without_the_certificate(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path
) -> None:
    """Mosquitto's tickets carry the node's certificate; a session id is 32 bytes."""
    chacha = {"max_version": "1.2", "ciphers": "ECDHE+CHACHA20"}
    ticket, ticket_bytes, _ = await resumed_connection(
        fleet, tls_proxy, tmp_path, "ticket", **chacha
    )
    by_id, id_bytes, cipher = await resumed_connection(
        fleet, tls_proxy, tmp_path, "by-id", tickets=False, **chacha
    )
    assert by_id["resumed"] and ticket["resumed"] and "CHACHA20" in cipher
    hello, ticket_hello = item(by_id, "ClientHello"), item(ticket, "ClientHello")
    assert "ext.session_ticket" not in hello["parts"]
    assert hello["parts"]["random_version_session_id"] == 2 + 32 + 1 + 32
    cert = (fleet.cert(".".join(NODE))[0]).read_text()
    der = len(ssl.PEM_cert_to_DER_cert(cert))
    assert ticket_hello["parts"]["ext.session_ticket"] > der  # the certificate rides in it
    assert ticket_hello["bytes"] - hello["bytes"] == ticket_hello["parts"]["ext.session_ticket"]
    assert not any(i["what"] in ("Certificate", "NewSessionTicket") for i in by_id["items"])
    # the handshake, a CONNECT and its CONNACK
    assert id_bytes < 500 < ticket_bytes, (id_bytes, ticket_bytes)


def test_the_uplink_says_close_notify_so_the_broker_keeps_the_session_a_bare_close_loses(
    fleet: FleetBroker, tmp_path: Path
) -> None:
    """OpenSSL drops a cached session whose connection ended without close_notify (paho
    only closes its socket): the uplink's sockets send one as they close."""
    sessions = sessions_for(
        fleet, fleet.node_port, tmp_path / "k", max_version="1.2", tickets=False
    )
    resumed = [connect(sessions, fleet.node_port)[0] for _ in range(3)]
    assert resumed == [False, True, True]

    def bare_close(sock: ssl.SSLSocket) -> None:
        socket.socket.close(sock)  # the fd only: no close_notify

    assert connect(sessions, fleet.node_port, close=bare_close)[0] is True
    # the broker dropped that session: a full handshake, and the connection still made
    assert connect(sessions, fleet.node_port)[0] is False
    assert connect(sessions, fleet.node_port)[0] is True


async def test_a_node_that_only_offers_chacha20_still_talks_to_a_broker(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path
) -> None:
    """The option leaves TLS 1.3 alone: with max_version 1.3 it still negotiates 1.3."""
    named, _, cipher = await resumed_connection(
        fleet, tls_proxy, tmp_path, "chacha13", ciphers="ECDHE+CHACHA20"
    )
    assert named["tls_version"] == "1.3" and cipher.startswith("TLS_")


async def test_a_tls13_only_node_fails_clearly_against_a_tls12_only_server(
    tmp_path: Path, fleet: FleetBroker
) -> None:
    """min_version 1.3 is a trade-off: a broker without TLS 1.3 refuses the handshake."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    broker_dir = fleet.ca.parent
    server.load_cert_chain(str(broker_dir / "broker.crt"), str(broker_dir / "broker.key"))
    server.maximum_version = ssl.TLSVersion.TLSv1_2
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, pytest.raises(ssl.SSLError):
            server.wrap_socket(conn, server_side=True)

    task = asyncio.create_task(asyncio.to_thread(serve))
    sessions = sessions_for(fleet, port, tmp_path / "k", min_version="1.3")
    with pytest.raises(ssl.SSLError, match=r"VERSION|PROTOCOL"):
        await asyncio.to_thread(connect, sessions, port)
    await task
    listener.close()


# -- the will delay -----------------------------------------------------------------------


def online(c: Collector) -> list[Any]:
    """The births published while `c` listened (what an earlier test left retained is not).
    Each test's dispatch has its own client id: `Collector`'s session is persistent, and
    what an earlier test's node sent after its collector left would come in as live."""
    return [m for m in c.on("state") if m.payload["state"] == "online" and not m.retain]


def offline(c: Collector) -> list[Any]:
    return [m for m in c.on("state") if m.payload["state"] == "offline" and not m.retain]


def tls_node_config(
    fleet: FleetBroker, tmp_path: Path, port: int, broker: str, tls_extra: str = ""
) -> Path:
    """A node of the fleet over mutual TLS to `port` (the fleet broker, or a proxy to it)."""
    crt, key = fleet.cert(".".join(NODE))
    tls = f'[broker.tls]\nca_file = "{fleet.ca}"\ncert_file = "{crt}"\nkey_file = "{key}"\n'
    tls += tls_extra
    config = write_config(tmp_path, port, health_s=1, gps=False, broker=broker, extra=tls)
    config.write_text(config.read_text().replace('host = "127.0.0.1"', 'host = "localhost"'))
    return config


async def test_a_node_back_within_its_will_delay_sends_no_birth_and_stays_online(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    await spawn(tls_node_config(fleet, tmp_path, tls_proxy.port, "will_delay_s = 12"))
    dispatch = fleet.tls_context("dispatch")
    async with Collector(
        fleet.ops_port, topic=f"{BASE}/#", client_id=tmp_path.name, tls=dispatch
    ) as c:
        await c.wait_for(lambda: bool(online(c)), 10, "the birth")
        first = online(c)[-1].payload
        births = len(online(c))
        tls_proxy.cut()  # a short dead zone: back within the delay
        await c.wait_for(
            lambda: any(m.payload["errors"].get("uplink.birth_kept") for m in c.on("health")),
            10,
            "a session that kept the birth",
        )
        assert len(online(c)) == births and not offline(c), c.on("state")
        health = [m for m in c.on("health") if m.payload["errors"].get("uplink.birth_kept")]
        assert health[-1].payload["mqtt"]["tls_resumed"] is True
    async with Collector(
        fleet.ops_port, topic=f"{BASE}/state", client_id=f"late-{tmp_path.name}", tls=dispatch
    ) as late:
        await late.wait_for(lambda: bool(late.on("state")), 5, "the retained state")
        retained = late.on("state")[0].payload
        assert retained["state"] == "online" and retained["seq"] == first["seq"]

        # away longer than the delay: the broker says offline, the node is born again
        tls_proxy.down = True
        tls_proxy.cut()
        await late.wait_for(lambda: bool(offline(late)), 20, "the will, once the delay passed")
        tls_proxy.down = False
        await late.wait_for(lambda: bool(online(late)), 15, "a new birth")
        assert online(late)[-1].payload["seq"] > offline(late)[0].payload["seq"]


@pytest.mark.parametrize(
    "resume_by", ["", 'max_version = "1.2"\ntickets = false\n'], ids=["ticket", "session-id"]
)
async def test_a_node_back_within_its_will_delay_after_a_broker_restart_is_born_again(
    tmp_path: Path, spawn: Any, resume_by: str
) -> None:
    """Mosquitto publishes every will when it stops and keeps the sessions: the node,
    back within its delay with its session kept, must still birth. The broker's new ticket
    keys, or its empty session cache (no TLS resumption), are how it knows."""
    fleet = FleetBroker([NODE], ["dispatch"]).start()
    try:
        await spawn(
            tls_node_config(fleet, tmp_path, fleet.node_port, "will_delay_s = 60", resume_by)
        )
        dispatch = fleet.tls_context("dispatch")
        async with Collector(
            fleet.ops_port, topic=f"{BASE}/#", client_id=tmp_path.name, tls=dispatch
        ) as c:
            await c.wait_for(lambda: bool(online(c)), 10, "the birth")
        fleet.stop()
        fleet.start()
        async with Collector(
            fleet.ops_port, topic=f"{BASE}/#", client_id=tmp_path.name, tls=dispatch
        ) as c:
            await c.wait_for(
                lambda: bool(c.on("state")) and c.on("state")[-1].payload["state"] == "online",
                20,
                "a birth after the broker's restart",
            )
            await c.wait_for(
                lambda: any(m.payload["reconnects"] >= 1 for m in c.on("health")),
                10,
                "health after the reconnect",
            )
            health = [m for m in c.on("health") if m.payload["reconnects"] >= 1]
            assert health[-1].payload["mqtt"]["session_present"] is True
            assert health[-1].payload["mqtt"]["tls_resumed"] is False
            assert not health[-1].payload["errors"].get("uplink.birth_kept")
    finally:
        fleet.cleanup()


async def test_a_node_killed_and_restarted_within_its_will_delay_is_born_again(
    fleet: FleetBroker, tmp_path: Path, spawn: Any
) -> None:
    """A new process cannot know what the broker holds: it proves nothing, so it births
    (its config may have changed, and the retained birth must say so)."""
    config = tls_node_config(fleet, tmp_path, fleet.node_port, "will_delay_s = 60")
    node = await spawn(config)
    dispatch = fleet.tls_context("dispatch")
    async with Collector(
        fleet.ops_port, topic=f"{BASE}/state", client_id=tmp_path.name, tls=dispatch
    ) as c:
        await c.wait_for(lambda: bool(online(c)), 10, "the birth")
        births = len(online(c))
        node.kill9()
        await spawn(config)
        await c.wait_for(lambda: len(online(c)) > births, 10, "a birth from the new process")
        assert not offline(c), c.on("state")  # back within the delay: no will
        assert online(c)[-1].payload["seq"] > online(c)[births - 1].payload["seq"]


async def test_over_mqtt_311_a_node_with_a_will_delay_births_at_every_connection(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    """MQTT 3.1.1 has no will delay: the will goes at once, so the birth must follow, even
    over a resumed TLS session with the session kept."""
    config = tls_node_config(fleet, tmp_path, tls_proxy.port, "will_delay_s = 60")
    config.write_text(config.read_text().replace('protocol = "5"', 'protocol = "3.1.1"'))
    await spawn(config)
    dispatch = fleet.tls_context("dispatch")
    async with Collector(
        fleet.ops_port, topic=f"{BASE}/#", client_id=tmp_path.name, tls=dispatch
    ) as c:
        await c.wait_for(lambda: bool(online(c)), 10, "the birth")
        births = len(online(c))
        tls_proxy.cut()
        await c.wait_for(lambda: len(online(c)) > births, 10, "a birth after the will")
        assert offline(c) and offline(c)[-1].payload["seq"] < online(c)[-1].payload["seq"]
        # the report the node sends on connecting follows its birth: wait for it, and never
        # count what an earlier test's node left retained
        await c.wait_for(
            lambda: any(
                m.payload["mqtt"]["tls_resumed"] for m in c.on("health") if not m.retain
            ),
            10,
            "a health report of the resumed session",
        )


# -- resuming by session id ---------------------------------------------------------------


def hello_bytes(head: bytes) -> int:
    """The ClientHello's record, from a connection's first bytes (it travels in clear)."""
    assert head[:1] == b"\x16", head[:8]  # a handshake record
    return 5 + int.from_bytes(head[3:5], "big")


async def test_a_node_resuming_by_session_id_comes_back_from_a_dead_zone_without_certificates(
    fleet: FleetBroker, tls_proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    tls = 'max_version = "1.2"\nciphers = "ECDHE+CHACHA20"\ntickets = false\n'
    await spawn(tls_node_config(fleet, tmp_path, tls_proxy.port, "", tls_extra=tls))
    dispatch = fleet.tls_context("dispatch")

    def resumptions(c: Collector) -> int:
        counts = [m.payload["errors"].get("uplink.tls.resumed", 0) for m in live(c)]
        return int(max(counts, default=0))

    def live(c: Collector) -> list[Any]:  # not what an earlier test's node left retained
        return [m for m in c.on("health") if not m.retain]

    async with Collector(
        fleet.ops_port, topic=f"{BASE}/health", client_id=tmp_path.name, tls=dispatch
    ) as c:
        await c.wait_for(lambda: bool(live(c)), 10, "the node online")
        assert live(c)[0].payload["mqtt"]["tls_resumed"] is False  # the first: full
        for zone in (1, 2):  # two dead zones: the broker's side left open, no FIN, no goodbye
            tls_proxy.down = True
            assert tls_proxy.blackhole() == 1
            await asyncio.sleep(1.0)
            tls_proxy.down = False
            await c.wait_for(lambda z=zone: resumptions(c) >= z, 15, "a session resumed")
        assert live(c)[-1].payload["mqtt"]["tls_resumed"] is True
    _, *later = [conn for conn in tls_proxy.connections if conn.head[True]]
    assert len(later) >= 2
    # no ticket in the hello: a 32-byte session id instead
    assert all(hello_bytes(bytes(conn.head[True])) < 250 for conn in later), [
        hello_bytes(bytes(conn.head[True])) for conn in later
    ]

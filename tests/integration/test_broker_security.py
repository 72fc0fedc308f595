"""The example broker config: TLS with client certificates, per-node ACLs (MQTT 5 reason
codes checked), and the daemon connecting through it with its own certificate."""

import asyncio
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT, write_config

SCRIPT = ROOT / "config" / "mosquitto" / "fleet-certs.sh"
NOT_AUTHORIZED = 135
NO_SUBSCRIBERS = 16  # success: accepted, nobody listening


def accepted(reason: int) -> bool:
    return reason < 128


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to issue the test certificates")
    d = tmp_path_factory.mktemp("pki")
    for args in (["ca"], ["client", "dispatch"], ["node", "test", "a"], ["node", "test", "b"]):
        subprocess.run(["bash", str(SCRIPT), str(d), *args], check=True, capture_output=True)
    other = d / "rogue"
    subprocess.run(["bash", str(SCRIPT), str(other), "ca"], check=True, capture_output=True)
    subprocess.run(
        ["bash", str(SCRIPT), str(other), "node", "test", "a"], check=True, capture_output=True
    )
    return d


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    """Mosquitto with the shipped example's security settings on a free port."""
    extra = (
        "allow_anonymous false\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'broker.crt'}\nkeyfile {pki / 'broker.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {pki / 'acl'}\n"
    )
    m = Mosquitto(tmp_path, extra=extra)
    m.conf.parent.mkdir(exist_ok=True)
    m.start()
    yield m
    m.stop()


class Client:
    """A paho client on the broker's TLS listener that records MQTT 5 reason codes."""

    def __init__(self, port: int, pki: Path, name: str, cert_dir: Path | None = None) -> None:
        cert_dir = cert_dir or pki
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{name}", protocol=mqtt.MQTTv5
        )
        self.c.tls_set(
            ca_certs=str(pki / "ca.crt"),
            certfile=str(cert_dir / f"{name}.crt"),
            keyfile=str(cert_dir / f"{name}.key"),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        self.messages: list[str] = []
        self.c.on_message = lambda c, u, m: self.messages.append(m.topic)
        self.connected = threading.Event()
        self.acked: dict[int, int] = {}
        self.subacks: list[int] = []
        self.event = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: rc == 0 and self.connected.set()
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        try:
            self.c.connect("127.0.0.1", port)
        except OSError as exc:
            raise AssertionError(f"{name} could not connect: {exc}") from exc
        self.c.loop_start()
        if not self.connected.wait(3):
            self.c.loop_stop()
            raise AssertionError(f"{name} could not connect")

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.acked[mid] = rc.value
        self.event.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        self.subacks = [r.value for r in rcs]
        self.event.set()

    def publish(self, topic: str) -> int:
        self.event.clear()
        info = self.c.publish(topic, b"{}", qos=1, properties=Properties(3))
        assert self.event.wait(5)
        return self.acked[info.mid]

    def subscribe(self, topic: str) -> int:
        self.event.clear()
        self.c.subscribe(topic, qos=1)
        assert self.event.wait(5)
        return self.subacks[0]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_a_node_may_publish_under_its_own_base(tls_broker: Mosquitto, pki: Path) -> None:
    a = Client(tls_broker.port, pki, "test.a")
    try:
        assert accepted(a.publish("rnst/v1/test/a/events/door"))
    finally:
        a.close()


def test_a_node_cannot_publish_under_another_nodes_base(tls_broker: Mosquitto, pki: Path) -> None:
    a = Client(tls_broker.port, pki, "test.a")
    try:
        assert a.publish("rnst/v1/test/b/state") == NOT_AUTHORIZED
        assert a.publish("rnst/v1/test/b/cmd/door.unlock") == NOT_AUTHORIZED
    finally:
        a.close()


def test_a_node_cannot_read_another_nodes_commands(tls_broker: Mosquitto, pki: Path) -> None:
    a = Client(tls_broker.port, pki, "test.a")
    b = Client(tls_broker.port, pki, "test.b")
    d = Client(tls_broker.port, pki, "dispatch")
    try:
        a.subscribe("rnst/v1/test/b/cmd/#")  # Mosquitto 2.0 grants it but delivers nothing
        b.subscribe("rnst/v1/test/b/cmd/#")
        d.publish("rnst/v1/test/b/cmd/ping")
        deadline = time.monotonic() + 2
        while not b.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert b.messages == ["rnst/v1/test/b/cmd/ping"]
        assert a.messages == []
    finally:
        for c in (a, b, d):
            c.close()


def test_dispatch_reads_everything_and_writes_only_commands(
    tls_broker: Mosquitto, pki: Path
) -> None:
    d = Client(tls_broker.port, pki, "dispatch")
    try:
        assert d.subscribe("rnst/v1/#") == 1
        assert accepted(d.publish("rnst/v1/test/a/cmd/ping"))
        assert d.publish("rnst/v1/test/a/state") == NOT_AUTHORIZED
    finally:
        d.close()


def test_a_client_without_a_certificate_is_refused(tls_broker: Mosquitto, pki: Path) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    connected = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: rc == 0 and connected.set()
    try:
        c.connect("127.0.0.1", tls_broker.port)
        c.loop_start()
    except OSError:
        return  # refused during the handshake
    try:
        assert not connected.wait(2), "connected without a client certificate"
    finally:
        c.loop_stop()


def test_a_certificate_from_another_ca_is_refused(tls_broker: Mosquitto, pki: Path) -> None:
    with pytest.raises(AssertionError, match="could not connect"):
        Client(tls_broker.port, pki, "test.a", cert_dir=pki / "rogue")


async def test_the_daemon_connects_with_its_certificate_and_publishes_its_birth(
    tls_broker: Mosquitto, pki: Path, tmp_path: Path, spawn: Any
) -> None:
    tls = (
        f'[broker.tls]\nca_file = "{pki / "ca.crt"}"\n'
        f'cert_file = "{pki / "test.a.crt"}"\nkey_file = "{pki / "test.a.key"}"\n'
    )
    config = write_config(tmp_path, tls_broker.port, fleet="test", node="a", gps=False, broker=tls)
    d = Client(tls_broker.port, pki, "dispatch")
    births: list[bytes] = []
    d.c.on_message = lambda c, u, m: births.append(m.payload)
    d.subscribe("rnst/v1/test/a/state")
    try:
        await spawn(config)
        async with asyncio.timeout(10):
            while not any(b'"online"' in p for p in births):
                await asyncio.sleep(0.05)
    finally:
        d.close()


@pytest.fixture
def password_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    """Username and password from a password file, with the same ACL."""
    passwd = tmp_path / "passwd"
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([exe, "-c", "-b", str(passwd), "test.a", "correct horse"], check=True)
    extra = f"allow_anonymous false\npassword_file {passwd}\nacl_file {pki / 'acl'}\n"
    m = Mosquitto(tmp_path, extra=extra)
    m.start()
    yield m
    m.stop()


def node_with_password(tmp_path: Path, port: int, password: str) -> Path:
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    login = f'username = "test.a"\npassword_file = "{secret}"\n'
    return write_config(tmp_path, port, fleet="test", node="a", gps=False, broker=login)


async def test_the_daemon_logs_in_with_its_password_file(
    password_broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    proc = await spawn(node_with_password(tmp_path, password_broker.port, "correct horse"))
    async with asyncio.timeout(10):
        while not any("connected to" in line for line in proc.lines):
            await asyncio.sleep(0.05)


async def test_a_wrong_password_is_refused_and_retried_not_fatal(
    password_broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    proc = await spawn(node_with_password(tmp_path, password_broker.port, "wrong"))
    async with asyncio.timeout(10):
        while sum("refused the connection" in line for line in proc.lines) < 2:
            await asyncio.sleep(0.05)
    assert proc.proc.returncode is None
    assert not any("connected to" in line for line in proc.lines)

"""The shipped secure broker, as the README sets it up: `fleet-certs.sh`, then Mosquitto on
`config/mosquitto/mosquitto.conf` — the tests and the `attacks` scenario play against it.

The config file is used as shipped; only what must differ on a shared test machine is
rewritten: the material's directory (`/etc/mosquitto/fleet`), the persistence directory and
the two listener ports. Started as root, Mosquitto drops to its `mosquitto` user as it does
on a broker, so a file it cannot read then fails here as it would there. The directory is
made traversable for that user (a pytest tmp_path is not).
"""

import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hil.broker import free_port, stop_process, wait_listening

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "config" / "mosquitto" / "mosquitto.conf"
SCRIPT = ROOT / "config" / "mosquitto" / "fleet-certs.sh"
SHIPPED_DIR = "/etc/mosquitto/fleet"
SHIPPED_PERSISTENCE = "/var/lib/mosquitto/"
NODE_PORT, OPS_PORT = 8883, 8884
BROKER_USER = "mosquitto"


class FleetBrokerError(Exception):
    pass


def fleet_certs(directory: Path, *args: str) -> str:
    """Run the shipped `fleet-certs.sh DIRECTORY ARGS...`; its stderr (warnings)."""
    r = subprocess.run(["bash", str(SCRIPT), str(directory), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise FleetBrokerError(f"fleet-certs.sh {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stderr


def drops_root() -> bool:
    """Mosquitto started by this process drops to its own user (as on a broker)."""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam(BROKER_USER)
    except KeyError:
        return False
    return True


class FleetBroker:
    """`fleet-certs.sh` material for `nodes`, `clients` and read-only `feeds` (name, fleets),
    and Mosquitto on the shipped config."""

    def __init__(
        self,
        nodes: list[tuple[str, str]],
        clients: list[str],
        *,
        feeds: Sequence[tuple[str, tuple[str, ...]]] = (),
        workdir: Path | None = None,
    ) -> None:
        base = Path(tempfile.mkdtemp(prefix="edged-fleet-", dir=workdir))
        base.chmod(0o755)  # Mosquitto, once it is user mosquitto, must reach the files
        self.base = base
        self.dir = base / "fleet"
        self.persistence = base / "persistence"
        self.node_port = free_port()
        self.ops_port = free_port()
        self.conf = base / "mosquitto.conf"
        self.log = base / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.warnings = fleet_certs(self.dir, "ca")
        for fleet, node in nodes:
            self.warnings += fleet_certs(self.dir, "node", fleet, node)
        for name in clients:
            self.warnings += fleet_certs(self.dir, "client", name)
        for name, fleets in feeds:
            self.warnings += fleet_certs(self.dir, "feed", name, *fleets)

    # -- the material ----------------------------------------------------------------------

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of a node ("fleet.node") or a client."""
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"

    def tls_context(self, name: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        crt, key = self.cert(name)
        ctx.load_cert_chain(str(crt), str(key))
        return ctx

    def node_tls_toml(self, fleet: str, node: str) -> str:
        crt, key = self.cert(f"{fleet}.{node}")
        return f'[broker.tls]\nca_file = "{self.ca}"\ncert_file = "{crt}"\nkey_file = "{key}"\n'

    # -- the broker ------------------------------------------------------------------------

    def render(self) -> str:
        """The shipped config with only the directories and the ports changed."""
        text = CONF.read_text()
        for old, new in (
            (SHIPPED_DIR, str(self.dir)),
            (SHIPPED_PERSISTENCE, f"{self.persistence}/"),
            (f"listener {NODE_PORT}\n", f"listener {self.node_port}\n"),
            (f"listener {OPS_PORT}\n", f"listener {self.ops_port}\n"),
        ):
            if old not in text:
                raise FleetBrokerError(f"{CONF} no longer has {old.strip()!r}: update {__file__}")
            text = text.replace(old, new)
        return text

    def start(self, timeout: float = 5.0) -> "FleetBroker":
        self.persistence.mkdir(exist_ok=True)
        if drops_root():
            shutil.chown(self.persistence, BROKER_USER)
        self.conf.write_text(self.render())
        self.conf.chmod(0o644)
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [exe, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_listening(self.proc, [self.node_port, self.ops_port], self.log, timeout)
        except RuntimeError as exc:
            self.stop()
            raise FleetBrokerError(str(exc)) from None
        return self

    @property
    def user(self) -> str | None:
        """The user the running broker is, from /proc (after its privilege drop)."""
        if self.proc is None:
            return None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return pwd.getpwuid(int(line.split()[2])).pw_name  # the effective uid
        return None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class FleetClient:
    """A paho client with a certificate on one of the broker's TLS listeners, recording the
    MQTT 5 reason codes the broker answers: an attacker's (or dispatch's) hands. Blocking:
    from async code, call it through `asyncio.to_thread`."""

    def __init__(
        self,
        port: int,
        fleet: FleetBroker,
        name: str,
        *,
        client_id: str | None = None,
        cert_dir: Path | None = None,
    ) -> None:
        cert_dir = cert_dir or fleet.dir
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{name}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        self.c.tls_set(
            ca_certs=str(fleet.ca),
            certfile=str(cert_dir / f"{name}.crt"),
            keyfile=str(cert_dir / f"{name}.key"),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        self.messages: list[tuple[str, bytes, bool]] = []  # topic, payload, retained
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.connected = threading.Event()
        self.disconnects = 0
        self.disconnect_reasons: list[int] = []  # the broker's DISCONNECT reason codes
        self.acked: dict[int, int] = {}
        self.subacks: list[int] = []
        self.event = threading.Event()
        self.connack: Any = None  # the CONNACK's MQTT 5 properties
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        try:
            self.c.connect("127.0.0.1", port)
        except OSError as exc:
            raise FleetBrokerError(f"{name} could not connect: {exc}") from exc
        self.c.loop_start()
        if not wait_until(lambda: self.connected.is_set() or self.disconnects > 0, 3):
            self.c.loop_stop()
            raise FleetBrokerError(f"{name} could not connect (no answer)")
        if not self.connected.is_set():
            self.c.loop_stop()
            raise FleetBrokerError(f"{name} could not connect (refused)")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc == 0:
            self.connack = props
            self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnects += 1
        self.disconnect_reasons.append(rc.value)
        self.connected.clear()
        self.event.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.acked[mid] = rc.value
        self.event.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        self.subacks = [r.value for r in rcs]
        self.event.set()

    def publish(
        self,
        topic: str,
        *,
        retain: bool = False,
        payload: bytes = b"{}",
        response_topic: str | None = None,
    ) -> int:
        """QoS 1; the PUBACK's reason code (135: not authorized), or, when the broker ends
        the connection instead, the disconnection's (149: packet too large, as the broker
        said it; 128 when the socket closed while paho was still writing)."""
        props = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            props.ResponseTopic = response_topic
            props.CorrelationData = b"attack"
        self.event.clear()
        disconnects = self.disconnects
        info = self.c.publish(topic, payload, qos=1, retain=retain, properties=props)
        if not self.event.wait(5 + len(payload) / 10e6):  # 10 MB/s over loopback TLS at least
            raise FleetBrokerError(f"no PUBACK for {topic}")
        if info.mid in self.acked:
            return self.acked[info.mid]
        if self.disconnects == disconnects:
            raise FleetBrokerError(f"neither a PUBACK nor a disconnection for {topic}")
        return self.disconnect_reasons[-1]

    def subscribe(self, topic: str) -> int:
        self.event.clear()
        self.c.subscribe(topic, qos=1)
        if not self.event.wait(5):
            raise FleetBrokerError(f"no SUBACK for {topic}")
        return self.subacks[0]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

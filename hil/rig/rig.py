"""The rig: a broker, emulated devices on ptys, mock pins, and the daemon with real drivers.

Everything the daemon touches is real code on real interfaces: `gps.nmea-serial` reads a pty
fed with NMEA, `can.bus` reads an slcan adapter on a pty, `nfc.libnfc` talks to a PN532
through libnfc's pn532_uart driver on a pty, `gpio.gpiozero` runs on gpiozero's MockFactory
driven over its mock-control socket, and the daemon is `edged run` in its own process, so
it can be killed like a power cut. Dispatch's side is an MQTT subscriber to the node's
topics; scenarios act on the devices and the broker and check what dispatch receives.

With `hardware` set (`python -m hil run --hw FILE`), the same scenarios drive a bench of
real devices instead: see `hil.rig.hardware`.
"""

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.nfc.libnfc import LibnfcOptions
from edged.access.cardref import CardRefs
from edged.access.lists import sign_lists
from edged.config.access import HELD_TOGETHER_S
from edged.security.signing import public_key_text, sign
from edged.topics import levels
from hil.broker import Mosquitto, free_port
from hil.can.fms import FmsBus
from hil.can.slcan import SlcanEmulator
from hil.dispatch import Collector, Received, publish
from hil.fleetbroker import FleetBroker
from hil.gps.emulator import NmeaEmulator
from hil.nfc.emulator import Pn532Emulator
from hil.proxy import MqttProxy
from hil.rig.daemon import ROOT, Daemon
from hil.rig.feeds import route_nmea

Profile = Literal["shuttle", "truck", "venue"]
FLEET = "rig"
READER_RELEASE_S: float = LibnfcOptions.model_fields["release_s"].default
"""The rig's reader takes a card off after this long unseen (its config keeps the default)."""
ROUTE = ROOT / "config" / "routes" / "creuse-shuttle.json"
DBC = ROOT / "config" / "fms.dbc"

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 1.0

# the pin map, as hil/README.md documents it for the bench
PIN_DOOR, PIN_OUTER, PIN_INNER, PIN_PANIC = 17, 5, 6, 27
PIN_LOCK, PIN_GREEN, PIN_RED, PIN_BUZZER = 22, 23, 24, 25
PINS = {
    "door": PIN_DOOR,
    "outer": PIN_OUTER,
    "inner": PIN_INNER,
    "panic": PIN_PANIC,
    "lock": PIN_LOCK,
    "green": PIN_GREEN,
    "red": PIN_RED,
    "buzzer": PIN_BUZZER,
}


class Cards:
    """The bench's cards: UIDs of 4, 7 and 10 bytes, as real co-pass cards have."""

    RESIDENT = bytes.fromhex("04a1b2c3")
    SENIOR = bytes.fromhex("04112233445566")
    STAFF = bytes.fromhex("0811223344556677889a")
    PROVIDER = bytes.fromhex("04998877")
    JOBSEEKER = bytes.fromhex("04b00c3d")
    LOST = bytes.fromhex("04deadbe")
    UNKNOWN = bytes.fromhex("04000001")


@dataclass
class RigSetup:
    profile: Profile = "shuttle"
    speed_factor: float = 20.0  # route seconds per real second (the GPS compresses distance)
    seconds: float = 900.0  # how much GPS and CAN the emulators have to play
    capacity: int = 30
    count_from: tuple[str, ...] = ("taps",)
    health_s: float = 5.0
    outbox: str = ""  # extra [outbox] lines (caps for the disk-full fault)
    extra: str = ""  # extra TOML appended to the config
    market_dwell_s: float = 5.0
    can_speed: float = 5.0  # the FMS bus plays faster: fuel counts in 0.5 L steps
    gps_jump_s: float | None = None  # the receiver's time can jump this far (`jump_gps_clock`)
    trust_system_clock: bool = True  # False: the node stamps with GPS time (kernel unsynced)
    can_fps: float | None = None  # a saturated bus at this rate instead of the FMS day
    outbox_dir: Path | None = None  # where the outbox lives (a small filesystem: disk full)
    secure: bool = False  # the shipped TLS broker (hil.fleetbroker), as the README sets it up
    kiosk: bool = False  # the kiosk page on a free port (`Rig.kiosk_url`)
    nofile: int | None = None  # the daemon's descriptor limit (the unit's LimitNOFILE)
    access: str = ""  # extra lines for [services.access]
    link_proxy: bool = False  # the daemon reaches the broker through a proxy that can cut it


@dataclass
class Counts:
    taps: int = 0
    crossings: int = 0
    kills: int = 0
    broker_outages: int = 0
    unplugs: int = 0


class RigError(Exception):
    pass


class Rig:
    def __init__(self, workdir: Path, setup: RigSetup | None = None) -> None:
        self.workdir = workdir
        self.setup = setup or RigSetup()
        self.secret = secrets.token_bytes(32).hex().encode()
        self.refs = CardRefs(self.secret, 16)
        self.list_key = Ed25519PrivateKey.generate()
        self.cmd_key = Ed25519PrivateKey.generate()
        # persistence, as a fleet broker has: dispatch's session (and what is queued for it)
        # survives a broker restart
        (workdir / "mosquitto").mkdir(exist_ok=True)
        self.base = f"rnst/v1/{FLEET}/{self.setup.profile}-1"
        self.fleet: FleetBroker | None = None
        self.broker: Mosquitto | FleetBroker
        if self.setup.secure:  # the node's certificate, another node's, dispatch's
            node = f"{self.setup.profile}-1"
            self.fleet = FleetBroker([(FLEET, node), (FLEET, "other-1")], ["dispatch"])
            self.broker = self.fleet
        else:
            self.broker = Mosquitto(
                workdir,
                extra=f"persistence true\npersistence_location {workdir / 'mosquitto'}/\n",
            )
        self.kiosk_port = free_port() if self.setup.kiosk else None
        self.gps: NmeaEmulator | None = None
        self._gps_jumped: list[bytes] | None = None  # the route again, `gps_jump_s` off
        self.can: SlcanEmulator | None = None
        self.can_proc: subprocess.Popen[bytes] | None = None  # the flood, in its own process
        self.nfc = Pn532Emulator(workdir / "nfc0")
        self.config = workdir / "edged.toml"
        self.daemon = Daemon(self.config, workdir / "edged.log", nofile=self.setup.nofile)
        self.dispatch: Collector | None = None
        self.proxy: MqttProxy | None = None  # the daemon's link, with RigSetup.link_proxy
        self.counts = Counts()
        self.gpio_socket = workdir / "gpio.sock"
        self.lists_version = 0
        self.pins = dict(PINS)  # the daemon's pins by role (a bench file may move them)
        self.startup_s = 0.0  # the last start_daemon: `edged run` to state online at dispatch
        self.startup_cpu_s = 0.0  # ... and the CPU the daemon had used by then

    # -- life cycle -----------------------------------------------------------------------

    async def __aenter__(self) -> "Rig":
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        """Closed whatever happened; a test that failed inside shows the daemon's log."""
        if kind is not None and issubclass(kind, Exception):
            print(self.log())
        await self.close()

    async def start(self) -> None:
        for old in node_files(self.workdir):  # a kept workdir: a new node
            old.unlink()
        self.broker.start()
        s = self.setup
        if s.link_proxy:
            self.proxy = await MqttProxy(self.node_port).start()
        if s.profile != "venue":
            t0 = datetime.now(UTC)
            lines = route_nmea(ROUTE, seconds=s.seconds, speed_factor=s.speed_factor, start=t0)
            if s.gps_jump_s is not None:
                self._gps_jumped = route_nmea(
                    ROUTE,
                    seconds=s.seconds,
                    speed_factor=s.speed_factor,
                    start=t0,
                    offset_s=s.gps_jump_s,
                )
            self.gps = NmeaEmulator(lines, self.workdir / "gps0", loop=False).start()
            if s.can_fps:
                # its own process: a thread of this one could not keep 1,700 frames/s
                # beside the other emulators (the GIL), and would not be measured apart
                self.can_proc = self._flood_process(s.can_fps)
                deadline = time.monotonic() + 10
                while not (self.workdir / "can0").exists():
                    if time.monotonic() > deadline:
                        raise RigError("the slcan emulator did not start: see slcan.log")
                    await asyncio.sleep(0.05)
            else:
                frames = ((t, i, d, True) for t, i, d in FmsBus(start=0.0).frames(s.seconds))
                self.can = SlcanEmulator(
                    frames, link=self.workdir / "can0", speed=s.can_speed
                ).start()
        self.nfc.start()
        (self.workdir / "fleet.secret").write_bytes(self.secret)
        os.chmod(self.workdir / "fleet.secret", 0o600)
        self.config.write_text(self.render_config())
        self.dispatch = Collector(
            self.dispatch_port, f"{self.base}/#", client_id="rig-dispatch", tls=self.dispatch_tls
        )
        await self.dispatch.__aenter__()
        await self.start_daemon()
        if not self.setup.trust_system_clock and self.gps is not None:
            # the node's clock is GPS time: signed commands wait for a first fix
            await self.expect("position", timeout=30, what="a first fix (the node's clock)")
        await self.load_lists()

    def _flood_process(self, fps: float) -> "subprocess.Popen[bytes]":
        argv = [sys.executable, "-m", "hil.can.slcan", "--link", str(self.workdir / "can0")]
        with (self.workdir / "slcan.log").open("wb") as out:
            return subprocess.Popen(
                [*argv, "--flood", str(fps)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    async def close(self) -> None:
        self.daemon.stop()
        if self.dispatch is not None:
            await self.dispatch.__aexit__(None, None, None)
            with (self.workdir / "dispatch.jsonl").open("w") as out:  # what dispatch got
                for m in self.dispatch.messages:
                    out.write(json.dumps({"topic": m.topic, "at": m.at, **m.payload}) + "\n")
        for device in (self.gps, self.nfc):
            if device is not None:
                device.close()
        if self.can is not None:
            self.can.stop()
        if self.can_proc is not None:
            self.can_proc.terminate()
            self.can_proc.wait(5)
        if self.proxy is not None:
            await self.proxy.close()
        self.broker.stop()
        if self.fleet is not None:
            self.fleet.cleanup()

    async def start_daemon(self, timeout: float = 20.0) -> None:
        """Start `edged run` and wait until its drivers answer and dispatch saw it online."""
        before = len(self.on("state"))
        t0 = time.monotonic()
        self.daemon.start()
        await self.expect(
            "state",
            lambda m: m.payload.get("state") == "online",
            timeout,
            "the node online",
            after=before,
        )
        self.startup_s = time.monotonic() - t0
        self.startup_cpu_s = self.daemon.cpu_s()  # what it used to get there
        await self.wait_gpio(timeout)
        # a fresh process's mock pins start at their pull-up level: set what the bench has
        await self.set_pin(PIN_DOOR, 0)  # closed (a contact to ground)
        await self.set_pin(PIN_OUTER, 0)  # beams clear (light on)
        await self.set_pin(PIN_INNER, 0)
        await self.set_pin(PIN_PANIC, 1)  # not pressed (pull-up)

    async def wait_gpio(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if (await self._wire("ping")) == "ok":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RigError(f"the GPIO mock-control socket never answered:\n{self.log()}")
            await asyncio.sleep(0.1)

    def log(self) -> str:
        return self.daemon.log_tail()

    # -- where the node and dispatch reach the broker ---------------------------------------

    @property
    def node_port(self) -> int:
        return self.fleet.node_port if self.fleet is not None else self.broker.port  # type: ignore[union-attr]

    @property
    def dispatch_port(self) -> int:
        """Dispatch's listener: the tools' one (8884 as shipped) on the secure broker."""
        return self.fleet.ops_port if self.fleet is not None else self.broker.port  # type: ignore[union-attr]

    @property
    def dispatch_tls(self) -> ssl.SSLContext | None:
        return self.fleet.tls_context("dispatch") if self.fleet is not None else None

    @property
    def kiosk_url(self) -> str:
        if self.kiosk_port is None:
            raise RigError("this rig has no kiosk (RigSetup.kiosk)")
        return f"http://127.0.0.1:{self.kiosk_port}/"

    # -- the config the daemon runs with ----------------------------------------------------

    @property
    def nfc_connstring(self) -> str:
        return self.nfc.connstring

    @property
    def gpio_factory_lines(self) -> str:
        return f'pin_factory = "mock"\nmock_control = "{self.gpio_socket}"'

    def render_config(self) -> str:
        s = self.setup
        w = self.workdir
        p = self.pins
        parts = [
            f"""
[node]
fleet = "{FLEET}"
id = "{s.profile}-1"
profile = "{s.profile}"
name = "hil rig"

[broker]
host = "127.0.0.1"
port = {self.proxy.port if self.proxy is not None else self.node_port}
reconnect_min_s = {RECONNECT_MIN_S}
reconnect_max_s = {RECONNECT_MAX_S}
{self.fleet.node_tls_toml(FLEET, f"{s.profile}-1") if self.fleet is not None else ""}

[outbox]
path = "{(s.outbox_dir or w) / "outbox.sqlite"}"
{s.outbox}

[health]
interval_s = {s.health_s}
beat_s = 0  # the rig reads counters and driver states from health: a full report each time

[clock]
trust_system_clock = {"true" if s.trust_system_clock else "false"}

[supervisor]
backoff_initial_s = 0.2
backoff_max_s = 1.0

[[security.keys]]
id = "rig-dispatch"
public_key = "{public_key_text(self.cmd_key.public_key())}"
scopes = ["read", "operate", "door", "access", "config"]

[services.kiosk]
enabled = {"true" if self.kiosk_port is not None else "false"}
port = {self.kiosk_port or 0}

[services.access]
enabled = true
secret_file = "{w / "fleet.secret"}"
lists_public_key = "{public_key_text(self.list_key.public_key())}"
rooms = ["salle-1"]
provider_profiles = ["provider"]
{s.access}

[services.occupancy]
reset_at = "never"  # a scenario's counts must not drop to 0 if it runs over 03:00
capacity = {s.capacity}
count_from = {json.dumps(list(s.count_from))}

[services.panic]
repeat_s = 5

[services.position]
wheels_witness = false  # the FMS day recorded is not the vehicle driving the route
route_pace = {s.speed_factor}  # the route plays this much faster than it is driven

[[drivers]]
name = "reader"
driver = "nfc.libnfc"
[drivers.options]
connstring = "{self.nfc_connstring}"

[[drivers]]
name = "gpio"
driver = "gpio.gpiozero"
[drivers.options]
{self.gpio_factory_lines}
lock = {{ pin = {p["lock"]} }}
green = {{ pin = {p["green"]} }}
red = {{ pin = {p["red"]} }}
buzzer = {{ pin = {p["buzzer"]} }}
panic = {{ pin = {p["panic"]}, hold_s = 0.5 }}
# the scenarios stream door events 12 a second to load the outbox and the link: far
# above the flap guard a real door keeps (4 changes in 1 s), which the driver's tests cover
doors = [{{ name = "door", pin = {p["door"]}, flap_changes = 50, flap_within_s = 1.0 }}]
beams = [{{ door = "door", outer = {p["outer"]}, inner = {p["inner"]} }}]
"""
        ]
        if self.gps is not None:
            parts.append(
                f"""
[[drivers]]
name = "gps"
driver = "gps.nmea-serial"
[drivers.options]
port = "{self.gps.link}"
baud = 9600

[[services.geofences.fences]]
id = "gueret-marche"
name = "Guéret – marché de services"
kind = "market"
points = [[46.1721, 1.8702], [46.1722, 1.8731], [46.1707, 1.8733], [46.1706, 1.8703]]
dwell_s = {s.market_dwell_s}
"""
            )
        if self.can is not None or self.can_proc is not None:
            parts.append(
                f"""
[[drivers]]
name = "can"
driver = "can.bus"
[drivers.options]
interface = "slcan"
channel = "{self.workdir / "can0"}"
bitrate = 250000
dbc = "{DBC}"

[services.vehicle]
period_s = 5
ignition_off_after_s = 5
"""
            )
        parts.append(s.extra)
        return "\n".join(parts)

    # -- dispatch's view --------------------------------------------------------------------

    def on(self, suffix: str) -> list[Received]:
        assert self.dispatch is not None
        return self.dispatch.on(suffix)

    async def expect(
        self,
        suffix: str,
        predicate: Callable[[Received], bool] = lambda m: True,
        timeout: float = 10.0,
        what: str = "",
        *,
        after: int | None = None,
    ) -> Received:
        """The first message on `suffix` that fits, from index `after` (default: the first)."""
        start = after or 0
        deadline = time.monotonic() + timeout
        while True:
            for m in self.on(suffix)[start:]:
                if predicate(m):
                    return m
            if time.monotonic() > deadline:
                raise RigError(f"no {what or suffix} on {suffix} within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def command(
        self, name: str, args: dict[str, Any] | None = None, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """A signed command, as dispatch sends it; the reply's payload."""
        reply_topic = f"reply/{levels(name)}"
        before = len(self.on(reply_topic))
        cmd_id = await self.send_command(name, args)
        reply = await self.expect(
            reply_topic, lambda m: m.payload.get("id") == cmd_id, timeout, after=before
        )
        return reply.payload

    async def send_command(self, name: str, args: dict[str, Any] | None = None) -> str:
        """A signed command, as dispatch sends it, without waiting for its reply (the node
        offline: the broker keeps it for the node's session); returns its id."""
        args = args or {}
        cmd_id = uuid.uuid4().hex[:12]
        topic = f"{self.base}/cmd/{name}"
        ts = int(time.time() * 1000)
        body = {
            "id": cmd_id,
            "ts": ts,
            "args": args,
            "kid": "rig-dispatch",
            "sig": sign(self.cmd_key, topic, cmd_id, ts, args),
        }
        await publish(self.dispatch_port, topic, json.dumps(body).encode(), tls=self.dispatch_tls)
        return cmd_id

    async def load_lists(self, **changes: Any) -> dict[str, Any]:
        """A full signed list for the bench's cards, sent by `access.update`."""
        self.lists_version += 1
        r = self.ref
        now = time.time()
        slot = {
            "room": "salle-1",
            "start": _iso(now - 3600),
            "end": _iso(now + 3 * 3600),
        }
        document: dict[str, Any] = {
            "kind": "full",
            "fleet": FLEET,
            "version": self.lists_version,
            "cards": {
                r(Cards.RESIDENT): {"profile": "resident"},
                r(Cards.SENIOR): {"profile": "senior"},
                r(Cards.STAFF): {"profile": "staff"},
                r(Cards.PROVIDER): {"profile": "provider"},
                r(Cards.JOBSEEKER): {"profile": "jobseeker"},
                r(Cards.LOST): {"profile": "resident"},
            },
            "deny": {r(Cards.LOST): {"reason": "lost"}},
            "bookings": {r(Cards.JOBSEEKER): [slot]},
            "fares": {"resident": 150, "senior": 0, "jobseeker": 50},
        }
        document.update(changes)
        reply = await self.command(
            "access.update", {"lists": document, "sig": sign_lists(self.list_key, document)}
        )
        if not reply.get("ok"):
            raise RigError(f"access.update refused: {reply}")
        return reply

    # -- cards: the scenarios name them by the emulated UIDs in `Cards` ----------------

    def uid(self, card: bytes) -> bytes:
        """The UID the reader will read for `card` (the same here; a bench maps it)."""
        return card

    def ref(self, card: bytes) -> str:
        return self.refs(self.uid(card))

    def uids(self) -> list[bytes]:
        return [self.uid(v) for k, v in vars(Cards).items() if k.isupper()]

    @property
    def scripted_gps(self) -> bool:
        """The GPS drives the route (emulated); a real receiver goes where it is."""
        return self.gps is not None

    # -- acting on the devices -----------------------------------------------------------

    async def tap(self, uid: bytes, *, hold_s: float = 0.4, timeout: float = 5.0) -> Received:
        """Put a card on the reader and take it off once the node has answered (the tap
        reached dispatch) and `hold_s` has passed, as a rider waits for the beep: a loaded
        machine that reads the card late sees it still there, as a reader on a bus would."""
        before = len(self.on("events/tap"))
        answered = asyncio.Event()
        presenting = asyncio.create_task(self.present(uid, hold_s, until=answered))
        self.counts.taps += 1
        ref = self.ref(uid)
        try:
            return await self.expect(
                "events/tap",
                lambda m: m.payload.get("card_ref") == ref,
                timeout,
                "the tap",
                after=before,
            )
        finally:
            # a rider lifts the card once the beep came, not in the instant of it: the next
            # card read within `together_s` of this grant (0.25 s) would be refused as held
            # together with it, which a loaded machine whose answer came after `hold_s` made
            # happen (shuttle-day's second rider, `together`, in a CI-equivalent run)
            await asyncio.sleep(HELD_TOGETHER_S)
            answered.set()
            await presenting

    async def present(
        self, card: bytes, hold_s: float, *, until: asyncio.Event | None = None
    ) -> None:
        """The card on the antenna for `hold_s` and until `until` is set, then off.

        A card presented again first stays off until the reader has surely seen it go, as
        a rider lifts the card away before tapping again: the driver takes a card off only
        after `release_s` and a completed poll without it, and a loaded node that polled
        nothing while the card was briefly off sees one presentation, as a bus's would."""
        uid = self.uid(card)
        await asyncio.to_thread(self.nfc.wait_let_go, uid, READER_RELEASE_S)
        self.nfc.put(uid)
        await asyncio.sleep(hold_s)
        if until is not None:
            await until.wait()
        self.nfc.remove()

    async def _wire(self, line: str) -> str:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(self.gpio_socket)), 2
        )
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 2)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode().strip()

    async def set_pin(self, pin: int, level: int) -> None:
        answer = await self._wire(f"set {pin} {level}")
        if answer != "ok":
            raise RigError(f"set {pin} {level}: {answer}")

    async def get_pin(self, pin: int) -> int:
        answer = await self._wire(f"get {pin}")
        if not answer.startswith("ok "):
            raise RigError(f"get {pin}: {answer}")
        return int(answer.split()[1])

    async def cross(self, direction: Literal["in", "out"], *, step_s: float = 0.1) -> None:
        """A person through the door and its beams: the door opens, outer then inner going
        in (the reverse going out), the door shuts. The driver counts no walk through the
        beams of a door shut all along (docs/drivers.md, counting beams)."""
        first, second = (PIN_OUTER, PIN_INNER) if direction == "in" else (PIN_INNER, PIN_OUTER)
        await self.door(True)
        for pin, level in ((first, 1), (second, 1), (first, 0), (second, 0)):
            await asyncio.sleep(step_s)
            await self.set_pin(pin, level)
        await asyncio.sleep(step_s)
        await self.door(False)
        self.counts.crossings += 1

    async def glitch(self, pin: int = PIN_OUTER, width_s: float = 0.005) -> None:
        """An insect through a beam: shorter than the driver's min_block_s."""
        await self.set_pin(pin, 1)
        await asyncio.sleep(width_s)
        await self.set_pin(pin, 0)

    async def door(self, open_: bool) -> None:
        await self.set_pin(PIN_DOOR, 1 if open_ else 0)

    async def press_panic(self, hold_s: float = 0.8) -> None:
        await self.set_pin(PIN_PANIC, 0)
        await asyncio.sleep(hold_s)
        await self.set_pin(PIN_PANIC, 1)

    # -- faults ----------------------------------------------------------------------------

    def broker_down(self) -> None:
        self.broker.stop()
        self.counts.broker_outages += 1

    def broker_up(self) -> None:
        self.broker.start()

    @property
    def outbox_path(self) -> Path:
        return (self.setup.outbox_dir or self.workdir) / "outbox.sqlite"

    async def move_outbox(self, directory: Path | None) -> None:
        """Stop the daemon, move its outbox and state to `directory` (None: the workdir),
        and start it again there."""
        self.daemon.stop()
        target = directory or self.workdir
        for f in node_files(self.outbox_path.parent):
            shutil.move(f, target / f.name)
        self.setup.outbox_dir = directory
        self.config.write_text(self.render_config())
        await self.start_daemon()

    async def power_cut(self, off_s: float = 0.5) -> None:
        """kill -9, then start again: what a Pi sees when the ignition cuts its supply."""
        self.daemon.kill9()
        self.counts.kills += 1
        await asyncio.sleep(off_s)
        await self.start_daemon()

    def jump_gps_clock(self) -> None:
        """The receiver's time jumps `RigSetup.gps_jump_s` from its next epoch on."""
        if self.gps is None or self._gps_jumped is None:
            raise RigError("no scripted receiver with a clock jump: set RigSetup.gps_jump_s")
        self.gps.switch(self._gps_jumped)

    def unplug(self, device: Literal["gps", "can", "nfc"]) -> None:
        self.counts.unplugs += 1
        if device == "gps" and self.gps is not None:
            self.gps.unplug()
        elif device == "can" and self.can is not None:
            self.can.unplug()
        elif device == "nfc":
            self.nfc.unplug()

    def replug(self, device: Literal["gps", "can", "nfc"]) -> None:
        if device == "gps" and self.gps is not None:
            self.gps.replug()
        elif device == "can" and self.can is not None:
            self.can.plug()
        elif device == "nfc":
            self.nfc.replug()

    async def health(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next health report after now."""
        after = len(self.on("health"))
        report = await self.expect("health", timeout=timeout, what="a health report", after=after)
        return report.payload

    async def driver_state(self, name: str, state: str, timeout: float = 20.0) -> None:
        def fits(m: Received) -> bool:
            drivers = {d.get("name"): d.get("state") for d in m.payload.get("drivers", [])}
            return drivers.get(name) == state

        after = len(self.on("health"))
        await self.expect("health", fits, timeout, f"driver {name} {state}", after=after)


def node_files(directory: Path) -> list[Path]:
    """The node's files in `directory`: outbox, state store, tap journal and companions."""
    return [*directory.glob("outbox.sqlite*"), *directory.glob("state.sqlite*")]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()

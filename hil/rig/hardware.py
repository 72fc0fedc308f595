"""The same scenarios on a real bench: `python -m hil run SCENARIO --hw bench.toml` on a Pi.

The daemon runs with its real drivers on real devices; the rig replaces each emulator by
what a bench can do (hil/README.md shows the wiring; hil/bench.example.toml the file):

- GPS: a real receiver. It goes where it is, so steps that need the route (leaving a stop,
  reaching the market) and the clock jump are reported as skipped, not passed.
- CAN: the daemon listens on `can.channel` (an MCP2515 HAT); the rig plays the synthetic FMS
  bus on `can.source`, a second channel wired to the first (or `source = ""` when an
  external bench CAN source plays).
- NFC: the reader is real and the operator presents the cards named in `[cards]` when the
  rig asks for them; the lists are made for those UIDs.
- GPIO: the daemon's inputs are wired to spare pins the rig drives (`[gpio.inputs]`), its
  outputs to spare pins the rig reads (`[gpio.outputs]`), each as [daemon pin, bench pin].
- Unplugging a device is asked of the operator, who presses Enter when done.

Nothing here runs on the CI machine (no GPIO, no CAN); its config rendering and bench-file
checks are tested there, the rest only on a Pi.
"""

import asyncio
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hil.can.fms import FmsBus
from hil.dispatch import Collector
from hil.rig.rig import (
    PINS,
    Cards,
    Rig,
    RigError,
    RigSetup,
    node_files,
)

CARD_NAMES = [k for k, v in vars(Cards).items() if k.isupper()]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpsBench(_Part):
    port: str = Field(description="the receiver, e.g. /dev/edged-gps")
    baud: int = 9600


class CanBench(_Part):
    interface: str = "socketcan"
    channel: str = Field(default="can0", description="where the daemon listens")
    source: str = Field(default="can1", description="where the rig plays the FMS bus; '' none")
    bitrate: int = 250_000


class NfcBench(_Part):
    connstring: str = Field(description="e.g. pn532_uart:/dev/ttyS0")


class GpioBench(_Part):
    inputs: dict[Literal["door", "outer", "inner", "panic"], tuple[int, int]] = Field(
        description="daemon input pin -> the bench output pin wired to it"
    )
    outputs: dict[Literal["lock", "green", "red", "buzzer"], tuple[int, int]] = Field(
        description="daemon output pin -> the bench input pin wired to it"
    )


class Bench(_Part):
    gps: GpsBench | None = None
    can: CanBench | None = None
    nfc: NfcBench
    gpio: GpioBench
    cards: dict[str, str] = Field(description="card name (resident, senior…) -> UID hex")

    @classmethod
    def load(cls, path: Path) -> "Bench":
        bench = cls.model_validate(tomllib.loads(path.read_text()))
        missing = [n.lower() for n in CARD_NAMES if n.lower() not in bench.cards]
        if missing:
            raise RigError(f"{path}: [cards] needs a UID for {', '.join(missing)}")
        return bench


class CanPlayer:
    """The FMS bus played on a second channel in real time, from its own thread."""

    def __init__(self, bench: CanBench, seconds: float) -> None:
        self.bench = bench
        self.seconds = seconds
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="can-player", daemon=True)

    def start(self) -> "CanPlayer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import can

        with can.Bus(
            interface=self.bench.interface, channel=self.bench.source, bitrate=self.bench.bitrate
        ) as bus:
            t0 = time.monotonic()
            for ts, can_id, data in FmsBus(start=0.0).frames(self.seconds):
                if self._stop.wait(max(0.0, ts - (time.monotonic() - t0))):
                    return
                bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=True))
                self.sent += 1


class HardwareRig(Rig):
    def __init__(
        self,
        workdir: Path,
        setup: RigSetup | None = None,
        *,
        bench: Path,
        ask: Callable[[str], str] = input,
    ) -> None:
        super().__init__(workdir, setup)
        self.bench = Bench.load(bench)
        self.ask = ask
        self.player: CanPlayer | None = None
        self._pins: dict[str, Any] = {}  # role -> gpiozero device on the bench's pin
        for role, (daemon_pin, _) in {**self.bench.gpio.inputs, **self.bench.gpio.outputs}.items():
            self.pins[role] = daemon_pin
        self._uids = {
            getattr(Cards, n): bytes.fromhex(self.bench.cards[n.lower()]) for n in CARD_NAMES
        }

    # -- what differs from the emulated bench ---------------------------------------------

    def uid(self, card: bytes) -> bytes:
        return self._uids[card]

    @property
    def scripted_gps(self) -> bool:
        return False

    async def start(self) -> None:
        from gpiozero import DigitalInputDevice, DigitalOutputDevice

        for role, (_, bench_pin) in self.bench.gpio.inputs.items():
            self._pins[role] = DigitalOutputDevice(bench_pin)
        for role, (_, bench_pin) in self.bench.gpio.outputs.items():
            self._pins[role] = DigitalInputDevice(bench_pin, pull_up=False)
        for old in node_files(self.workdir):
            old.unlink()
        self.broker.start()
        (self.workdir / "fleet.secret").write_bytes(self.secret)
        (self.workdir / "fleet.secret").chmod(0o600)
        self.config.write_text(self.render_config())
        self.dispatch = Collector(self.broker.port, f"{self.base}/#", client_id="rig-dispatch")
        await self.dispatch.__aenter__()
        if self.bench.can is not None and self.bench.can.source:
            self.player = CanPlayer(self.bench.can, self.setup.seconds).start()
        await self.start_daemon()
        await self.load_lists()

    async def close(self) -> None:
        if self.player is not None:
            self.player.stop()
        for device in self._pins.values():
            device.close()
        self.daemon.stop()
        if self.dispatch is not None:
            await self.dispatch.__aexit__(None, None, None)
        self.broker.stop()

    async def wait_gpio(self, timeout: float) -> None:
        await self.driver_state("gpio", "running", timeout)

    @property
    def nfc_connstring(self) -> str:
        return self.bench.nfc.connstring

    @property
    def gpio_factory_lines(self) -> str:
        return 'pin_factory = "default"'

    def render_config(self) -> str:
        """The emulated bench's config, with the real devices and the bench's pins."""
        b = self.bench
        text = super().render_config()
        if b.gps is not None:
            text += (
                f'\n[[drivers]]\nname = "gps"\ndriver = "gps.nmea-serial"\n[drivers.options]\n'
                f'port = "{b.gps.port}"\nbaud = {b.gps.baud}\n'
            )
        if b.can is not None:
            text += (
                f'\n[[drivers]]\nname = "can"\ndriver = "can.bus"\n[drivers.options]\n'
                f'interface = "{b.can.interface}"\nchannel = "{b.can.channel}"\n'
                f"bitrate = {b.can.bitrate}\n\n[services.vehicle]\nperiod_s = 5\n"
            )
        return text

    async def present(
        self, card: bytes, hold_s: float, *, until: asyncio.Event | None = None
    ) -> None:
        name = next(n.lower() for n in CARD_NAMES if getattr(Cards, n) == card)
        uid = self.uid(card).hex()
        print(f"\n>>> present the card '{name}' ({uid}) to the reader, then take it away")
        await asyncio.sleep(0)

    async def tap(self, uid: bytes, *, hold_s: float = 0.4, timeout: float = 60.0) -> Any:
        return await super().tap(uid, hold_s=0.0, timeout=timeout)

    def _device(self, pin: int) -> Any:
        """The scenarios name the emulated bench's pins; find the role, then the wire."""
        role = next((r for r, p in PINS.items() if p == pin), None)
        return self._pins.get(role) if role is not None else None

    async def set_pin(self, pin: int, level: int) -> None:
        device = self._device(pin)
        if device is None:
            raise RigError(f"the bench has no wire to the daemon's input {pin}")
        device.value = level

    async def get_pin(self, pin: int) -> int:
        device = self._device(pin)
        if device is None:
            raise RigError(f"the bench has no wire from the daemon's output {pin}")
        await asyncio.sleep(0.01)  # the wire and the input's settling
        return int(device.value)

    def unplug(self, device: Literal["gps", "can", "nfc"]) -> None:
        self.counts.unplugs += 1
        self.ask(f"\n>>> unplug the {device.upper()} (cable or USB) and press Enter ")

    def replug(self, device: Literal["gps", "can", "nfc"]) -> None:
        self.ask(f"\n>>> plug the {device.upper()} back and press Enter ")

"""Each driver's device: is it there, may this user open it, and does it answer?

"Answers" runs the real driver class, as the daemon would, with a probe context: the
driver calling `ctx.ready()` within the timeout is the pass; a `DriverError` (whose message
says what to check) or silence is the failure. Presence and permission are checked first
on the raw options, so they work even when the driver's library is missing, and their
advice is more precise than an errno (which group to join, which overlay to enable).
"""

import asyncio
import contextlib
import errno
import glob
import grp
import logging
import os
import pwd
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from core.errors import ConfigError, DriverError, EdgedError
from drivers.registry import driver_class
from edged.config.loader import format_errors, validate_options
from edged.config.models import DriverConfig
from edged.doctor.check import Check, Status, fail, ok, skip, warn

SECTION = "drivers"
CLEANUP_S = 2.0
"""How long a probed driver has to close its device after it is cancelled."""

Kind = Literal["serial", "gpio", "i2c", "spi", "netif"]

SIMULATED: dict[str, str] = {
    "gps.sim": "simulated GPS (route file)",
    "can.replay": "simulated CAN (replays a log)",
    "nfc.sim": "simulated NFC reader",
}
SERIAL_CAN = frozenset({"slcan", "serial", "robotell", "seeedstudio"})
"""python-can interfaces whose channel is a serial device path."""
GROUP_HINT: dict[Kind, str] = {
    "serial": "dialout",
    "gpio": "gpio",
    "i2c": "i2c",
    "spi": "spi",
    "netif": "",
}
SERIAL_GLOBS = (
    "/dev/serial/by-id/*",
    "/dev/ttyUSB*",
    "/dev/ttyACM*",
    "/dev/ttyAMA*",
    "/dev/serial[0-9]",
    "/dev/gps*",
    "/dev/edged-*",  # the links systemd/udev/99-edged.rules makes
)
PI_UART = ("/dev/ttyAMA", "/dev/ttyS", "/dev/serial0", "/dev/serial1")
SILENCE_ADVICE: dict[str, str] = {
    "gps.nmea-serial": "the port opens but no valid NMEA sentence came: check the baud rate "
    "(receivers use 4800, 9600, 38400 or 115200), the wiring (receiver TX to Pi RX) and "
    "that the receiver has power",
    "gps.gpsd": "gpsd accepted the connection but reported nothing: does `gpspipe -w` show "
    "the receiver? (gpsd must be started with the device, e.g. DEVICES=/dev/gps0)",
    "nfc.libnfc": "the reader did not answer: check its wiring, its interface switches "
    "(PN532 boards select UART/I2C/SPI with jumpers) and `nfc-list`",
}


@dataclass(frozen=True)
class Device:
    path: str
    kind: Kind
    key: str
    """The option it comes from, named in the advice."""


@dataclass
class Plan:
    """What to check for one driver, from its raw options."""

    devices: list[Device] = field(default_factory=list)
    simulated: str = ""
    gpio_chips: str = ""
    """A gpiozero pin factory that needs /dev/gpiochip* (or /dev/gpiomem)."""


def plan(driver: str, options: dict[str, Any]) -> Plan:
    """The devices a driver will open, by driver and options (unknown drivers: any /dev path)."""
    if driver in SIMULATED:
        return Plan(simulated=SIMULATED[driver])
    if driver == "gps.nmea-serial":
        return Plan(_devices(options, "port"))
    if driver == "gps.gpsd":
        return Plan()  # a TCP service: the probe says whether gpsd answers
    if driver == "can.bus":
        interface = options.get("interface", "socketcan")
        channel = options.get("channel", "can0")
        if not isinstance(channel, str):
            return Plan()
        if interface == "virtual":
            return Plan(simulated="simulated CAN (python-can virtual bus)")
        if interface == "socketcan":
            return Plan([Device(channel, "netif", "channel")])
        if interface in SERIAL_CAN:
            return Plan([Device(channel, "serial", "channel")])
        return Plan()
    if driver == "nfc.libnfc":
        connstring = options.get("connstring")
        if isinstance(connstring, str) and ":" in connstring:
            path = connstring.split(":", 2)[1]  # pn532_uart:/dev/ttyS0[:115200]
            if path.startswith("/"):
                return Plan([Device(path, _kind(path), "connstring")])
        return Plan()  # USB readers, or libnfc's own autodetection
    if driver.startswith("gpio."):
        factory = str(options.get("pin_factory", "default"))
        if factory == "mock":
            return Plan(simulated="simulated GPIO (mock pins)")
        if factory == "pigpio":
            return Plan()  # pins through the pigpiod daemon: the probe says
        return Plan(gpio_chips=factory)
    return Plan(
        [
            Device(v, _kind(v), k)
            for k, v in options.items()
            if isinstance(v, str) and v.startswith("/dev/")
        ]
    )


def _devices(options: dict[str, Any], key: str) -> list[Device]:
    value = options.get(key)
    return [Device(value, _kind(value), key)] if isinstance(value, str) and value else []


def _kind(path: str) -> Kind:
    base = os.path.basename(path)
    if base.startswith("gpiochip") or base.startswith("gpiomem"):
        return "gpio"
    if base.startswith("i2c-"):
        return "i2c"
    if base.startswith("spidev"):
        return "spi"
    return "serial"


# -- presence -------------------------------------------------------------------------


def presence(name: str, dev: Device, options: dict[str, Any]) -> Check:
    """The device node (or CAN interface) exists; a missing one lists what does exist."""
    check = f"{name}: device"
    if dev.kind == "netif":
        return _netif(check, dev.path, options)
    path = Path(dev.path)
    try:
        st = path.stat()
    except FileNotFoundError:
        what = f"{path} does not exist"
        if path.is_symlink():
            what = f"{path} is a link to {os.readlink(path)}, which does not exist"
        return fail(SECTION, check, f"{what} ({dev.key})", _missing_advice(dev))
    except OSError as exc:
        return fail(
            SECTION,
            check,
            f"cannot look up {path}: {exc.strerror}",
            f"the directories on the way to {path} must be searchable by this user",
        )
    where = f"{path} -> {path.resolve()}" if path.is_symlink() else str(path)
    if not stat.S_ISCHR(st.st_mode):
        return warn(
            SECTION,
            check,
            f"{where} exists but is not a character device",
            f"is {dev.key} = {str(path)!r} really the device? (`ls -l {path}`)",
        )
    return ok(SECTION, check, f"{where} present")


def _missing_advice(dev: Device) -> str:
    if dev.kind == "i2c":
        return "enable I2C: `raspi-config` > Interface Options > I2C (dtparam=i2c_arm=on), reboot"
    if dev.kind == "spi":
        return "enable SPI: `raspi-config` > Interface Options > SPI (dtparam=spi=on), reboot"
    if dev.kind == "gpio":
        return "no GPIO here: check the kernel; on a machine without GPIO use pin_factory = 'mock'"
    present = sorted({p for pattern in SERIAL_GLOBS for p in glob.glob(pattern)})
    listed = ", ".join(present[:8]) if present else "none"
    advice = (
        f"check the cable and the udev rule that names it; serial devices here: {listed} "
        "(`ls -l /dev/serial/by-id/` shows which is which)"
    )
    if dev.path.startswith(PI_UART):
        advice += (
            "; for the Pi's own UART: `raspi-config` > Interface Options > Serial Port: "
            "login shell no, hardware yes (enable_uart=1), reboot"
        )
    return advice


def _netif(check: str, channel: str, options: dict[str, Any]) -> Check:
    """A SocketCAN interface: it exists, it is CAN, it is up."""
    bitrate = options.get("bitrate", 250_000)
    up = f"`sudo ip link set {channel} up type can bitrate {bitrate} restart-ms 100`"
    sys_dir = Path("/sys/class/net") / channel
    if not sys_dir.exists():
        return fail(
            SECTION,
            check,
            f"no network interface {channel} (channel)",
            "for an MCP2515 HAT: dtoverlay=mcp2515-can0,oscillator=16000000,interrupt=25 in "
            f"/boot/firmware/config.txt, reboot, then {up}; `ip link` lists the interfaces",
        )
    try:
        kind = (sys_dir / "type").read_text().strip()
        state = (sys_dir / "operstate").read_text().strip()
    except OSError as exc:
        return warn(SECTION, check, f"{channel}: cannot read its state ({exc})", "`ip link`")
    if kind != "280":  # ARPHRD_CAN
        return fail(
            SECTION,
            check,
            f"{channel} is not a CAN interface (type {kind})",
            "set channel to the CAN interface (`ip -details link` shows can0, vcan0...)",
        )
    if state == "down":
        return fail(SECTION, check, f"{channel} is down", f"bring it up: {up}")
    return ok(SECTION, check, f"CAN interface {channel} is {state}")


# -- permission -----------------------------------------------------------------------


def access(name: str, dev: Device) -> Check:
    """This user can open the device read/write; if not, which group gives it."""
    check = f"{name}: access"
    me = _user_name(os.geteuid())
    if os.access(dev.path, os.R_OK | os.W_OK):
        return ok(SECTION, check, f"{me} can read and write {dev.path}")
    return fail(SECTION, check, _denied(dev.path, me), _group_advice(dev.path, dev.kind, me))


def _denied(path: str, me: str) -> str:
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{me} cannot open {path} ({exc.strerror})"
    owner, group = _user_name(st.st_uid), _group_name(st.st_gid)
    return f"{me} cannot read and write {path} ({stat.filemode(st.st_mode)} {owner}:{group})"


def _group_advice(path: str, kind: Kind, me: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"make {path} reachable by {me}"
    group = _group_name(st.st_gid)
    group_rw = st.st_mode & (stat.S_IRGRP | stat.S_IWGRP) == stat.S_IRGRP | stat.S_IWGRP
    if group_rw and st.st_gid != 0:
        if _member(me, st.st_gid) and st.st_gid not in os.getgroups():
            return (
                f"{me} is in group '{group}' but this login started before: log out and in "
                "again (and restart edged so it gets the group too)"
            )
        return (
            f"add the user to group '{group}': `sudo usermod -aG {group} {me}`, then log out "
            "and in again (and restart edged)"
        )
    hint = GROUP_HINT[kind] or "the edged user's group"
    return (
        f'its group cannot read and write it: a udev rule should give it GROUP="{hint}", '
        f'MODE="0660" (then add {me} to {hint})'
    )


def _member(user: str, gid: int) -> bool:
    try:
        if pwd.getpwnam(user).pw_gid == gid:
            return True
        return user in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def gpio_chips(name: str, factory: str) -> list[Check]:
    """GPIO through the kernel's character devices (or /dev/gpiomem for RPi.GPIO)."""
    check = f"{name}: device"
    patterns = ("/dev/gpiomem*",) if factory == "rpigpio" else ("/dev/gpiochip*",)
    chips = sorted(p for pattern in patterns for p in glob.glob(pattern))
    if not chips:
        return [
            fail(
                SECTION,
                check,
                f"no {patterns[0]} on this machine (pin_factory {factory!r})",
                "this machine has no GPIO (or its kernel driver is not loaded); on a test "
                'machine set pin_factory = "mock" in this driver\'s options',
            )
        ]
    checks = [ok(SECTION, check, f"{', '.join(chips)} present")]
    for chip in chips:
        denied = access(name, Device(chip, "gpio", "pin_factory"))
        if denied.status is not Status.OK:
            return [*checks, denied]
    me = _user_name(os.geteuid())
    return [*checks, ok(SECTION, f"{name}: access", f"{me} can read and write the GPIO chips")]


# -- does it answer? ------------------------------------------------------------------


class ProbeContext:
    """A DriverContext that only records: ready, events, counters and warnings."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.log = logging.getLogger(f"edged.driver.{name}")  # shown with `edged -v doctor`
        self.warnings: list[str] = []
        self._collect = _Collect(self.warnings)
        self.log.addHandler(self._collect)
        self.answered = asyncio.Event()
        self.events = 0
        self.counters: Counter[str] = Counter()
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        self.log.removeHandler(self._collect)

    def emit(self, event: Any) -> None:
        self.events += 1

    def emit_threadsafe(self, event: Any) -> None:
        self._loop.call_soon_threadsafe(self.emit, event)

    def ready(self) -> None:
        self.answered.set()

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> None:
        """The probe sends nothing to a driver."""


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


async def probe(d: DriverConfig, base_dir: Path | None, wait_s: float, note: str = "") -> Check:
    """Run the real driver until it says ready, fails, or `wait_s` passes."""
    check = f"{d.name}: answers"
    try:
        cls = driver_class(d.driver)
        options = validate_options(cls.Options, d.options, base_dir)
        driver = cls(options)
    except ValidationError as exc:
        problems = format_errors(exc, prefix=("options",))
        return fail(
            SECTION,
            check,
            f"{d.driver}: invalid options: {'; '.join(problems)}",
            "fix the driver's options (docs/drivers.md lists them)",
        )
    except EdgedError as exc:
        return fail(SECTION, check, str(exc), "install what it names, or fix the driver name")
    except Exception as exc:  # a driver's constructor: report it, never crash the doctor
        return fail(SECTION, check, f"{d.driver}: cannot start: {exc!r}", "see the message")
    ctx = ProbeContext(d.name)
    started = time.monotonic()
    task = asyncio.create_task(driver.run(ctx), name=f"doctor.{d.name}")
    ready = asyncio.create_task(ctx.answered.wait())
    try:
        await asyncio.wait({task, ready}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        elapsed = time.monotonic() - started
        return _verdict(d, ctx, task, elapsed, wait_s, note)
    finally:
        ready.cancel()
        await _stop(task)
        ctx.close()


def _verdict(
    d: DriverConfig,
    ctx: ProbeContext,
    task: "asyncio.Task[None]",
    elapsed: float,
    wait_s: float,
    note: str,
) -> Check:
    check = f"{d.name}: answers"
    prefix = f"{note}: " if note else ""
    if ctx.answered.is_set():
        events = f", {ctx.events} event(s)" if ctx.events else ""
        took = f"{elapsed * 1000:.0f} ms" if elapsed < 1 else f"{elapsed:.1f} s"
        return ok(SECTION, check, f"{prefix}{d.driver} ready in {took}{events}")
    heard = _heard(ctx)
    if not task.done():
        advice = SILENCE_ADVICE.get(
            d.driver, "check the device's power and wiring; a slow device: raise --timeout"
        )
        return fail(SECTION, check, f"{d.driver}: no answer within {wait_s:g} s{heard}", advice)
    exc = task.exception()
    if exc is None:
        return fail(
            SECTION, check, f"{d.driver} stopped without answering{heard}", "see its log (-v)"
        )
    if isinstance(exc, DriverError):
        return fail(
            SECTION,
            check,
            f"{exc}{heard}",
            _held_hint(exc) or "the driver's message says what to check",
        )
    if isinstance(exc, ConfigError):
        return fail(SECTION, check, "; ".join(exc.problems), "fix the driver's options")
    return fail(
        SECTION,
        check,
        f"{d.driver} crashed: {exc!r}",
        "a bug in the driver: run `edged -v doctor` and report the output",
    )


def _held_hint(exc: DriverError) -> str:
    cause = exc.__cause__
    code = getattr(cause, "errno", None)
    if code in (errno.EBUSY, errno.EAGAIN):
        return "another program holds the device: `sudo fuser -v DEVICE` shows which"
    return ""


def _heard(ctx: ProbeContext) -> str:
    """What the driver counted or warned about: the clue to a wrong baud rate or bus."""
    parts = []
    if ctx.counters:
        parts.append("counted " + ", ".join(f"{k} {n}" for k, n in sorted(ctx.counters.items())))
    if ctx.warnings:
        parts.append(f"said {ctx.warnings[-1]!r}")
    return f" ({'; '.join(parts)})" if parts else ""


async def _stop(task: "asyncio.Task[None]") -> None:
    """Cancel the driver and give it a moment to close its device."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CLEANUP_S)
    if task.done() and not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()  # retrieved: no "never retrieved" warning


async def check_driver(
    d: DriverConfig,
    base_dir: Path | None,
    wait_s: float,
    held_by: list[int],
) -> list[Check]:
    """All the lines for one configured driver, in order; stops at the first failure."""
    if not d.enabled:
        return [skip(SECTION, d.name, f"{d.driver}: disabled in the config")]
    p = plan(d.driver, d.options)
    if p.simulated:
        return [await probe(d, base_dir, wait_s, note=p.simulated)]
    checks: list[Check] = []
    if p.gpio_chips:
        checks += gpio_chips(d.name, p.gpio_chips)
    for dev in p.devices:
        checks.append(presence(d.name, dev, d.options))
        if checks[-1].status is Status.FAIL:
            return checks
        if dev.kind != "netif":
            checks.append(access(d.name, dev))
    if any(c.status is Status.FAIL for c in checks):
        return checks
    if held_by:
        pids = ", ".join(str(p) for p in held_by)
        checks.append(
            skip(
                SECTION,
                f"{d.name}: answers",
                f"not probed: edged (pid {pids}) runs with this config and holds the device; "
                "its `health` topic shows the driver's state",
                "to probe it here: `sudo systemctl stop edged`, run doctor, then start edged",
            )
        )
        return checks
    checks.append(await probe(d, base_dir, wait_s))
    return checks

"""Each driver's device: is it there, may this user open it, and does it answer?

What a driver opens it says itself (`opens(options)`, from its options as validated at
load); the doctor knows no driver. Presence and permission are checked first, so their
advice is more precise than an errno (which group to join, which overlay to enable).
"Answers" runs the real driver class, as the daemon would, in the real `DriverContext`: the
driver calling `ctx.ready()` within the timeout is the pass; a `DriverError` (whose message
says what to check) or silence is the failure.
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
from pathlib import Path

from pydantic import ValidationError

from core.bus import Bus
from core.counters import Counters
from core.driver import Device, DeviceKind, Driver, DriverContext, Opens
from core.errors import ConfigError, DriverError, EdgedError
from drivers.registry import driver_class
from edged.config.loader import format_errors, with_settings
from edged.config.models import DriverConfig
from edged.doctor.check import Check, Status, fail, ok, skip, warn

SECTION = "drivers"
CLEANUP_S = 2.0
"""How long a probed driver has to close its device after it is cancelled."""

GROUP_HINT: dict[DeviceKind, str] = {
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
# -- presence -------------------------------------------------------------------------


def presence(name: str, dev: Device) -> Check:
    """The device node (or CAN interface) exists; a missing one lists what does exist."""
    check = f"{name}: device"
    if dev.kind == "netif":
        return _netif(check, dev)
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


def _netif(check: str, dev: Device) -> Check:
    """A SocketCAN interface: it exists, it is CAN, it is up."""
    channel = dev.path
    up = f"`{dev.bring_up}`"
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


def _group_advice(path: str, kind: DeviceKind, me: str) -> str:
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
    """GPIO through the kernel's character devices."""
    check = f"{name}: device"
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        return [
            fail(
                SECTION,
                check,
                f"no /dev/gpiochip* on this machine (pin_factory {factory!r})",
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


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


class Probe:
    """A driver run alone, in the real `DriverContext` on a bus of its own: whether it
    said ready, how many events it emitted, what it counted and warned about."""

    def __init__(self, name: str) -> None:
        self.counters = Counters()
        self.answered = asyncio.Event()
        self.ctx = DriverContext(
            name, Bus(self.counters), self.counters, on_ready=self.answered.set
        )
        self.warnings: list[str] = []
        self._collect = _Collect(self.warnings)
        self.ctx.log.addHandler(self._collect)  # shown with `edged -v doctor`

    def counted(self) -> dict[str, int]:
        prefix = f"driver.{self.ctx.name}."
        return {k.removeprefix(prefix): n for k, n in self.counters.snapshot().items()}

    def close(self) -> None:
        self.ctx.close()
        self.ctx.log.removeHandler(self._collect)


async def probe(d: DriverConfig, driver: Driver, opens: Opens, wait_s: float) -> Check:
    """Run the real driver until it says ready, fails, or `wait_s` passes."""
    p = Probe(d.name)
    started = time.monotonic()
    task = asyncio.create_task(driver.run(p.ctx), name=f"doctor.{d.name}")
    ready = asyncio.create_task(p.answered.wait())
    try:
        await asyncio.wait({task, ready}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        elapsed = time.monotonic() - started
        return _verdict(d, p, task, elapsed, wait_s, opens)
    finally:
        ready.cancel()
        await _stop(task)
        p.close()


def _verdict(
    d: DriverConfig,
    p: Probe,
    task: "asyncio.Task[None]",
    elapsed: float,
    wait_s: float,
    opens: Opens,
) -> Check:
    check = f"{d.name}: answers"
    prefix = f"{opens.simulated}: " if opens.simulated else ""
    if p.answered.is_set():
        events = f", {p.ctx.emitted} event(s)" if p.ctx.emitted else ""
        took = f"{elapsed * 1000:.0f} ms" if elapsed < 1 else f"{elapsed:.1f} s"
        return ok(SECTION, check, f"{prefix}{d.driver} ready in {took}{events}")
    heard = _heard(p)
    if not task.done():
        advice = opens.silence or (
            "check the device's power and wiring; a slow device: raise --timeout"
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


def _heard(p: Probe) -> str:
    """What the driver counted or warned about: the clue to a wrong baud rate or bus."""
    parts = []
    counted = p.counted()
    if counted:
        parts.append("counted " + ", ".join(f"{k} {n}" for k, n in sorted(counted.items())))
    if p.warnings:
        parts.append(f"said {p.warnings[-1]!r}")
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
    check = f"{d.name}: answers"
    try:
        cls = driver_class(d.driver)
    except EdgedError as exc:
        return [fail(SECTION, check, str(exc), "install what it names, or fix the driver name")]
    invalid: ValidationError | None = None
    try:  # a config that did not load whole was not validated: its drivers are, here
        settings = with_settings(d, base_dir).settings
    except ValidationError as exc:  # still check the device the options name, as written
        invalid, settings = exc, cls.Options.model_construct(**d.options)
    try:
        opens: Opens = cls.opens(settings)
    except Exception:  # options too broken to say what they open
        opens = Opens()
    checks = [] if opens.simulated else _devices(d.name, opens)
    if any(c.status is Status.FAIL for c in checks):
        return checks
    if invalid is not None:
        problems = "; ".join(format_errors(invalid, prefix=("options",)))
        advice = "fix the driver's options (docs/drivers.md lists them)"
        return [*checks, fail(SECTION, check, f"{d.driver}: invalid options: {problems}", advice)]
    try:
        driver: Driver = cls(settings)
    except EdgedError as exc:
        advice = "install what it names, or fix the driver's options"
        return [*checks, fail(SECTION, check, str(exc), advice)]
    except Exception as exc:  # a driver's constructor: report it, never crash the doctor
        why = f"{d.driver}: cannot start: {exc!r}"
        return [*checks, fail(SECTION, check, why, "see the message")]
    if held_by and not opens.simulated:
        pids = ", ".join(str(p) for p in held_by)
        checks.append(
            skip(
                SECTION,
                check,
                f"not probed: edged (pid {pids}) runs with this config and holds the device; "
                "its `health` topic shows the driver's state",
                "to probe it here: `sudo systemctl stop edged`, run doctor, then start edged",
            )
        )
        return checks
    checks.append(await probe(d, driver, opens, wait_s))
    return checks


def _devices(name: str, opens: Opens) -> list[Check]:
    """Presence and permission of what the driver opens; stops at a missing device."""
    checks: list[Check] = []
    if opens.gpio_chips:
        checks += gpio_chips(name, opens.gpio_chips)
    for dev in opens.devices:
        checks.append(presence(name, dev))
        if checks[-1].status is Status.FAIL:
            return checks
        if dev.kind != "netif":
            checks.append(access(name, dev))
    return checks

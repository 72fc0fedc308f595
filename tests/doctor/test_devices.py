"""Driver lines: a device that is there, missing, forbidden, silent, busy — with real ptys."""

import asyncio
import grp
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from core.driver import Device, Opens
from drivers.registry import REGISTRY, driver_class
from edged.config.loader import driver_options
from edged.config.models import DriverConfig
from edged.doctor import Status
from edged.doctor.check import Check
from edged.doctor.devices import access, check_driver, presence
from edged.doctor.running import daemons_using
from hil.gps.emulator import NmeaEmulator
from tests.doctor.conftest import as_nobody
from tests.helpers.nodes import ROUTE


def driver(kind: str, **options: Any) -> DriverConfig:
    return DriverConfig(name="dev", driver=kind, options=options)


async def lines(
    d: DriverConfig, wait_s: float = 2, held_by: list[int] | None = None
) -> list[Check]:
    return await check_driver(d, None, wait_s, held_by or [])


def summary(checks: list[Check]) -> list[tuple[str, Status]]:
    return [(c.name, c.status) for c in checks]


async def test_a_gps_on_a_pty_is_present_permitted_and_answers(gps: NmeaEmulator) -> None:
    checks = await lines(driver("gps.nmea-serial", port=str(gps.link)))
    assert summary(checks) == [
        ("dev: device", Status.OK),
        ("dev: access", Status.OK),
        ("dev: answers", Status.OK),
    ], checks
    assert f"{gps.link} -> /dev/pts/" in checks[0].detail
    assert "gps.nmea-serial ready in" in checks[2].detail


async def test_a_missing_device_fails_first_and_lists_the_serial_ports_there(
    tmp_path: Path,
) -> None:
    checks = await lines(driver("gps.nmea-serial", port=str(tmp_path / "gps0")))
    assert summary(checks) == [("dev: device", Status.FAIL)]
    assert checks[0].detail == f"{tmp_path / 'gps0'} does not exist (port)"
    assert "serial devices here:" in checks[0].advice


async def test_a_link_to_a_vanished_device_says_where_it_pointed(tmp_path: Path) -> None:
    link = tmp_path / "gps0"
    link.symlink_to("/dev/ttyACM9")
    (check,) = await lines(driver("gps.nmea-serial", port=str(link)))
    assert "is a link to /dev/ttyACM9, which does not exist" in check.detail


async def test_a_silent_device_times_out_with_baud_rate_advice(silent_pty: str) -> None:
    started = time.monotonic()
    checks = await lines(driver("gps.nmea-serial", port=silent_pty), wait_s=0.3)
    assert time.monotonic() - started < 0.3 + 2.5
    assert summary(checks)[-1] == ("dev: answers", Status.FAIL)
    assert "no answer within 0.3 s" in checks[-1].detail
    assert "baud rate" in checks[-1].advice


async def test_a_driver_error_is_reported_in_the_drivers_own_words(silent_pty: str) -> None:
    holder = serial.Serial(silent_pty, exclusive=True)  # gpsd, or a running edged
    try:
        checks = await lines(driver("gps.nmea-serial", port=silent_pty))
    finally:
        holder.close()
    answers = checks[-1]
    assert answers.status is Status.FAIL
    assert "cannot open GPS serial port" in answers.detail
    assert "in use by another program" in answers.detail


async def test_a_device_held_by_the_running_daemon_is_not_probed(gps: NmeaEmulator) -> None:
    checks = await lines(driver("gps.nmea-serial", port=str(gps.link)), held_by=[4242])
    assert summary(checks)[-1] == ("dev: answers", Status.SKIP)
    assert "pid 4242" in checks[-1].detail
    assert "systemctl stop edged" in checks[-1].advice


async def test_a_file_that_is_not_a_device_warns_and_the_driver_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "ttyFAKE"
    fake.write_text("")
    checks = await lines(driver("gps.nmea-serial", port=str(fake)))
    assert summary(checks) == [
        ("dev: device", Status.WARN),
        ("dev: access", Status.OK),
        ("dev: answers", Status.FAIL),
    ], checks
    assert "not a character device" in checks[0].detail
    assert "cannot open GPS serial port" in checks[2].detail


@pytest.fixture
def dialout_pty() -> Iterator[str]:
    """A serial device as udev makes one: root:dialout, mode 660."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    if os.geteuid() == 0:
        os.chown(path, 0, grp.getgrnam("dialout").gr_gid)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0)  # our own pty, closed even to us
    yield path
    os.close(master)


def test_a_device_this_user_cannot_open_names_the_group_to_join(dialout_pty: str) -> None:
    dev = Device(dialout_pty, "serial", "port")
    check = as_nobody(lambda: access("gps", dev))
    assert check.status is Status.FAIL
    assert "cannot read and write" in check.detail
    if os.geteuid() == 0:  # nobody, not in dialout
        assert "crw-rw---- root:dialout" in check.detail
        assert "sudo usermod -aG dialout nobody" in check.advice


async def test_a_socketcan_channel_that_is_missing_or_not_can(tmp_path: Path) -> None:
    (missing,) = await lines(driver("can.bus", channel="can9"))
    assert missing.detail == "no network interface can9 (channel)"
    assert "dtoverlay=mcp2515" in missing.advice and "bitrate 250000" in missing.advice
    (loopback,) = await lines(driver("can.bus", channel="lo"))
    assert loopback.status is Status.FAIL
    assert "lo is not a CAN interface" in loopback.detail


async def test_simulated_drivers_are_run_and_say_so() -> None:
    (check,) = await lines(driver("gps.sim", route=str(ROUTE), rate_hz=10))
    assert check.status is Status.OK
    assert check.detail.startswith("simulated GPS (route file): gps.sim ready in")


async def test_invalid_options_and_unknown_drivers_fail_the_probe() -> None:
    (bad,) = await lines(driver("gps.sim", route="/nowhere.json"))
    assert bad.status is Status.FAIL and "invalid options" in bad.detail
    (unknown,) = await lines(driver("gps.nope"))
    assert unknown.status is Status.FAIL and "unknown driver 'gps.nope'" in unknown.detail


def opens(driver: str, **options: Any) -> Opens:
    """What the driver says it opens, from its options validated as the loader does."""
    opened: Opens = driver_class(driver).opens(driver_options(driver, options, None))
    return opened


def test_each_driver_says_what_it_opens_from_its_own_options() -> None:
    assert opens("gps.nmea-serial", port="/dev/gps0").devices == (
        Device("/dev/gps0", "serial", "port"),
    )
    assert opens("nfc.libnfc", connstring="pn532_uart:/dev/ttyS0:115200").devices == (
        Device("/dev/ttyS0", "serial", "connstring"),
    )
    assert opens("nfc.libnfc", connstring="pn532_i2c:/dev/i2c-1").devices[0].kind == "i2c"
    assert opens("nfc.libnfc", connstring="pn53x_usb").devices == ()
    assert opens("can.bus", interface="slcan", channel="/dev/ttyACM0").devices == (
        Device("/dev/ttyACM0", "serial", "channel"),
    )
    (can0,) = opens("can.bus").devices
    assert (can0.path, can0.kind) == ("can0", "netif") and "bitrate 250000" in can0.bring_up
    assert opens("can.bus", interface="virtual").simulated
    assert opens("gps.gpsd").devices == () and "gpspipe" in opens("gps.gpsd").silence
    assert opens("gps.sim", route=str(ROUTE)).simulated
    assert opens("nfc.sim").simulated
    assert opens("gpio.gpiozero", pin_factory="mock").simulated
    assert opens("gpio.gpiozero").gpio_chips == "default"


@pytest.mark.parametrize("driver", sorted(REGISTRY))
def test_every_registered_driver_says_what_it_opens(driver: str) -> None:
    assert isinstance(getattr(driver_class(driver), "opens", None), Callable)


def test_a_missing_i2c_device_says_how_to_enable_i2c() -> None:
    check = presence("nfc", Device("/dev/i2c-9", "i2c", "connstring"))
    assert check.status is Status.FAIL
    assert "raspi-config" in check.advice and "I2C" in check.advice


@pytest.mark.skipif(bool(list(Path("/dev").glob("gpiochip*"))), reason="this machine has GPIO")
async def test_gpio_on_a_machine_without_gpio_fails_and_suggests_the_mock_factory() -> None:
    checks = await lines(driver("gpio.gpiozero", pin_factory="default"))
    assert summary(checks) == [("dev: device", Status.FAIL)]
    assert "no /dev/gpiochip*" in checks[0].detail
    assert 'pin_factory = "mock"' in checks[0].advice


async def test_gpio_with_mock_pins_is_simulated() -> None:
    (check,) = await lines(driver("gpio.gpiozero", pin_factory="mock"))
    assert check.status is Status.OK, check
    assert "simulated GPIO" in check.detail


def test_a_running_edged_with_this_config_is_found_through_proc(tmp_path: Path) -> None:
    cfg = tmp_path / "edged.toml"
    cfg.write_text("")
    other = tmp_path / "other.toml"
    other.write_text("")
    sleep = "import time; time.sleep(30)"
    # argv as systemd starts it: .../bin/edged run --config FILE (here after python -c)
    procs = [
        subprocess.Popen([sys.executable, "-c", sleep, "/opt/edged/bin/edged", "run", *args])
        for args in (["--config", str(cfg)], ["-c", "edged.toml"], ["-c", str(other)])
    ]
    try:
        time.sleep(0.2)
        found = daemons_using(cfg)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].pid in found
    assert procs[2].pid not in found
    assert procs[1].pid not in found  # a relative path, from another cwd


async def test_what_a_silent_driver_counted_is_the_clue(tmp_path: Path) -> None:
    """Bytes at the wrong baud rate: the port talks, but nothing is NMEA."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)

    async def babble() -> None:  # after the driver opened the port (opening flushes it)
        while True:
            os.write(master, b"\xf0\x0f\xaa\x55 garbage\r\n$GPGGA,bad*00\r\n")
            await asyncio.sleep(0.05)

    noise = asyncio.create_task(babble())
    try:
        checks = await lines(driver("gps.nmea-serial", port=path), wait_s=0.5)
    finally:
        noise.cancel()
        os.close(master)
    assert checks[-1].status is Status.FAIL
    assert "counted" in checks[-1].detail, checks[-1]

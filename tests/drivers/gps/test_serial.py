import asyncio
import logging
import os
import time
import tty
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import serial
from pydantic import ValidationError

from core.errors import DriverError
from core.events import Fix
from drivers.gps.serial import NmeaSerialGps, NmeaSerialOptions
from edged.config.models import SupervisorConfig
from hil.gps.emulator import Faults, NmeaEmulator
from tests.drivers.gps.fakes import nmea
from tests.helpers.drivers import Recorder, wait_until

LOGS = Path(__file__).resolve().parents[3] / "hil" / "gps" / "logs"
FAST = SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.1, stable_after_s=10)


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A bare pty: (master fd the test writes to, slave path the driver opens)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[NmeaEmulator]:
    with NmeaEmulator(LOGS / "ublox-m8-gn.nmea", tmp_path / "gps0", speed=20) as emu:
        yield emu


def driver(port: str | Path, **options: Any) -> NmeaSerialGps:
    return NmeaSerialGps(NmeaSerialOptions(port=str(port), **options))


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Driver tasks started by a test, cancelled at its end."""
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("baud", [2400, 11520, 230400])
def test_baud_rate_outside_the_standard_4800_to_115200_is_refused(baud: int) -> None:
    with pytest.raises(ValidationError, match="baud"):
        NmeaSerialOptions(port="/dev/ttyACM0", baud=baud)


def test_max_line_below_the_nmea_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_line"):
        NmeaSerialOptions(port="/dev/ttyACM0", max_line=60)


def test_unknown_sentence_type_in_complete_on_is_refused() -> None:
    with pytest.raises(ValidationError, match="complete_on"):
        NmeaSerialOptions(port="/dev/ttyACM0", complete_on=("GGA", "GSV"))


async def test_complete_on_of_older_configs_is_accepted_and_said_to_be_unused(
    pty: tuple[int, str], running: list[asyncio.Task[None]], caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder("gps")
    with caplog.at_level(logging.WARNING):
        running.append(asyncio.create_task(driver(pty[1], complete_on=("RMC", "GGA")).run(rec.ctx)))
        await wait_until(lambda: "complete_on is no longer used" in caplog.text, 2, "the warning")


# -- opening ------------------------------------------------------------------------------


async def test_missing_port_says_which_and_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match=r"gps0: it does not exist: check the GPS cable"):
        await driver(tmp_path / "gps0").run(Recorder("gps").ctx)


async def test_port_held_by_another_program_says_so(pty: tuple[int, str]) -> None:
    holder = serial.Serial(pty[1], exclusive=True)
    try:
        with pytest.raises(DriverError, match="in use by another program"):
            await driver(pty[1]).run(Recorder("gps").ctx)
    finally:
        holder.close()


# -- reading ------------------------------------------------------------------------------


async def test_ready_waits_for_a_valid_sentence_not_the_open_port(
    pty: tuple[int, str], running: list[asyncio.Task[None]]
) -> None:
    master, path = pty
    rec = Recorder("gps")
    running.append(asyncio.create_task(driver(path).run(rec.ctx)))
    await asyncio.sleep(0.05)
    os.write(master, b"\x00\xff garbage at the wrong baud rate\r\n")
    await wait_until(lambda: rec.counts["noise"] == 1, 2, "the noise to be counted")
    assert rec.readies == 0
    os.write(master, nmea("GPGSV,1,1,00"))
    await wait_until(lambda: rec.readies == 1, 2, "ready")


async def test_fixes_from_the_emulator_carry_the_log_values(
    emulator: NmeaEmulator, running: list[asyncio.Task[None]]
) -> None:
    # $GNRMC,081500.00,A,4552.99800,N,00210.46400,E,0.085,,120625,,,A*66 and the next ones
    rec = Recorder("gps")
    running.append(asyncio.create_task(driver(emulator.link).run(rec.ctx)))
    await wait_until(lambda: len(rec.fixes) >= 3, 5, "three fixes")
    # Opening the port mid-epoch gives a first fix from its tail (a GLL, no date yet); the
    # parked vehicle's first whole epochs (RMC to GLL) come next, within the first 5 s.
    first = next(f for f in rec.fixes if f.speed is not None)
    assert datetime(2025, 6, 12, 8, 15, tzinfo=UTC) <= first.fix_time
    assert first.fix_time <= datetime(2025, 6, 12, 8, 15, 4, tzinfo=UTC)
    assert first.lat == pytest.approx(45 + 52.998 / 60, abs=1e-9)
    assert first.lon == pytest.approx(2 + 10.464 / 60, abs=1e-9)
    assert all(f.valid for f in rec.fixes)
    assert set(rec.counts) <= {"noise"}  # at most a line cut by the open


async def test_the_last_epoch_is_emitted_when_the_receiver_goes_quiet(
    pty: tuple[int, str], running: list[asyncio.Task[None]]
) -> None:
    master, path = pty
    rec = Recorder("gps")
    running.append(asyncio.create_task(driver(path).run(rec.ctx)))
    await asyncio.sleep(0.1)
    os.write(master, nmea("GNRMC,213712.00,A,4111.5988,N,11156.5667,W,0.0,,120226,,,A"))
    os.write(master, nmea("GNGGA,213712.00,4111.5988,N,11156.5667,W,1,09,0.9,1443.9,M,-16.5,M,,"))
    sent = time.monotonic()
    # nothing follows (a tunnel, an unplugged antenna): no next epoch will close this one
    await wait_until(lambda: len(rec.fixes) == 1, 2, "the last fix")
    assert time.monotonic() - sent < 1.0
    assert rec.fixes[0].fix_time == datetime(2026, 2, 12, 21, 37, 12, tzinfo=UTC)


async def test_noise_and_bad_checksums_are_counted_while_fixes_keep_coming(
    tmp_path: Path, running: list[asyncio.Task[None]]
) -> None:
    faults = Faults(garbage=0.3, bad_checksum=0.2, cut=0.1, seed=3)
    with NmeaEmulator(LOGS / "ublox-m8-gn.nmea", tmp_path / "gps0", speed=20, faults=faults) as emu:
        rec = Recorder("gps")
        running.append(asyncio.create_task(driver(emu.link).run(rec.ctx)))
        await wait_until(lambda: len(rec.fixes) >= 5, 5, "five fixes through the noise")
    assert rec.counts["bad_checksum"] > 0 and rec.counts["noise"] > 0
    assert all(-90 <= f.lat <= 90 for f in rec.fixes)


async def test_unplugged_port_raises_saying_it_was_lost(
    emulator: NmeaEmulator, running: list[asyncio.Task[None]]
) -> None:
    rec = Recorder("gps")
    task = asyncio.create_task(driver(emulator.link).run(rec.ctx))
    running.append(task)
    await wait_until(lambda: rec.readies == 1, 5, "ready")
    emulator.unplug()
    with pytest.raises(DriverError, match=r"lost .* unplugged"):
        await asyncio.wait_for(task, 2)


async def test_the_epoch_read_before_an_unplug_is_emitted_not_lost() -> None:
    """The receiver's cable pulled (or the receiver taken) while its last epoch waited for
    the quiet spell that ends it: that last position was dropped with the decoder."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    rec = Recorder("gps")
    task = asyncio.create_task(driver(path).run(rec.ctx))
    try:
        await asyncio.sleep(0.1)  # the driver opens the port
        os.write(master, nmea("GNRMC,213712.00,A,4111.5988,N,11156.5667,W,0.0,,120226,,,A"))
        os.write(master, nmea("GNGGA,213712.00,4111.5988,N,11156.5667,W,1,09,0.9,1443.9,M,,M,,"))
        await wait_until(lambda: rec.readies == 1, 1, "the epoch read")
    finally:
        os.close(master)  # unplugged before the epoch's quiet spell (0.15 s) is over
    with pytest.raises(DriverError, match=r"lost .* unplugged"):
        await asyncio.wait_for(task, 2)
    assert [f.fix_time for f in rec.fixes] == [datetime(2026, 2, 12, 21, 37, 12, tzinfo=UTC)]


async def test_silent_port_raises_after_silence_s_with_a_baud_hint(pty: tuple[int, str]) -> None:
    with pytest.raises(DriverError, match=r"no valid NMEA sentence .* check the baud rate"):
        await asyncio.wait_for(driver(pty[1], silence_s=0.2).run(Recorder("gps").ctx), 2)


async def test_bytes_that_never_pause_hold_the_epoch_until_the_silence_error_which_emits_it(
    pty: tuple[int, str],
) -> None:
    master, path = pty
    rec = Recorder("gps")
    task = asyncio.create_task(driver(path, silence_s=0.5).run(rec.ctx))
    await asyncio.sleep(0.1)
    os.write(master, nmea("GNRMC,213712.00,A,4111.5988,N,11156.5667,W,0.0,,120226,,,A"))
    try:
        while not task.done():  # a receiver gone mad: binary without a pause, no sentence
            os.write(master, b"\xb5\x62\x01\x07" + bytes(60))
            await asyncio.sleep(0.02)
        with pytest.raises(DriverError, match="no valid NMEA sentence"):
            await task
    finally:
        task.cancel()
    assert len(rec.fixes) == 1
    assert rec.fixes[0].fix_time == datetime(2026, 2, 12, 21, 37, 12, tzinfo=UTC)


async def test_reading_without_batching_also_works(
    emulator: NmeaEmulator, running: list[asyncio.Task[None]]
) -> None:
    rec = Recorder("gps")
    running.append(asyncio.create_task(driver(emulator.link, batch_s=0).run(rec.ctx)))
    await wait_until(lambda: len(rec.fixes) >= 2, 5, "two fixes")


async def test_replugged_receiver_comes_back_under_the_supervisor(emulator: NmeaEmulator) -> None:
    rec = Recorder("gps")
    events = rec.events
    sup = rec.supervisor(FAST)
    task = asyncio.create_task(
        sup.supervise("gps", "gps.nmea-serial", lambda: driver(emulator.link))
    )
    try:
        await wait_until(lambda: "gps" in sup.drivers, 1, "supervision")
        status = sup.drivers["gps"]
        await wait_until(lambda: status.state == "running", 5, "running")
        emulator.unplug()
        await wait_until(lambda: status.restarts >= 2, 5, "restarts while unplugged")
        assert status.state != "running"
        emulator.replug()
        before = len(events)
        await wait_until(lambda: len(events) > before + 2, 5, "fixes after the replug")
        assert status.state == "running"
        assert "does not exist" in (status.last_error or "")
        assert all(isinstance(e, Fix) for e in events)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

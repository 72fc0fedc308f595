import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import serial

from drivers.gps.decoder import NmeaDecoder
from hil.gps.emulator import Faults, NmeaEmulator, epochs
from hil.rig.feeds import route_nmea
from tests.drivers.gps.fakes import nmea

ROOT = Path(__file__).resolve().parents[3]
LOGS = ROOT / "hil" / "gps" / "logs"
ROUTE = ROOT / "config" / "routes" / "creuse-shuttle.json"


def read_for(port: serial.Serial, seconds: float) -> bytes:
    """Everything the emulator sends within `seconds`."""
    data = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([port.fileno()], [], [], left)[0]:
            data += os.read(port.fileno(), 65536)
    return data


@pytest.fixture
def port(tmp_path: Path) -> Iterator[tuple[NmeaEmulator, serial.Serial]]:
    emu = NmeaEmulator(LOGS / "ublox-m8-gn.nmea", tmp_path / "gps0", speed=50).start()
    link = serial.Serial(str(emu.link), 9600, timeout=0)
    yield emu, link
    link.close()
    emu.close()


def test_a_log_is_grouped_into_its_epochs_with_their_intervals() -> None:
    one_hz = epochs((LOGS / "ublox-m8-gn.nmea").read_bytes().splitlines())
    ten_hz = epochs((LOGS / "ublox-m8-10hz.nmea").read_bytes().splitlines())
    assert len(one_hz) == 90 and {len(lines) for _, lines in one_hz} == {11}
    assert {round(gap, 6) for gap, _ in one_hz} == {1.0}
    assert len(ten_hz) == 300 and {round(gap, 6) for gap, _ in ten_hz} == {0.1}


def test_a_log_with_blank_lines_is_cut_into_bursts_there() -> None:
    gsa, gga, rmc = (
        nmea("GPGSA,A,3,02,05,12,,,,,,,,,,1.9,1.2,1.5").strip(),
        nmea("GPGGA,141501.00,5106.9792,N,11402.3003,W,1,03,1.0,1048.5,M,-16.3,M,,").strip(),
        nmea("GPRMC,141501.00,A,5106.9792,N,11402.3003,W,0.3,276.2,120226,,,A").strip(),
    )
    later = [line.replace(b"141501.00", b"141502.00") for line in (gga, rmc)]
    got = epochs([gsa, gga, rmc, b"", gsa, *later])
    assert [lines for _, lines in got] == [[gsa, gga, rmc], [gsa, *later]]
    assert [gap for gap, _ in got] == [1.0, 1.0]


def test_sentences_of_several_talkers_with_one_time_are_one_burst() -> None:
    got = epochs(
        [
            nmea("GPGGA,091500.00,4545.1234,N,00450.5432,E,1,14,0.8,171.2,M,49.5,M,,").strip(),
            nmea("GLGGA,091500.00,4545.1234,N,00450.5432,E,1,02,2.9,,M,,M,,").strip(),
            nmea("GPGGA,091501.00,4545.1234,N,00450.5432,E,1,14,0.8,171.2,M,49.5,M,,").strip(),
        ]
    )
    assert [len(lines) for _, lines in got] == [2, 1]


def test_epochs_without_time_are_told_apart_by_repeated_types() -> None:
    cold = epochs((LOGS / "mtk-coldstart.nmea").read_bytes().splitlines())
    assert [len(lines) for _, lines in cold[:3]] == [5, 5, 5]


def test_replay_reaches_the_link_in_log_order(port: tuple[NmeaEmulator, serial.Serial]) -> None:
    _, link = port
    got = read_for(link, 0.15).split(b"\r\n")
    log = (LOGS / "ublox-m8-gn.nmea").read_bytes().split(b"\r\n")
    start = next(i for i, line in enumerate(got) if line.startswith(b"$GNRMC"))  # an epoch
    at = log.index(got[start])
    assert got[start : start + 22] == log[at : at + 22]


def test_replay_keeps_the_log_pace_divided_by_speed(
    port: tuple[NmeaEmulator, serial.Serial],
) -> None:
    _, link = port
    data = read_for(link, 0.5)  # 1 Hz log at speed 50: 25 epochs
    assert 15 <= data.count(b"RMC") <= 30  # 25 expected; a loaded machine may lag


def read_until_closed(port: serial.Serial) -> serial.SerialException:
    """Drain what was sent before an unplug; returns the error that follows."""
    for _ in range(100):
        try:
            port.read(65536)
        except serial.SerialException as exc:
            return exc
    raise AssertionError("the port never reported the unplug")


def test_unplug_removes_the_link_and_ends_reads(port: tuple[NmeaEmulator, serial.Serial]) -> None:
    emu, link = port
    emu.unplug()
    assert not emu.link.exists()
    assert "returned no data" in str(read_until_closed(link))


def test_replug_points_the_link_at_a_fresh_pty(port: tuple[NmeaEmulator, serial.Serial]) -> None:
    emu, old = port
    emu.unplug()
    emu.replug()
    again = serial.Serial(str(emu.link), 9600, timeout=0)
    try:
        assert b"RMC" in read_for(again, 0.2)
    finally:
        again.close()
    assert "returned no data" in str(read_until_closed(old))


def test_injected_bytes_come_before_the_next_sentence(
    port: tuple[NmeaEmulator, serial.Serial],
) -> None:
    emu, link = port
    read_for(link, 0.05)
    emu.inject(b"\x00\xffINJECTED\r\n")
    assert b"\x00\xffINJECTED\r\n$" in read_for(link, 0.1)


def test_faults_reach_the_decoder_as_counted_errors(tmp_path: Path) -> None:
    counts: dict[str, int] = {}

    def count(key: str, n: int) -> None:
        counts[key] = counts.get(key, 0) + n

    faults = Faults(garbage=0.2, bad_checksum=0.2, drop=0.2, cut=0.2, seed=1)
    with NmeaEmulator(
        LOGS / "ublox-m8-gn.nmea", tmp_path / "gps0", speed=100, faults=faults
    ) as emu:
        link = serial.Serial(str(emu.link), 9600, timeout=0)
        fixes = NmeaDecoder(count=count).feed(read_for(link, 0.3), 0.0)
        link.close()
    assert fixes and counts["bad_checksum"] > 0 and counts["noise"] > 0


def test_baud_pacing_sends_no_faster_than_the_line_rate(tmp_path: Path) -> None:
    lines = [nmea("GPTXT,01,01,02," + "X" * 60).strip()] * 10  # 830 bytes: 0.86 s at 9600 baud
    with NmeaEmulator(lines, tmp_path / "gps0", baud=9600, loop=False) as emu:
        link = serial.Serial(str(emu.link), 9600, timeout=0)
        early = read_for(link, 0.3)
        link.close()
    assert 0 < len(early) <= 400  # about 290 bytes in 0.3 s


def test_command_line_serves_the_link_until_terminated(tmp_path: Path) -> None:
    link = tmp_path / "gps0"
    cmd = [sys.executable, "-m", "hil.gps.emulator", str(LOGS / "sirf-gp.nmea")]
    args = [*cmd, "--speed", "50", "--link", str(link)]
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith(f"ready {link}")
            port = serial.Serial(str(link), 4800, timeout=0)
            assert b"$GPGGA" in read_for(port, 0.2)
            port.close()
        finally:
            proc.terminate()
        assert proc.wait(timeout=5) == 0
    assert not link.exists()


def test_a_switch_to_the_route_an_hour_off_jumps_the_clock_and_keeps_the_position(
    tmp_path: Path,
) -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    on_time, off = (
        route_nmea(ROUTE, seconds=60, speed_factor=20, start=start, offset_s=offset)
        for offset in (0.0, 3600.0)
    )
    emu = NmeaEmulator(on_time, tmp_path / "gps0", speed=20, loop=False).start()
    link = serial.Serial(str(emu.link), 9600, timeout=0)
    try:
        first = NmeaDecoder()
        before = first.feed(read_for(link, 0.5), 0.0)
        emu.switch(off)
        before += [f for f in [first.flush()] if f is not None]  # the epoch it still held
        after = NmeaDecoder().feed(read_for(link, 0.5), 0.0)
    finally:
        link.close()
        emu.close()
    assert before and after
    assert all(f.fix_time < start + timedelta(minutes=1) for f in before)
    jumped = [f for f in after if f.fix_time >= start + timedelta(hours=1)]
    assert jumped, [f.fix_time for f in after]
    # the epoch after the last one on time (read before the switch took effect, in either
    # read): the route goes on from where it was, 1 s of route later (2 s when the second
    # decoder began mid-epoch and left that one out), not from its start nor far ahead
    on_time = [f.fix_time for f in before + after if f.fix_time < start + timedelta(hours=1)]
    went_on = (jumped[0].fix_time - timedelta(hours=1)) - max(on_time)
    assert timedelta(seconds=1) <= went_on <= timedelta(seconds=2), went_on


def test_a_switch_to_a_route_of_another_length_is_refused(tmp_path: Path) -> None:
    emu = NmeaEmulator(LOGS / "ublox-m8-gn.nmea", tmp_path / "gps0")
    with pytest.raises(ValueError, match="epochs to switch to"):
        emu.switch((LOGS / "ublox-m8-10hz.nmea").read_bytes().splitlines())

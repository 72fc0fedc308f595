"""The generated logs in hil/gps/logs through the decoder, against values worked out by hand."""

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.events import Fix, FixMode
from drivers.gps.decoder import NmeaDecoder

LOGS = Path(__file__).resolve().parents[3] / "hil" / "gps" / "logs"
KN = 0.514444  # m/s per knot, as the issue states it
NOW = datetime(2025, 6, 12, 12, 0, tzinfo=UTC)


def log_fixes(name: str) -> list[Fix]:
    """The whole log in one read (no timing), then its end."""
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    d = NmeaDecoder(count=count, now=lambda: NOW)
    fixes = d.feed((LOGS / name).read_bytes(), 0.0)
    if (last := d.flush()) is not None:
        fixes.append(last)
    assert not counts, counts
    return fixes


def at(fixes: list[Fix], when: datetime) -> Fix:
    (fix,) = [f for f in fixes if f.fix_time == when]
    return fix


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.nmea")))
def test_every_log_decodes_without_a_counted_error_one_fix_per_epoch_time(name: str) -> None:
    timed = [f.fix_time for f in log_fixes(name) if f.date_known]
    assert timed and len(timed) == len(set(timed))


def test_ublox_m8_epoch_in_motion() -> None:
    # $GNRMC,081530.00,A,4553.14206,N,00210.51052,E,26.998,12.67,120625,,,A*75
    # $GNGGA,081530.00,4553.14206,N,00210.51052,E,1,12,0.87,451.1,M,49.2,M,,*49
    fix = at(log_fixes("ublox-m8-gn.nmea"), datetime(2025, 6, 12, 8, 15, 30, tzinfo=UTC))
    assert fix.lat == pytest.approx(45 + 53.14206 / 60, abs=1e-9)
    assert fix.lon == pytest.approx(2 + 10.51052 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(26.998 * KN, rel=1e-5)  # 13.889 m/s = 50 km/h
    assert (fix.course, fix.alt, fix.satellites, fix.hdop) == (12.67, 451.1, 12, 0.87)
    assert (fix.quality, fix.mode) == (1, FixMode.THREE_D)


def test_ublox_m8_static_epoch_has_no_course() -> None:
    # $GNRMC,081500.00,A,4552.99800,N,00210.46400,E,0.085,,120625,,,A*66
    fix = log_fixes("ublox-m8-gn.nmea")[0]
    assert fix.fix_time == datetime(2025, 6, 12, 8, 15, tzinfo=UTC)
    assert fix.lat == pytest.approx(45 + 52.998 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(0.085 * KN, rel=1e-5) and fix.course is None


def test_sirf_gp_epoch_with_rmc_last() -> None:
    # $GPGGA,090245.000,4553.2517,N,00210.5459,E,1,08,1.1,450.1,M,49.2,M,,0000*59
    # $GPRMC,090245.000,A,4553.2517,N,00210.5459,E,27.00,12.67,120625,,*04
    fix = at(log_fixes("sirf-gp.nmea"), datetime(2025, 6, 12, 9, 2, 45, tzinfo=UTC))
    assert fix.lat == pytest.approx(45 + 53.2517 / 60, abs=1e-9)
    assert fix.lon == pytest.approx(2 + 10.5459 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(27.00 * KN, rel=1e-5)
    assert (fix.course, fix.alt, fix.satellites, fix.hdop, fix.quality) == (12.67, 450.1, 8, 1.1, 1)


def test_ublox_10hz_gives_ten_fixes_a_second_with_tenths() -> None:
    # $GNRMC,104012.30,A,4553.01506,N,00210.46951,E,17.028,12.67,120625,,,A*70
    fixes = log_fixes("ublox-m8-10hz.nmea")
    assert len(fixes) == 300
    fix = at(fixes, datetime(2025, 6, 12, 10, 40, 12, 300_000, tzinfo=UTC))
    assert fix.lat == pytest.approx(45 + 53.01506 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(17.028 * KN, rel=1e-5)


def test_cold_start_is_void_then_2d_then_3d() -> None:
    # 3 epochs without time, 4 with time but status V, then
    # $GPRMC,235927.000,A,4552.9999,N,00210.4646,E,4.67,12.67,120625,,,A*56
    # $GPGGA,235927.000,4552.9999,N,00210.4646,E,1,04,2.41,,M,49.2,M,,*43
    # $GPGSA,A,2,29,02,05,06,,,,,,,,,2.60,2.41,1.50*0E
    fixes = log_fixes("mtk-coldstart.nmea")
    assert [f.valid for f in fixes[:8]] == [False] * 7 + [True]
    assert [f.fix_time for f in fixes[:3]] == [NOW] * 3
    assert fixes[3].fix_time == datetime(2025, 6, 12, 23, 59, 23, tzinfo=UTC)
    first = fixes[7]
    assert first.fix_time == datetime(2025, 6, 12, 23, 59, 27, tzinfo=UTC)
    assert (first.mode, first.quality, first.alt, first.satellites) == (FixMode.TWO_D, 1, None, 4)
    assert first.lat == pytest.approx(45 + 52.9999 / 60, abs=1e-9)
    assert first.speed == pytest.approx(4.67 * KN, rel=1e-5)
    assert fixes[9].mode is FixMode.THREE_D


def test_cold_start_log_crosses_midnight_on_the_rmc_date() -> None:
    # $GPRMC,235959.000,A,4553.2079,N,00210.5318,E,27.00,12.67,120625,,,A*6D
    # $GPRMC,000000.000,A,4553.2152,N,00210.5341,E,27.00,12.67,130625,,,A*69
    fixes = log_fixes("mtk-coldstart.nmea")
    before = at(fixes, datetime(2025, 6, 12, 23, 59, 59, tzinfo=UTC))
    after = at(fixes, datetime(2025, 6, 13, 0, 0, 0, tzinfo=UTC))
    assert before.lat == pytest.approx(45 + 53.2079 / 60, abs=1e-9)
    assert after.lat == pytest.approx(45 + 53.2152 / 60, abs=1e-9)


def test_casic_epoch_with_rmc_late_and_zda_skipped() -> None:
    # $GNGGA,143040.000,4553.21518,N,00210.53413,E,1,11,1.0,450.2,M,49.2,M,,*46
    # $GNRMC,143040.000,A,4553.21518,N,00210.53413,E,26.998,12.668,120625,,,A*7C
    fix = at(log_fixes("casic-bd.nmea"), datetime(2025, 6, 12, 14, 30, 40, tzinfo=UTC))
    assert fix.lat == pytest.approx(45 + 53.21518 / 60, abs=1e-9)
    assert fix.lon == pytest.approx(2 + 10.53413 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(26.998 * KN, rel=1e-5)
    assert (fix.course, fix.alt, fix.satellites) == (12.668, 450.2, 11)


def test_multi_gnss_epoch_from_gns_and_rmc() -> None:
    # $GNGNS,160520.00,4553.068943,N,00210.486909,E,AAAAN,19,0.62,451.57,49.20,,,V*53
    # $GNRMC,160520.00,A,4553.068943,N,00210.486909,E,26.998,12.67,120625,,,A,V*08
    fix = at(log_fixes("multi-gns.nmea"), datetime(2025, 6, 12, 16, 5, 20, tzinfo=UTC))
    assert fix.lat == pytest.approx(45 + 53.068943 / 60, abs=1e-9)
    assert fix.lon == pytest.approx(2 + 10.486909 / 60, abs=1e-9)
    assert fix.speed == pytest.approx(26.998 * KN, rel=1e-5)
    assert (fix.alt, fix.satellites, fix.hdop, fix.quality) == (451.57, 19, 0.62, 1)

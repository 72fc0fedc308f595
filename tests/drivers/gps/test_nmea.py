from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.gps.nmea import (
    BadSentence,
    EpochMerger,
    LineSplitter,
    NmeaDecoder,
    parse_sentence,
)
from edged.events import Fix, FixMode
from tests.drivers.gps.fakes import nmea

LOGS = Path(__file__).resolve().parents[3] / "hil" / "gps" / "logs"
KN = 0.514444  # m/s per knot, as the issue states it
NOW = datetime(2025, 6, 12, 12, 0, tzinfo=UTC)

# Textbook sentences with their published checksums (not computed by the code under test).
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
VTG = b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48"
GSA = b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"
GLL = b"$GPGLL,4916.45,N,12311.12,W,225444,A,*1D"


def decoder(**kw: object) -> tuple[NmeaDecoder, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    return NmeaDecoder(count=count, now=lambda: NOW, **kw), counts  # type: ignore[arg-type]


def decode(data: bytes, **kw: object) -> tuple[list[Fix], Counter[str]]:
    d, counts = decoder(**kw)
    fixes = d.feed(data)
    if (last := d.flush()) is not None:
        fixes.append(last)
    return fixes, counts


def log_fixes(name: str) -> list[Fix]:
    fixes, counts = decode((LOGS / name).read_bytes())
    assert not counts, counts
    return fixes


def at(fixes: list[Fix], when: datetime) -> Fix:
    (fix,) = [f for f in fixes if f.fix_time == when]
    return fix


# -- checksums and lines ------------------------------------------------------------------


@pytest.mark.parametrize("line", [GGA, RMC, VTG, GSA, GLL])
def test_textbook_sentences_pass_their_checksum(line: bytes) -> None:
    assert parse_sentence(line) is not None


def test_wrong_checksum_is_dropped_and_counted() -> None:
    fixes, counts = decode(RMC.replace(b"*6A", b"*6B") + b"\r\n")
    assert fixes == [] and counts == {"bad_checksum": 1}


def test_changed_character_fails_the_checksum() -> None:
    fixes, counts = decode(RMC.replace(b"4807.038", b"4807.039") + b"\r\n")
    assert fixes == [] and counts == {"bad_checksum": 1}


def test_sentence_without_checksum_is_dropped_and_counted() -> None:
    fixes, counts = decode(RMC[:-3] + b"\r\n")
    assert fixes == [] and counts == {"no_checksum": 1}


def test_lowercase_hex_checksum_is_accepted() -> None:
    assert parse_sentence(RMC.replace(b"*6A", b"*6a")) is not None


def test_junk_before_the_dollar_is_dropped_and_the_sentence_kept() -> None:
    fixes, counts = decode(b"\x00\xff\x13junk" + RMC + b"\r\n")
    assert len(fixes) == 1 and counts == {"noise": 1}


def test_sentence_cut_in_half_is_dropped_and_the_next_one_kept() -> None:
    fixes, counts = decode(GGA[:30] + RMC + b"\r\n")
    assert [f.speed for f in fixes] == [pytest.approx(22.4 * KN, rel=1e-5)]
    assert counts == {"noise": 1}


def test_binary_noise_line_is_counted_and_the_next_sentence_kept() -> None:
    fixes, counts = decode(b"\x8f\x00\xfe\r\n" + RMC + b"\r\n")
    assert len(fixes) == 1 and counts == {"noise": 1}


def test_sentence_split_across_reads_is_reassembled() -> None:
    d, counts = decoder()
    data = RMC + b"\r\n"
    for i in range(len(data)):
        assert d.feed(data[i : i + 1]) == []
    assert d.flush() is not None and not counts


def test_over_long_sentence_is_dropped_and_counted_once() -> None:
    long = nmea("GPTXT,01,01,02," + "X" * 200)
    fixes, counts = decode(long + RMC + b"\r\n")
    assert len(fixes) == 1 and counts == {"too_long": 1}


def test_over_long_sentence_arriving_in_pieces_is_counted_once() -> None:
    d, counts = decoder()
    long = nmea("GPTXT,01,01,02," + "X" * 400)
    for i in range(0, len(long), 50):
        d.feed(long[i : i + 50])
    d.feed(RMC + b"\r\n")
    assert d.flush() is not None and counts == {"too_long": 1}


def test_sentence_longer_than_82_but_within_max_line_is_accepted() -> None:
    line = nmea(
        "GPGGA,123519.000000,4807.0380000000,N,01131.0000000000,E,1,08,0.9,545.4,M,46.9,M,,"
    )
    assert 82 < len(line.strip()) <= 120
    fixes, counts = decode(line)
    assert len(fixes) == 1 and not counts


def test_noise_without_line_end_keeps_memory_bounded() -> None:
    splitter = LineSplitter(max_line=120)
    for _ in range(100):
        splitter.feed(b"\xaa" * 10_000)
    assert len(splitter._rest) <= 120


# -- sentences ----------------------------------------------------------------------------


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD", "QZ", "GQ", "GI"])
def test_every_talker_is_accepted(talker: str) -> None:
    s = parse_sentence(
        nmea(f"{talker}RMC,123519,A,4807.038,N,01131.000,E,1.0,0.0,230394,,").strip()
    )
    assert s is not None and s.kind == "RMC"


def test_gga_gives_position_altitude_satellites_hdop_and_quality() -> None:
    s = parse_sentence(GGA)
    assert s is not None
    assert s.lat == pytest.approx(48 + 7.038 / 60, abs=1e-9)
    assert s.lon == pytest.approx(11 + 31.000 / 60, abs=1e-9)
    assert (s.alt, s.satellites, s.hdop, s.quality) == (545.4, 8, 0.9, 1)
    assert s.time_us == ((12 * 60 + 35) * 60 + 19) * 1_000_000


def test_rmc_gives_speed_in_metres_per_second_course_and_date() -> None:
    s = parse_sentence(RMC)
    assert s is not None
    assert s.speed == pytest.approx(22.4 * KN, rel=1e-5)
    assert s.course == 84.4
    assert s.day is not None and s.day.isoformat() == "1994-03-23"


def test_southern_and_western_hemispheres_are_negative() -> None:
    s = parse_sentence(nmea("GPGLL,3352.128,S,15112.558,W,012000,A,A").strip())
    assert s is not None
    assert s.lat == pytest.approx(-(33 + 52.128 / 60), abs=1e-9)
    assert s.lon == pytest.approx(-(151 + 12.558 / 60), abs=1e-9)


def test_position_keeps_full_precision() -> None:
    s = parse_sentence(
        nmea("GNGGA,081500,4552.9999999,N,00210.0000001,E,1,12,0.8,450,M,49,M,,").strip()
    )
    assert s is not None and s.lat is not None and s.lon is not None
    assert abs(s.lat - (45 + 52.9999999 / 60)) < 1e-10
    assert abs(s.lon - (2 + 10.0000001 / 60)) < 1e-10


def test_vtg_gives_speed_and_true_course() -> None:
    s = parse_sentence(VTG)
    assert s is not None
    assert s.speed == pytest.approx(5.5 * KN, rel=1e-5) and s.course == 54.7


def test_vtg_of_nmea_1_without_unit_letters_is_understood() -> None:
    s = parse_sentence(nmea("GPVTG,054.7,034.4,005.5,010.2").strip())
    assert s is not None
    assert s.speed == pytest.approx(5.5 * KN, rel=1e-5) and s.course == 54.7


def test_vtg_speed_falls_back_to_kmh() -> None:
    s = parse_sentence(nmea("GPVTG,054.7,T,,M,,N,036.0,K,A").strip())
    assert s is not None and s.speed == pytest.approx(10.0)


def test_gsa_gives_fix_type_used_satellites_and_hdop() -> None:
    s = parse_sentence(GSA)
    assert s is not None and (s.mode, s.satellites, s.hdop) == (3, 5, 1.3)


@pytest.mark.parametrize(("modes", "quality"), [("AAN", 1), ("DAN", 2), ("RN", 4), ("NNN", 0)])
def test_gns_mode_letters_give_the_best_quality(modes: str, quality: int) -> None:
    s = parse_sentence(
        nmea(f"GNGNS,123519,4807.038,N,01131.000,E,{modes},12,0.8,545.4,46.9,,").strip()
    )
    assert s is not None and s.quality == quality and s.void is (quality == 0)


def test_gll_gives_position_and_time() -> None:
    s = parse_sentence(GLL)
    assert s is not None
    assert s.lat == pytest.approx(49 + 16.45 / 60, abs=1e-9)
    assert s.lon == pytest.approx(-(123 + 11.12 / 60), abs=1e-9)
    assert s.time_us == ((22 * 60 + 54) * 60 + 44) * 1_000_000


@pytest.mark.parametrize(
    "body",
    [
        "GPGSV,3,1,11,02,31,005,34",
        "GPTXT,01,01,02,ANTENNA OK",
        "PUBX,00,081350.00,4717.113210,N,00833.915187,E",
        "GPZDA,201530.00,04,07,2002,00,00",
    ],
)
def test_other_sentence_types_are_skipped_without_counting(body: str) -> None:
    fixes, counts = decode(nmea(body))
    assert fixes == [] and not counts


@pytest.mark.parametrize(
    "body",
    [
        "GPRMC,123519,A,4807.038,N,01131.000,E,nan,084.4,230394,,",
        "GPRMC,123519,A,4807.038,N,01131.000,E,1e3,084.4,230394,,",
        "GPRMC,123519,A,4807.038,N,01131.000,E,-1.0,084.4,230394,,",
        "GPRMC,123519,A,4860.000,N,01131.000,E,1.0,084.4,230394,,",
        "GPRMC,123519,A,9107.038,N,01131.000,E,1.0,084.4,230394,,",
        "GPRMC,123519,A,4807.038,X,01131.000,E,1.0,084.4,230394,,",
        "GPRMC,123519,A,4807.038,N,,,1.0,084.4,230394,,",
        "GPRMC,256199,A,4807.038,N,01131.000,E,1.0,084.4,230394,,",
        "GPRMC,123519,A,4807.038,N,01131.000,E,1.0,084.4,320194,,",
        "GPRMC,123519,Q,4807.038,N,01131.000,E,1.0,084.4,230394,,",
        "GPRMC,123519,A,4807.038,N",
        "GPGGA,123519,4807.038,N,01131.000,E,1,1_0,0.9,545.4,M,46.9,M,,",
        "GPGSA,A,7,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    ],
)
def test_malformed_fields_drop_the_sentence_and_are_counted(body: str) -> None:
    fixes, counts = decode(nmea(body))
    assert fixes == [] and counts == {"malformed": 1}


def test_malformed_sentence_raises_bad_sentence_with_its_key() -> None:
    with pytest.raises(BadSentence) as info:
        parse_sentence(nmea("GPGGA,123519,4807.038,N").strip())
    assert info.value.key == "malformed"


# -- epochs -------------------------------------------------------------------------------


def epoch(t: str, *, date: str = "120625", rmc: str = "A", q: int = 1, gsa: int = 3) -> bytes:
    """RMC, VTG, GGA, GSA of one epoch at time `t`, as a u-blox sends them."""
    return (
        nmea(f"GNRMC,{t},{rmc},4553.00000,N,00210.46400,E,10.000,12.50,{date},,,A")
        + nmea("GNVTG,12.50,T,,M,10.000,N,18.520,K,A")
        + nmea(f"GNGGA,{t},4553.00000,N,00210.46400,E,{q},09,1.10,452.0,M,49.2,M,,")
        + nmea(f"GNGSA,A,{gsa},02,05,12,13,15,18,20,24,25,,,,1.9,1.1,1.5")
    )


def test_sentences_of_one_epoch_merge_into_one_fix() -> None:
    fixes, _ = decode(epoch("081500.00"))
    assert fixes == [
        Fix(
            fix_time=datetime(2025, 6, 12, 8, 15, tzinfo=UTC),
            lat=45 + 53.0 / 60,
            lon=2 + 10.464 / 60,
            alt=452.0,
            speed=10.0 * 1852 / 3600,
            course=12.5,
            mode=FixMode.THREE_D,
            quality=1,
            satellites=9,
            hdop=1.1,
        )
    ]


def test_complete_epoch_is_emitted_without_waiting_for_the_next() -> None:
    d, _ = decoder()
    assert len(d.feed(epoch("081500.00"))) == 1


def test_epoch_missing_a_complete_on_type_is_emitted_when_the_time_changes() -> None:
    d, _ = decoder()
    rmc_only = [nmea(f"GPRMC,08150{i},A,4553.0,N,00210.4,E,1.0,12.5,120625,,") for i in range(3)]
    assert d.feed(rmc_only[0]) == []
    assert [f.fix_time.second for f in d.feed(rmc_only[1] + rmc_only[2])] == [0, 1]


def test_empty_complete_on_emits_on_time_change_only() -> None:
    d, _ = decoder(complete_on=())
    assert d.feed(epoch("081500.00")) == []
    assert len(d.feed(epoch("081501.00"))) == 1


def test_late_timed_sentence_of_an_emitted_epoch_is_dropped() -> None:
    d, _ = decoder()
    fixes = d.feed(epoch("081500.00") + nmea("GNGLL,4553.00000,N,00210.46400,E,081500.00,A,A"))
    assert len(fixes) == 1 and d.flush() is None


def test_untimed_sentence_outside_an_epoch_is_dropped() -> None:
    d, _ = decoder()
    d.feed(epoch("081500.00") + nmea("GNVTG,90.0,T,,M,50.0,N,92.6,K,A"))
    (fix,) = d.feed(epoch("081501.00"))
    assert fix.course == 12.5


def test_repeated_sentence_type_starts_a_new_epoch() -> None:
    no_time = nmea("GPRMC,,V,,,,,,,,,,N") + nmea("GPGGA,,,,,,0,00,99.99,,,,,,")
    fixes, _ = decode(no_time * 3, complete_on=())
    assert len(fixes) == 3


@pytest.mark.parametrize(
    "void",
    [{"rmc": "V"}, {"q": 0}, {"gsa": 1}],
    ids=["rmc-status-V", "gga-quality-0", "gsa-mode-1"],
)
def test_a_void_sentence_makes_the_epoch_a_void_fix_without_position(
    void: dict[str, object],
) -> None:
    (fix,) = decode(epoch("081500.00", **void))[0]  # type: ignore[arg-type]
    assert not fix.valid
    assert (fix.mode, fix.quality, fix.lat, fix.lon, fix.speed) == (FixMode.NONE, 0, 0.0, 0.0, None)


def test_rmc_mode_n_makes_a_void_fix() -> None:
    (fix,) = decode(nmea("GPRMC,081500,A,4553.0,N,00210.4,E,0.0,,120625,,,N"))[0]
    assert not fix.valid


def test_gsa_mode_2_makes_a_2d_fix() -> None:
    (fix,) = decode(epoch("081500.00", gsa=2))[0]
    assert fix.valid and fix.mode is FixMode.TWO_D


@pytest.mark.parametrize(
    ("alt", "mode"), [("452.0", FixMode.THREE_D), ("", FixMode.TWO_D)], ids=["altitude", "none"]
)
def test_without_gsa_the_mode_follows_the_altitude(alt: str, mode: FixMode) -> None:
    gga = nmea(f"GPGGA,081500,4553.0,N,00210.4,E,1,05,1.5,{alt},M,49.2,M,,")
    (fix,) = decode(gga)[0]
    assert fix.mode is mode


def test_satellites_and_hdop_come_from_the_gsas_without_gga() -> None:
    data = (
        nmea("GNRMC,081500,A,4553.0,N,00210.4,E,1.0,12.5,120625,,,A")
        + nmea("GNGSA,A,3,02,05,12,,,,,,,,,,1.9,1.2,1.5")
        + nmea("GNGSA,A,3,65,66,,,,,,,,,,,1.9,1.2,1.5")
    )
    (fix,) = decode(data)[0]
    assert (fix.satellites, fix.hdop) == (5, 1.2)


# -- time ---------------------------------------------------------------------------------


def test_fix_time_is_the_rmc_date_and_time_in_utc_with_fractions() -> None:
    (fix,) = decode(epoch("081512.30"))[0]
    assert fix.fix_time == datetime(2025, 6, 12, 8, 15, 12, 300_000, tzinfo=UTC)
    assert fix.fix_time.utcoffset() is not None


def test_two_digit_years_before_80_are_this_century() -> None:
    (fix,) = decode(epoch("081500", date="010179"))[0]
    assert fix.fix_time.year == 2079


def test_gga_only_epoch_takes_the_date_of_the_last_rmc() -> None:
    d, _ = decoder()
    d.feed(epoch("081500.00", date="010324"))
    d.feed(nmea("GPGGA,081501,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,"))
    fix = d.flush()
    assert fix is not None and fix.fix_time == datetime(2024, 3, 1, 8, 15, 1, tzinfo=UTC)


def test_gga_only_epoch_after_midnight_moves_to_the_next_day() -> None:
    d, _ = decoder()
    d.feed(epoch("235959.00", date="311224"))
    d.feed(nmea("GPGGA,000000,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,"))
    fix = d.flush()
    assert fix is not None and fix.fix_time == datetime(2025, 1, 1, tzinfo=UTC)


def test_without_any_date_the_system_day_nearest_the_clock_is_used() -> None:
    gga = nmea("GPGGA,235959,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,")
    d = NmeaDecoder(now=lambda: datetime(2025, 6, 13, 0, 0, 5, tzinfo=UTC))
    d.feed(gga)
    fix = d.flush()
    assert fix is not None and fix.fix_time == datetime(2025, 6, 12, 23, 59, 59, tzinfo=UTC)


def test_epoch_without_time_is_void_and_stamped_with_the_system_clock() -> None:
    (fix,) = decode(nmea("GPRMC,,V,,,,,,,,,,N"))[0]
    assert not fix.valid and fix.fix_time == NOW


# -- the receiver logs in hil/gps/logs, against values worked out by hand --------------------


@pytest.mark.parametrize("name", sorted(p.name for p in LOGS.glob("*.nmea")))
def test_every_log_decodes_without_a_counted_error(name: str) -> None:
    assert log_fixes(name)


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


def test_merger_emits_nothing_before_a_sentence() -> None:
    assert EpochMerger().flush() is None

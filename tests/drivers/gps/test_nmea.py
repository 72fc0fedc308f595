from collections import Counter
from datetime import UTC, date, datetime

import pytest

from core.events import Fix
from drivers.gps.decoder import NmeaDecoder
from drivers.gps.nmea import BadSentence, LineSplitter, parse_sentence
from tests.drivers.gps.fakes import nmea, recording

NOW = datetime(2026, 2, 12, 12, 0, tzinfo=UTC)

# Textbook sentences with their published checksums (not computed by the code under test).
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
VTG = b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48"
GSA = b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"
GLL = b"$GPGLL,4916.45,N,12311.12,W,225444,A,*1D"
# The textbook RMC dated 2026 (the 1994 one is a week-rollover date today: see test_dating)
RMC26 = nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,120226,003.1,W").strip()
KN = 0.514444  # m/s per knot, as the issue states it
MT3339 = b"".join(recording("gpsd-mt3339"))  # a real Adafruit GPS HAT log, CRLF line ends


def decoder() -> tuple[NmeaDecoder, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    return NmeaDecoder(count=count, now=lambda: NOW), counts


def decode(data: bytes) -> tuple[list[Fix], Counter[str]]:
    d, counts = decoder()
    fixes = d.feed(data, 0.0)
    if (last := d.flush()) is not None:
        fixes.append(last)
    return fixes, counts


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
    fixes, counts = decode(b"\x00\xff\x13junk" + RMC26 + b"\r\n")
    assert len(fixes) == 1 and counts == {"noise": 1}


def test_sentence_cut_in_half_is_dropped_and_the_next_one_kept() -> None:
    fixes, counts = decode(GGA[:30] + RMC26 + b"\r\n")
    assert [f.speed for f in fixes] == [pytest.approx(22.4 * KN, rel=1e-5)]
    assert counts == {"noise": 1}


def test_binary_noise_line_is_counted_and_the_next_sentence_kept() -> None:
    fixes, counts = decode(b"\x8f\x00\xfe\r\n" + RMC26 + b"\r\n")
    assert len(fixes) == 1 and counts == {"noise": 1}


def test_an_ais_sentence_is_a_sentence_of_another_type_not_noise() -> None:
    # a Saab R4 AIS transponder's GPS (gpsd's test/daemon/saab-r4.log): `!` opens NMEA's
    # encapsulation sentences, checksummed like the others
    ais = b"!AIVDO,1,1,,B,13`kvwO005wJnb0Lfo:@7P8F05`L,0*5B\r\n"
    fixes, counts = decode(ais + RMC26 + b"\r\n" + ais)
    assert len(fixes) == 1 and counts == {}


def test_an_ais_sentence_with_a_bad_checksum_is_counted() -> None:
    fixes, counts = decode(b"!AIVDO,1,1,,B,13`kvwO005wJnb0Lfo:@7P8F05`L,0*5C\r\n" + RMC26 + b"\r\n")
    assert len(fixes) == 1 and counts == {"bad_checksum": 1}


def test_the_tail_of_an_over_long_line_starting_with_a_bang_is_not_counted_again() -> None:
    # the read boundary fell inside an over-long line (counted once, when it was cut) just
    # before a `!`: what follows to the line's end is that line's, not an AIS sentence
    d, counts = decoder()
    d.feed(b"\xaa" * 300, 0.0)
    d.feed(b"!\xaa\xaa\r\n" + RMC26 + b"\r\n", 0.0)
    assert d.flush() is not None and counts == {"noise": 1}


def test_sentence_split_across_reads_is_reassembled() -> None:
    d, counts = decoder()
    data = RMC26 + b"\r\n"
    for i in range(len(data)):
        assert d.feed(data[i : i + 1], 0.0) == []
    assert d.flush() is not None and not counts


def test_over_long_sentence_is_dropped_and_counted_once() -> None:
    long = nmea("GPTXT,01,01,02," + "X" * 200)
    fixes, counts = decode(long + RMC26 + b"\r\n")
    assert len(fixes) == 1 and counts == {"too_long": 1}


def test_over_long_sentence_arriving_in_pieces_is_counted_once() -> None:
    d, counts = decoder()
    long = nmea("GPTXT,01,01,02," + "X" * 400)
    for i in range(0, len(long), 50):
        d.feed(long[i : i + 50], 0.0)
    d.feed(RMC26 + b"\r\n", 0.0)
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


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\n\r"], ids=["CR", "LF", "LFCR"])
def test_any_line_end_gives_the_same_fixes_and_counts_as_crlf(end: bytes) -> None:
    fixes = decode(MT3339.replace(b"\r\n", end))
    assert fixes == decode(MT3339) and len(fixes[0]) == 5


def test_mixed_line_ends_lose_no_sentence() -> None:
    lines = MT3339.split(b"\r\n")
    ends = [b"\r", b"\n", b"\r\n", b"\n\r"]
    mixed = b"".join(line + ends[i % 4] for i, line in enumerate(lines) if line)
    assert decode(mixed) == decode(MT3339)


def test_a_cr_that_ends_one_read_and_the_lf_that_starts_the_next_count_nothing() -> None:
    d, counts = decoder()
    d.feed(RMC26 + b"\r", 0.0)
    d.feed(b"\n" + nmea("GPRMC,123520,A,4807.038,N,01131.000,E,022.4,084.4,120226,,"), 0.0)
    assert d.flush() is not None and not counts


@pytest.mark.parametrize(
    ("before", "after"),
    [(b"", b"\x00"), (b"", b" "), (b"", b"\t\x00 "), (b"\x00", b""), (b"  ", b"\x00")],
    ids=["NUL", "space", "tab NUL space", "NUL before", "spaces before NUL after"],
)
def test_padding_around_a_sentence_is_neither_noise_nor_a_bad_checksum(
    before: bytes, after: bytes
) -> None:
    padded = b"".join(before + line + after + b"\r\n" for line in MT3339.split(b"\r\n") if line)
    assert decode(padded) == decode(MT3339)


@pytest.mark.parametrize("at", [7, 20, len(RMC26) - 4])  # in the time, a field, at the end
def test_a_nul_inside_a_sentence_drops_it_though_the_xor_cannot_see_it(at: int) -> None:
    fixes, counts = decode(RMC26[:at] + b"\x00" + RMC26[at:] + b"\r\n")
    assert fixes == [] and counts == {"malformed": 1}


def test_a_cr_inside_a_sentence_cuts_it_and_the_next_sentence_is_kept() -> None:
    fixes, counts = decode(RMC26[:30] + b"\r" + RMC26[30:] + b"\r\n" + RMC26 + b"\r\n")
    assert len(fixes) == 1 and counts == {"no_checksum": 1, "noise": 1}


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


def test_gsa_gives_fix_type_the_satellites_used_and_hdop() -> None:
    s = parse_sentence(GSA)
    assert s is not None and (s.mode, s.hdop, s.prns) == (3, 1.3, ("04", "05", "09", "12", "24"))


@pytest.mark.parametrize(
    ("body", "prns"),
    [
        ("GNGSA,A,3,07,12,33,,,,,,,,,,1.05,0.64,0.83,3", ("07", "12", "33")),  # 4.10 system id
        ("BDGSA,A,3,214,,,,,,,,,,,,1.8,1.1,1.4", ("214",)),  # BeiDou above 200 (SkyTraq)
        ("GNGSA,A,3,301,302,401,,,,,,,,,,1.8,1.1,1.4", ("301", "302", "401")),  # u-blox 4.0
    ],
)
def test_gsa_numbers_are_kept_as_sent(body: str, prns: tuple[str, ...]) -> None:
    s = parse_sentence(nmea(body).strip())
    assert s is not None and s.prns == prns and s.bad == 0


@pytest.mark.parametrize("prn", ["x5", "-3", "1.5", " 7"])
def test_a_satellite_number_that_is_none_is_left_out_alone(prn: str) -> None:
    s = parse_sentence(nmea(f"GPGSA,A,3,04,{prn},,09,,,,,,,,,2.5,1.3,2.1").strip())
    assert s is not None and s.bad == 1 and s.prns == ("04", "09") and s.mode == 3


@pytest.mark.parametrize(
    ("body", "mode", "prns", "hdop"),
    [
        ("GPGSA,A,3,16,18,22,24,3.6,2.1,2.2", 3, [16, 18, 22, 24], 2.1),  # only the PRNs used
        ("GPGSA,A,1,,,,", 1, [], None),  # i.Trek M3 / SiRFstarIII without fix
    ],
)
def test_gsa_shorter_than_the_standard_still_gives_mode_prns_and_hdop(
    body: str, mode: int, prns: list[int], hdop: float | None
) -> None:
    s = parse_sentence(nmea(body).strip())
    assert s is not None and s.mode == mode and [int(p) for p in s.prns] == prns
    assert s.hdop == hdop


@pytest.mark.parametrize(
    ("line", "prns", "hdop"),
    [
        # NAVIOR-24 (CH-4701), 24 PRN slots, verbatim from gpsd's test/daemon/ch-4701.log
        (b"$GPGSA,A,3,23,13,07,25,,,,,,,,,,,,,,,,,,,,,09.2,07.2,05.7*0D", [23, 13, 7, 25], 7.2),
        # the same receiver using more than 12 satellites: no slot is read as a DOP
        (
            nmea(
                "GPGSA,A,3," + ",".join(f"{p:02d}" for p in range(1, 15)) + ",,,,,,,,,,,3.0,2.5,1.6"
            ).strip(),
            list(range(1, 15)),
            2.5,
        ),
    ],
)
def test_gsa_longer_than_the_standard_gives_all_its_prns_and_the_dops_at_its_end(
    line: bytes, prns: list[int], hdop: float
) -> None:
    s = parse_sentence(line)
    assert s is not None and s.mode == 3 and [int(p) for p in s.prns] == prns
    assert s.hdop == hdop and s.system is None and s.bad == 0


@pytest.mark.parametrize(
    ("system", "expected", "bad"),
    [("1", 1, 0), ("4", 4, 0), ("F", 15, 0), ("", None, 0), ("0", None, 1), ("GP", None, 1)],
)
def test_gsa_system_id_of_nmea_410_is_read_and_a_garbled_one_left_out_alone(
    system: str, expected: int | None, bad: int
) -> None:
    s = parse_sentence(nmea(f"GNGSA,A,3,13,16,21,,,,,,,,,,1.05,0.56,0.83,{system}").strip())
    assert s is not None and (s.system, s.bad, s.prns) == (expected, bad, ("13", "16", "21"))


@pytest.mark.parametrize(
    ("modes", "quality"),
    [
        ("AAN", 1),
        ("DAN", 2),
        ("RN", 4),
        ("NNN", 0),
        ("ANNN", 1),
        ("NDD", 2),
        ("AANN", 1),
        ("AE", 1),  # a measured fix beats an estimate, though 6 > 1
        ("EA", 1),
        ("EN", 6),
        ("SDA", 2),  # a simulated constellation beside real ones: the real fix speaks
    ],
)
def test_gns_mode_letters_give_the_best_quality(modes: str, quality: int) -> None:
    s = parse_sentence(
        nmea(f"GNGNS,123519,4807.038,N,01131.000,E,{modes},12,0.8,545.4,46.9,,,V").strip()
    )
    assert s is not None and s.quality == quality


def test_gns_of_one_constellation_without_position_or_mode_says_nothing_of_the_fix() -> None:
    # u-blox: $GPGNS,122310.2,,,,,,07,,,,5.2,23,V after the GN one
    s = parse_sentence(nmea("GPGNS,122310.2,,,,,,07,,,,5.2,23,V").strip())
    assert s is not None
    assert (s.quality, s.lat, s.satellites, s.time_us) == (None, None, 7, 44_590_200_000)


def test_rmc_navigational_status_of_nmea_4_10_is_not_a_void_fix() -> None:
    # V there means "the equipment gives no navigational status" (u-blox, Quectel LC29H)
    s = parse_sentence(
        nmea("GNRMC,010555.000,A,2232.4682,N,11404.6748,E,0.00,125.29,230822,,,D,V").strip()
    )
    assert s is not None and s.quality == 2 and s.lat is not None


@pytest.mark.parametrize("kind", ["RMC", "GNS"])
def test_navigational_status_unsafe_says_there_is_no_fix(kind: str) -> None:
    body = {
        "RMC": "GNRMC,010555.000,A,2232.4682,N,11404.6748,E,0.00,125.29,230822,,,A,U",
        "GNS": "GNGNS,010555.000,2232.4682,N,11404.6748,E,AA,12,0.8,45.4,46.9,,,U",
    }[kind]
    s = parse_sentence(nmea(body).strip())
    assert s is not None and s.quality == 0 and s.bad == 0


def test_a_navigational_status_that_is_no_letter_of_the_standard_is_a_bad_field() -> None:
    s = parse_sentence(
        nmea("GNRMC,010555.000,A,2232.4682,N,11404.6748,E,0.00,125.29,230822,,,A,X").strip()
    )
    assert s is not None and s.quality == 1 and s.bad == 1


def test_rmc_status_d_is_a_differential_fix() -> None:
    s = parse_sentence(nmea("GPRMC,123519,D,4807.038,N,01131.000,E,0.1,0.0,120226,,").strip())
    assert s is not None and s.quality == 2


def test_vtg_with_mode_n_gives_no_speed_nor_course() -> None:
    s = parse_sentence(nmea("GPVTG,0.00,T,,M,0.00,N,0.00,K,N").strip())
    assert s is not None and (s.speed, s.course, s.bad) == (None, None, 0)


def test_zda_gives_its_time_and_four_digit_year_date() -> None:
    s = parse_sentence(nmea("GNZDA,213712.000,12,02,2026,,").strip())
    assert s is not None and s.kind == "ZDA"
    assert s.time_us == ((21 * 60 + 37) * 60 + 12) * 1_000_000
    assert s.day == date(2026, 2, 12) and s.bad == 0


@pytest.mark.parametrize(
    "body", ["GPZDA,,,,,00,00", "GPZDA,030743.57,,,,00,00"], ids=["empty", "time-only"]
)
def test_zda_before_the_receiver_knows_the_date_gives_none_without_counting(body: str) -> None:
    s = parse_sentence(nmea(body).strip())
    assert s is not None and s.day is None and s.bad == 0


@pytest.mark.parametrize("fields", ["32,01,2026", "12,13,2026", "12,02,26", "12,02,-001"])
def test_zda_with_an_impossible_date_keeps_its_time_and_counts_the_date(fields: str) -> None:
    s = parse_sentence(nmea(f"GPZDA,201530.00,{fields},00,00").strip())
    assert s is not None and s.time_us is not None and s.day is None and s.bad == 1


def test_gga_of_14_fields_without_station_is_read() -> None:
    s = parse_sentence(nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,").strip())
    assert s is not None and (s.quality, s.satellites, s.hdop, s.alt, s.bad) == (
        1,
        8,
        0.9,
        545.4,
        0,
    )


def test_gga_of_13_fields_without_age_and_station_is_read() -> None:
    # the textbook variant: $GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M*47
    line = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M*47"
    s = parse_sentence(line)
    assert s is not None and (s.quality, s.satellites, s.alt) == (1, 8, 545.4)


def test_99_99_is_no_dop() -> None:
    s = parse_sentence(nmea("GPGGA,030743.57,,,,,0,00,99.99,,,,,,").strip())
    assert s is not None and s.hdop is None and s.quality == 0 and s.bad == 0


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
        "GPHDT,74.20,T",
        "GPGST,195959.00,0.30,0.36,0.26,283.74,0.26,0.36,0.68",
    ],
)
def test_other_sentence_types_are_skipped_without_counting(body: str) -> None:
    fixes, counts = decode(nmea(body))
    assert fixes == [] and not counts


# One bad field does not drop the sentence: it is left out, counted, the rest is kept.
GOOD = "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,120226,,,A"


@pytest.mark.parametrize(
    ("body", "lost"),
    [
        (GOOD.replace("022.4", "nan"), "speed"),
        (GOOD.replace("022.4", "1e3"), "speed"),
        (GOOD.replace("022.4", "-1.0"), "speed"),
        (GOOD.replace("084.4", "400.0"), "course"),
        (GOOD.replace("120226", "320126"), "day"),
        (GOOD.replace("120226", "2208-1"), "day"),  # Telit HE910 after the 2019 rollover
        (GOOD.replace("120226", "1202"), "day"),
    ],
)
def test_a_bad_field_is_left_out_and_the_rest_of_the_sentence_kept(body: str, lost: str) -> None:
    s = parse_sentence(nmea(body).strip())
    assert s is not None and s.bad == 1 and getattr(s, lost) is None
    assert s.lat == pytest.approx(48 + 7.038 / 60, abs=1e-9) and s.quality == 1
    assert s.time_us == ((12 * 60 + 35) * 60 + 19) * 1_000_000


@pytest.mark.parametrize(
    "position",
    ["4860.000,N,01131.000,E", "9107.038,N,01131.000,E", "4807.038,X,01131.000,E", "4807.038,N,,"],
)
def test_a_bad_coordinate_loses_the_position_not_the_rest(position: str) -> None:
    s = parse_sentence(nmea(GOOD.replace("4807.038,N,01131.000,E", position)).strip())
    assert s is not None and s.bad == 1 and (s.lat, s.lon) == (None, None)
    assert s.day == date(2026, 2, 12) and s.speed is not None


def test_a_garbled_status_makes_the_fix_status_unknown() -> None:
    s = parse_sentence(nmea(GOOD.replace(",A,4807", ",Q,4807")).strip())
    assert s is not None and s.bad == 1 and s.quality is None and s.lat is not None


@pytest.mark.parametrize(
    ("body", "lost"),
    [
        ("GPGGA,123519,4807.038,N,01131.000,E,1,1_0,0.9,545.4,M,46.9,M,,", "satellites"),
        ("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,inf,M,46.9,M,,", "alt"),
        ("GPGGA,123519,4807.038,N,01131.000,E,Z,08,0.9,545.4,M,46.9,M,,", "quality"),
        ("GPGSA,A,7,04,05,,09,12,,,24,,,,,2.5,1.3,2.1", "mode"),
    ],
)
def test_bad_fields_of_gga_and_gsa_are_left_out_alone(body: str, lost: str) -> None:
    s = parse_sentence(nmea(body).strip())
    assert s is not None and s.bad == 1 and getattr(s, lost) is None


def test_a_leap_second_is_the_86400th_second_of_its_day() -> None:
    s = parse_sentence(nmea("GPGGA,235960.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,").strip())
    assert s is not None and s.time_us == 86_400_500_000


@pytest.mark.parametrize(
    "body",
    [
        "GPRMC,256199,A,4807.038,N,01131.000,E,1.0,084.4,120226,,",  # the time places it
        "GPRMC,123560,A,4807.038,N,01131.000,E,1.0,084.4,120226,,",  # 60 s only at 23:59
        "GPGGA,000060.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPRMC,12:35:19,A,4807.038,N,01131.000,E,1.0,084.4,120226,,",
        "GPRMC,123519",  # shorter than any RMC
        "GPGGA,123519,4807.038,N",
        "GPGLL,4916.45,N,12311.12,W",  # NMEA 1.x GLL without time: cannot be placed
        "GPZDA,201530.00,04",
    ],
)
def test_a_sentence_without_a_usable_time_or_too_short_is_dropped_as_malformed(body: str) -> None:
    fixes, counts = decode(nmea(body))
    assert fixes == [] and counts == {"malformed": 1}


def test_malformed_sentence_raises_bad_sentence_with_its_key() -> None:
    with pytest.raises(BadSentence) as info:
        parse_sentence(nmea("GPGGA,123519,4807.038,N").strip())
    assert info.value.key == "malformed"

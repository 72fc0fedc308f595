"""Sentences to one Fix per receiver epoch: grouping by time and by quiet, merging fields."""

from collections import Counter
from datetime import UTC, datetime

import pytest

from core.events import Fix, FixMode
from drivers.gps.decoder import NmeaDecoder
from drivers.gps.epochs import (
    MAX_EPOCH_SENTENCES,
    QUIET_DEFAULT_S,
    QUIET_MAX_S,
    QUIET_MIN_S,
    EpochMerger,
)
from tests.drivers.gps.fakes import nmea, recording

NOW = datetime(2026, 2, 12, 12, 0, tzinfo=UTC)
KN = 1852 / 3600


def decoder() -> tuple[NmeaDecoder, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    return NmeaDecoder(count=count, now=lambda: NOW), counts


def decode(*bodies: str) -> list[Fix]:
    """All sentences in one read (no timing), then the end of the log."""
    d, _ = decoder()
    fixes = d.feed(b"".join(nmea(b) for b in bodies), 0.0)
    if (last := d.flush()) is not None:
        fixes.append(last)
    return fixes


def one(*bodies: str) -> Fix:
    (fix,) = decode(*bodies)
    return fix


def bursts(*groups: list[str], every: float = 1.0) -> tuple[list[Fix], Counter[str]]:
    """Each group a burst arriving `every` seconds after the one before, then quiet."""
    d, counts = decoder()
    fixes: list[Fix] = []
    at = 100.0
    for group in groups:
        fixes += d.poll(at)
        fixes += d.feed(b"".join(nmea(b) for b in group), at)
        at += every
    fixes += d.poll(at + every)
    return fixes, counts


def ublox(t: str, *, rmc: str = "A", q: int = 1, gsa: int = 3) -> list[str]:
    """RMC, VTG, GGA, GSA of one epoch at time `t`, as a u-blox sends them."""
    return [
        f"GNRMC,{t},{rmc},4553.00000,N,00210.46400,E,10.000,12.50,120226,,,A",
        "GNVTG,12.50,T,,M,10.000,N,18.520,K,A",
        f"GNGGA,{t},4553.00000,N,00210.46400,E,{q},09,1.10,452.0,M,49.2,M,,",
        f"GNGSA,A,{gsa},02,05,12,13,15,18,20,24,25,,,,1.9,1.1,1.5",
    ]


# -- one epoch, one Fix -------------------------------------------------------------------


def test_sentences_of_one_epoch_merge_into_one_fix() -> None:
    assert decode(*ublox("081500.00")) == [
        Fix(
            fix_time=datetime(2026, 2, 12, 8, 15, tzinfo=UTC),
            lat=45 + 53.0 / 60,
            lon=2 + 10.464 / 60,
            alt=452.0,
            speed=10.0 * KN,
            course=12.5,
            mode=FixMode.THREE_D,
            quality=1,
            satellites=9,
            hdop=1.1,
        )
    ]


def test_gga_of_two_talkers_with_one_time_is_one_fix_with_the_totals_of_the_first() -> None:
    fixes = decode(
        "GPGGA,091500.00,4545.12345,N,00450.54321,E,1,14,0.8,171.2,M,49.5,M,,",
        "GLGGA,091500.00,4545.12345,N,00450.54321,E,1,02,2.9,,M,,M,,",
        "GPRMC,091500.00,A,4545.12345,N,00450.54321,E,12.1,087.3,120226,,,A",
        "GARMC,091500.00,A,4545.12345,N,00450.54321,E,12.1,087.3,120226,,,A",
    )
    assert len(fixes) == 1
    assert (fixes[0].satellites, fixes[0].alt, fixes[0].hdop) == (14, 171.2, 0.8)


def test_a_sentence_type_repeated_with_the_same_time_does_not_close_the_epoch() -> None:
    line = "GPRMC,091500.00,A,4545.12345,N,00450.54321,E,12.1,087.3,120226,,,A"
    assert len(decode(line, line, line)) == 1


def test_a_void_sentence_of_one_constellation_does_not_void_the_gn_fix() -> None:
    fix = one(
        "GNRMC,091500.00,A,4545.12345,N,00450.54321,E,12.1,087.3,120226,,,A",
        "GARMC,091500.00,V,,,,,,,120226,,,N",
    )
    assert fix.valid


def test_without_a_gn_sentence_one_valid_constellation_is_a_fix() -> None:
    fix = one(
        "GARMC,091500.00,V,,,,,,,120226,,,N",
        "GPRMC,091500.00,A,4545.12345,N,00450.54321,E,12.1,087.3,120226,,,A",
    )
    assert fix.valid and fix.lat == pytest.approx(45 + 45.12345 / 60, abs=1e-12)


def test_per_constellation_gns_without_position_leave_the_gn_one_in_charge() -> None:
    fix = one(
        "GNGNS,122310.2,3722.425671,N,12258.856215,W,DAAA,14,0.9,1005.543,6.5,,,V",
        "GPGNS,122310.2,,,,,,07,,,,5.2,23,V",
        "GLGNS,122310.2,,,,,,04,,,,5.2,23,V",
    )
    assert (fix.valid, fix.quality, fix.satellites, fix.alt) == (True, 2, 14, 1005.543)


# -- where an epoch ends --------------------------------------------------------------------


def test_the_next_epoch_time_ends_the_open_epoch() -> None:
    d, _ = decoder()
    assert d.feed(b"".join(nmea(b) for b in ublox("081500.00")), 0.0) == []
    (fix,) = d.feed(b"".join(nmea(b) for b in ublox("081501.00")), 0.0)
    assert fix.fix_time.second == 0


def test_a_quiet_receiver_has_its_last_epoch_emitted_after_the_quiet_time() -> None:
    d, _ = decoder()
    d.feed(b"".join(nmea(b) for b in ublox("081500.00")), 10.0)
    assert d.deadline() == pytest.approx(10.0 + QUIET_DEFAULT_S)
    assert d.poll(10.0 + QUIET_DEFAULT_S / 2) == []
    (fix,) = d.poll(10.0 + QUIET_DEFAULT_S)
    assert fix.fix_time.second == 0 and d.deadline() is None and d.flush() is None


def test_quiet_time_is_a_quarter_of_the_receivers_period_within_bounds() -> None:
    one_hz, _ = bursts(*(ublox(f"08150{i}.00") for i in range(5)), every=1.0)
    ten_hz = NmeaDecoder()
    slow = NmeaDecoder()
    for i in range(6):
        ten_hz.feed(b"".join(nmea(b) for b in ublox(f"081500.{i}0")), i * 0.1)
        slow.feed(b"".join(nmea(b) for b in ublox(f"08150{i}.00")), i * 5.0)
    assert len(one_hz) == 5
    assert ten_hz.merger.quiet == pytest.approx(max(QUIET_MIN_S, 0.025))
    assert slow.merger.quiet == QUIET_MAX_S


def test_epochs_read_together_are_told_apart_by_time_alone() -> None:
    fixes = decode(*ublox("081500.00"), *ublox("081501.00"), *ublox("081502.00"))
    assert [f.fix_time.second for f in fixes] == [0, 1, 2]


def magellan(gll: str, t: str, lat: str = "5313.2228") -> list[str]:
    """GLL with the time in ms, then GGA and RMC with it in hundredths: a Magellan
    eXplorist 210 (gpsd's test/daemon/eXplorist210.log)."""
    return [
        f"GPGLL,{lat},N,00634.4228,E,{gll},A",
        f"GPGGA,{t},{lat},N,00634.4228,E,1,05,2.6,00000,M,,,,",
        f"GPRMC,{t},A,{lat},N,00634.4228,E,00.0,000.0,200519,00,W",
        "GPGSA,A,3,26,05,22,09,18,,,,,,,,05.1,02.6,04.4",
    ]


def test_times_of_one_instant_sent_to_different_precisions_are_one_epoch() -> None:
    fixes, counts = bursts(
        magellan("200619.295", "200619.30"),
        magellan("200620.303", "200620.30"),
        magellan("200621.297", "200621.30", lat="5313.2227"),
        magellan("200622.305", "200622.31", lat="5313.2227"),
    )
    assert [(f.fix_time.second, f.fix_time.microsecond) for f in fixes] == [
        (19, 300_000),
        (20, 300_000),
        (21, 300_000),
        (22, 310_000),
    ]
    assert all(f.mode is FixMode.THREE_D and f.date_known for f in fixes)
    assert "late" not in counts


def test_times_of_one_precision_a_hundredth_apart_are_two_epochs() -> None:
    fixes = decode(*ublox("081500.10"), *ublox("081500.11"))
    assert [f.fix_time.microsecond for f in fixes] == [100_000, 110_000]


def test_a_late_sentence_of_an_emitted_epoch_at_a_finer_precision_is_late() -> None:
    fixes, counts = bursts(
        magellan("200619.295", "200619.30"),
        ["GPGLL,5313.2228,N,00634.4228,E,200619.301,A"],  # after the quiet: late
    )
    assert len(fixes) == 1 and counts == {"late": 1}


def ten_hz(rmc: str, gga: str) -> list[str]:
    """RMC and GGA of one epoch of a 10 Hz receiver, each with its time as given."""
    return [
        f"GNRMC,{rmc},A,4553.00000,N,00210.46400,E,10.000,12.50,120226,,,A",
        f"GNGGA,{gga},4553.00000,N,00210.46400,E,1,09,1.10,452.0,M,49.2,M,,",
    ]


def tenths(n: int) -> list[str]:
    """The times of `n` 10 Hz epochs from 12:35:19.00, in hundredths."""
    return [f"1235{19 + i // 10:02d}.{i % 10}0" for i in range(n)]


def test_sub_second_epochs_are_kept_when_another_sentence_gives_whole_seconds() -> None:
    # RMC "123519" (whole seconds) in each of the ten epochs of 12:35:19, GGA to 0.01 s:
    # "123519.10" rounds to "123519", yet it is the next epoch, not the emitted one's
    fixes, _ = bursts(*(ten_hz(t[:6], t) for t in tenths(12)), every=0.1)
    times = {f.fix_time.strftime("%H%M%S.%f")[:9] for f in fixes}
    assert times >= set(tenths(12))


def test_a_whole_second_epoch_keeps_its_sentence_sent_in_whole_seconds() -> None:
    # GGA "123520" is 12:35:20.00's (equal), not late for rounding to 12:35:19.60's time
    fixes, _ = bursts(*(ten_hz(t, t[:6]) for t in tenths(12)), every=0.1)
    (whole,) = [f for f in fixes if f.fix_time.second == 20 and f.fix_time.microsecond == 0]
    assert whole.mode is FixMode.THREE_D and whole.alt == 452.0


@pytest.mark.parametrize("whole", ["RMC", "GGA"])
def test_a_sentence_in_whole_seconds_of_a_10hz_receiver_never_dates_a_position_back(
    whole: str,
) -> None:
    # "123519" comes in each of the ten epochs of 12:35:19: once 123519.00 is no longer
    # among the epochs remembered, it must not make a position 0.5 s back in time
    fixes, _ = bursts(
        *(ten_hz(t[:6], t) if whole == "RMC" else ten_hz(t, t[:6]) for t in tenths(12)),
        every=0.1,
    )
    times = [f.fix_time.strftime("%H%M%S.%f")[:9] for f in fixes]
    assert times == tenths(12)


def test_times_of_one_instant_on_either_side_of_midnight_are_one_epoch() -> None:
    # the GLL's 23:59:59.995 rounds to the RMC's 00:00:00.00 of the next day
    fixes, counts = bursts(
        magellan("235958.995", "235959.00"),
        [
            "GPGLL,5313.2228,N,00634.4228,E,235959.995,A",
            "GPGGA,000000.00,5313.2228,N,00634.4228,E,1,05,2.6,00000,M,,,,",
            "GPRMC,000000.00,A,5313.2228,N,00634.4228,E,00.0,000.0,210519,00,W",
        ],
    )
    assert [f.fix_time for f in fixes] == [
        datetime(2019, 5, 20, 23, 59, 59, tzinfo=UTC),
        datetime(2019, 5, 21, tzinfo=UTC),
    ]
    assert all(f.mode is FixMode.THREE_D for f in fixes) and "late" not in counts


def test_a_zda_of_the_day_before_midnight_dates_the_epoch_after_it_a_day_on() -> None:
    # the ZDA's 23:59:59.995 of the 20th is the RMC's 00:00:00.00 of the 21st
    def burst(zda: str, day: int, t: str, ddmmyy: str) -> list[str]:
        return [
            f"GPZDA,{zda},{day},05,2019,00,00",
            f"GPGGA,{t},5313.2228,N,00634.4228,E,1,05,2.6,00000,M,,,,",
            f"GPRMC,{t},A,5313.2228,N,00634.4228,E,00.0,000.0,{ddmmyy},00,W",
        ]

    fixes, _ = bursts(
        burst("235958.995", 20, "235959.00", "200519"),
        burst("235959.995", 20, "000000.00", "210519"),
    )
    assert [f.fix_time for f in fixes] == [
        datetime(2019, 5, 20, 23, 59, 59, tzinfo=UTC),
        datetime(2019, 5, 21, tzinfo=UTC),
    ]


def test_gsa_sandwiched_between_sentences_of_one_time_belongs_to_that_epoch() -> None:
    fixes = decode(
        "GNRMC,081500.00,A,4553.0,N,00210.4,E,1.0,12.5,120226,,,A",
        "GNGSA,A,2,02,05,12,,,,,,,,,,1.9,1.2,1.5",
        "GNGLL,4553.0,N,00210.4,E,081500.00,A,A",
        "GNRMC,081501.00,A,4553.0,N,00210.4,E,1.0,12.5,120226,,,A",
        "GNGSA,A,3,02,05,12,13,,,,,,,,,1.9,1.2,1.5",
        "GNGLL,4553.0,N,00210.4,E,081501.00,A,A",
    )
    assert [(f.satellites, f.mode) for f in fixes] == [(3, FixMode.TWO_D), (4, FixMode.TWO_D)]


def test_gsa_after_the_timed_sentences_ends_their_epoch_by_default() -> None:
    fixes = decode(
        "GPGGA,081500,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,",
        "GPGSA,A,2,02,05,12,,,,,,,,,,1.9,1.2,1.5",
        "GPGGA,081501,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,",
        "GPGSA,A,3,02,05,12,13,15,,,,,,,,1.9,1.2,1.5",
    )
    assert [f.mode for f in fixes] == [FixMode.TWO_D, FixMode.THREE_D]


GSA_FIRST = [
    ["GPGSA,M,3,17,02,30,04,05,10,09,06,31,,,,1.9,1.0,1.6", "GPGGA,141501.00,5106.97920,N,11402.30030,W,1,09,1.0,1048.47,M,-16.27,M,,"],
    ["GPGSA,M,2,17,02,30,,,,,,,,,,1.9,4.8,1.6", "GPGGA,141502.00,5106.97931,N,11402.30017,W,1,03,4.8,1048.52,M,-16.27,M,,"],
    ["GPGSA,M,3,17,02,30,04,05,10,09,06,,,,,1.9,1.1,1.6", "GPGSA,M,3,65,66,,,,,,,,,,,1.9,1.1,1.6", "GPGGA,141503.00,5106.97938,N,11402.30009,W,1,10,1.1,1048.60,M,-16.27,M,,"],
]  # fmt: skip


def test_gsa_that_opens_a_burst_belongs_to_the_epoch_after_it() -> None:
    fixes, _ = bursts(*GSA_FIRST)
    assert [(f.mode, f.satellites) for f in fixes] == [
        (FixMode.THREE_D, 9),
        (FixMode.TWO_D, 3),
        (FixMode.THREE_D, 10),
    ]


def test_once_bursts_are_seen_to_open_with_gsa_they_are_split_there_even_read_together() -> None:
    d, _ = decoder()
    fixes = d.feed(b"".join(nmea(b) for b in GSA_FIRST[0]), 0.0)
    fixes += d.poll(1.0)  # one quiet spell: the receiver's bursts open with GSA
    fixes += d.feed(b"".join(nmea(b) for group in GSA_FIRST[1:] for b in group), 2.0)
    fixes += [f for f in [d.flush()] if f is not None]
    assert [(f.mode, f.satellites) for f in fixes] == [
        (FixMode.THREE_D, 9),
        (FixMode.TWO_D, 3),
        (FixMode.THREE_D, 10),
    ]


def test_a_sentence_of_an_emitted_epoch_is_late_dropped_and_counted() -> None:
    fixes, counts = bursts(
        [*ublox("081500.00"), "GNGLL,4553.00000,N,00210.46400,E,081500.00,A,A"],
        ["GNGLL,4553.00000,N,00210.46400,E,081500.00,A,A"],  # after the quiet: late
    )
    assert len(fixes) == 1 and counts == {"late": 1}


def test_a_time_that_stands_still_while_the_receiver_talks_on_is_one_fix_then_late() -> None:
    """A receiver whose time is stuck, talking without a pause (or its line looped back):
    the epoch is emitted once full, not grown for as long as it talks."""
    d, counts = decoder()
    gga = nmea("GNGGA,081500.00,4553.00000,N,00210.46400,E,1,09,1.10,452.0,M,49.2,M,,")
    fixes: list[Fix] = []
    for i in range(10_000):
        fixes += d.feed(gga, i * 0.02)  # far inside the quiet time
    assert len(fixes) == 1
    assert counts["overlong_epoch"] == 1
    assert counts["late"] == 10_000 - MAX_EPOCH_SENTENCES


def test_untimed_sentences_that_never_end_their_epoch_are_not_kept_without_end() -> None:
    d, counts = decoder()
    fixes = d.feed(nmea(ublox("081500.00")[2]), 0.0)  # a GGA, then only VTGs, no pause
    vtg = nmea("GNVTG,12.50,T,,M,10.000,N,18.520,K,A")
    for i in range(1, 10_000):
        fixes += d.feed(vtg, i * 0.02)
    assert len(fixes) == 1
    assert counts["overlong_epoch"] == 1


def test_a_pause_inside_a_burst_makes_no_second_fix_nor_lends_its_gsa_to_the_next() -> None:
    d, counts = decoder()
    fixes = d.feed(b"".join(nmea(b) for b in ublox("081500.00")[:3]), 0.0)  # RMC VTG GGA
    fixes += d.poll(1.0)  # the reader stalls: the epoch is emitted without its GSA
    fixes += d.feed(
        nmea("GNGSA,A,3,01,03,04,06,07,08,10,11,14,16,17,19,1.9,1.1,1.5")  # its own GSA…
        + nmea("GNGLL,4553.00000,N,00210.46400,E,081500.00,A,A"),  # …and GLL: late
        1.0,
    )
    fixes += d.feed(b"".join(nmea(b) for b in ublox("081501.00")), 2.0)
    fixes += d.poll(10.0)
    assert [f.fix_time.second for f in fixes] == [0, 1]
    assert fixes[1].mode is FixMode.THREE_D and fixes[1].satellites == 9
    assert counts["late"] == 1
    assert d.merger.quiet == QUIET_MAX_S  # it waits longer: a 1 s pause was inside a burst


def test_a_sentence_repeated_after_the_quiet_is_no_pause_inside_a_burst() -> None:
    # a 10 Hz receiver sending RMC in whole seconds repeats "123519" at the start of each
    # burst of that second: late, but no sign that the quiet spell before it was a stalled
    # reader (the epoch it is late for has its RMC already)
    d, _ = decoder()
    fixes: list[Fix] = []
    for i, t in enumerate(tenths(30)):
        fixes += d.poll(100.0 + i * 0.1)
        fixes += d.feed(b"".join(nmea(b) for b in ten_hz(t[:6], t)), 100.0 + i * 0.1)
    assert len(fixes) == 29
    assert d.merger.quiet == QUIET_MIN_S  # a quarter of its 0.1 s period, within bounds


def ubx(cls: int, msg: int, payload: bytes) -> bytes:
    """A UBX frame (u-blox binary protocol) with its Fletcher checksum."""
    body = bytes([cls, msg]) + len(payload).to_bytes(2, "little") + payload
    a = b = 0
    for x in body:
        a = (a + x) & 0xFF
        b = (b + a) & 0xFF
    return b"\xb5\x62" + body + bytes([a, b])


def dribble(d: NmeaDecoder, data: bytes, at: float, size: int, every: float) -> list[Fix]:
    """`data` in reads of `size` bytes `every` s from `at`, the driver's quiet timer between."""
    fixes: list[Fix] = []
    for i in range(0, len(data), size):
        at += every
        fixes += d.poll(at)
        fixes += d.feed(data[i : i + size], at)
    return fixes


def test_a_binary_message_between_the_sentences_of_an_epoch_does_not_split_it() -> None:
    nav_sat = ubx(0x01, 0x35, bytes(8 + 12 * 32))  # UBX-NAV-SAT, 32 satellites: 400 bytes
    gga, gsa, rmc, zda = recording("gpsd-mt3339")[0].splitlines(keepends=True)
    d, _ = decoder()
    fixes = d.feed(gga + gsa, 100.0)
    fixes += dribble(d, nav_sat, 100.0, 20, 0.02)  # 9600 baud: 20 bytes a 20 ms read
    fixes += d.poll(100.42) + d.feed(rmc + zda, 100.42) + d.poll(1e9)
    assert len(fixes) == 1 and fixes[0].speed == pytest.approx(0.03 * KN)


def test_a_sentence_arriving_slower_than_the_quiet_time_does_not_split_its_epoch() -> None:
    d, counts = decoder()
    rmc, _, gga, _ = (nmea(b) for b in ublox("081500.00"))
    fixes = d.feed(rmc, 100.0)
    assert len(gga) > 10 * QUIET_DEFAULT_S / 0.021  # longer on the wire than the quiet time
    fixes += dribble(d, gga, 100.0, 10, 0.021) + d.poll(1e9)  # 4800 baud: 10 bytes in 21 ms
    assert len(fixes) == 1 and fixes[0].alt == 452.0
    assert not counts


def test_bytes_after_a_quiet_spell_still_end_the_epoch_before_them() -> None:
    d, _ = decoder()
    assert d.feed(b"".join(nmea(b) for b in ublox("081500.00")), 100.0) == []
    (fix,) = d.feed(ubx(0x01, 0x07, bytes(92)), 101.0)  # UBX-NAV-PVT of the next epoch
    assert fix.fix_time.second == 0


def test_cold_start_epochs_without_time_are_told_apart_by_repeated_types() -> None:
    no_time = ["GPRMC,,V,,,,,,,,,,N", "GPGGA,,,,,,0,00,99.99,,,,,,"]
    fixes = decode(*no_time, *no_time, *no_time)
    assert len(fixes) == 3 and not any(f.valid for f in fixes)


def test_untimed_sentences_alone_never_make_a_fix() -> None:
    d, _ = decoder()
    assert d.feed(nmea("GPGSA,A,3,02,05,12,,,,,,,,,,1.9,1.2,1.5"), 0.0) == []
    assert d.poll(100.0) == [] and d.deadline() is None and d.flush() is None


def test_an_epoch_with_only_a_zda_makes_no_fix() -> None:
    assert decode("GPZDA,201530.00,04,07,2026,00,00") == []


def test_a_fix_carries_the_arrival_of_its_first_sentence() -> None:
    d, _ = decoder()
    d.feed(nmea(ublox("081500.00")[0]), 5.0)
    d.feed(b"".join(nmea(b) for b in ublox("081500.00")[1:]), 5.1)
    (fix,) = d.poll(50.0)
    assert fix.received == 5.0


def test_merger_emits_nothing_before_a_sentence() -> None:
    assert EpochMerger().flush() is None


# -- what the epoch says --------------------------------------------------------------------


@pytest.mark.parametrize(
    "void",
    [{"rmc": "V"}, {"q": 0}, {"gsa": 1}],
    ids=["rmc-status-V", "gga-quality-0", "gsa-mode-1"],
)
def test_a_void_sentence_makes_the_epoch_a_void_fix_without_position(
    void: dict[str, object],
) -> None:
    fix = one(*ublox("081500.00", **void))  # type: ignore[arg-type]
    assert not fix.valid
    assert (fix.mode, fix.quality, fix.lat, fix.lon, fix.speed) == (FixMode.NONE, 0, 0.0, 0.0, None)


def test_rmc_mode_n_makes_a_void_fix() -> None:
    assert not one("GPRMC,081500,A,4553.0,N,00210.4,E,0.0,,120226,,,N").valid


def test_rmc_navigational_status_unsafe_makes_a_void_fix() -> None:
    """NMEA 4.10 RMC field 13: U, the receiver's integrity monitoring (RAIM) says the error
    may exceed its alarm limit: the position is not to be used, whatever the GGA says."""
    fix = one(
        "GNRMC,081500.00,A,4553.00000,N,00210.46400,E,10.000,12.50,120226,,,A,U",
        "GNGGA,081500.00,4553.00000,N,00210.46400,E,1,09,1.10,452.0,M,49.2,M,,",
    )
    assert not fix.valid and (fix.lat, fix.lon) == (0.0, 0.0)


def test_gns_navigational_status_unsafe_makes_a_void_fix() -> None:
    fix = one("GNGNS,081500.00,4553.00000,N,00210.46400,E,AA,12,0.8,452.0,49.2,,,U")
    assert not fix.valid


@pytest.mark.parametrize("status", ["S", "C", "V", ""])
def test_navigational_status_safe_caution_or_not_given_keeps_the_fix(status: str) -> None:
    """C: integrity not verifiable (too few satellites for RAIM) is no alarm; V: "the
    equipment gives no navigational status", what u-blox sends with every valid fix."""
    fix = one(
        f"GNRMC,081500.00,A,4553.00000,N,00210.46400,E,10.000,12.50,120226,,,A,{status}",
        f"GNGNS,081500.00,4553.00000,N,00210.46400,E,AA,12,0.8,452.0,49.2,,,{status}",
    )
    assert fix.valid and fix.quality == 1


def test_a_dead_reckoning_epoch_is_a_fix_of_quality_6() -> None:
    """u-blox ADR/UDR without satellites: RMC A with mode E, GGA quality 6."""
    fix = one(
        "GNRMC,081500.00,A,4553.00000,N,00210.46400,E,10.000,12.50,120226,,,E,V",
        "GNGGA,081500.00,4553.00000,N,00210.46400,E,6,00,99.99,452.0,M,49.2,M,,",
    )
    assert fix.valid and fix.quality == 6


def test_a_dead_reckoning_fix_out_of_the_receivers_limits_is_void() -> None:
    """u-blox "dead reckoning fix, but user limits exceeded": RMC V, GGA 6, mode E."""
    fix = one(
        "GNRMC,081500.00,V,4553.00000,N,00210.46400,E,10.000,12.50,120226,,,E,V",
        "GNGGA,081500.00,4553.00000,N,00210.46400,E,6,00,99.99,452.0,M,49.2,M,,",
    )
    assert not fix.valid


def test_an_epoch_whose_statuses_are_all_unknown_is_void() -> None:
    fix = one("GPRMC,081500,Q,4553.0,N,00210.4,E,0.0,,120226,,")
    assert not fix.valid


def test_a_garbled_rmc_status_leaves_the_fix_to_the_gga() -> None:
    fix = one(
        "GPRMC,081500,Q,4553.0,N,00210.4,E,2.0,45.0,120226,,",
        "GPGGA,081500,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,",
    )
    assert fix.valid and fix.alt == 450


def test_position_comes_from_the_valid_rmc_when_gga_differs() -> None:
    fix = one(
        "GNRMC,010557.000,A,2232.4690,N,11404.6751,E,0.00,125.29,120426,,,D,V",
        "GNGGA,010557.00,2232.46829,N,11404.67483,E,2,18,0.7,42.4,M,-2.4,M,2.0,0000",
    )
    assert fix.lat == 22 + 32.4690 / 60 and fix.lon == 114 + 4.6751 / 60
    assert fix.alt == 42.4  # the other fields still come from GGA


def test_gga_digits_refine_the_rmc_position_they_round_to() -> None:
    fix = one(
        "GNRMC,010555.000,A,2232.4682,N,11404.6748,E,0.00,125.29,120426,,,D,V",
        "GNGGA,010555.00,2232.46823,N,11404.67478,E,2,18,0.7,42.3,M,-2.4,M,1.0,0000",
    )
    assert fix.lat == 22 + 32.46823 / 60 and fix.lon == 114 + 4.67478 / 60


def test_without_a_valid_rmc_the_position_comes_from_gga_then_gll() -> None:
    gga = one(
        "GPGGA,081500,4553.123,N,00210.456,E,1,05,1.5,450,M,49.2,M,,",
        "GPGLL,4553.999,N,00210.999,E,081500,A,A",
    )
    gll = one("GPGLL,4553.999,N,00210.999,E,081500,A,A")
    assert gga.lat == 45 + 53.123 / 60 and gll.lat == 45 + 53.999 / 60


def test_satellites_of_a_capped_gga_give_way_to_the_gsa_lists() -> None:
    fix = one(
        "GNGGA,083559.00,4717.11437,N,00833.91522,E,1,12,1.01,499.6,M,48.0,M,,",
        "GNGSA,A,3,23,29,07,08,09,18,26,28,10,16,,,1.94,1.01,1.54",
        "GNGSA,A,3,65,71,72,88,,,,,,,,,1.94,1.01,1.54",
    )
    assert fix.satellites == 14


def test_per_constellation_gga_counts_add_up_when_the_gsas_list_more() -> None:
    fix = one(
        "GPGGA,184051.000,3722.5431,N,12200.6718,W,1,09,0.9,12.3,M,-28.9,M,,",
        "GLGGA,184051.000,3722.5431,N,12200.6718,W,1,05,0.9,12.3,M,-28.9,M,,",
        "GPGSA,A,3,02,05,12,15,18,21,24,25,29,67,68,76,1.6,0.9,1.3",
        "GLGSA,A,3,02,05,12,15,18,21,24,25,29,67,68,76,1.6,0.9,1.3",
    )
    assert fix.satellites == 14


def test_a_gga_total_above_the_gsa_lists_stands() -> None:
    fix = one(
        "GNGGA,104530.00,5114.50897,N,00012.28663,W,4,24,0.56,111.1,M,45.6,M,1.0,0000",
        "GNGSA,A,3,13,16,21,15,10,29,27,20,,,,,1.05,0.56,0.83,1",
        "GNGSA,A,3,13,12,22,19,08,21,,,,,,,1.05,0.56,0.83,4",
    )
    assert fix.satellites == 24


def test_lists_of_one_constellation_merge_as_a_set() -> None:
    fix = one(
        "GPGGA,081500,4553.0,N,00210.4,E,1,03,1.5,450,M,49.2,M,,",
        "GPGSA,A,3,01,02,03,,,,,,,,,,1.9,1.2,1.5",
        "GPGSA,A,3,02,03,04,,,,,,,,,,1.9,1.2,1.5",  # sent twice, one satellite apart
        "GPRMC,081500,A,4553.0,N,00210.4,E,1.0,12.5,120226,,,A",
    )
    assert fix.satellites == 4


def test_nmea_410_lists_of_two_systems_add_up_even_with_the_same_numbers() -> None:
    fix = one(
        "GNRMC,081500,A,4553.0,N,00210.4,E,1.0,12.5,120226,,,A",
        "GNGSA,A,3,01,02,03,,,,,,,,,,1.9,1.2,1.5,1",  # GPS 1, 2, 3
        "GNGSA,A,3,01,02,03,,,,,,,,,,1.9,1.2,1.5,3",  # Galileo 1, 2, 3
    )
    assert fix.satellites == 6


def test_a_gsa_continuing_a_full_list_of_its_constellation_stays_in_its_epoch() -> None:
    fixes = decode(
        "GNGGA,081500,4553.0,N,00210.4,E,1,12,0.6,450,M,49.2,M,,",
        "GNGSA,A,3,01,02,03,04,05,06,07,08,09,10,11,12,1.0,0.6,0.8,1",
        "GNGSA,A,3,13,14,15,,,,,,,,,,1.0,0.6,0.8,1",  # GPS satellites 13 to 15
        "GNGGA,081501,4553.0,N,00210.4,E,1,12,0.6,450,M,49.2,M,,",
        "GNGSA,A,3,01,02,03,04,05,06,07,08,09,10,11,12,1.0,0.6,0.8,1",
        "GNGSA,A,3,13,14,,,,,,,,,,,1.0,0.6,0.8,1",
    )
    assert [f.satellites for f in fixes] == [15, 14]


def test_a_lost_gga_does_not_lend_the_next_epochs_gsa_to_the_one_before() -> None:
    first, second = recording("gpsd-mt3339")[:2]
    garbled = second.replace(b"1127.7", b"1127.8", 1)  # its GGA: a bad checksum
    d, counts = decoder()
    fixes = d.feed(first + garbled, 0.0)  # both bursts in one read (4800 baud, busy Pi)
    fixes += [f for f in [d.flush()] if f is not None]
    assert [f.satellites for f in fixes] == [10, 11]
    assert [f.fix_time.second for f in fixes] == [40, 41] and counts["bad_checksum"] == 1


def test_a_second_vtg_of_one_talker_is_the_next_epochs() -> None:
    first, second = ublox("081500.00"), ublox("081501.00")
    second[1] = "GNVTG,12.50,T,,M,20.000,N,37.040,K,A"
    fixes = decode(*first, *second[1:])  # the second epoch's RMC was lost
    assert [f.speed for f in fixes] == [pytest.approx(10 * KN), pytest.approx(20 * KN)]


def test_a_gsa_opening_a_burst_whose_timed_sentences_were_lost_is_dropped() -> None:
    fixes = decode(
        GSA_FIRST[0][0],  # its GGA lost: nothing places this list
        *GSA_FIRST[1],
    )
    assert [(f.mode, f.satellites) for f in fixes] == [(FixMode.TWO_D, 3)]


def test_a_gsa_after_the_last_epoch_that_repeats_its_constellation_is_not_merged() -> None:
    fix = one(
        "GPGGA,081500,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,",
        "GPGSA,A,3,02,05,12,15,18,,,,,,,,1.9,1.2,1.5",
        "GPGSA,A,3,02,05,12,15,18,21,,,,,,,1.9,1.2,1.5",  # the next epoch's, its GGA lost
    )
    assert fix.satellites == 5


def test_without_gga_the_satellites_and_hdop_come_from_the_gsas() -> None:
    fix = one(
        "GNRMC,081500,A,4553.0,N,00210.4,E,1.0,12.5,120226,,,A",
        "GNGSA,A,3,02,05,12,,,,,,,,,,1.9,1.2,1.5",
        "GNGSA,A,3,65,66,,,,,,,,,,,1.9,1.2,1.5",
    )
    assert (fix.satellites, fix.hdop) == (5, 1.2)


def test_gsa_mode_2_makes_a_2d_fix_without_the_held_altitude() -> None:
    fix = one(*ublox("081500.00", gsa=2))
    assert fix.valid and fix.mode is FixMode.TWO_D and fix.alt is None


def test_gsa_mode_3_without_an_altitude_is_2d() -> None:
    fix = one(
        "GNRMC,081500,A,4553.0,N,00210.4,E,1.0,12.5,120226,,,A",
        "GNGSA,A,3,02,05,12,13,,,,,,,,,1.9,1.2,1.5",
    )
    assert fix.mode is FixMode.TWO_D


@pytest.mark.parametrize(
    ("alt", "sats", "mode"),
    [("452.0", "05", FixMode.THREE_D), ("", "05", FixMode.TWO_D), ("452.0", "03", FixMode.TWO_D)],
    ids=["altitude", "none", "three-satellites"],
)
def test_without_gsa_the_mode_follows_the_altitude_and_satellites(
    alt: str, sats: str, mode: FixMode
) -> None:
    fix = one(f"GPGGA,081500,4553.0,N,00210.4,E,1,{sats},1.5,{alt},M,49.2,M,,")
    assert fix.mode is mode


def test_speed_and_course_come_from_the_valid_rmc_before_vtg() -> None:
    fix = one(
        "GPVTG,90.0,T,,M,50.0,N,92.6,K,A",
        "GPRMC,081500,A,4553.0,N,00210.4,E,10.0,12.5,120226,,,A",
    )
    assert (fix.speed, fix.course) == (pytest.approx(10.0 * KN), 12.5)


def test_vtg_gives_speed_and_course_without_rmc() -> None:
    fix = one(
        "GPGGA,081500,4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,", "GPVTG,90.0,T,,M,50.0,N,92.6,K,A"
    )
    assert (fix.speed, fix.course) == (pytest.approx(50.0 * KN), 90.0)

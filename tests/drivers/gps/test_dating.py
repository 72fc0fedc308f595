"""Which day an epoch is on: RMC or ZDA dates, carried forward, week rollover, or unknown."""

import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Fix
from drivers.gps.dating import CLOCK_LAG, ROLLOVER, ROLLOVER_FLOOR, Dating, nearest_day
from drivers.gps.decoder import NmeaDecoder
from edged.clock import ClockSource
from edged.config.services import PositionServiceConfig
from edged.services.position import PositionService
from tests.drivers.gps.fakes import nmea, recording
from tests.helpers.host import TestHost

GGA = "GPGGA,{t},4553.0,N,00210.4,E,1,05,1.5,450,M,49.2,M,,"
RMC = "GPRMC,{t},A,4553.0,N,00210.4,E,1.0,12.5,{d},,,A"
NEO_M8N = recording("gpsd-neo-m8n")  # a real u-blox log of 18 March 2015


def decoder(now: datetime) -> tuple[NmeaDecoder, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    return NmeaDecoder(count=count, now=lambda: now), counts


def run(now: datetime, *bursts: tuple[float, list[str]]) -> tuple[list[Fix], Counter[str]]:
    """Bursts of sentences with their arrival times (monotonic s), then quiet."""
    d, counts = decoder(now)
    fixes: list[Fix] = []
    for at, bodies in bursts:
        fixes += d.poll(at)
        fixes += d.feed(b"".join(nmea(b) for b in bodies), at)
    fixes += d.poll(1e9)
    return fixes, counts


def test_zda_dates_its_epoch_whatever_the_system_clock() -> None:
    (fix,), _ = run(
        datetime(1970, 1, 1, tzinfo=UTC),  # a Pi without a clock after a cold boot
        (
            0.0,
            [
                "GNZDA,213712.000,12,02,2026,,",
                "GNGNS,213712.000,4111.59880,N,11156.56667,W,AANN,21,0.53,1443.9,-16.5,,",
            ],
        ),
    )
    assert fix.fix_time == datetime(2026, 2, 12, 21, 37, 12, tzinfo=UTC) and fix.date_known


def test_zda_after_the_position_of_its_second_also_dates_it() -> None:
    (fix,), _ = run(
        datetime(2030, 1, 1, tzinfo=UTC),
        (0.0, [GGA.format(t="213712.00"), "GPZDA,213712.00,12,02,2026,00,00"]),
    )
    assert fix.fix_time == datetime(2026, 2, 12, 21, 37, 12, tzinfo=UTC)


def test_fix_time_is_the_rmc_date_and_time_in_utc_with_fractions() -> None:
    (fix,), _ = run(
        datetime(2030, 1, 1, tzinfo=UTC), (0.0, [RMC.format(t="081512.30", d="120226")])
    )
    assert fix.fix_time == datetime(2026, 2, 12, 8, 15, 12, 300_000, tzinfo=UTC)
    assert fix.fix_time.utcoffset() is not None


def test_two_digit_years_before_80_are_this_century() -> None:
    (fix,), _ = run(datetime(2030, 1, 1, tzinfo=UTC), (0.0, [RMC.format(t="081500", d="010179")]))
    assert fix.fix_time.year == 2079


def test_without_rmc_or_zda_the_date_is_unknown_and_guessed_nearest_the_system_clock() -> None:
    (fix,), _ = run(datetime(2026, 6, 13, 0, 0, 5, tzinfo=UTC), (0.0, [GGA.format(t="235959")]))
    assert fix.fix_time == datetime(2026, 6, 12, 23, 59, 59, tzinfo=UTC)
    assert not fix.date_known


def test_epochs_after_a_dated_one_take_its_date_and_are_dated() -> None:
    fixes, _ = run(
        datetime(1970, 1, 1, tzinfo=UTC),
        (0.0, [RMC.format(t="081500", d="010324")]),
        (1.0, [GGA.format(t="081501")]),
    )
    assert fixes[1].fix_time == datetime(2024, 3, 1, 8, 15, 1, tzinfo=UTC) and fixes[1].date_known


def test_a_dated_epoch_dates_the_next_ones_across_midnight() -> None:
    fixes, _ = run(
        datetime(1970, 1, 1, tzinfo=UTC),
        (0.0, [GGA.format(t="235959"), "GPZDA,235959,31,12,2025,00,00"]),
        (1.0, [GGA.format(t="000000")]),
    )
    assert fixes[1].fix_time == datetime(2026, 1, 1, tzinfo=UTC)


def test_the_date_carries_across_an_outage_of_hours_by_the_monotonic_clock() -> None:
    fixes, _ = run(
        datetime(1970, 1, 1, tzinfo=UTC),
        (0.0, [RMC.format(t="100000", d="120226")]),
        (20 * 3600.0, [GGA.format(t="060000")]),  # 20 h later: 06:00 on the next day
    )
    assert fixes[1].fix_time == datetime(2026, 2, 13, 6, 0, tzinfo=UTC)


def test_a_garbled_date_is_taken_from_the_epochs_before() -> None:
    fixes, counts = run(
        datetime(2026, 12, 1, tzinfo=UTC),
        (0.0, [RMC.format(t="000230.000", d="220899")]),
        (1.0, [RMC.format(t="000231.000", d="2208-1")]),
    )
    assert [f.fix_time for f in fixes] == [
        datetime(2019, 4, 7, 0, 2, 30, tzinfo=UTC),
        datetime(2019, 4, 7, 0, 2, 31, tzinfo=UTC),
    ]
    assert counts == {"week_rollover": 1, "bad_field": 1}


def test_a_date_1024_weeks_early_is_a_week_rollover_moved_forward_and_counted() -> None:
    (fix,), counts = run(
        datetime(2026, 12, 1, tzinfo=UTC), (0.0, [RMC.format(t="000229", d="220899")])
    )
    assert fix.fix_time == datetime(2019, 4, 7, 0, 2, 29, tzinfo=UTC)
    assert counts == {"week_rollover": 1}


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reported", "today", "meant", "known"),
    [
        (date(2001, 6, 6), date(2026, 12, 4), date(2021, 1, 20), False),  # once, but 6 years back
        (date(1980, 1, 6), date(2026, 12, 4), date(2019, 4, 7), False),  # twice, 7 years back
        (date(2006, 11, 29), date(2026, 12, 4), date(2026, 7, 15), False),  # months back
        (date(2007, 4, 21), date(2026, 12, 7), date(2026, 12, 5), False),  # two days back
        (date(2007, 4, 22), date(2026, 12, 7), date(2026, 12, 6), True),  # yesterday
        (date(1987, 9, 3), date(2026, 12, 4), date(2026, 12, 3), True),  # two rollovers behind
        (date(2006, 3, 1), date(2025, 10, 15), date(2025, 10, 15), True),  # 2006 in 2025
        (date(2006, 3, 1), date(2025, 10, 14), date(2025, 10, 15), True),  # a day behind
        (date(2006, 3, 1), date(2025, 1, 2), date(2025, 10, 15), False),  # 9 months behind
        (date(2006, 3, 1), date(2025, 9, 12), date(2025, 10, 15), True),  # parked 33 days
        (date(2006, 3, 1), date(2025, 8, 16), date(2025, 10, 15), True),  # 60 days: PARKED
        (date(2006, 3, 1), date(2025, 8, 15), date(2025, 10, 15), False),  # 61 days behind
        (date(2001, 6, 6), date(2040, 6, 1), date(2040, 9, 5), False),  # a later era: twice
        (date(1999, 8, 22), date(1970, 1, 1), date(2019, 4, 7), False),  # 1970: to 2017 on
        (date(2006, 3, 1), date(1970, 1, 1), date(2025, 10, 15), False),  # 2006, clock at 1970
        (date(1994, 3, 23), date(2016, 5, 1), date(2033, 6, 22), False),  # before 2017: as 1970
        (date(2017, 1, 1), date(2026, 12, 4), date(2017, 1, 1), True),  # from 2017 on: as is
    ],
)
def test_rollover_correction_against_an_unsynced_clock_is_known_within_a_day_before_to_60_days_past(
    reported: date, today: date, meant: date, known: bool
) -> None:
    assert Dating(lambda: midnight(today)).unroll(reported) == (meant, known)


@pytest.mark.parametrize(
    ("reported", "today", "meant", "known"),
    [
        (date(2007, 4, 22), date(2026, 12, 7), date(2026, 12, 6), True),  # a rollover receiver now
        (date(2007, 4, 24), date(2026, 12, 7), date(2026, 12, 8), True),  # a day past: UTC midnight
        (date(2007, 4, 21), date(2026, 12, 7), date(2026, 12, 5), False),  # two days back
        (date(2001, 6, 6), date(2040, 6, 1), date(2021, 1, 20), False),  # 2040 is later: once only
        (date(2019, 4, 7), date(2038, 11, 21), date(2019, 4, 7), True),  # from 2017 on: as is
    ],
)
def test_rollover_correction_against_a_synced_clock_is_at_most_a_day_past_it(
    reported: date, today: date, meant: date, known: bool
) -> None:
    synced = Dating(lambda: midnight(today), synced=lambda: True)
    assert synced.unroll(reported) == (meant, known)


@pytest.mark.parametrize(
    ("reported", "today"),
    [
        (date(2008, 1, 1), date(2026, 12, 7)),  # RGM3800's (below): 2027-08-17, 8 months on
        (date(2007, 4, 25), date(2026, 12, 7)),  # 2026-12-09: two days ahead
        (date(2015, 3, 18), date(2026, 2, 1)),  # a 2015 log replayed: 2034
    ],
)
def test_a_correction_past_a_synced_clock_is_refused(reported: date, today: date) -> None:
    assert Dating(lambda: midnight(today), synced=lambda: True).unroll(reported) is None


@pytest.mark.parametrize(
    ("reported", "today"),
    [
        (date(2015, 3, 18), date(2026, 2, 1)),  # a 2015 log replayed: 2034 is 8.7 years ahead
        (date(1994, 3, 23), date(2026, 12, 4)),  # 2013 is before 2017, 2033 years ahead
        (date(2016, 12, 31), date(2017, 1, 1)),  # the last leap second's day, seen in 2017
        (date(2006, 3, 1), date(2023, 10, 1)),  # a clock two years and two weeks behind
    ],
)
def test_a_date_no_rollover_can_explain_against_the_clock_is_refused(
    reported: date, today: date
) -> None:
    assert Dating(lambda: midnight(today)).unroll(reported) is None


@settings(max_examples=300)
@given(
    reported=st.dates(date(1980, 1, 6), date(2016, 12, 31)),
    today=st.dates(date(2017, 1, 1), date(2080, 1, 1)),
    synced=st.booleans(),
)
def test_a_correction_against_a_plausible_clock_is_whole_rollovers_to_a_date_it_allows(
    reported: date, today: date, synced: bool
) -> None:
    unrolled = Dating(lambda: midnight(today), synced=lambda: synced).unroll(reported)
    horizon = today + (timedelta(days=1) if synced else CLOCK_LAG)
    if unrolled is None:  # refused only when no whole number of rollovers fits
        k = 1
        while reported + k * ROLLOVER < ROLLOVER_FLOOR:
            k += 1
        assert reported + k * ROLLOVER > horizon
        return
    moved, known = unrolled
    assert ROLLOVER_FLOOR <= moved <= horizon
    assert (moved - reported) % ROLLOVER == timedelta(0) and moved > reported
    assert moved + ROLLOVER > horizon  # the latest that fits
    past = timedelta(days=1 if synced else 60)  # an unsynchronised clock: a node off so long
    assert known == (today - timedelta(days=1) <= moved <= today + past)


@given(
    reported=st.dates(date(1980, 1, 6), date(2016, 12, 31)),
    today=st.dates(max_value=date(2016, 12, 31)),
)
def test_a_clock_before_2017_gets_the_first_correction_from_2017_on_not_known(
    reported: date, today: date
) -> None:
    unrolled = Dating(lambda: midnight(today)).unroll(reported)
    assert unrolled is not None
    moved, known = unrolled
    assert ROLLOVER_FLOOR <= moved < ROLLOVER_FLOOR + ROLLOVER and not known
    assert (moved - reported) % ROLLOVER == timedelta(0)


def test_a_refused_date_is_kept_as_sent_said_unknown_and_counted() -> None:
    d, counts = decoder(datetime(2026, 2, 1, tzinfo=UTC))
    fixes = [f for i, burst in enumerate(NEO_M8N) for f in d.feed(burst, 100.0 + i)]
    fixes += d.poll(1e9)
    assert [f.fix_time for f in fixes] == [
        datetime(2015, 3, 18, 17, 19, 26 + i, tzinfo=UTC) for i in range(5)
    ]
    assert not any(f.date_known for f in fixes)
    assert counts == {"implausible_date": 5}


def test_a_refused_date_takes_the_day_of_the_epochs_before() -> None:
    fixes, counts = run(
        datetime(2026, 2, 1, tzinfo=UTC),
        (0.0, [RMC.format(t="101500", d="010226")]),
        (1.0, [RMC.format(t="101501", d="180315")]),  # a bit error the checksum let through
    )
    assert fixes[1].fix_time == datetime(2026, 2, 1, 10, 15, 1, tzinfo=UTC)
    assert fixes[1].date_known and counts == {"implausible_date": 1}


def test_a_refused_date_dates_no_later_epoch() -> None:
    fixes, _ = run(
        datetime(2026, 2, 1, 12, tzinfo=UTC),
        (0.0, [RMC.format(t="101500", d="180315")]),
        (1.0, [GGA.format(t="101501")]),
    )
    assert not fixes[1].date_known
    assert fixes[1].fix_time == datetime(2026, 2, 1, 10, 15, 1, tzinfo=UTC)  # nearest the clock


def test_a_refused_date_does_not_set_the_node_clock_through_the_position_service() -> None:
    host = TestHost()  # an unsynced Pi: a dated valid fix would become its clock
    PositionService(host, PositionServiceConfig())
    d = NmeaDecoder(now=lambda: datetime(2026, 2, 1, tzinfo=UTC))
    for i, burst in enumerate(recording("gpsd-mt3339")):
        for fix in d.feed(burst, 100.0 + i):
            host.emit(fix)
    assert host.clock.source is ClockSource.UNSYNCED
    assert host.bodies("position")[0].date_unknown is True


def test_a_corrected_rollover_date_within_a_day_of_the_clock_sets_the_node_clock() -> None:
    host = TestHost()
    PositionService(host, PositionServiceConfig())
    d = NmeaDecoder(now=lambda: datetime(2025, 10, 15, tzinfo=UTC))  # unsynced, but right
    # received now on the monotonic clock the node's clock reads: at a made-up 100.0, the
    # time since would be this machine's uptime, and past 12 h the date was the next day
    received = time.monotonic()
    d.feed(nmea(RMC.format(t="120000", d="010306")), received)  # 2006: the rollover bug
    (fix,) = d.poll(received + 1e9)
    host.emit(fix)
    ms, source = host.clock.now()
    assert source is ClockSource.GPS
    assert datetime.fromtimestamp(ms / 1000, UTC).date() == date(2025, 10, 15)


# A logger's valid fix of 1 January 2008, as rgm3800py's test has it (snaewe/rgm3800py,
# rgm3800_test.py, testNMEARecordsFormat0): no receiver working in December 2026 can say
# it, as 1024 weeks on is 17 August 2027.
RGM3800 = [
    "GPGGA,113436.000,5419.6637,N,00951.3958,E,1,00,,0000.0,M,0.0,M,,0000",
    "GPRMC,113436.000,A,5419.6637,N,00951.3958,E,000.00,15.15,010108,,,E",
]
DEC_2026 = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)


def test_the_rgm3800_sentences_are_the_ones_it_sent() -> None:
    assert nmea(RGM3800[1]).endswith(b",010108,,,E*57\r\n")
    assert nmea(RGM3800[0]).endswith(b",0000*77\r\n")


def test_a_correction_months_past_an_unsynced_clock_is_kept_but_unknown() -> None:
    (fix,), counts = run(DEC_2026, (0.0, RGM3800))
    assert fix.valid and fix.fix_time == datetime(2027, 8, 17, 11, 34, 36, tzinfo=UTC)
    assert not fix.date_known and counts == {"week_rollover": 1}


def test_a_correction_months_past_an_unsynced_clock_does_not_set_the_node_clock() -> None:
    host = TestHost()
    PositionService(host, PositionServiceConfig())
    d = NmeaDecoder(now=lambda: DEC_2026)
    received = time.monotonic()
    d.feed(b"".join(nmea(b) for b in RGM3800), received)
    (fix,) = d.poll(received + 1e9)
    host.emit(fix)
    assert host.clock.source is ClockSource.UNSYNCED
    assert host.bodies("position")[0].date_unknown is True


def test_epochs_dated_by_an_unknown_correction_are_unknown_too() -> None:
    fixes, _ = run(DEC_2026, (0.0, RGM3800), (1.0, [GGA.format(t="113437")]))
    assert fixes[1].fix_time == datetime(2027, 8, 17, 11, 34, 37, tzinfo=UTC)
    assert not fixes[1].date_known


def test_a_correction_past_a_synced_clock_is_kept_as_sent_unknown_and_counted() -> None:
    counts: Counter[str] = Counter()
    d = NmeaDecoder(
        now=lambda: DEC_2026, synced=lambda: True, count=lambda k, n: counts.update({k: n})
    )
    (fix,) = d.feed(b"".join(nmea(b) for b in RGM3800), 0.0) + d.poll(1e9)
    assert fix.fix_time == datetime(2008, 1, 1, 11, 34, 36, tzinfo=UTC)
    assert not fix.date_known and counts == {"implausible_date": 1}


def test_a_rollover_receiver_now_is_corrected_against_a_synced_clock() -> None:
    # one with the bug, its week counter based in 2007, on 6 December 2026 (Telit's, above)
    counts: Counter[str] = Counter()
    d = NmeaDecoder(
        now=lambda: DEC_2026, synced=lambda: True, count=lambda k, n: counts.update({k: n})
    )
    (fix,) = d.feed(nmea(RMC.format(t="235959", d="220407")), 0.0) + d.poll(1e9)
    assert fix.fix_time == datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC)
    assert fix.date_known and counts == {"week_rollover": 1}


def test_the_default_date_of_a_void_epoch_neither_counts_nor_dates_later_epochs() -> None:
    fixes, counts = run(
        datetime(2026, 2, 12, 7, tzinfo=UTC),
        (0.0, ["GPRMC,235947.000,V,,,,,0.00,0.00,060180,,,N"]),  # MediaTek before a fix
        (1.0, [GGA.format(t="064951.000")]),
    )
    assert not fixes[0].valid and counts == {}
    assert not fixes[1].date_known and fixes[1].fix_time.date() == date(2026, 2, 12)


def test_the_default_date_of_a_void_epochs_zda_neither_counts_nor_dates_later_epochs() -> None:
    # SkyTraQ after power-on, verbatim (AvirukBasak/ch341-reader README, "Demo log"); Sony
    # CXD5605 sends the same $GPZDA,000001.00,06,01,1980,,*60: the RTC default of RMC's
    # 060180, in ZDA's form. Then a fix, ZDA sent every 5 s (GGA-only epochs between).
    fixes, counts = run(
        datetime(2026, 2, 12, 7, tzinfo=UTC),
        (
            0.0,
            [
                "GPGGA,000125.000,0000.00000,N,00000.00000,E,0,00,0.0,0.0,M,0.0,M,,0000",
                "GNRMC,000125.000,V,0000.00000,N,00000.00000,E,000.0,000.0,060180,,,N,V",
                "GNZDA,000125.000,06,01,1980,00,00",
            ],
        ),
        (1.0, [GGA.format(t="064951.000")]),
    )
    assert not fixes[0].valid and counts == {}
    assert not fixes[1].date_known and fixes[1].fix_time.date() == date(2026, 2, 12)


def test_a_late_rmc_still_dates_the_epochs_after_it() -> None:
    fixes, counts = run(
        datetime(1970, 1, 1, tzinfo=UTC),
        (0.0, [GGA.format(t="081500")]),
        (1.0, [RMC.format(t="081500", d="120226")]),  # after the quiet: late, but dated
        (2.0, [GGA.format(t="081502")]),
    )
    assert [f.date_known for f in fixes] == [False, True]
    assert fixes[1].fix_time == datetime(2026, 2, 12, 8, 15, 2, tzinfo=UTC)
    assert counts == {"late": 1}


def test_epoch_without_time_is_void_and_stamped_with_the_system_clock() -> None:
    now = datetime(2026, 2, 12, 12, tzinfo=UTC)
    (fix,), _ = run(now, (0.0, ["GPRMC,,V,,,,,,,,,,N"]))
    assert not fix.valid and fix.fix_time == now and not fix.date_known


def test_fix_times_strictly_increase_across_the_2016_leap_second() -> None:
    rmc = "GNRMC,{t},A,4807.03800,N,01131.00000,E,0.0,,{d},,,A"
    fixes, _ = run(
        datetime(2026, 2, 1, tzinfo=UTC),  # the 2016 dates are refused: kept as sent
        (0.0, [rmc.format(t="235959.00", d="311216")]),
        (1.0, [rmc.format(t="235960.00", d="311216")]),
        (2.0, [rmc.format(t="000000.00", d="010117")]),
    )
    times = [f.fix_time for f in fixes]
    assert times == sorted(times) and len(set(times)) == 3


def test_fix_times_strictly_increase_through_a_leap_second_at_10_hz() -> None:
    before = [f"235959.{i}0" for i in range(10)]
    during = [f"235960.{i}0" for i in range(10)]
    bursts = [(0.1 * i, [RMC.format(t=t, d="300627")]) for i, t in enumerate(before + during)]
    bursts.append((2.0, [RMC.format(t="000000.00", d="010727")]))
    fixes, _ = run(datetime(2027, 6, 30, tzinfo=UTC), *bursts)
    times = [f.fix_time for f in fixes]
    assert len(times) == 21 and all(a < b for a, b in pairwise(times))
    assert times[10] == datetime(2027, 6, 30, 23, 59, 59, 999_000, tzinfo=UTC)
    assert times[19] == datetime(2027, 6, 30, 23, 59, 59, 999_900, tzinfo=UTC)


def test_an_undated_leap_second_stays_between_its_neighbours() -> None:
    fixes, _ = run(
        datetime(1970, 1, 1, tzinfo=UTC),
        (0.0, [RMC.format(t="235959", d="300627")]),
        (1.0, [GGA.format(t="235960")]),  # dated from the RMC before it
        (2.0, [GGA.format(t="000000")]),
    )
    assert [f.fix_time for f in fixes] == [
        datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC),
        datetime(2027, 6, 30, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(2027, 7, 1, tzinfo=UTC),
    ]


@given(st.lists(st.integers(0, 86_400_999), min_size=2, max_size=50, unique=True))
def test_times_to_the_millisecond_keep_their_order_on_the_clock(ms: list[int]) -> None:
    ms.sort()
    day = datetime(2027, 6, 30, tzinfo=UTC)
    stamped = [nearest_day(m * 1000, day + timedelta(hours=12)) for m in ms]
    assert all(a < b for a, b in pairwise(stamped))
    assert {s.date() for s in stamped} == {day.date()}  # the leap second stays on its day


def test_nearest_day_moves_across_midnight_both_ways() -> None:
    ref = datetime(2026, 2, 12, 23, 59, 50, tzinfo=UTC)
    assert nearest_day(10 * 1_000_000, ref) == datetime(2026, 2, 13, 0, 0, 10, tzinfo=UTC)
    ref = datetime(2026, 2, 13, 0, 0, 10, tzinfo=UTC)
    assert nearest_day(86_390 * 1_000_000, ref) == datetime(2026, 2, 12, 23, 59, 50, tzinfo=UTC)


# A logger's fix of 1 August 2005 replayed: 1024 weeks on is 17 March 2025, 21 months before
# a clock that may be behind but is never ahead, so no receiver working now can mean it.
REPLAYED_2005 = RMC.format(t="113436", d="010805")


def test_a_correction_years_before_the_clock_is_kept_but_unknown() -> None:
    (fix,), counts = run(DEC_2026, (0.0, [REPLAYED_2005]))
    assert fix.fix_time == datetime(2025, 3, 17, 11, 34, 36, tzinfo=UTC)
    assert not fix.date_known and counts == {"week_rollover": 1}


def test_a_correction_years_before_an_unsynced_clock_does_not_set_the_node_clock() -> None:
    host = TestHost()
    PositionService(host, PositionServiceConfig())
    d = NmeaDecoder(now=lambda: DEC_2026)
    received = time.monotonic()
    d.feed(nmea(REPLAYED_2005), received)
    (fix,) = d.poll(received + 1e9)
    host.emit(fix)
    assert host.clock.source is ClockSource.UNSYNCED


def test_a_correction_years_before_a_synced_clock_is_unknown() -> None:
    d = NmeaDecoder(now=lambda: DEC_2026, synced=lambda: True)
    (fix,) = d.feed(nmea(REPLAYED_2005), 0.0) + d.poll(1e9)
    assert fix.fix_time.date() == date(2025, 3, 17) and not fix.date_known

import itertools
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.events import Fix, FixMode
from core.geo import haversine_m, offset
from drivers.gps.gpsd import GpsdReports
from edged.clock import ClockSource
from edged.config.services import PositionServiceConfig, ReportingConfig
from edged.services.events import FixStatus, OdometerChanged, PositionUpdated
from edged.services.position import (
    EXCURSION_MAX_S,
    MAX_ROAD_SPEED_MPS,
    ODOMETER_KEY,
    PositionService,
    heading_delta,
)
from tests.drivers.gps.fakes import CORPUS, nmea, through_driver
from tests.helpers.host import TestHost

EPOCHS = itertools.count()


def fix(lat: float, lon: float, **kw: Any) -> Fix:
    """A fix of a 1 Hz receiver: each a second after the one before."""
    kw = {"hdop": 1.0, **kw}
    when = datetime.now(UTC) + timedelta(seconds=next(EPOCHS))
    return Fix(fix_time=when, lat=lat, lon=lon, **kw)


def service(node: TestHost, **rule: Any) -> PositionService:
    """Same reporting rule moving and stopped, unless a test says otherwise."""
    qos = rule.pop("qos", 0)
    r = ReportingConfig(**{"min_period_s": 0, **rule})
    return PositionService(node, PositionServiceConfig(qos=qos, moving=r, stopped=r))


async def test_first_valid_fix_is_published_at_once() -> None:
    node = TestHost()
    service(node).on_fix(fix(46.0, 2.0))
    ((name, body, qos),) = node.published
    assert name == "position" and qos == 0
    assert body.lat == 46.0  # type: ignore[attr-defined]


async def test_void_fix_is_never_published() -> None:
    node = TestHost()
    svc = service(node)
    svc.on_fix(fix(46.0, 2.0, mode=FixMode.NONE))
    svc.on_fix(fix(46.0, 2.0, quality=0))
    assert node.published == [] and svc.void_fixes == 2


@pytest.mark.parametrize("speed", [None, 0.1], ids=["speed-unknown", "speed-near-zero"])
async def test_parked_vehicle_with_jitter_neither_floods_nor_grows_its_odometer(
    speed: float | None,
) -> None:
    node = TestHost()
    svc = service(node, min_distance_m=25, max_period_s=3600)
    rng = random.Random(3)
    for _ in range(3600):  # an hour parked at 1 Hz, 1.5 m noise per axis
        svc.on_fix(fix(*offset(46.0, 2.0, rng.gauss(0, 1.5), rng.gauss(0, 1.5)), speed=speed))
    assert len(node.published) == 1
    assert svc.odometer_m == 0


async def test_moving_vehicle_is_reported_by_distance_and_odometer_follows() -> None:
    node = TestHost()
    svc = service(node, min_distance_m=50)
    for i in range(101):  # 1 km north in 10 m steps at 10 m/s
        svc.on_fix(fix(*offset(46.0, 2.0, i * 10.0, 0), speed=10.0))
    assert 19 <= len(node.published) <= 21
    assert abs(svc.odometer_m - 1000) < 15


async def test_odometer_continues_from_persisted_state() -> None:
    node = TestHost({ODOMETER_KEY: 12_345.0})
    svc = service(node)
    svc.on_fix(fix(46.0, 2.0))
    assert node.published[0][1].odometer_m == 12_345.0  # type: ignore[attr-defined]


async def test_valid_fix_disciplines_the_clock() -> None:
    node = TestHost()
    service(node).on_fix(fix(46.0, 2.0))
    assert node.clock.source in {ClockSource.GPS, ClockSource.NTP}


async def test_fix_whose_date_the_receiver_did_not_give_never_sets_the_clock() -> None:
    node = TestHost()  # a Pi whose clock is not synchronised
    service(node).on_fix(fix(46.0, 2.0, date_known=False))
    assert node.clock.source is ClockSource.UNSYNCED


async def test_fix_whose_date_the_receiver_did_not_give_is_published_marked_so() -> None:
    node = TestHost()
    svc = service(node)
    svc.on_fix(fix(46.0, 2.0, date_known=False))
    (body,) = node.bodies("position")
    assert body.to_json_dict()["date_unknown"] is True
    svc.on_fix(fix(46.1, 2.0))
    assert "date_unknown" not in node.bodies("position")[1].to_json_dict()


async def test_clock_is_set_from_the_fix_as_of_when_the_receiver_sent_it() -> None:
    node = TestHost()
    sent = time.monotonic() - 0.6  # the epoch closed 0.6 s after its first sentence
    gps_time = datetime(2026, 2, 12, 21, 37, 12, tzinfo=UTC)
    service(node).on_fix(Fix(fix_time=gps_time, lat=46.0, lon=2.0, received=sent))
    ms, source = node.clock.now()
    assert source is ClockSource.GPS
    assert abs(ms / 1000 - (gps_time.timestamp() + 0.6)) < 0.1


async def test_configured_qos_is_used() -> None:
    node = TestHost()
    service(node, qos=1).on_fix(fix(46.0, 2.0))
    assert node.published[0][2] == 1


async def test_turn_above_the_minimum_speed_triggers_a_report() -> None:
    node = TestHost()
    svc = service(node, min_distance_m=10_000, heading_change_deg=30)
    svc.on_fix(fix(46.0, 2.0, speed=10.0, course=0.0))
    svc.on_fix(fix(46.0001, 2.0, speed=10.0, course=20.0))
    svc.on_fix(fix(46.0002, 2.0, speed=10.0, course=45.0))
    assert [b.course for _, b, _ in node.published] == [0.0, 45.0]  # type: ignore[attr-defined]


async def test_turn_while_crawling_is_not_a_report() -> None:
    node = TestHost()
    svc = service(node, min_distance_m=10_000, heading_change_deg=30)
    svc.on_fix(fix(46.0, 2.0, speed=1.5, course=0.0))
    svc.on_fix(fix(46.0, 2.0, speed=1.5, course=90.0))
    assert len(node.published) == 1


def test_heading_delta_wraps_around_north() -> None:
    assert heading_delta(350, 10) == 20
    assert heading_delta(10, 350) == 20
    assert heading_delta(0, 180) == 180


async def test_stopping_and_starting_are_reported_and_use_their_own_rules() -> None:
    node = TestHost()
    moving = ReportingConfig(min_period_s=0, min_distance_m=10)
    stopped = ReportingConfig(min_period_s=0, min_distance_m=10_000, max_period_s=3600)
    svc = PositionService(node, PositionServiceConfig(moving=moving, stopped=stopped))
    svc.on_fix(fix(46.0, 2.0, speed=10.0))
    svc.on_fix(fix(*offset(46.0, 2.0, 20, 0), speed=0.0))  # stops: reported
    for i in range(10):  # parked: jitter of 20 m is under the stopped rule's distance
        svc.on_fix(fix(*offset(46.0, 2.0, 20 + (i % 2) * 20, 0), speed=0.0))
    svc.on_fix(fix(*offset(46.0, 2.0, 60, 0), speed=8.0))  # leaves: reported
    assert [b.speed for _, b, _ in node.published] == [10.0, 0.0, 8.0]  # type: ignore[attr-defined]


async def test_no_valid_fix_for_the_configured_time_raises_fix_lost_once() -> None:
    node = TestHost()
    svc = PositionService(node, PositionServiceConfig(fix_lost_after_s=10))
    svc.on_fix(fix(46.0, 2.0))
    now = svc.last_valid[1]  # type: ignore[index]
    svc.check_fix(now + 5)
    svc.check_fix(now + 11)
    svc.check_fix(now + 20)
    lost = [b for name, b, _ in node.published if name == "events/fix"]
    assert len(lost) == 1
    assert lost[0].event == "lost" and lost[0].after_s == 11  # type: ignore[attr-defined]
    assert lost[0].lat == 46.0  # type: ignore[attr-defined]


async def test_a_receiver_that_never_gets_a_fix_raises_fix_lost() -> None:
    node = TestHost()
    svc = PositionService(node, PositionServiceConfig(fix_lost_after_s=10))
    svc.on_fix(fix(46.0, 2.0, mode=FixMode.NONE))
    svc.check_fix(svc._started + 10.5)
    (event,) = [b for name, b, _ in node.published if name == "events/fix"]
    assert event.event == "lost" and event.last_fix_time is None  # type: ignore[attr-defined]


async def test_a_valid_fix_after_a_loss_is_regained() -> None:
    node = TestHost()
    svc = PositionService(node, PositionServiceConfig(fix_lost_after_s=10))
    svc.on_fix(fix(46.0, 2.0))
    svc.check_fix(svc.last_valid[1] + 11)  # type: ignore[index]
    svc.on_fix(fix(46.001, 2.0))
    events = [b.event for name, b, _ in node.published if name == "events/fix"]  # type: ignore[attr-defined]
    assert events == ["lost", "regained"]
    assert not svc.fix_lost


def test_each_valid_fix_and_each_odometer_step_goes_on_the_bus() -> None:
    node = TestHost({ODOMETER_KEY: 500.0})
    svc = service(node, min_distance_m=50)
    svc.on_fix(fix(46.0, 2.0, speed=10.0))
    svc.on_fix(fix(46.0, 2.0, mode=FixMode.NONE))  # void: nothing on the bus
    svc.on_fix(fix(*offset(46.0, 2.0, 20.0, 0), speed=10.0))
    assert len(node.of_type(PositionUpdated)) == 2
    odometer = [e.odometer_m for e in node.of_type(OdometerChanged)]
    assert odometer[0] == 500.0 and odometer[-1] == pytest.approx(520.0, abs=0.1)


def test_fix_lost_and_regained_go_on_the_bus() -> None:
    node = TestHost()
    svc = PositionService(node, PositionServiceConfig(fix_lost_after_s=10))
    svc.check_fix(now=time.monotonic() + 11)
    svc.on_fix(fix(46.0, 2.0))
    assert [e.lost for e in node.of_type(FixStatus)] == [True, False]


def assert_gps_time_refused(sent: str) -> None:
    """gpsd's TPV dated `sent` on a node without NTP: its position is reported, its time
    never becomes the node's clock, and that is counted."""
    node = TestHost()  # a Pi whose clock is not synchronised
    tpv = {"class": "TPV", "mode": 3, "time": sent, "lat": 46.0, "lon": 2.0}
    the_fix = GpsdReports().handle(tpv)
    assert the_fix is not None and the_fix.valid
    service(node).on_fix(the_fix)
    assert node.clock.source is ClockSource.UNSYNCED
    assert node.counters.snapshot().get("position.implausible_time") == 1
    assert node.bodies("position")  # the position itself is still reported


@pytest.mark.parametrize(
    "sent",
    [
        "1970-01-01T00:00:10.000Z",  # a spoofer's epoch, before GPS time began
        "2024-12-31T23:59:59.000Z",  # a day before this release
    ],
)
async def test_a_gps_time_before_any_plausible_date_never_sets_the_clock(sent: str) -> None:
    """gpsd's TPV goes to the clock as sent, after the NMEA driver's week-rollover rule: a
    date before this software existed is a rollover or a spoofer, never the time, and a
    node on it would refuse every list, signed command and reset."""
    assert_gps_time_refused(sent)


async def test_a_receivers_default_date_moved_to_2019_is_reported_unknown_never_the_clock() -> None:
    """A receiver's default date flagged valid, moved two rollovers on to 2019: years before
    the node's clock, so no receiver's date now (drivers.gps.dating); it never gets as far as
    the clock."""
    node = TestHost()  # a Pi whose clock is not synchronised
    tpv = {"class": "TPV", "mode": 3, "time": "1980-01-06T00:00:05.000Z", "lat": 46.0, "lon": 2.0}
    the_fix = GpsdReports(now=lambda: datetime(2026, 3, 10, tzinfo=UTC)).handle(tpv)
    assert the_fix is not None and the_fix.valid and not the_fix.date_known
    service(node).on_fix(the_fix)
    assert node.clock.source is ClockSource.UNSYNCED
    assert node.bodies("position")[0].date_unknown is True


async def test_a_gpsd_one_week_rollover_behind_sets_the_clock_once_corrected() -> None:
    """gpsd 3.20-3.22 (from 24 October 2021), or a gpsd started on a Pi whose clock said
    1970, dates its fixes 1024 weeks early: corrected by the same rule as an NMEA receiver's
    (test_dating.py), the fix is dated right and sets the node's clock as that one does."""
    node = TestHost()  # a Pi whose clock is not synchronised
    today = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    sent = today - timedelta(weeks=1024)
    tpv = {"class": "TPV", "mode": 3, "time": f"{sent:%Y-%m-%dT%H:%M:%S}.000Z", "lat": 46.0}
    the_fix = GpsdReports(now=lambda: today).handle({**tpv, "lon": 2.0})
    assert the_fix is not None and the_fix.fix_time == today
    service(node).on_fix(the_fix)
    assert node.clock.source is ClockSource.GPS


@pytest.mark.parametrize(
    "sent",
    [
        "2045-10-31T10:00:00.000Z",  # a receiver one week rollover (1024 weeks) ahead
        "2099-12-31T23:59:59.000Z",  # a spoofer, or a two-digit year read as 20yy
    ],
)
async def test_a_gps_time_years_ahead_never_sets_the_clock(sent: str) -> None:
    """On a GPS clock years ahead every signed command is stale, every card's pass expired
    and the broker's certificate looks expired to whoever checks it against `ts`."""
    assert_gps_time_refused(sent)


async def test_a_receiver_dating_its_fixes_years_ahead_is_said_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An NMEA receiver on a pty, through the real driver: RMC dated 31 October 2045."""
    raw = [
        nmea(f"GNRMC,1000{s:02d}.00,A,4553.00000,N,00210.46400,E,0.0,,311045,,,A")
        + nmea(f"GNGGA,1000{s:02d}.00,4553.00000,N,00210.46400,E,1,09,1.1,452.0,M,49.2,M,,")
        for s in range(3)
    ]
    node = TestHost()  # a Pi whose clock is not synchronised
    service(node)
    with caplog.at_level(logging.WARNING, logger="edged.clock"):
        await through_driver(raw, tmp_path / "gps0", node, fixes=3, burst_s=0.1, what="3 fixes")
    assert [f.fix_time.year for f in node.of_type(Fix)] == [2045] * 3
    assert node.clock.source is ClockSource.UNSYNCED
    assert node.counters.snapshot().get("position.implausible_time") == 3
    (said,) = [r.getMessage() for r in caplog.records if r.name == "edged.clock"]
    assert "2045-10-31" in said and "not used as the node's clock" in said


async def test_a_receiver_in_its_simulator_mode_never_sets_the_clock(tmp_path: Path) -> None:
    """GGA quality 8 and RMC mode S (NMEA 0183: simulator): a receiver left in the
    simulator mode of its configuration tool plays a date and a track it was given, here a
    plausible one, 2031. Its positions are reported as what they are (quality 8); its date
    must not become the node's clock."""
    raw = [
        nmea(f"GNRMC,1000{s:02d}.00,A,4553.00000,N,00210.46400,E,0.0,,150331,,,S")
        + nmea(f"GNGGA,1000{s:02d}.00,4553.00000,N,00210.46400,E,8,09,1.1,452.0,M,49.2,M,,")
        for s in range(3)
    ]
    node = TestHost()  # a Pi whose clock is not synchronised
    service(node)
    await through_driver(raw, tmp_path / "gps0", node, fixes=3, burst_s=0.1, what="3 fixes")
    assert [f.quality for f in node.of_type(Fix)] == [8] * 3
    assert node.clock.source is ClockSource.UNSYNCED
    assert node.counters.snapshot().get("position.simulated") == 3
    assert [b.quality for b in node.bodies("position")][:1] == [8]


async def test_speed_wavering_about_the_stopped_threshold_honours_the_minimum_period() -> None:
    # config/truck.toml: `[services.position.moving] min_period_s = 5.0  # never more often
    # than this` (docs/budget.md: positions are most of what the SIM is billed). A truck
    # crawling onto a market square at 3.6 km/h: its receiver's speed wavers about
    # `stopped_below_mps` (1 m/s), every fix "stops" or "starts" it.
    node = TestHost()
    moving = ReportingConfig(min_period_s=5, min_distance_m=100)
    stopped = ReportingConfig(min_period_s=10, max_period_s=600, min_distance_m=50)
    svc = PositionService(node, PositionServiceConfig(moving=moving, stopped=stopped))
    for i in range(30):  # a burst of fixes, well within 5 s of each other
        svc.on_fix(fix(*offset(46.0, 2.0, i * 1.0, 0), speed=1.1 if i % 2 else 0.9))
    assert len(node.published) == 1


async def test_a_multipath_excursion_in_a_street_canyon_is_not_added_to_the_odometer(
    tmp_path: Path,
) -> None:
    # tests/drivers/gps/corpus/ublox-m8-urban-canyon: a bus going 204 m straight up a street
    # at 9 m/s; for 4 s the receiver tracks reflections off the facades and puts it 130-190 m
    # east (HDOP 2.1-2.6, Doppler speed unchanged), then back on the street.
    raw = (CORPUS / "ublox-m8-urban-canyon.nmea").read_bytes().splitlines()
    node = TestHost()
    svc = service(node)
    await through_driver(raw, tmp_path / "gps0", node, fixes=24, burst_s=0.1, what="24 epochs")
    fixes = node.of_type(Fix)
    street = haversine_m(fixes[0].lat, fixes[0].lon, fixes[-1].lat, fixes[-1].lon)
    assert street == pytest.approx(204, abs=3)
    assert street - 10 <= svc.odometer_m <= street + 5  # the last 9 m may be under the jitter


def _ddmm(degrees: float, width: int) -> str:
    whole = int(degrees)
    return f"{whole:0{width}d}{(degrees - whole) * 60:08.5f}"


def _epoch(second: int, north_m: float, east_m: float, *, estimated: bool) -> bytes:
    """RMC and GGA of one epoch of a u-blox at 15 m/s north, measured or dead reckoning."""
    lat, lon = offset(45.88, 2.175, north_m, east_m)
    t, where = f"0815{second:02d}.00", f"{_ddmm(lat, 2)},N,{_ddmm(lon, 3)},E"
    mode, quality = ("E", 6) if estimated else ("A", 1)
    return nmea(f"GNRMC,{t},A,{where},29.158,0.00,120226,,,{mode},V") + nmea(
        f"GNGGA,{t},{where},{quality},09,1.10,452.0,M,49.2,M,,"
    )


async def test_an_estimated_fix_is_published_but_kept_off_the_odometer(tmp_path: Path) -> None:
    """Into a tunnel at 15 m/s: the receiver extrapolates (mode E, quality 6) and drifts
    30 m off the road while the bus goes on straight. Dispatch still sees where the bus
    is thought to be, marked quality 6; the odometer counts only measured fixes, the way
    through the tunnel as the line between the fixes either side."""
    raw = [
        _epoch(s, 15.0 * s, 30.0 if 5 <= s <= 9 else 0.0, estimated=5 <= s <= 9) for s in range(15)
    ]
    node = TestHost()
    svc = service(node, min_distance_m=0)
    await through_driver(raw, tmp_path / "gps0", node, fixes=15, burst_s=0.1, what="15 fixes")
    assert [f.quality for f in node.of_type(Fix)] == [1] * 5 + [6] * 5 + [1] * 5
    assert 6 in [b.quality for b in node.bodies("position")]  # type: ignore[attr-defined]
    assert svc.odometer_m == pytest.approx(210, abs=1)
    assert node.counters.snapshot()["position.odometer_estimated"] == 5


async def test_a_novatel_sbas_fix_quality_9_is_counted_in_the_odometer(tmp_path: Path) -> None:
    """NovAtel receivers state a WAAS/SBAS fix as GGA quality 9 by default (GGAQUALITY): a
    measured fix, counted as before, not taken for an estimate (the bus's whole odometer
    would stay at 0)."""
    raw = []
    for second in range(10):
        lat, lon = offset(45.88, 2.175, 15.0 * second, 0.0)
        t, where = f"0815{second:02d}.00", f"{_ddmm(lat, 2)},N,{_ddmm(lon, 3)},E"
        raw.append(
            nmea(f"GPRMC,{t},A,{where},29.158,0.00,120226,,,D")
            + nmea(f"GPGGA,{t},{where},9,09,1.10,452.0,M,49.2,M,,")
        )
    node = TestHost()
    svc = service(node, min_distance_m=0)
    await through_driver(raw, tmp_path / "gps0", node, fixes=10, burst_s=0.1, what="10 fixes")
    assert [f.quality for f in node.of_type(Fix)] == [9] * 10
    assert svc.odometer_m == pytest.approx(135, abs=1)
    assert "position.odometer_estimated" not in node.counters.snapshot()


async def test_a_fix_with_a_poor_hdop_is_not_added_to_the_odometer() -> None:
    # HDOP 8 (satellites hidden by a flyover): the fix is 45 m off the road, a step a bus at
    # 9 m/s could almost make in a second with the jitter allowance of such a fix (40 m)
    node = TestHost()
    svc = service(node)
    for i in range(11):  # 90 m north at 9 m/s
        hdop = 8.0 if i == 5 else 1.0
        svc.on_fix(fix(*offset(46.0, 2.0, i * 9.0, 45.0 if i == 5 else 0.0), speed=9.0, hdop=hdop))
    assert svc.odometer_m == pytest.approx(90, abs=1)
    assert node.counters.snapshot()["position.odometer_poor_hdop"] == 1


async def test_a_receiver_that_never_reports_hdop_still_counts_its_distance() -> None:
    node = TestHost()
    svc = service(node)
    for i in range(101):  # 1 km north in 10 m steps at 10 m/s, no HDOP given
        svc.on_fix(fix(*offset(46.0, 2.0, i * 10.0, 0), speed=10.0, hdop=None))
    assert svc.odometer_m == pytest.approx(1000, abs=1)


async def test_the_way_through_a_tunnel_without_fixes_is_counted() -> None:
    node = TestHost()
    svc = service(node)
    t0 = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    svc.on_fix(Fix(fix_time=t0, lat=46.0, lon=2.0, speed=8.0, hdop=1.0))
    # 2 min later, 2.4 km on: 20 m/s in the tunnel, out at 8 m/s again
    out = offset(46.0, 2.0, 2400.0, 0)
    svc.on_fix(Fix(fix_time=t0 + timedelta(seconds=120), lat=out[0], lon=out[1], speed=8.0))
    assert svc.odometer_m == pytest.approx(2400, abs=1)


async def test_a_receiver_that_stays_away_is_believed_after_a_while() -> None:
    # the first fix was the wrong one, 300 m off: the receiver never comes back to it, and
    # after EXCURSION_MAX_S it is followed from where it stays
    node = TestHost()
    svc = service(node)
    t0 = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    svc.on_fix(Fix(fix_time=t0, lat=46.0, lon=2.0, speed=8.0, hdop=1.0))
    for s in range(1, 31):
        la, lo = offset(46.0, 2.0, 300.0 + s * 8.0, 0)
        svc.on_fix(Fix(fix_time=t0 + timedelta(seconds=s), lat=la, lon=lo, speed=8.0, hdop=1.0))
    assert svc.odometer_m == pytest.approx(300 + 30 * 8.0, abs=10)  # the jump counted once
    assert node.counters.snapshot()["position.odometer_settled"] == 1


async def test_a_receiver_faster_than_any_road_vehicle_is_counted_at_a_road_vehicles_speed() -> (
    None
):
    # a spoofer, or gps.sim with speed_factor 12: 100 m a second while it says 8 m/s
    node = TestHost()
    svc = service(node)
    t0 = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    for s in range(0, 61):
        la, lo = offset(46.0, 2.0, s * 100.0, 0)
        svc.on_fix(Fix(fix_time=t0 + timedelta(seconds=s), lat=la, lon=lo, speed=8.0, hdop=1.0))
    assert 0 < svc.odometer_m <= MAX_ROAD_SPEED_MPS * 60


async def test_a_receiver_clock_jumping_hours_ahead_does_not_make_a_500_km_jump_count() -> None:
    # a spoofer moves the vehicle 500 km and the receiver's clock 3 hours on at once (or a
    # receiver's glitch does): in the receiver's time the step was reachable at 46 m/s,
    # and all 500 km went on the odometer; the fixes came a second apart
    node = TestHost()
    svc = service(node)
    t0, arrived = datetime(2026, 3, 10, 7, 0, tzinfo=UTC), 1000.0
    svc.on_fix(Fix(fix_time=t0, lat=46.0, lon=2.0, speed=8.0, hdop=1.0, received=arrived))
    for s in range(1, 31):  # then 8 m/s on from there, one fix a second
        la, lo = offset(46.0, 2.0, 500_000.0 + s * 8.0, 0)
        when = t0 + timedelta(hours=3, seconds=s)
        svc.on_fix(Fix(fix_time=when, lat=la, lon=lo, speed=8.0, hdop=1.0, received=arrived + s))
    # believed after EXCURSION_MAX_S, the way there counted as far as a road vehicle goes
    # in the receiver's time that the arrivals allow
    allowed_s = (EXCURSION_MAX_S + 1) + EXCURSION_MAX_S  # believed_s: arrivals' time + 10 s
    assert svc.odometer_m <= MAX_ROAD_SPEED_MPS * allowed_s + 30 * 8.0


async def test_a_wrong_first_fix_after_a_cold_start_is_not_added_when_the_bus_pulls_out(
    tmp_path: Path,
) -> None:
    """A receiver's first fix after a cold start, 2D from 4 satellites (GSA fix type 2),
    puts the bus parked at the depot 1.5 km north, with an HDOP good enough (3.0) to be
    believed; the next fixes are where it is. The odometer rightly settles there after
    10 s, standing still, and counts nothing — but it kept counting from the wrong fix:
    the first metres driven out of the depot added the whole 1.5 km."""

    def epoch(second: int, north_m: float, east_m: float, knots: float, first: bool) -> bytes:
        lat, lon = offset(45.88, 2.175, north_m, east_m)
        t, where = f"0530{second:02d}.00", f"{_ddmm(lat, 2)},N,{_ddmm(lon, 3)},E"
        sats, hdop, fix_type = ("04", "3.0", "2") if first else ("09", "1.1", "3")
        return (
            nmea(f"GNRMC,{t},A,{where},{knots:.3f},90.0,071226,,,A")
            + nmea(f"GNGGA,{t},{where},1,{sats},{hdop},452.0,M,49.2,M,,")
            + nmea(f"GNGSA,A,{fix_type},01,03,06,09,,,,,,,,,{hdop},{hdop},{hdop}")
        )

    raw = [epoch(0, 1500.0, 0.0, 0.0, True)]
    raw += [epoch(s, 0.0, 0.0, 0.0, False) for s in range(1, 13)]  # parked, settled at 10 s
    raw += [epoch(s, 0.0, 2.0 * (s - 12), 3.888, False) for s in range(13, 20)]  # 14 m at 2 m/s
    node = TestHost()
    svc = service(node)
    await through_driver(raw, tmp_path / "gps0", node, fixes=20, burst_s=0.05, what="20 fixes")
    assert [f.satellites for f in node.of_type(Fix)][:2] == [4, 9]
    assert node.counters.snapshot()["position.odometer_settled"] == 1
    assert svc.odometer_m <= 14.0 + 1


async def test_a_bus_crawling_in_a_jam_keeps_its_way_when_the_receiver_settles(
    tmp_path: Path,
) -> None:
    """A bus crawls in a jam at 0.3 m/s (Doppler below the 0.5 m/s of standing still) for
    two minutes, 36 m, in a street canyon: the receiver puts it 300 m off the street for
    over 10 s, is believed there (standing still: nothing counted for the jump), then comes
    back and is believed again; the bus then drives off at 5 m/s. The crawl not yet counted
    when the receiver settled was lost with the anchor: 94 m driven, 50 counted."""

    def epoch(second: int, north_m: float, east_m: float, mps: float) -> bytes:
        lat, lon = offset(45.88, 2.175, north_m, east_m)
        t = f"05{second // 60:02d}{second % 60:02d}.00"
        where = f"{_ddmm(lat, 2)},N,{_ddmm(lon, 3)},E"
        return nmea(f"GNRMC,{t},A,{where},{mps / 0.514444:.3f},90.0,071226,,,A") + nmea(
            f"GNGGA,{t},{where},1,09,1.1,452.0,M,49.2,M,,"
        )

    raw = [epoch(s, 0.0, 0.3 * s, 0.3) for s in range(0, 121, 5)]  # the crawl: 36 m
    raw += [epoch(s, 300.0, 0.3 * s, 0.3) for s in range(122, 135, 2)]  # off the street
    raw += [epoch(s, 0.0, 0.3 * s, 0.3) for s in range(136, 149, 2)]  # back on it
    raw += [epoch(s, 0.0, 44.4 + 5.0 * (s - 148), 5.0) for s in range(150, 171, 2)]  # off
    node = TestHost()
    svc = service(node)
    await through_driver(
        raw, tmp_path / "gps0", node, fixes=len(raw) // 2, burst_s=0.02, what="the jam"
    )
    assert node.counters.snapshot()["position.odometer_settled"] == 2
    driven = 0.3 * 148 + 5.0 * 22
    assert driven - 10 <= svc.odometer_m <= driven + 10

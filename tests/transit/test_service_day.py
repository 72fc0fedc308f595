"""The service day of a run sent without start_date (GTFS-RT's start_date, SIRI's
DataFrameRef): counted where the timetable is, not in UTC (from 00:00 to 01:00 or 02:00 in
Paris they differ), and from the run's start, GTFS times past 24:00:00 belonging to the day
before; a trip of frequencies.txt is named by its start_time and is UNSCHEDULED."""

import argparse
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from edged.ops.fleet import FleetView, JourneyInfo
from edged.transit import cli
from edged.transit.schedule import Schedule, ScheduleError, service_day
from edged.transit.service import FeedService, FeedSettings
from tests.helpers.gtfsrt import STATIC, FeedChecker
from tests.transit.support import PREFIX, SCHEDULED, Clock, vehicle

PARIS = ZoneInfo("Europe/Paris")
# 23:30 UTC on 15 January: 00:30 on the 16th in Paris (UTC+1 in winter)
LATE = datetime(2027, 1, 15, 23, 30, tzinfo=UTC).timestamp()
# 22:30 UTC on 30 June: 00:30 on 1 July in Paris (UTC+2 in summer)
SUMMER = datetime(2027, 6, 30, 22, 30, tzinfo=UTC).timestamp()
# 19:30 UTC on 15 January: 20:30 in Paris, nearer the 16th's 08:00 run than the 15th's;
# in UTC, nearer the 15th's
EVENING = datetime(2027, 1, 15, 19, 30, tzinfo=UTC).timestamp()
# 01:15 on the 16th in Paris: the GTFS spec's case of a run at 25:10:00 of the 15th
NIGHT = datetime(2027, 1, 16, 1, 15, tzinfo=PARIS).timestamp()
NIGHT_RUN = {"route_id": "creuse-shuttle", "trip_id": "creuse-shuttle-2510"}
FREQUENT_RUN = {"route_id": "creuse-shuttle", "trip_id": "creuse-shuttle-navette"}


@pytest.fixture(scope="module")
def night_gtfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated network with a night run at 25:10:00 (after midnight, the 15th's run
    on the 16th), a shuttle every 30 minutes in frequencies.txt (exact_times 0) and one
    that keeps its times (exact_times 1): every 30 minutes from 06:00 to 10:00 (10:00
    excluded), hourly from 16:00 to 19:00."""
    folder = tmp_path_factory.mktemp("gtfs") / "night"
    shutil.copytree(STATIC, folder)
    with (folder / "trips.txt").open("a") as trips:
        for trip in ("creuse-shuttle-2510", "creuse-shuttle-navette", "creuse-shuttle-cadence"):
            trips.write(f"creuse-shuttle,all,{trip},0,creuse-shuttle\n")
    with (folder / "stop_times.txt").open("a") as times:
        for trip, hour in (
            ("creuse-shuttle-2510", 25),
            ("creuse-shuttle-navette", 0),
            ("creuse-shuttle-cadence", 0),
        ):
            times.write(f"{trip},{hour:02d}:10:00,{hour:02d}:12:00,felletin-place-courtaud,1\n")
            times.write(f"{trip},{hour:02d}:20:11,{hour:02d}:21:41,aubusson-gare-routiere,2\n")
    (folder / "frequencies.txt").write_text(
        "trip_id,start_time,end_time,headway_secs,exact_times\n"
        "creuse-shuttle-navette,06:00:00,26:00:00,1800,0\n"
        "creuse-shuttle-cadence,06:00:00,10:00:00,1800,1\n"
        "creuse-shuttle-cadence,16:00:00,19:00:00,3600,1\n"
    )
    return folder


@pytest.fixture(scope="module")
def checker(night_gtfs: Path) -> FeedChecker:
    return FeedChecker(night_gtfs)


def published(
    at: float, run: dict[str, Any], schedule: Schedule | None, checker: FeedChecker
) -> FeedService:
    """A feed serving one vehicle on `run`, fix at `at`, its GTFS-RT judged by `checker`."""
    clock = Clock(at + 1)
    service = FeedService(FleetView(PREFIX, clock=clock), schedule=schedule, clock=clock)
    vehicle(service, "shuttle-01", run=run, at=at)
    checker.check(service.vehicle_positions().body, at=at + 1)
    return service


def trip_of(service: FeedService) -> rt.TripDescriptor:
    message = rt.FeedMessage()
    message.ParseFromString(service.vehicle_positions().body)
    (entity,) = message.entity
    return entity.vehicle.trip


def frame(
    at: float,
    settings: FeedSettings,
    schedule: Schedule | None = None,
    run: dict[str, Any] = SCHEDULED,
) -> str:
    """The DataFrameRef the SIRI Lite endpoint serves for one vehicle on `run`, fix at `at`."""
    clock = Clock(at + 1)
    service = FeedService(FleetView(PREFIX, clock=clock), settings, schedule=schedule, clock=clock)
    vehicle(service, "shuttle-01", run=run, at=at)
    body = json.loads(service.vehicle_monitoring().body)
    (vm,) = body["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"]
    (activity,) = vm["VehicleActivity"]
    ref = activity["MonitoredVehicleJourney"]["FramedVehicleJourneyRef"]
    assert ref["DatedVehicleJourneyRef"] == run["trip_id"]
    return str(ref["DataFrameRef"]["value"])


def test_after_midnight_in_paris_the_service_day_is_pariss_new_day() -> None:
    assert frame(LATE, FeedSettings()) == "2027-01-16"
    assert frame(SUMMER, FeedSettings()) == "2027-07-01"


def test_the_static_gtfs_agencys_zone_counts_when_no_zone_is_given() -> None:
    schedule = Schedule.load(STATIC)
    assert schedule.timezone == "Europe/Paris"
    assert frame(LATE, FeedSettings(), schedule) == "2027-01-16"


def test_a_zone_given_to_the_feed_wins_over_the_timetables() -> None:
    schedule = Schedule.load(STATIC)
    assert frame(EVENING, FeedSettings(), schedule) == "2027-01-16"  # the agency's Paris
    assert frame(EVENING, FeedSettings(timezone="UTC"), schedule) == "2027-01-15"
    assert frame(LATE, FeedSettings(timezone="America/Cayenne")) == "2027-01-15"


@pytest.mark.parametrize(
    ("start_time", "local", "day"),
    [
        ("08:00:00", datetime(2027, 1, 15, 8, 5), "20270115"),  # a morning run
        ("25:10:00", datetime(2027, 1, 16, 1, 15), "20270115"),  # past 24:00: the day before's
        ("23:30:00", datetime(2027, 1, 16, 0, 20), "20270115"),  # over midnight: keeps its day
        ("00:05:00", datetime(2027, 1, 15, 23, 50), "20270116"),  # early for the next day's
        # the clocks go forward on the 28th: its noon minus 12 h is 23:00 on the 27th
        ("00:30:00", datetime(2027, 3, 27, 23, 35), "20270328"),
    ],
)
def test_the_service_day_is_the_one_whose_start_of_the_run_is_nearest(
    start_time: str, local: datetime, day: str
) -> None:
    assert service_day(start_time, local.replace(tzinfo=PARIS).timestamp(), PARIS) == day


def test_a_timetabled_run_sent_without_start_date_is_published_with_its_service_day(
    checker: FeedChecker,
) -> None:
    """GTFS-RT: start_date tells which day's run a timetabled trip is; left to guess, a
    consumer takes its own today."""
    morning = datetime(2027, 1, 15, 8, 5, tzinfo=PARIS).timestamp()
    service = published(morning, SCHEDULED, Schedule.load(STATIC), checker)
    assert trip_of(service).start_date == "20270115"


def test_a_run_after_midnight_is_published_with_the_day_its_service_began(
    night_gtfs: Path, checker: FeedChecker
) -> None:
    """The 25:10:00 run at 01:15 on the 16th is the 15th's (the fix's day named the 16th's
    run, which leaves 24 hours later), in GTFS-RT and SIRI alike."""
    service = published(NIGHT, NIGHT_RUN, Schedule.load(night_gtfs), checker)
    assert trip_of(service).start_date == "20270115"
    body = json.loads(service.vehicle_monitoring().body)
    (activity,) = body["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"][0]["VehicleActivity"]
    ref = activity["MonitoredVehicleJourney"]["FramedVehicleJourneyRef"]
    assert ref["DataFrameRef"] == {"value": "2027-01-15"}


def test_without_a_timetable_a_run_sent_with_its_start_time_gets_its_service_day(
    checker: FeedChecker,
) -> None:
    service = published(NIGHT, {**NIGHT_RUN, "start_time": "25:10:00"}, None, checker)
    assert trip_of(service).start_date == "20270115"


def test_a_frequency_based_run_without_start_time_is_left_out_saying_why(
    night_gtfs: Path, checker: FeedChecker
) -> None:
    """GTFS-RT: start_time names which run of a frequencies.txt trip it is, and is required
    (E006): without it the whole feed was invalid."""
    service = published(NIGHT, FREQUENT_RUN, Schedule.load(night_gtfs), checker)
    assert not trip_of(service).trip_id
    (problem,) = service.trip_problems["creuse/shuttle-01"]
    assert "frequencies.txt" in problem and "start_time" in problem


def test_a_frequency_based_run_is_published_unscheduled_with_its_start_time_and_day(
    night_gtfs: Path, checker: FeedChecker
) -> None:
    """exact_times 0: the run keeps no timetable, which GTFS-RT calls UNSCHEDULED (E013)."""
    run = {**FREQUENT_RUN, "start_time": "24:40:00"}
    trip = trip_of(published(NIGHT, run, Schedule.load(night_gtfs), checker))
    assert (trip.trip_id, trip.start_time, trip.start_date) == (
        "creuse-shuttle-navette",
        "24:40:00",
        "20270115",
    )
    assert trip.schedule_relationship == rt.TripDescriptor.UNSCHEDULED


def test_a_trip_sent_with_its_start_date_keeps_it() -> None:
    run = {**SCHEDULED, "start_date": "20270115"}
    assert frame(LATE, FeedSettings(), run=run) == "2027-01-15"


def _gtfs_with_agencies(tmp_path: Path, *lines: str) -> Path:
    folder = tmp_path / "gtfs"
    shutil.copytree(STATIC, folder)
    header = "agency_id,agency_name,agency_url,agency_timezone,agency_lang\n"
    (folder / "agency.txt").write_text(header + "".join(f"{line}\n" for line in lines))
    return folder


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (
            ["a,A,https://a.example,Europe/Paris,fr", "b,B,https://b.example,Europe/Berlin,de"],
            "several time zones",
        ),
        (["a,A,https://a.example,Mars/Olympus_Mons,fr"], "'Mars/Olympus_Mons' is not an IANA"),
        (["a,A,https://a.example,../../../etc/passwd,fr"], "is not an IANA"),
        (["a,A,https://a.example,/etc/localtime,fr"], "is not an IANA"),
    ],
)
def test_a_timetable_whose_agency_zone_is_wrong_is_refused_saying_why(
    tmp_path: Path, lines: list[str], said: str
) -> None:
    with pytest.raises(ScheduleError, match="agency") as err:
        Schedule.load(_gtfs_with_agencies(tmp_path, *lines))
    assert said in str(err.value)


def test_a_timetable_without_an_agency_zone_leaves_the_choice_to_the_default(
    tmp_path: Path,
) -> None:
    schedule = Schedule.load(_gtfs_with_agencies(tmp_path, "a,A,https://a.example,,fr"))
    assert schedule.timezone is None
    assert frame(LATE, FeedSettings(), schedule) == "2027-01-16"


def _feed_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    return parser.parse_args(["feed", *argv])


def test_the_feed_takes_a_zone_and_refuses_one_that_does_not_exist() -> None:
    settings = cli.options(_feed_args("--timezone", "America/Cayenne"), PREFIX, []).settings
    assert settings.timezone == "America/Cayenne"
    assert cli.options(_feed_args(), PREFIX, []).settings.timezone is None
    for wrong in ("Europe/Pariss", "../etc/passwd", ""):
        with pytest.raises(ValueError, match=r"--timezone .*not an IANA time zone"):
            cli.options(_feed_args("--timezone", wrong), PREFIX, [])


@pytest.fixture(scope="module")
def calendar_gtfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated network with trips whose services do not run every day: `late-wd` at
    23:50 on weekdays of January 2027 (calendar.txt, 4th to 29th, both included), not on
    Tuesday the 19th but on Saturday the 16th (calendar_dates.txt, exceptions 2 and 1);
    `late-cd` at 23:50 and `night-cd` at 25:10 of a service that calendar_dates.txt alone
    defines: Monday the 18th only."""
    folder = tmp_path_factory.mktemp("gtfs") / "calendar"
    shutil.copytree(STATIC, folder)
    with (folder / "calendar.txt").open("a") as calendar:
        calendar.write("WD,1,1,1,1,1,0,0,20270104,20270129\n")
    (folder / "calendar_dates.txt").write_text(
        "service_id,date,exception_type\nWD,20270119,2\nWD,20270116,1\nCD,20270118,1\n"
    )
    with (folder / "trips.txt").open("a") as trips, (folder / "stop_times.txt").open("a") as st:
        for trip, service, hour in (("late-wd", "WD", 23), ("late-cd", "CD", 23),
                                    ("night-cd", "CD", 25)):
            trips.write(f"creuse-shuttle,{service},{trip},0,creuse-shuttle\n")
            st.write(f"{trip},{hour:02d}:50:00,{hour:02d}:51:00,felletin-place-courtaud,1\n")
            st.write(f"{trip},{hour + 1:02d}:00:11,{hour + 1:02d}:01:41,aubusson-gare-routiere,2\n")
    return folder


@pytest.fixture(scope="module")
def calendar_checker(calendar_gtfs: Path) -> FeedChecker:
    return FeedChecker(calendar_gtfs)


def _paris(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2027, 1, day, hour, minute, tzinfo=PARIS).timestamp()


@pytest.mark.parametrize(
    ("trip", "at", "day"),
    [
        ("late-wd", _paris(18, 11), "20270118"),  # Sunday's run is 11 h away but there is none
        ("late-cd", _paris(18, 11), "20270118"),  # a service in calendar_dates.txt alone
        ("late-wd", _paris(4, 11), "20270104"),  # the 3rd is before the service's start_date
        ("late-wd", _paris(17, 11), "20270116"),  # Saturday the 16th: added (exception 1)
        ("late-wd", _paris(21, 11), "20270120"),  # an ordinary weekday: the nearest run
        ("night-cd", _paris(19, 1, 15), "20270118"),  # 25:50 of the 18th, on the 19th
    ],
)
def test_a_run_is_named_by_the_nearest_day_its_service_runs(
    calendar_gtfs: Path, calendar_checker: FeedChecker, trip: str, at: float, day: str
) -> None:
    """The nearest day by the clock can be one the trip does not run (a weekend, a
    holiday): the run then named does not exist, and no consumer can match it."""
    run = {"route_id": "creuse-shuttle", "trip_id": trip}
    service = published(at, run, Schedule.load(calendar_gtfs), calendar_checker)
    assert trip_of(service).start_date == day


@pytest.mark.parametrize(
    ("trip", "start_date", "at"),
    [
        ("late-wd", "20270119", None),  # removed (exception 2)
        ("late-wd", "20270117", None),  # a Sunday
        ("late-wd", "20270103", None),  # the day before start_date
        ("late-wd", "20270201", None),  # a Monday after end_date
        ("late-cd", "20270119", None),  # not in calendar_dates.txt
        ("late-cd", None, _paris(20, 11)),  # no run of it within a day of the fix
        ("late-wd", None, _paris(31, 11)),  # a Sunday; Monday the 1st is after end_date
    ],
)
def test_a_run_on_a_day_its_service_does_not_run_is_left_out_saying_why(
    calendar_gtfs: Path,
    calendar_checker: FeedChecker,
    trip: str,
    start_date: str | None,
    at: float | None,
) -> None:
    at = _paris(19, 23, 55) if at is None else at
    run = {"route_id": "creuse-shuttle", "trip_id": trip}
    if start_date is not None:
        run["start_date"] = start_date
    service = published(at, run, Schedule.load(calendar_gtfs), calendar_checker)
    assert not trip_of(service).trip_id
    (entry,) = service.health()[1]["gtfs"]["unknown_ids"]
    assert entry["vehicle"] == "creuse/shuttle-01" and "does not run" in " ".join(entry["problems"])


@pytest.mark.parametrize(
    ("trip", "start_date"),
    [
        ("late-wd", "20270104"),  # start_date and end_date are service days
        ("late-wd", "20270129"),
        ("late-wd", "20270116"),  # added (exception 1)
        ("late-cd", "20270118"),
    ],
)
def test_a_run_sent_with_a_day_its_service_runs_keeps_it(
    calendar_gtfs: Path, calendar_checker: FeedChecker, trip: str, start_date: str
) -> None:
    run = {"route_id": "creuse-shuttle", "trip_id": trip, "start_date": start_date}
    at = _paris(int(start_date[6:]), 23, 55)
    service = published(at, run, Schedule.load(calendar_gtfs), calendar_checker)
    assert (trip_of(service).trip_id, trip_of(service).start_date) == (trip, start_date)


@pytest.mark.parametrize(
    ("start_time", "kept"),
    [
        ("06:00:00", True),
        ("08:00:00", True),
        ("17:00:00", True),
        ("06:07:00", False),  # not a multiple of the headway after the period's start
        ("10:00:00", False),  # end_time is not a start of the period
        ("16:30:00", False),  # the headway of the 16:00 period is an hour
        ("12:00:00", False),  # in no period
    ],
)
def test_a_run_of_an_exact_times_trip_is_named_only_at_one_of_its_start_times(
    night_gtfs: Path, checker: FeedChecker, start_time: str, kept: bool
) -> None:
    """frequencies.txt with exact_times 1 fixes the runs: start_time + n * headway_secs,
    before end_time (MobilityData E019). Another start_time names no run, and made the
    whole feed invalid."""
    run = {**FREQUENT_RUN, "trip_id": "creuse-shuttle-cadence", "start_time": start_time}
    at = datetime(2027, 1, 15, 12, 0, tzinfo=PARIS).timestamp()
    service = published(at, run, Schedule.load(night_gtfs), checker)
    trip = trip_of(service)
    assert (trip.trip_id, trip.start_time) == (
        ("creuse-shuttle-cadence", start_time) if kept else ("", "")
    )
    if kept:
        assert trip.schedule_relationship == rt.TripDescriptor.SCHEDULED
    else:
        (problem,) = service.trip_problems["creuse/shuttle-01"]
        assert "frequencies.txt" in problem and start_time in problem


def test_a_half_hour_start_of_a_half_hourly_exact_times_trip_is_one_of_its_runs(
    night_gtfs: Path,
) -> None:
    """The feed follows GTFS here, not the validator's port of upstream: its E019 for
    VehiclePositions renders each candidate's minutes as seconds % 360, so it matches
    whole hours only and reports 09:30:00 too (the TripUpdates branch reads it right)."""
    run = JourneyInfo(
        mode="on-demand",
        assigned=True,
        route_id="creuse-shuttle",
        trip_id="creuse-shuttle-cadence",
        start_time="09:30:00",
    )
    assert Schedule.load(night_gtfs).problems(run) == []


def test_a_feed_on_a_system_without_tzdata_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgectl feed` in a container without the zone database (Debian trixie's images):
    its default zone, Europe/Paris, could not be read and the command ended on a
    ZoneInfoNotFoundError traceback; it now says what to install, as a usage error."""
    from tests.helpers.zones import no_zone_database

    with no_zone_database(monkeypatch), pytest.raises(ValueError, match="tzdata"):
        FeedService(FleetView(PREFIX))


def test_a_zone_given_to_a_feed_without_tzdata_is_not_called_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """"'Europe/Paris': not an IANA time zone" sent the operator hunting for a typo."""
    from tests.helpers.zones import no_zone_database

    gtfs = _gtfs_with_agencies(tmp_path, "a,A,https://a.example,Europe/Paris,fr")
    with no_zone_database(monkeypatch):
        with pytest.raises(ValueError, match="tzdata"):
            cli.options(_feed_args("--timezone", "Europe/Paris"), PREFIX, [])
        with pytest.raises(ScheduleError, match="tzdata"):
            Schedule.load(gtfs)

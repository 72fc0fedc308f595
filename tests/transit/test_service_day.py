"""SIRI's DataFrameRef for a timetabled trip sent without start_date: its service day where
the timetable is, not the UTC date (from 00:00 to 01:00 or 02:00 in Paris they differ)."""

import argparse
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edged.ops.fleet import FleetView
from edged.transit import cli
from edged.transit.schedule import Schedule, ScheduleError
from edged.transit.service import FeedService, FeedSettings
from tests.helpers.gtfsrt import STATIC
from tests.transit.support import PREFIX, SCHEDULED, Clock, vehicle

# 23:30 UTC on 15 January: 00:30 on the 16th in Paris (UTC+1 in winter)
LATE = datetime(2027, 1, 15, 23, 30, tzinfo=UTC).timestamp()
# 22:30 UTC on 30 June: 00:30 on 1 July in Paris (UTC+2 in summer)
SUMMER = datetime(2027, 6, 30, 22, 30, tzinfo=UTC).timestamp()


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
    assert frame(LATE, FeedSettings(timezone="UTC"), Schedule.load(STATIC)) == "2027-01-15"
    assert frame(LATE, FeedSettings(timezone="America/Cayenne")) == "2027-01-15"


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

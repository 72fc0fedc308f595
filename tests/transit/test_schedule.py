"""The static GTFS check of assigned runs, and the simulated network's GTFS kept in sync."""

import zipfile
from pathlib import Path

import pytest

from edged.ops.fleet import JourneyInfo
from edged.transit.schedule import Schedule, ScheduleError
from hil.fleet import gtfs
from tests.helpers.gtfsrt import STATIC, zip_static


@pytest.fixture(scope="module")
def schedule(tmp_path_factory: pytest.TempPathFactory) -> Schedule:
    return Schedule.load(zip_static(out=tmp_path_factory.mktemp("gtfs") / "creuse.zip"))


def run(**kw: object) -> JourneyInfo:
    return JourneyInfo(mode="on-demand", assigned=True, **kw)  # type: ignore[arg-type]


def test_a_zip_and_its_folder_read_the_same(schedule: Schedule) -> None:
    folder = Schedule.load(STATIC)
    assert (folder.routes, folder.trips) == (schedule.routes, schedule.trips)
    assert len(schedule.routes) == 2 and len(schedule.trips) == 16


@pytest.mark.parametrize(
    ("journey", "problem"),
    [
        (run(route_id="creuse-shuttle", trip_id="creuse-shuttle-0800"), None),
        (run(route_id="nope", trip_id="creuse-shuttle-0800"), "route_id 'nope' is not in routes.txt"),
        (run(route_id="creuse-shuttle", trip_id="nope"), "trip_id 'nope' is not in trips.txt"),
        (run(route_id="gueret-la-souterraine", trip_id="creuse-shuttle-0800"), "belongs to route"),
        (run(route_id="creuse-shuttle", trip_id="creuse-shuttle-0800", direction_id=1), "direction_id 0"),
        (run(route_id="creuse-shuttle", trip_id="creuse-shuttle-0800", start_time="08:00:00"), None),
        (run(route_id="creuse-shuttle", trip_id="creuse-shuttle-0800", start_time="08:05:00"), "first arrival 08:00:00"),
        (run(route_id="creuse-shuttle", schedule_relationship="ADDED", start_date="20270101",
             start_time="25:00:00", direction_id=0), None),
        (run(route_id="creuse-shuttle", trip_id="creuse-shuttle-1000", schedule_relationship="ADDED"),
         "ADDED trip_id"),
    ],
)
def test_assigned_runs_are_checked_against_the_timetable(
    schedule: Schedule, journey: JourneyInfo, problem: str | None
) -> None:
    found = " ".join(schedule.problems(journey))
    assert (problem in found) if problem else found == ""


def test_an_archive_without_routes_says_which_file_is_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("trips.txt", "route_id,service_id,trip_id\n")
    with pytest.raises(ScheduleError, match=r"no routes\.txt"):
        Schedule.load(bad)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ScheduleError, match="cannot read"):
        Schedule.load(tmp_path / "junk.zip")


def test_the_committed_static_gtfs_is_what_the_route_files_make(tmp_path: Path) -> None:
    gtfs.write(tmp_path)
    made = {p.name: p.read_text() for p in tmp_path.glob("*.txt")}
    committed = {p.name: p.read_text() for p in STATIC.glob("*.txt")}
    assert made == committed, "run: python -m hil.fleet.gtfs"

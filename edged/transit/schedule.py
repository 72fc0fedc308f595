"""A static GTFS feed (zip or folder), read once, to check the runs dispatch assigns.

An assigned `route_id` or `trip_id` the timetable does not know would make the
GTFS-Realtime feed invalid (a consumer cannot match it), so such a run is left out of the
trip descriptors and listed on `/health` and in the log, saying what is wrong: the rules
are the MobilityData validator's E003/E004 (ids exist), E016 (an ADDED trip_id is not in
the timetable), E024 (direction_id matches trips.txt), E035 (the trip belongs to the route),
E023 (start_time of a timetabled trip is its first arrival) and E006 (a trip of
frequencies.txt names its instance with start_time).

The timetable also says when a trip sent without `start_date` starts, so the feeds can
name its service day (`service_day`), and on which days its service runs (calendar.txt,
calendar_dates.txt): a run named on a day its trip does not run names a run that does not
exist, and is left out the same way.
"""

import csv
import functools
import io
import math
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from core.errors import EdgedError
from core.zones import check_zone, zone_database
from edged.ops.fleet import JourneyInfo

MAX_FILE_BYTES = 2 * 1024**3
START_DATE = re.compile(r"[0-9]{8}")
START_TIME = re.compile(r"[0-9]{2}:[0-5][0-9]:[0-5][0-9]")
"""GTFS-Realtime's formats: YYYYMMDD, HH:MM:SS (past 24:00 for a service day's late trips)."""


def malformed(run: JourneyInfo) -> list[str]:
    """What in a run no consumer can read, timetable or not: a start_date that is not a
    YYYYMMDD day or a start_time not HH:MM:SS (validator E021, E020) makes the whole feed
    invalid, and SIRI's DataFrameRef is cut from start_date."""
    out: list[str] = []
    day = run.start_date
    if day is not None:
        try:
            if not START_DATE.fullmatch(day):
                raise ValueError(day)
            date(int(day[:4]), int(day[4:6]), int(day[6:]))
        except ValueError:
            out.append(f"start_date {day!r} is not a YYYYMMDD date")
    if run.start_time is not None and not START_TIME.fullmatch(run.start_time):
        out.append(f"start_time {run.start_time!r} is not HH:MM:SS")
    return out


def service_day(start_time: str, at: float, zone: ZoneInfo) -> str:
    """The service day (YYYYMMDD) of a run whose GTFS start time is `start_time`, running
    at `at`: the day whose start of that run is nearest to `at` (within 12 h either side).

    GTFS counts a trip's times from noon minus 12 h of its service day in the agency's zone
    (midnight, but on the days the clocks change), past 24:00:00 for a run after midnight:
    25:10:00 running at 01:15 on the 16th is the 15th's, and a run that started at 23:30
    keeps its day after midnight. Not the day of `at`, which names the next day's run,
    nor UTC's. Only a run more than 12 h late is ambiguous: dispatch then sends start_date."""
    return service_days(start_time, at, zone)[0]


RUN_WINDOW_S = 24 * 3600
"""How far from a fix a run's start may be for the run to be that day's, when the nearer
days' service does not run that trip (calendar.txt, calendar_dates.txt)."""


def service_days(start_time: str, at: float, zone: ZoneInfo) -> tuple[str, ...]:
    """The service days (YYYYMMDD) whose start of the run is within `RUN_WINDOW_S` of `at`,
    nearest first: `service_day`'s, then the others a trip whose service does not run on
    the nearest may be on."""
    # cached per minute: a fleet's runs share a few start times, and a minute moves the
    # boundaries by less than any run could mean
    return _service_days(start_time, int(at // 60), zone)


@functools.lru_cache(maxsize=4096)
def _service_days(start_time: str, minute: int, zone: ZoneInfo) -> tuple[str, ...]:
    hours, minutes, seconds = start_time.split(":")
    offset = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    at = minute * 60
    guess = datetime.fromtimestamp(at - offset, zone).date()

    def start(day: date) -> float:
        return datetime.combine(day, time(12), zone).timestamp() - 12 * 3600 + offset

    days = sorted(
        (abs(start(day) - at), day) for day in (guess + timedelta(days=d) for d in (-1, 0, 1))
    )
    nearest = [day for distance, day in days[:1]]
    nearest += [day for distance, day in days[1:] if distance <= RUN_WINDOW_S]
    return tuple(day.strftime("%Y%m%d") for day in nearest)


@dataclass
class Service:
    """When one service_id runs: calendar.txt's weekdays between its start_date and
    end_date (both included), then calendar_dates.txt's exceptions (1 adds a day, 2 removes
    one). A service that calendar_dates.txt alone defines runs on its added days only."""

    weekdays: tuple[bool, ...] = (False,) * 7
    start: date | None = None
    end: date | None = None
    added: set[date] = field(default_factory=set)
    removed: set[date] = field(default_factory=set)

    def runs_on(self, day: date) -> bool:
        if day in self.removed:
            return False
        if day in self.added:
            return True
        return (
            self.start is not None
            and self.end is not None
            and self.start <= day <= self.end
            and self.weekdays[day.weekday()]
        )


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _gtfs_date(text: str) -> date | None:
    if not START_DATE.fullmatch(text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _services(tables: "_Tables") -> dict[str, Service] | None:
    """Each service_id's days; None when the feed has neither calendar file (every trip is
    then taken to run every day: nothing says otherwise). Rows whose dates cannot be read
    are skipped."""
    found = False
    services: dict[str, Service] = {}
    for r in _rows(tables, "calendar.txt", True):
        found = True
        start, end = _gtfs_date(r.get("start_date", "")), _gtfs_date(r.get("end_date", ""))
        service = r.get("service_id", "")
        if start is None or end is None or not service:
            continue
        entry = services.setdefault(service, Service())
        entry.weekdays = tuple(r.get(d, "") == "1" for d in WEEKDAYS)
        entry.start, entry.end = start, end
    for r in _rows(tables, "calendar_dates.txt", True):
        found = True
        day, kind = _gtfs_date(r.get("date", "")), r.get("exception_type", "")
        service = r.get("service_id", "")
        if day is None or kind not in ("1", "2") or not service:
            continue
        entry = services.setdefault(service, Service())
        (entry.added if kind == "1" else entry.removed).add(day)
    return services if found else None


AREA_MARGIN_M = 1500.0
"""How far from the network's shapes (or stops) a vehicle is still in its area: a little
less than the mile (1,609 m) of MobilityData's E028, so nothing served here fails it."""
METRES_PER_DEGREE = 111_195.0


@dataclass(frozen=True)
class Area:
    """The network's bounding box grown by `AREA_MARGIN_M`: what MobilityData's E028 calls
    the agency's coverage area (over shapes.txt when it has more than three points, else
    over stops.txt). A position outside it is not a vehicle of this network."""

    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float

    @classmethod
    def around(cls, lats: list[float], lons: list[float]) -> "Area | None":
        """None when there is nothing to go by, or the points span more than half the
        world's longitudes (a network across the antimeridian: no box is drawn)."""
        if not lats or max(lons) - min(lons) > 180:
            return None
        grow = AREA_MARGIN_M / METRES_PER_DEGREE
        nearest_equator = min(abs(min(lats)), abs(max(lats)))
        if min(lats) < 0 < max(lats):
            nearest_equator = 0.0
        # a degree of longitude is shortest where the box is nearest a pole: growing by
        # the widest one here keeps the box inside the validator's
        widen = grow / max(math.cos(math.radians(nearest_equator)), 1e-6)
        return cls(min(lats) - grow, max(lats) + grow, min(lons) - widen, max(lons) + widen)

    def holds(self, lat: float, lon: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lon <= lon <= self.max_lon


SHAPE_MARGIN_DEG = 0.9 * 200 / METRES_PER_DEGREE
"""How far from its trip's shape a vehicle may be for the feeds to name its run: 90 % of
MobilityData's E029 buffer, which is 200 m counted in degrees of latitude and longitude
alike (so about 140 m east to west in France)."""
GRID_DEG = 0.01
MAX_CELLS = 10_000


class Shape:
    """A shapes.txt polyline (lon, lat in degrees) and which of its segments pass near each
    cell of a 0.01° grid, so a vehicle's distance costs a few segments, not the shape's."""

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.points = points
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.wide: list[int] = []
        last = len(points) - 1
        for i in range(max(last, 1) if points else 0):
            (x0, y0), (x1, y1) = points[i], points[min(i + 1, last)]
            cx0 = _cell(min(x0, x1) - SHAPE_MARGIN_DEG)
            cx1 = _cell(max(x0, x1) + SHAPE_MARGIN_DEG)
            cy0 = _cell(min(y0, y1) - SHAPE_MARGIN_DEG)
            cy1 = _cell(max(y0, y1) + SHAPE_MARGIN_DEG)
            if (cx1 - cx0 + 1) * (cy1 - cy0 + 1) > MAX_CELLS:
                self.wide.append(i)
                continue
            for cx in range(cx0, cx1 + 1):
                for cy in range(cy0, cy1 + 1):
                    self.cells.setdefault((cx, cy), []).append(i)

    def near(self, lat: float, lon: float) -> bool:
        """Within `SHAPE_MARGIN_DEG` of the polyline, in the plane of degrees (E029's)."""
        points, last = self.points, len(self.points) - 1
        for i in (*self.cells.get((_cell(lon), _cell(lat)), ()), *self.wide):
            (x0, y0), (x1, y1) = points[i], points[min(i + 1, last)]
            dx, dy = x1 - x0, y1 - y0
            length = dx * dx + dy * dy
            along = ((lon - x0) * dx + (lat - y0) * dy) / length if length else 0.0
            t = max(0.0, min(1.0, along))
            if math.hypot(lon - (x0 + t * dx), lat - (y0 + t * dy)) <= SHAPE_MARGIN_DEG:
                return True
        return False


def _cell(degrees: float) -> int:
    return math.floor(degrees / GRID_DEG)


def _points(tables: "_Tables", name: str, lat: str, lon: str) -> tuple[list[float], list[float]]:
    lats: list[float] = []
    lons: list[float] = []
    for r in _rows(tables, name, True):
        try:
            y, x = float(r.get(lat, "")), float(r.get(lon, ""))
        except ValueError:
            continue
        if -90 <= y <= 90 and -180 <= x <= 180:
            lats.append(y)
            lons.append(x)
    return lats, lons


def _shapes(tables: "_Tables") -> tuple[dict[str, Shape], Area | None]:
    """The shapes by shape_id, and the network's area (E028). As the validator: with three
    shape points or fewer in all there are no shapes (E029 is off) and the area is the
    stops'."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    lats: list[float] = []
    lons: list[float] = []
    for r in _rows(tables, "shapes.txt", True):
        try:
            y, x = float(r.get("shape_pt_lat", "")), float(r.get("shape_pt_lon", ""))
            seq = float(r.get("shape_pt_sequence", ""))
        except ValueError:
            continue
        if -90 <= y <= 90 and -180 <= x <= 180 and math.isfinite(seq):
            rows.setdefault(r.get("shape_id", ""), []).append((seq, x, y))
            lats.append(y)
            lons.append(x)
    if len(lats) <= 3:
        return {}, Area.around(*_points(tables, "stops.txt", "stop_lat", "stop_lon"))
    shapes = {key: Shape([(x, y) for _, x, y in sorted(pts)]) for key, pts in rows.items()}
    return shapes, Area.around(lats, lons)


def _seconds(clock: str) -> int:
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def _period(row: dict[str, str]) -> tuple[int, int, int] | None:
    """A frequencies.txt row as (start, end, headway) in seconds; None when unreadable."""
    try:
        start = _seconds(row.get("start_time", "").zfill(8))
        end = _seconds(row.get("end_time", "").zfill(8))
        headway = int(row.get("headway_secs", ""))
    except ValueError:
        return None
    return (start, end, headway) if headway > 0 else None


def _starts_a_period(start: int, periods: tuple[tuple[int, int, int], ...]) -> bool:
    return any(
        first <= start < end and (start - first) % headway == 0 for first, end, headway in periods
    )


class ScheduleError(EdgedError):
    """The static GTFS cannot be read; the message says which file and what to do."""


@dataclass(frozen=True)
class TripRow:
    route_id: str
    direction_id: int | None
    frequency_based: bool
    first_arrival: str | None
    unscheduled: bool = False
    """In frequencies.txt with exact_times 0 (or empty): no fixed times, which GTFS-Realtime
    calls UNSCHEDULED (E013)."""
    service_id: str = ""
    shape_id: str = ""
    exact_periods: tuple[tuple[int, int, int], ...] = ()
    """frequencies.txt's exact_times 1 periods (start, end, headway, in seconds): its runs
    start at start + n * headway, before end."""


@dataclass
class Schedule:
    source: str
    routes: frozenset[str]
    trips: dict[str, TripRow]
    timezone: str | None = None
    """agency.txt's agency_timezone: the zone of the timetable's service days."""
    services: dict[str, Service] | None = None
    """calendar.txt and calendar_dates.txt by service_id; None without either file."""
    area: Area | None = None
    """Where the network's vehicles can be (E028); None when the feed does not say."""
    shapes: dict[str, "Shape"] = field(default_factory=dict)
    """shapes.txt by shape_id (E029); none when it has three points or fewer in all."""

    @classmethod
    def load(cls, path: Path) -> "Schedule":
        try:
            with _opener(path) as open_table:
                routes = frozenset(r.get("route_id", "") for r in _rows(open_table, "routes.txt"))
                agencies = _rows(open_table, "agency.txt", True)
                zones = {z for r in agencies if (z := (r.get("agency_timezone") or "").strip())}
                frequencies: dict[str, bool] = {}  # trip_id: exact_times is 0 (or empty)
                exact: dict[str, list[tuple[int, int, int]]] = {}
                for r in _rows(open_table, "frequencies.txt", True):
                    trip = r.get("trip_id", "")
                    zero = r.get("exact_times", "") in ("", "0")
                    frequencies[trip] = frequencies.get(trip, False) or zero
                    period = _period(r)
                    if not zero and period is not None:
                        exact.setdefault(trip, []).append(period)
                first: dict[str, tuple[int, str]] = {}
                for r in _rows(open_table, "stop_times.txt", True):
                    try:
                        seq = int(r.get("stop_sequence") or 0)
                    except ValueError:
                        continue
                    trip = r.get("trip_id") or ""
                    when = (r.get("arrival_time") or r.get("departure_time") or "").strip()
                    if when and (trip not in first or seq < first[trip][0]):
                        first[trip] = (seq, when.zfill(8))
                trips = {
                    trip: TripRow(
                        r.get("route_id", ""),
                        int(d) if (d := r.get("direction_id", "")) in ("0", "1") else None,
                        trip in frequencies,
                        first[trip][1] if trip in first else None,
                        frequencies.get(trip, False),
                        r.get("service_id", ""),
                        r.get("shape_id", ""),
                        tuple(exact.get(trip, ())),
                    )
                    for r in _rows(open_table, "trips.txt")
                    if (trip := r.get("trip_id", ""))
                }
                services = _services(open_table)
                shapes, area = _shapes(open_table)
        except (OSError, zipfile.BadZipFile, csv.Error, UnicodeDecodeError) as exc:
            raise ScheduleError(f"cannot read the static GTFS {path}: {exc}") from None
        return cls(str(path), routes, trips, _zone(path, zones), services, area, shapes)

    def problems(self, run: JourneyInfo) -> list[str]:
        """What is wrong with an assigned run against this timetable (empty: it is fine)."""
        out: list[str] = []
        if run.route_id is not None and run.route_id not in self.routes:
            out.append(f"route_id {run.route_id!r} is not in routes.txt")
        if run.trip_id is None:
            return out
        row = self.trips.get(run.trip_id)
        if run.schedule_relationship == "ADDED":
            if row is not None:
                out.append(f"ADDED trip_id {run.trip_id!r} is in trips.txt: use a new id")
            return out
        if row is None:
            out.append(f"trip_id {run.trip_id!r} is not in trips.txt")
            return out
        if run.route_id is not None and row.route_id != run.route_id:
            out.append(
                f"trip_id {run.trip_id!r} belongs to route {row.route_id!r}, not {run.route_id!r}"
            )
        if run.direction_id is not None and row.direction_id not in (None, run.direction_id):
            out.append(f"trip_id {run.trip_id!r} has direction_id {row.direction_id}")
        if row.frequency_based and run.start_time is None:
            out.append(
                f"trip_id {run.trip_id!r} is in frequencies.txt: the run needs its start_time"
            )
        if (
            run.start_time is not None
            and row.exact_periods
            and START_TIME.fullmatch(run.start_time)
            and not _starts_a_period(_seconds(run.start_time), row.exact_periods)
        ):
            out.append(
                f"start_time {run.start_time} is not a run of trip {run.trip_id!r} in "
                "frequencies.txt (exact_times 1: a period's start_time plus a number of "
                "headway_secs, before its end_time)"
            )
        if (
            run.start_time is not None
            and not row.frequency_based
            and row.first_arrival is not None
            and run.start_time != row.first_arrival
        ):
            out.append(
                f"start_time {run.start_time} is not trip {run.trip_id!r}'s first arrival "
                f"{row.first_arrival}"
            )
        day = _gtfs_date(run.start_date or "")
        if day is not None and not self.runs_on(run, run.start_date or ""):
            out.append(
                f"trip_id {run.trip_id!r} does not run on {run.start_date} (its service "
                f"{row.service_id!r} in calendar.txt / calendar_dates.txt)"
            )
        return out

    def off_shape(self, run: JourneyInfo, lat: float, lon: float) -> bool:
        """A run's vehicle too far from its trip's shape to be on it (E029)."""
        if run.trip_id is None:
            return False
        row = self.trips.get(run.trip_id)
        shape = None if row is None else self.shapes.get(row.shape_id)
        return shape is not None and not shape.near(lat, lon)

    def runs_on(self, run: JourneyInfo, day: str) -> bool:
        """Whether the run's trip runs on service day `day` (YYYYMMDD) by the calendar: an
        ADDED run or one not in the timetable runs any day, and so does every trip of a
        feed without calendar.txt and calendar_dates.txt."""
        row = self._timetabled(run)
        if row is None or self.services is None:
            return True
        service = self.services.get(row.service_id)
        moment = _gtfs_date(day)
        return service is not None and moment is not None and service.runs_on(moment)

    def _timetabled(self, run: JourneyInfo) -> TripRow | None:
        if run.trip_id is None or run.schedule_relationship == "ADDED":
            return None
        return self.trips.get(run.trip_id)

    def start_time(self, run: JourneyInfo) -> str | None:
        """When the run starts (GTFS time): its own start_time, else its trip's first
        arrival (a trip of frequencies.txt has none: its runs need start_time)."""
        if run.start_time is not None:
            return run.start_time
        row = self._timetabled(run)
        if row is None or row.frequency_based or row.first_arrival is None:
            return None
        return row.first_arrival if START_TIME.fullmatch(row.first_arrival) else None

    def unscheduled(self, run: JourneyInfo) -> bool:
        """A run of an exact_times 0 trip: GTFS-Realtime's UNSCHEDULED, not SCHEDULED."""
        row = self._timetabled(run)
        return row is not None and row.unscheduled


def _zone(path: Path, zones: set[str]) -> str | None:
    """GTFS: every agency of a feed has the same agency_timezone, an IANA name."""
    if len(zones) > 1:
        raise ScheduleError(f"{path}: agency.txt names several time zones ({sorted(zones)})")
    zone = next(iter(zones), None)
    if zone is not None:
        try:
            check_zone(zone)
        except ValueError as exc:
            if not zone_database():  # every name is unknown: say what is missing
                raise ScheduleError(f"{path}: agency.txt's agency_timezone: {exc}") from None
            raise ScheduleError(
                f"{path}: agency.txt's agency_timezone {zone!r} is not an IANA zone"
            ) from None
    return zone


@contextmanager
def _opener(path: Path) -> Iterator["_Tables"]:
    if path.is_dir():
        yield _Tables(None, path)
        return
    with zipfile.ZipFile(path) as archive:
        yield _Tables(archive, path)


class _Tables:
    def __init__(self, archive: zipfile.ZipFile | None, path: Path) -> None:
        self.archive = archive
        self.path = path

    def open(self, name: str) -> IO[bytes] | None:
        if self.archive is None:
            file = self.path / name
            return file.open("rb") if file.is_file() else None
        names = {Path(n).name: n for n in self.archive.namelist()}
        if name not in names:
            return None
        info = self.archive.getinfo(names[name])
        if info.file_size > MAX_FILE_BYTES:
            raise ScheduleError(f"{name} in {self.path} is over {MAX_FILE_BYTES} bytes")
        return self.archive.open(info)


def _rows(tables: _Tables, name: str, optional: bool = False) -> Iterator[dict[str, str]]:
    raw = tables.open(name)
    if raw is None:
        if optional:
            return
        raise ScheduleError(f"the static GTFS {tables.path} has no {name}")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        for row in csv.DictReader(text):
            yield {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}

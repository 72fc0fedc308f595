"""The static GTFS of the simulated network, made from the route files (config/routes).

    python -m hil.fleet.gtfs [DIR]     writes config/gtfs/creuse/ (or DIR)

One route per route file (its file name is the route_id), its stops, its shape (the
waypoints), and a timetabled trip every two hours from 06:00 to 20:00 whose stop times
follow the simulator's own pace, so a simulated vehicle on a timetabled trip is where the
timetable says. A test keeps the committed files equal to what this writes."""

import csv
import io
import re
import sys
import unicodedata
from pathlib import Path

from hil.fleet.track import ROUTES, Track, tracks

OUT = ROUTES.parent / "gtfs" / "creuse"
DEPARTURES = range(6 * 3600, 20 * 3600 + 1, 2 * 3600)


def stop_id(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def trip_id(route: str, departure_s: int) -> str:
    return f"{route}-{departure_s // 3600:02d}{departure_s % 3600 // 60:02d}"


def stop_calls(track: Track) -> list[tuple[str, float, float]]:
    """(stop id, arrival s, departure s) from the loop's start, each stop once."""
    calls, seen = [], set()
    for start, duration, a, _, speed, _ in track.segments:
        if speed == 0.0 and a.stop and a.stop not in seen:
            seen.add(a.stop)
            calls.append((stop_id(a.stop), start, start + duration))
    return calls


TIMEZONE = "Europe/Paris"
"""The agency's: GTFS dates and times (start_date, start_time) are local service days."""


def tables(all_tracks: list[Track]) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {
        "agency.txt": [
            ["agency_id", "agency_name", "agency_url", "agency_timezone", "agency_lang"],
            [
                "creuse",
                "Navettes et marchés de services (simulation edged)",
                "https://example.org/edged",
                TIMEZONE,
                "fr",
            ],
        ],
        "calendar.txt": [
            [
                "service_id",
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
                "start_date",
                "end_date",
            ],
            ["all", "1", "1", "1", "1", "1", "1", "1", "20240101", "20351231"],
        ],
        "routes.txt": [
            ["route_id", "agency_id", "route_short_name", "route_long_name", "route_type"]
        ],
        "stops.txt": [["stop_id", "stop_name", "stop_lat", "stop_lon"]],
        "shapes.txt": [["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"]],
        "trips.txt": [["route_id", "service_id", "trip_id", "direction_id", "shape_id"]],
        "stop_times.txt": [
            ["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"]
        ],
    }
    stops: dict[str, list[str]] = {}
    for n, track in enumerate(all_tracks, 1):
        route = track.name
        out["routes.txt"].append([route, "creuse", str(n), track.route.name, "3"])
        for w in track.route.waypoints:
            if w.stop:
                stops.setdefault(stop_id(w.stop), [stop_id(w.stop), w.stop, f"{w.lat}", f"{w.lon}"])
        points = [*track.route.waypoints, track.route.waypoints[0]]
        for i, w in enumerate(points, 1):
            out["shapes.txt"].append([route, f"{w.lat}", f"{w.lon}", str(i)])
        for dep in DEPARTURES:
            trip = trip_id(route, dep)
            out["trips.txt"].append([route, "all", trip, "0", route])
            for seq, (stop, arrive, leave) in enumerate(stop_calls(track), 1):
                out["stop_times.txt"].append(
                    [trip, hms(dep + arrive), hms(dep + leave), stop, str(seq)]
                )
    out["stops.txt"] += sorted(stops.values())
    return out


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables(tracks()).items():
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        (folder / name).write_text(buf.getvalue(), encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)

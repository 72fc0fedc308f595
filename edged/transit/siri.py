"""SIRI Lite VehicleMonitoring (JSON, in the French profile's shape).

The shape the French SIRI Lite producers serve: `Siri.ServiceDelivery` with one
`VehicleMonitoringDelivery` (`Version` "2.0", `Status` "true") holding a `VehicleActivity`
per served vehicle; references as `{"value": …}`, names as `[{"value": …}]`, times in
ISO 8601 UTC. Occupancy uses the SIRI 2.0 values (`seatsAvailable`, `standingAvailable`,
`full`) mapped from GTFS-Realtime's; a vehicle without occupancy data has none.
"""

import json
import uuid
from datetime import UTC, datetime, tzinfo
from typing import Any

from edged.transit.vehicles import Served

OCCUPANCY = {
    "EMPTY": "seatsAvailable",
    "MANY_SEATS_AVAILABLE": "seatsAvailable",
    "FEW_SEATS_AVAILABLE": "seatsAvailable",
    "STANDING_ROOM_ONLY": "standingAvailable",
    "CRUSHED_STANDING_ROOM_ONLY": "standingAvailable",
    "FULL": "full",
    "NOT_ACCEPTING_PASSENGERS": "full",
}


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ref(value: str) -> dict[str, str]:
    return {"value": value}


def activity(served: Served, valid_s: float, zone: tzinfo = UTC) -> dict[str, Any]:
    """`zone`: where the day of a run is counted when the feed could not work out its
    service day (no start_date, and no start time known: no start_time and no timetable),
    the day of its fix there (at 00:30 in Paris, 23:30 UTC, that is Paris's new day, not
    UTC's last one). A run whose start is known comes with its start_date filled in."""
    node, position = served.node, served.node.position
    assert position is not None
    journey: dict[str, Any] = {}
    run = served.trip
    if run is not None:
        if run.route_id is not None:
            journey["LineRef"] = _ref(run.route_id)
        if run.direction_id is not None:
            journey["DirectionRef"] = _ref(str(run.direction_id))
        d = run.start_date or datetime.fromtimestamp(served.fix_s, zone).strftime("%Y%m%d")
        # an ADDED run may come without start_date/start_time: its service day then, never
        # "None" (the same made-up id for every such run)
        dated = run.trip_id or ":".join(p for p in (node.key, d, run.start_time) if p)
        journey["FramedVehicleJourneyRef"] = {
            "DataFrameRef": _ref(f"{d[:4]}-{d[4:6]}-{d[6:]}"),
            "DatedVehicleJourneyRef": dated,
        }
        if run.line is not None:
            journey["PublishedLineName"] = [_ref(run.line)]
        if run.headsign is not None:
            journey["DestinationName"] = [_ref(run.headsign)]
    journey["VehicleLocation"] = {"Longitude": position.lon, "Latitude": position.lat}
    if position.course is not None:
        journey["Bearing"] = round(position.course % 360, 1)
    occupancy = OCCUPANCY.get(served.occupancy_status or "")
    if occupancy is not None:
        journey["Occupancy"] = occupancy
    journey["VehicleRef"] = _ref(node.key)
    journey["Monitored"] = True
    return {
        "RecordedAtTime": iso(served.fix_s),
        "ValidUntilTime": iso(served.fix_s + valid_s),
        "VehicleMonitoringRef": _ref(node.key),
        "MonitoredVehicleJourney": journey,
    }


def delivery(
    vehicles: list[Served], now: float, producer: str, valid_s: float, zone: tzinfo = UTC
) -> bytes:
    return delivery_of([activity(v, valid_s, zone) for v in vehicles], now, producer)


def delivery_of(activities: list[dict[str, Any]], now: float, producer: str) -> bytes:
    stamp = iso(now)
    body = {
        "Siri": {
            "ServiceDelivery": {
                "ResponseTimestamp": stamp,
                "ProducerRef": producer,
                "ResponseMessageIdentifier": f"{producer}:ResponseMessage::{uuid.uuid4()}:LOC",
                "VehicleMonitoringDelivery": [
                    {
                        "ResponseTimestamp": stamp,
                        "Version": "2.0",
                        "Status": "true",
                        "VehicleActivity": activities,
                    }
                ],
            }
        }
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

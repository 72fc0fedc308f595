"""GTFS-Realtime VehiclePositions: one entity per served vehicle, as protobuf and JSON.

Each entity is encoded once per change of its vehicle and kept; a feed is the header
followed by the kept entities, framed as the repeated field 2 of `FeedMessage` (what
`SerializeToString` would write), so a poll costs little more than the vehicles that moved.
"""

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.transit import gtfs_realtime_pb2 as rt

from edged.transit.vehicles import Served

ENTITY_FIELD = b"\x12"  # FeedMessage.entity: field 2, length-delimited
MAX_CACHE = 20_000


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def trip_descriptor(served: Served) -> rt.TripDescriptor | None:
    run = served.trip
    if run is None:
        return None
    trip = rt.TripDescriptor()
    if run.trip_id is not None:
        trip.trip_id = run.trip_id
    if run.route_id is not None:
        trip.route_id = run.route_id
    if run.direction_id is not None:
        trip.direction_id = run.direction_id
    if run.start_time is not None:
        trip.start_time = run.start_time
    if run.start_date is not None:
        trip.start_date = run.start_date
    trip.schedule_relationship = RELATIONSHIPS.get(
        run.schedule_relationship or "", rt.TripDescriptor.SCHEDULED
    )
    return trip


RELATIONSHIPS = {
    "ADDED": rt.TripDescriptor.ADDED,
    "UNSCHEDULED": rt.TripDescriptor.UNSCHEDULED,  # a run of an exact_times 0 trip (E013)
}


OCCUPANCY = {v.name: v.number for v in rt.VehiclePosition.OccupancyStatus.DESCRIPTOR.values}


def entity(served: Served) -> rt.FeedEntity:
    """One vehicle as a FeedEntity (built from plain dicts: the fastest way in)."""
    position = served.node.position
    assert position is not None
    pos: dict[str, float] = {"latitude": position.lat, "longitude": position.lon}
    if position.course is not None:
        pos["bearing"] = position.course % 360
    if position.speed_ms is not None:
        pos["speed"] = position.speed_ms
    if position.odometer_m is not None:
        pos["odometer"] = position.odometer_m
    vehicle: dict[str, Any] = {
        "vehicle": {"id": served.key, "label": served.label},
        "position": pos,
        "timestamp": int(served.fix_s),
    }
    status = served.occupancy_status
    if status is not None:
        vehicle["occupancy_status"] = OCCUPANCY[status]
    percentage = served.occupancy_percentage
    if percentage is not None and percentage >= 0:
        vehicle["occupancy_percentage"] = percentage
    trip = trip_descriptor(served)
    if trip is not None:
        vehicle["trip"] = trip
    return rt.FeedEntity(id=served.key, vehicle=vehicle)


class Encoder:
    """Entity bytes per vehicle, re-encoded only when the vehicle changed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, bool, int], bytes]] = {}

    def framed(self, served: Served) -> bytes:
        # the fix time too: one ahead of the clock is stamped with the clock until it passes
        stamp = (served.node.changed, served.trip is not None, int(served.fix_s))
        hit = self._cache.get(served.key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        raw = entity(served).SerializeToString()
        data = ENTITY_FIELD + _varint(len(raw)) + raw
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[served.key] = (stamp, data)
        return data

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what vehicles no longer served hold (memory stays bounded by the fleet)."""
        wanted = set(keep)
        for key in [k for k in self._cache if k not in wanted]:
            del self._cache[key]

    def feed(self, frames: list[bytes], timestamp: int) -> bytes:
        """The header, then the framed entities (from `framed`)."""
        header = rt.FeedHeader(
            gtfs_realtime_version="2.0",
            incrementality=rt.FeedHeader.FULL_DATASET,
            timestamp=timestamp,
        )
        head = rt.FeedMessage(header=header).SerializeToString()
        return b"".join([head, *frames])


def as_json(feed: bytes) -> bytes:
    """The same feed in the protobuf JSON mapping, with the .proto's field names."""
    message = rt.FeedMessage()
    message.ParseFromString(feed)
    text = json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None)
    return text.encode()

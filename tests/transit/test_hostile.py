"""Fault hunt on the feed: what one node's payloads or one HTTP client can do to what every
consumer is served (DESIGN.md rule 7)."""

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.transit import gtfs_realtime_pb2 as rt

from edged.transit.server import FeedServer
from tests.helpers.gtfsrt import FeedChecker
from tests.transit.support import (
    ADDED,
    NOW,
    SCHEDULED,
    Clock,
    feed,
    msg,
    position,
    put,
    vehicle,
)

VP = "/gtfs-rt/vehicle-positions"
SIRI = "/siri-lite/vehicle-monitoring.json"
LONE = "\ud800"  # what JSON's "\ud800" escape gives Python: no encoder takes it


@pytest.fixture(scope="module")
def checker() -> FeedChecker:
    return FeedChecker()


def _raw_json(**body: Any) -> bytes:
    """JSON as a hostile node writes it: `\\ud800` escapes survive json.dumps's ASCII mode."""
    return msg(**body)


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        ("state", {"state": "online", "since": 1, "name": f"Navette {LONE}"}),
        ("journey", {"mode": "on-demand", "assigned": True, **SCHEDULED, "headsign": f"G{LONE}"}),
        ("journey", {"mode": "on-demand", "assigned": True, **SCHEDULED, "line": f"1{LONE}"}),
        ("journey", {"mode": "on-demand", "assigned": True, **ADDED, "route_id": f"r{LONE}"}),
    ],
)
def test_a_lone_surrogate_from_one_node_never_breaks_the_feeds_of_the_others(
    checker: FeedChecker, suffix: str, body: dict[str, Any]
) -> None:
    """One node's `"name": "\\ud800"` made every GTFS-RT (and SIRI) request a 500."""
    service = feed(Clock(NOW))
    vehicle(service, "good")
    vehicle(service, "evil")
    assert put(service, "evil", suffix, _raw_json(**body))
    message = checker.check(service.vehicle_positions().body, at=NOW)
    assert {e.id for e in message.entity} == {"creuse/good", "creuse/evil"}
    json.loads(service.vehicle_positions_json().body)
    siri = json.loads(service.vehicle_monitoring().body)
    activities = siri["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"][0]["VehicleActivity"]
    assert len(activities) == 2
    json.dumps(service.health()[1]).encode()
    bare = feed(Clock(NOW), schedule=False)  # no timetable: the run is named as sent
    vehicle(bare, "evil")
    assert put(bare, "evil", suffix, _raw_json(**body))
    parsed = rt.FeedMessage()
    parsed.ParseFromString(bare.vehicle_positions().body)
    assert len(parsed.entity) == 1 and LONE not in str(parsed)
    json.loads(bare.vehicle_monitoring().body)


@pytest.mark.parametrize(
    "bad",
    [
        {"start_date": "garbage!"},
        {"start_date": "20270230"},  # no such day
        {"start_date": "2027-1-1"},
        {"start_time": "99:99"},
        {"start_time": "14:61:00"},
        {"start_time": "1:30:00"},
    ],
)
@pytest.mark.parametrize("timetable", [True, False])
def test_a_run_with_a_malformed_start_date_or_time_is_left_out_of_the_trip_descriptors(
    checker: FeedChecker, bad: dict[str, str], timetable: bool
) -> None:
    """GTFS-RT wants YYYYMMDD and HH:MM:SS (validator E021, E020): one node's junk made the
    whole feed invalid, and SIRI's DataFrameRef was cut from it ("ga-rb-ag")."""
    service = feed(Clock(NOW), schedule=timetable)
    vehicle(service, "good", run=ADDED)
    vehicle(service, "evil", run={**ADDED, **bad})
    served = {e.id: e.vehicle for e in checker.check(service.vehicle_positions().body).entity}
    assert served["creuse/good"].HasField("trip") and not served["creuse/evil"].HasField("trip")
    siri = json.loads(service.vehicle_monitoring().body)
    activities = siri["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"][0]["VehicleActivity"]
    refs = [a["MonitoredVehicleJourney"].get("FramedVehicleJourneyRef") for a in activities]
    assert sum(r is not None for r in refs) == 1
    if timetable:
        problems = {p["vehicle"] for p in service.health()[1]["gtfs"]["unknown_ids"]}
        assert problems == {"creuse/evil"}


async def test_a_change_within_the_second_of_the_last_one_is_not_hidden_by_if_modified_since() -> None:
    """Last-Modified has one-second resolution: a poller that got the feed at 12:00:00.1 and
    asked again with If-Modified-Since 12:00:00 got 304 for a feed changed at 12:00:00.9,
    and kept the old positions until the next change (forever, for a quiet fleet). Within
    its second the version served stays (one content per timestamp, E017): the change
    comes at the next second, with its own Last-Modified."""
    clock = Clock(NOW + 0.1)
    service = feed(clock)
    vehicle(service, "a")
    async with TestClient(TestServer(FeedServer(service, page=False).app)) as client:
        for step, path in enumerate((VP, SIRI, VP + ".json")):
            first = await client.get(path)
            since = first.headers["Last-Modified"]
            clock.t += 0.01
            put(service, "a", "position", position(lat=45.9 + step / 100, seq=10 + step))
            held = await client.get(path, headers={"If-Modified-Since": since})
            assert held.status == 304 and held.headers["ETag"] == first.headers["ETag"]
            clock.t += 1
            again = await client.get(path, headers={"If-Modified-Since": since})
            assert again.status == 200 and again.headers["ETag"] != first.headers["ETag"]
            unchanged = await client.get(path, headers={"If-None-Match": again.headers["ETag"]})
            assert unchanged.status == 304
            since = again.headers["Last-Modified"]
            assert (await client.get(path, headers={"If-Modified-Since": since})).status == 304


def test_the_header_timestamp_never_goes_back_when_a_vehicle_ahead_leaves() -> None:
    """A fix up to 60 s ahead is served, stamped no later than the header (E012); when the
    header followed that fix and the vehicle then left, the header went back to the feed's
    clock: E018 ("header timestamp decreased") for every consumer, from one node's clock."""
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "steady")
    vehicle(service, "ahead", at=NOW + 50)

    def header() -> int:
        message = rt.FeedMessage()
        message.ParseFromString(service.vehicle_positions().body)
        return int(message.header.timestamp)

    first = header()
    assert first == int(NOW)  # the feed's clock, which the fix ahead is stamped with
    clock.t += 2
    put(service, "ahead", "state", b'{"state":"offline"}')
    assert header() >= first
    clock.t += 100  # the feed's clock passes it: the header follows the clock again
    vehicle(service, "steady", at=clock.t)
    assert header() == int(clock.t)


def test_a_fix_ahead_of_the_feeds_clock_does_not_hold_the_header_while_the_feed_changes(
    checker: FeedChecker,
) -> None:
    """MobilityData E017 ("content changed but has the same header timestamp"): a node whose
    clock ran 50 s fast pinned the header at its fix time, so for 50 s every poll got the
    other vehicles' new positions under one header timestamp. GTFS-RT's header timestamp
    says when the content was created: the fix is stamped no later than the feed's clock."""
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "ahead", at=NOW + 50)
    polls = []
    for step in range(3):
        vehicle(service, "steady", at=clock.t, lat=45.95 + step / 1000)
        polls.append((service.vehicle_positions().body, clock.t))
        clock.t += 10
    checker.check_polls(polls)


def test_an_added_run_sent_without_date_or_time_has_no_none_in_its_siri_reference() -> None:
    """An ADDED run without start_date/start_time (valid GTFS-RT) was named
    `fleet/node:None:None` in SIRI: the same made-up id for every such run of the vehicle."""
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "a", run={"schedule_relationship": "ADDED", "route_id": "gueret-la-souterraine"})
    siri = json.loads(service.vehicle_monitoring().body)
    (activity,) = siri["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"][0]["VehicleActivity"]
    ref = activity["MonitoredVehicleJourney"]["FramedVehicleJourneyRef"]
    day = ref["DataFrameRef"]["value"].replace("-", "")
    assert "None" not in ref["DatedVehicleJourneyRef"]
    assert ref["DatedVehicleJourneyRef"].startswith(f"creuse/a:{day}")


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (89.9, 179.9),  # valid numbers (E026 passes), nowhere near the network
        (-89.9, -179.9),
        (45.9558, 2.1801 + 0.04),  # 3 km east of the network's shapes
        (46.2383 + 0.025, 1.8),  # 2.8 km north of them
    ],
)
def test_a_position_outside_the_networks_area_is_left_out_and_the_others_served(
    checker: FeedChecker, lat: float, lon: float
) -> None:
    """MobilityData E028 ("vehicle position outside agency coverage area", more than a
    mile from every shape, or every stop without shapes): one node with a valid
    certificate publishing a position far from the network made the whole GTFS-RT feed
    invalid for everyone. Such a vehicle is left out, as one without a fix."""
    service = feed(Clock(NOW))
    vehicle(service, "good")
    vehicle(service, "evil", lat=lat, lon=lon)
    assert set(entities_of(checker, service.vehicle_positions().body)) == {"creuse/good"}
    siri = json.loads(service.vehicle_monitoring().body)
    activities = siri["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"][0]["VehicleActivity"]
    assert [a["VehicleMonitoringRef"]["value"] for a in activities] == ["creuse/good"]
    assert service.health()[1]["vehicles"]["left_out"]["outside_area"] == 1


def test_a_vehicle_a_kilometre_off_the_networks_shapes_is_still_served(
    checker: FeedChecker,
) -> None:
    """A depot or a detour near the network is within the validator's mile: served."""
    service = feed(Clock(NOW))
    vehicle(service, "depot", lat=46.2383 + 0.009, lon=1.4878 - 0.012)  # 1 km N, 0.9 km W
    assert entities_of(checker, service.vehicle_positions().body) == ["creuse/depot"]


def test_without_a_timetable_no_position_is_outside_the_area() -> None:
    """Without --gtfs the feed knows no network: every valid position is served."""
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "far", lat=-45.0, lon=170.0)
    parsed = rt.FeedMessage()
    parsed.ParseFromString(service.vehicle_positions().body)
    assert [e.id for e in parsed.entity] == ["creuse/far"]


def entities_of(checker: FeedChecker, body: bytes) -> list[str]:
    return [e.id for e in checker.check(body, at=NOW).entity]


def test_a_vehicle_far_from_its_trips_shape_is_served_without_its_trip(
    checker: FeedChecker,
) -> None:
    """MobilityData E029 ("vehicle position far from trip shape", 200 m): a node on a
    timetabled run publishing a position inside the network's area but away from its trip's
    shape made the whole feed invalid. The vehicle is served without the run while it is
    off the shape, the problem listed on /health; back on it, the run is named again."""
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "good", run=SCHEDULED)
    vehicle(service, "evil", run=SCHEDULED, lat=46.17, lon=2.17)  # 20 km north of its shape
    served = {e.id: e.vehicle for e in checker.check(service.vehicle_positions().body).entity}
    assert served["creuse/good"].trip.trip_id == SCHEDULED["trip_id"]
    assert set(served) == {"creuse/good", "creuse/evil"}
    assert not served["creuse/evil"].HasField("trip")
    (entry,) = service.health()[1]["gtfs"]["unknown_ids"]
    assert entry["vehicle"] == "creuse/evil" and "shape" in " ".join(entry["problems"])
    clock.t += 1
    put(service, "evil", "position", position(at=NOW + 1, seq=2))  # back on its route
    served = {e.id: e.vehicle for e in checker.check(service.vehicle_positions().body).entity}
    assert served["creuse/evil"].trip.trip_id == SCHEDULED["trip_id"]
    assert service.health()[1]["gtfs"]["unknown_ids"] == []


@pytest.mark.parametrize(
    "node",
    ["n" * 64, "n" * 100_000, "UPPER", "a/b", "+", "#", "caf\u00e9", "a b", "-dash-first"],
)
def test_a_topic_with_a_node_id_no_node_can_have_is_ignored_and_the_others_served(
    checker: FeedChecker, node: str
) -> None:
    """Ids are `[a-z0-9][a-z0-9_-]{0,62}` by the topic rule (they become GTFS-RT's
    entity and vehicle ids): anything else on the broker is not a vehicle of the feed."""
    service = feed(Clock(NOW))
    vehicle(service, "good")
    service.view.ingest(f"rnst/v1/creuse/{node}/position", position())
    service.view.ingest(f"rnst/v1/creuse/{node}/state", msg(state="online", since=1))
    assert entities_of(checker, service.vehicle_positions().body) == ["creuse/good"]
    assert service.view.ignored >= 2


def test_journey_texts_a_node_sends_reach_siri_cut_to_length_printable_and_as_json_text() -> None:
    """SIRI Lite is JSON (no XML to break out of); a node's route, trip, line and headsign
    are cut to their lengths with control and format characters replaced; the vehicle's
    own references are its topic's, which no payload sets."""
    hostile = '</Siri>"\\\x00\x1b[2J\u202e\r\n' + "<x>" * 20_000
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "good")
    run = {**ADDED, "route_id": hostile, "trip_id": hostile, "line": hostile, "headsign": hostile}
    vehicle(service, "evil", run=run)
    siri = json.loads(service.vehicle_monitoring().body)
    activities = siri["Siri"]["ServiceDelivery"]["VehicleMonitoringDelivery"][0]["VehicleActivity"]
    refs = {a["VehicleMonitoringRef"]["value"]: a["MonitoredVehicleJourney"] for a in activities}
    assert sorted(refs) == ["creuse/evil", "creuse/good"]
    evil = refs["creuse/evil"]
    assert evil["VehicleRef"] == {"value": "creuse/evil"}
    texts = {
        "LineRef": (evil["LineRef"]["value"], 128),
        "DatedVehicleJourneyRef": (evil["FramedVehicleJourneyRef"]["DatedVehicleJourneyRef"], 128),
        "PublishedLineName": (evil["PublishedLineName"][0]["value"], 40),
        "DestinationName": (evil["DestinationName"][0]["value"], 80),
    }
    for name, (text, limit) in texts.items():
        assert len(text) <= limit and text.isprintable(), name
        assert text.startswith('</Siri>"\\'), name  # as sent, a JSON string's text

"""GTFS-Realtime VehiclePositions: what each served vehicle says, who is left out, and every
feed built here passing the bindings and the independent validator."""

from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2 as rt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.transit.service import FeedService
from tests.helpers.gtfsrt import FeedChecker
from tests.transit.support import (
    ADDED,
    NOW,
    SCHEDULED,
    Clock,
    feed,
    journey,
    msg,
    occupancy,
    position,
    put,
    vehicle,
)


@pytest.fixture(scope="module")
def checker() -> FeedChecker:
    return FeedChecker()


def entities(service: FeedService, checker: FeedChecker) -> dict[str, Any]:
    message = checker.check(service.vehicle_positions().body, at=service.clock())
    return {e.id: e.vehicle for e in message.entity}


def test_a_served_vehicle_has_position_fix_time_occupancy_and_its_timetabled_trip(
    checker: FeedChecker,
) -> None:
    service = feed(Clock(NOW + 5))
    vehicle(service, "shuttle-07", run=SCHEDULED)
    message = checker.check(service.vehicle_positions().body)
    assert message.header.incrementality == rt.FeedHeader.FULL_DATASET
    assert message.header.timestamp >= NOW
    (e,) = message.entity
    v = e.vehicle
    assert e.id == "creuse/shuttle-07" == v.vehicle.id and v.vehicle.label == "Navette shuttle-07"
    assert (round(v.position.latitude, 4), round(v.position.longitude, 4)) == (45.9558, 2.1683)
    assert v.position.bearing == pytest.approx(271.5) and v.position.speed == pytest.approx(11.5)
    assert v.position.odometer == pytest.approx(12345.6)
    assert v.timestamp == int(NOW)  # the receiver's fix time, not the arrival
    assert v.occupancy_status == rt.VehiclePosition.MANY_SEATS_AVAILABLE
    assert v.occupancy_percentage == 40
    assert (v.trip.trip_id, v.trip.route_id) == ("creuse-shuttle-0800", "creuse-shuttle")
    assert v.trip.schedule_relationship == rt.TripDescriptor.SCHEDULED


def test_an_on_demand_run_is_an_added_trip_with_route_date_time_and_direction(
    checker: FeedChecker,
) -> None:
    service = feed(Clock(NOW))
    vehicle(service, "truck-2", run=ADDED, lat=46.2036, lon=1.7556)
    trip = entities(service, checker)["creuse/truck-2"].trip
    assert trip.schedule_relationship == rt.TripDescriptor.ADDED and not trip.trip_id
    assert (trip.route_id, trip.start_date, trip.start_time, trip.direction_id) == (
        "gueret-la-souterraine",
        "20270115",
        "14:30:00",
        0,
    )


def test_offline_out_of_service_stale_and_future_vehicles_are_left_out(
    checker: FeedChecker,
) -> None:
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "ok")
    vehicle(service, "gone")
    put(service, "gone", "state", b'{"state":"offline"}')
    vehicle(service, "parked", run={"mode": "out-of-service"})
    vehicle(service, "old", at=NOW - 91)
    vehicle(service, "ahead", at=NOW + 3600)
    put(service, "nofix", "state", b'{"state":"online","since":1}')
    assert set(entities(service, checker)) == {"creuse/ok"}
    _, health = service.health()
    assert health["vehicles"]["left_out"] == {
        "offline": 1,
        "out_of_service": 1,
        "no_fix": 1,
        "outside_area": 0,
        "stale": 1,
        "future": 1,
    }
    clock.t = NOW + 91  # time alone makes the last one stale
    assert entities(service, checker) == {}


def test_a_position_at_zero_zero_is_left_out_as_no_fix(checker: FeedChecker) -> None:
    """0,0 ("null island", in the Gulf of Guinea) is what a receiver without a fix may put in
    its sentences, not a place a shuttle drives: served, it failed MobilityData E028
    (vehicle position outside the agency's coverage) and drew the vehicle off Africa."""
    service = feed(Clock(NOW))
    vehicle(service, "ok")
    vehicle(service, "null", lat=0.0, lon=0.0)
    assert set(entities(service, checker)) == {"creuse/ok"}
    assert service.health()[1]["vehicles"]["left_out"]["no_fix"] == 1


def test_a_vehicle_back_online_returns_with_its_next_fix(checker: FeedChecker) -> None:
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "v")
    put(service, "v", "state", b'{"state":"offline"}')
    assert entities(service, checker) == {}
    clock.t += 1  # a feed's version lasts its second (E017)
    put(service, "v", "state", msg_birth := b'{"state":"online","name":"V","since":2}')
    assert msg_birth and set(entities(service, checker)) == {"creuse/v"}


def test_occupancy_without_data_is_left_out_rather_than_invented(checker: FeedChecker) -> None:
    service = feed(Clock(NOW))
    vehicle(service, "v")
    put(
        service,
        "v",
        "occupancy",
        occupancy(count=3, capacity=None, status="NO_DATA_AVAILABLE", percent=None),
    )  # type: ignore[arg-type]
    v = entities(service, checker)["creuse/v"]
    assert not v.HasField("occupancy_status") and not v.HasField("occupancy_percentage")


def test_occupancy_the_node_doubts_is_left_out_for_riders(checker: FeedChecker) -> None:
    """A stuck beam: riders' apps must not say a bus has room on a count the node knows is
    wrong; the vehicle and its position stay."""
    service = feed(Clock(NOW))
    vehicle(service, "v")
    doubted = msg(
        count=3, capacity=30, percent=10, status="MANY_SEATS_AVAILABLE", doubt=["beam_stuck"]
    )
    put(service, "v", "occupancy", doubted)
    v = entities(service, checker)["creuse/v"]
    assert not v.HasField("occupancy_status") and not v.HasField("occupancy_percentage")
    assert v.HasField("position")


def test_an_assigned_run_the_timetable_does_not_know_is_left_out_and_reported(
    checker: FeedChecker,
) -> None:
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "a", run={**SCHEDULED, "trip_id": "no-such-trip"})
    vehicle(service, "b", run={**SCHEDULED, "route_id": "gueret-la-souterraine"})
    vehicle(service, "c", run={**ADDED, "trip_id": "creuse-shuttle-0600"})
    served = entities(service, checker)
    assert all(not v.HasField("trip") for v in served.values()) and len(served) == 3
    _, health = service.health()
    problems = {p["vehicle"]: " ".join(p["problems"]) for p in health["gtfs"]["unknown_ids"]}
    assert "not in trips.txt" in problems["creuse/a"]
    assert "belongs to route 'creuse-shuttle'" in problems["creuse/b"]
    assert "ADDED trip_id" in problems["creuse/c"]
    put(service, "a", "journey", journey(**SCHEDULED))  # dispatch corrects it
    clock.t += 1
    assert entities(service, checker)["creuse/a"].trip.trip_id == "creuse-shuttle-0800"
    assert "creuse/a" not in {p["vehicle"] for p in service.health()[1]["gtfs"]["unknown_ids"]}


def test_without_a_timetable_assigned_runs_are_named_as_given() -> None:
    service = feed(Clock(NOW), schedule=False)
    vehicle(service, "a", run={**SCHEDULED, "trip_id": "anything"})
    message = rt.FeedMessage()
    message.ParseFromString(service.vehicle_positions().body)
    assert message.entity[0].vehicle.trip.trip_id == "anything"


def test_names_with_quotes_markup_and_control_characters_survive_as_text(
    checker: FeedChecker,
) -> None:
    service = feed(Clock(NOW))
    hostile = 'Bus "7" </script><img src=x onerror=alert(1)>\x1b[2J'
    vehicle(service, "v")
    put(service, "v", "state", b'{"state":"online","since":1,"name":' + _json(hostile) + b"}")
    label = entities(service, checker)["creuse/v"].vehicle.label
    assert label == hostile.replace("\x1b", "?")
    import json

    parsed = json.loads(service.vehicle_positions_json().body)
    assert parsed["entity"][0]["vehicle"]["vehicle"]["label"] == label


def _json(text: str) -> bytes:
    import json

    return json.dumps(text).encode()


def test_the_number_of_vehicles_kept_is_bounded() -> None:
    service = feed(Clock(NOW), max_vehicles=50)
    for i in range(200):
        put(service, f"n{i}", "position", position())
    assert len(service.view.nodes) == 50


def test_a_vehicle_build_is_reused_until_the_vehicle_changes() -> None:
    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "a")
    vehicle(service, "b")
    first = service.vehicle_positions()
    assert service.vehicle_positions() is first  # nothing changed: the same document
    put(service, "a", "position", position(lat=45.96, seq=2))
    clock.t += 1
    second = service.vehicle_positions()
    assert second.tag != first.tag and second.body != first.body


def test_a_quiet_night_keeps_the_header_fresh_at_every_poll(checker: FeedChecker) -> None:
    """Nothing changes overnight (the fleet parked, no vehicle served): the header held the
    moment the content last changed, so a journey planner polling at 3 a.m. read a header
    from 11 p.m. (W008) and dropped the feed as a dead producer. The best practice: an
    unchanged feed is refreshed with a new header timestamp, still never going back (E018)
    nor staying put while the content changes (E017)."""
    clock = Clock(NOW)
    service = feed(clock)
    polls: list[tuple[bytes, float]] = []
    for step in range(12):  # the evening's last runs: a fix every 10 s, a poll every 30 s
        vehicle(service, "a", at=clock.t, lat=45.95 + step / 10_000)
        vehicle(service, "b", at=clock.t, lat=45.96 + step / 10_000)
        if step % 3 == 0:
            polls.append((service.vehicle_positions().body, clock.t))
        clock.t += 10
    put(service, "a", "state", msg(state="offline"))  # parked, switched off
    # "b" just goes quiet: served, unchanged, until its last fix is 90 s old
    night_ends = NOW + 7 * 3600
    while clock.t < night_ends:
        polls.append((service.vehicle_positions().body, clock.t))
        clock.t += 30
    vehicle(service, "a", at=clock.t)  # the first one out in the morning
    polls.append((service.vehicle_positions().body, clock.t))
    checker.check_polls(polls)


contract = st.sampled_from(
    ["state", "position", "occupancy", "journey", "vehicle/faults", "alarm/panic", "health"]
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(
    [
        "state",
        "lat",
        "lon",
        "fix_time",
        "course",
        "speed",
        "odometer_m",
        "count",
        "capacity",
        "percent",
        "status",
        "mode",
        "assigned",
        "route_id",
        "trip_id",
        "direction_id",
        "start_time",
        "start_date",
        "schedule_relationship",
        "name",
        "ts",
        "seq",
        "clock",
        "active",
        "kind",
        "lamps",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(topic=contract, body=st.dictionaries(keys, values, max_size=8))
def test_hostile_payloads_never_break_a_feed(
    checker: FeedChecker, topic: str, body: dict[str, Any]
) -> None:
    import json

    clock = Clock(NOW)
    service = feed(clock)
    vehicle(service, "v", run=SCHEDULED)
    before = service.vehicle_positions().body
    try:
        raw = json.dumps(body).encode()
    except ValueError:
        return
    put(service, "x", topic, raw)  # another node: whatever it sends, "v" is served unchanged
    clock.t += 1  # the next version of the feed
    message = rt.FeedMessage()
    message.ParseFromString(service.vehicle_positions().body)
    v = {e.id: e for e in message.entity}["creuse/v"]
    reference = rt.FeedMessage()
    reference.ParseFromString(before)
    assert v == reference.entity[0]
    json.loads(service.vehicle_monitoring().body)
    json.loads(service.vehicle_positions_json().body)
    service.health()
    assert service.view.internal_errors == 0


def test_content_that_changes_within_a_second_waits_for_the_next_header_second(
    checker: FeedChecker,
) -> None:
    """MobilityData E017: the header timestamp counts seconds, and a consumer polling twice
    within one got two different contents under the same header timestamp. Within the
    second of a served version the feed stays that version; the change follows at the next
    second, under the next header."""
    clock = Clock(NOW + 0.1)
    service = feed(clock)
    vehicle(service, "a", at=NOW)
    polls = [(service.vehicle_positions().body, clock.t)]
    clock.t = NOW + 0.6
    vehicle(service, "a", at=NOW, lat=45.96)  # a new fix within the same second
    polls.append((service.vehicle_positions().body, clock.t))
    clock.t = NOW + 1.2
    polls.append((service.vehicle_positions().body, clock.t))
    checker.check_polls(polls)
    latest = rt.FeedMessage()
    latest.ParseFromString(polls[-1][0])
    assert latest.entity[0].vehicle.position.latitude == pytest.approx(45.96)
    assert latest.header.timestamp == int(NOW) + 1

"""`journey.assign` / `journey.clear`: the run a vehicle is on, as GTFS ids, retained."""

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.errors import CommandError
from edged.payloads import Journey
from edged.services.events import JourneyChanged, ModeChanged
from edged.services.journey import JourneyService
from edged.services.mode import ModeService
from tests.helpers.host import TestHost

SCHEDULED = {"route_id": "L1", "trip_id": "L1-0815", "line": "1", "headsign": "Guéret"}
ADDED = {
    "route_id": "TAD",
    "schedule_relationship": "ADDED",
    "start_date": "20250312",
    "start_time": "25:10:00",
    "direction_id": 1,
}


def journeys(node: TestHost) -> list[Journey]:
    return [b for b in node.bodies("journey") if isinstance(b, Journey)]


async def test_a_timetabled_run_is_published_retained_with_its_ids() -> None:
    node = TestHost()
    service = JourneyService(node)
    result = await service.command_assign(dict(SCHEDULED))
    (body,) = journeys(node)
    assert body.assigned and body.mode == "on-demand"
    assert (body.route_id, body.trip_id, body.schedule_relationship) == ("L1", "L1-0815", "SCHEDULED")
    assert (body.line, body.headsign) == ("1", "Guéret")
    assert result["trip_id"] == "L1-0815" and result["assigned_at"] == body.assigned_at


async def test_an_on_demand_run_is_an_added_trip_without_trip_id() -> None:
    node = TestHost()
    await JourneyService(node).command_assign(dict(ADDED))
    (body,) = journeys(node)
    assert body.trip_id is None and body.schedule_relationship == "ADDED"
    assert (body.start_date, body.start_time, body.direction_id) == ("20250312", "25:10:00", 1)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"route_id": "L1"}, "needs trip_id"),
        ({**ADDED, "start_time": None}, "start_time"),
        ({k: v for k, v in ADDED.items() if k != "direction_id"}, "direction_id"),
        ({**ADDED, "start_date": "20250230"}, "start_date"),
        ({**ADDED, "start_time": "8:10"}, "start_time"),
        ({**ADDED, "direction_id": 2}, "direction_id"),
        ({**ADDED, "direction_id": True}, "direction_id"),
        ({**SCHEDULED, "trip_id": "x\u001b[2J"}, "trip_id"),
        ({**SCHEDULED, "route_id": " L1"}, "route_id"),
        ({**SCHEDULED, "route_id": "r" * 129}, "route_id"),
        ({**SCHEDULED, "route_id": 7}, "route_id"),
        ({**SCHEDULED, "line": "x" * 41}, "line"),
        ({**SCHEDULED, "headsign": "Gu" + "\u0301" * 60 + "éret"}, "combining marks"),
        ({**SCHEDULED, "stop_id": "S1"}, "stop_id"),
        ({**SCHEDULED, "schedule_relationship": "CANCELED"}, "schedule_relationship"),
    ],
)
async def test_a_bad_run_is_refused_whole_and_changes_nothing(
    args: dict[str, Any], words: str
) -> None:
    node = TestHost()
    service = JourneyService(node)
    await service.command_assign(dict(SCHEDULED))
    before = (list(node.published), dict(node.state))
    with pytest.raises(CommandError) as refused:
        await service.command_assign({k: v for k, v in args.items() if v is not None})
    assert refused.value.code == "bad_args" and words in refused.value.message
    assert (node.published, node.state) == before


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.none() | st.integers() | st.text(max_size=200)))
async def test_no_arguments_whatever_they_hold_raise_anything_but_bad_args(args: dict[str, Any]) -> None:
    service = JourneyService(TestHost())
    try:
        await service.command_assign(args)
    except CommandError as exc:
        assert exc.code == "bad_args"


async def test_clear_publishes_no_run_and_says_whether_there_was_one() -> None:
    node = TestHost()
    service = JourneyService(node)
    await service.command_assign(dict(SCHEDULED))
    assert await service.command_clear({}) == {"cleared": True}
    assert await service.command_clear({}) == {"cleared": False}
    last = journeys(node)[-1]
    assert not last.assigned and last.route_id is None
    assert len(journeys(node)) == 2  # the second clear changed nothing: nothing sent
    with pytest.raises(CommandError):
        await service.command_clear({"now": True})


async def test_the_run_survives_a_restart_and_is_not_sent_again() -> None:
    node = TestHost()
    await JourneyService(node).command_assign(dict(SCHEDULED))
    restarted = JourneyService(node)
    assert restarted.current is not None and restarted.current["trip_id"] == "L1-0815"
    restarted._publish_if_changed()
    assert len(journeys(node)) == 1


async def test_a_first_start_publishes_once_and_a_mode_change_at_once() -> None:
    node = TestHost()
    service = JourneyService(node)
    await service.run()
    await service.run()
    assert [(b.mode, b.assigned) for b in journeys(node)] == [("on-demand", False)]
    node.emit(ModeChanged("out-of-service"))  # the mode service, after mode.set
    assert journeys(node)[-1].mode == "out-of-service"
    node.emit(ModeChanged("out-of-service"))
    assert len(journeys(node)) == 2


def test_the_mode_kept_by_the_mode_service_is_the_one_published_at_start() -> None:
    node = TestHost(state={"mode": "school"})
    ModeService(node)
    JourneyService(node)  # built after: the bus hands it the mode it missed
    assert [b.mode for b in journeys(node)] == ["school"]


def test_the_assigned_run_goes_on_the_bus_for_the_kiosk() -> None:
    node = TestHost()
    service = JourneyService(node)
    asyncio.run(service.command_assign(dict(SCHEDULED)))
    asyncio.run(service.command_clear({}))
    runs = [e.run for e in node.of_type(JourneyChanged)]
    assert runs[0] is None and runs[1] is not None and runs[1]["line"] == "1" and runs[2] is None


def test_the_service_declares_its_two_commands_under_operate() -> None:
    declared = JourneyService(TestHost()).commands()
    assert [(c.name, c.scope) for c in declared] == [
        ("journey.assign", "operate"),
        ("journey.clear", "operate"),
    ]

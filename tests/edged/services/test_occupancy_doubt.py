"""`occupancy.doubt`: the counting beams' findings (stuck, one-sided, read the wrong way
round...) in the message dispatch decides on, through the real GPIO driver on mock pins
and the real service; one end to end through a real Mosquitto and the in-process node."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from core.events import CountDoubt, VehicleDoorStatus
from edged.config import load_config
from edged.errors import CommandError
from edged.node import Node
from edged.payloads import Occupancy
from edged.services.events import OccupancyChanged
from edged.services.occupancy import OccupancyService
from edged.topics import OCCUPANCY
from tests.drivers.gpio.fakes import SupervisedBoard, wait_until
from tests.edged.services.test_occupancy import make
from tests.helpers.broker import Mosquitto
from tests.helpers.host import TestHost
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

OUTER, INNER, DOOR = 20, 21, 5
PAIR = {"door": "front", "outer": OUTER, "inner": INNER, "min_block_s": 0.005}
STEP_S = 0.012  # past min_block_s, so each level counts


@pytest.fixture(autouse=True)
def clear(pins: MockFactory) -> None:
    """Both beams clear (light-on receivers pulled up read blocked until driven)."""
    pins.pin(OUTER).drive_low()
    pins.pin(INNER).drive_low()


def doubt(node: TestHost) -> list[str] | None:
    """The `doubt` of the last `occupancy` published (["nothing published"]: none yet, which
    is no clearing)."""
    bodies = node.bodies("occupancy")
    if not bodies:
        return ["nothing published"]
    body = bodies[-1]
    assert isinstance(body, Occupancy)
    return body.doubt


@contextlib.asynccontextmanager
async def beams(
    pins: MockFactory, node: TestHost, max_transit_s: float = 0.1, **gpio: Any
) -> AsyncIterator[SupervisedBoard[TestHost]]:
    """The real GPIO driver with one beam pair at `front`, the beams' levels as they are."""
    board = SupervisedBoard(node, beams=[{**PAIR, "max_transit_s": max_transit_s}], **gpio)
    try:
        await board.start()
        yield board
    finally:
        await board.stop()


async def back_outs(pins: MockFactory, n: int, pin: int = OUTER) -> None:
    """`n` times a hand on one beam and away, never on the other."""
    for _ in range(n):
        pins.pin(pin).drive_high()
        await asyncio.sleep(STEP_S)
        pins.pin(pin).drive_low()
        await asyncio.sleep(STEP_S)


def restarted(node: TestHost) -> tuple[TestHost, OccupancyService]:
    """The node started again on what it kept (the state store)."""
    again, service, _ = make(TestHost(state=node.state), count_from=["beams"])
    return again, service


async def test_a_beam_blocked_past_max_transit_s_doubts_the_count_until_it_clears(
    pins: MockFactory,
) -> None:
    """A dirty lens or a case parked on the step (or a rider standing there): whoever
    crosses the other beam meanwhile counts nothing. Dispatch sees it in `occupancy` while
    it lasts; the beam clear, the count is as good as before."""
    node, service, _ = make(count_from=["beams"])
    async with beams(pins, node):
        assert service.snapshot().doubt is None
        pins.pin(OUTER).drive_high()
        await wait_until(lambda: doubt(node) == ["beam_stuck"], 1, "the doubt")
        body = node.bodies("occupancy")[-1]
        assert Occupancy.model_validate(body.to_json_dict()) == body  # the contract's
        assert node.of_type(OccupancyChanged)[-1].doubt == ("beam_stuck",)
        pins.pin(OUTER).drive_low()
        await wait_until(lambda: doubt(node) is None, 1, "the doubt cleared")
        assert "doubt" not in node.bodies("occupancy")[-1].to_json_dict()
        assert service.count == 0


async def test_hands_on_the_working_beam_do_not_clear_a_beam_stuck_clear(
    pins: MockFactory,
) -> None:
    """The inner receiver sees light whatever is in the way: ten back-outs on the outer
    beam say so (`beam_one_sided`). More hands on the outer beam leave the doubt; only the
    silent beam moving again clears it."""
    node, _, _ = make(count_from=["beams"])
    async with beams(pins, node):
        await back_outs(pins, 10)
        await wait_until(lambda: doubt(node) == ["beam_one_sided"], 1, "the doubt")
        await back_outs(pins, 5)
        assert doubt(node) == ["beam_one_sided"]
        pins.pin(INNER).drive_high()
        await asyncio.sleep(STEP_S)
        pins.pin(INNER).drive_low()
        await wait_until(lambda: doubt(node) is None, 1, "the doubt cleared")


async def test_a_doubt_survives_a_restart_while_its_beam_is_still_stuck(
    pins: MockFactory,
) -> None:
    """The node restarts with the lens still dirty: the retained `occupancy` of its start
    says the doubt at once (not `max_transit_s` later), and it clears when the beam does."""
    node, _, _ = make(count_from=["beams"])
    async with beams(pins, node):
        pins.pin(OUTER).drive_high()
        await wait_until(lambda: doubt(node) == ["beam_stuck"], 1, "the doubt")
    again, service = restarted(node)
    assert service.snapshot().doubt == ["beam_stuck"]
    async with beams(pins, again, max_transit_s=5.0):  # not found again meanwhile
        await asyncio.sleep(0.05)
        assert service.snapshot().doubt == ["beam_stuck"]
        pins.pin(OUTER).drive_low()
        await wait_until(lambda: service.snapshot().doubt is None, 1, "the doubt cleared")
        assert doubt(again) is None


async def test_a_doubt_kept_across_a_restart_clears_at_start_when_its_beam_is_clear(
    pins: MockFactory,
) -> None:
    """Cleaned while the node was off: the GPIO driver's start says so."""
    node, _, _ = make(count_from=["beams"])
    async with beams(pins, node):
        pins.pin(OUTER).drive_high()
        await wait_until(lambda: doubt(node) == ["beam_stuck"], 1, "the doubt")
    pins.pin(OUTER).drive_low()
    again, _ = restarted(node)
    async with beams(pins, again):
        await wait_until(lambda: doubt(again) is None, 1, "the doubt cleared")
    assert restarted(again)[1].snapshot().doubt is None  # and kept cleared


async def test_a_doubt_kept_for_a_door_whose_beams_left_the_config_clears_at_start(
    pins: MockFactory,
) -> None:
    """The rear pair was taken out of the config while the node was off: nothing would
    ever clear what it had found."""
    node, _, _ = make(count_from=["beams"])
    node.emit(CountDoubt("rear", "beam_one_sided", True, 0.0))
    again, service = restarted(node)
    assert service.snapshot().doubt == ["beam_one_sided"]
    async with beams(pins, again):
        await wait_until(lambda: service.snapshot().doubt is None, 1, "the doubt cleared")
        assert doubt(again) is None


async def test_a_beam_stuck_clear_kept_across_a_restart_clears_only_once_both_beams_moved(
    pins: MockFactory,
) -> None:
    """Which beam was silent is not kept: after a restart the hands on the beam that works
    do not clear it; both beams changing do."""
    node, _, _ = make(count_from=["beams"])
    async with beams(pins, node):
        await back_outs(pins, 10, pin=INNER)  # the outer one silent
        await wait_until(lambda: doubt(node) == ["beam_one_sided"], 1, "the doubt")
    again, service = restarted(node)
    async with beams(pins, again):
        await back_outs(pins, 3, pin=INNER)
        assert service.snapshot().doubt == ["beam_one_sided"]
        await back_outs(pins, 1, pin=OUTER)
        await wait_until(lambda: service.snapshot().doubt is None, 1, "the doubt cleared")


async def test_a_can_door_stuck_shut_kept_across_a_restart_clears_only_when_it_opens(
    pins: MockFactory,
) -> None:
    """Beams gated by the door's status on the CAN bus: at the GPIO driver's start no frame
    has come yet (the pair has no door until the first), and the kept `door_silent` was
    cleared at once, though the bus went on saying shut. It stays until the door opens."""
    node, _, _ = make(count_from=["beams"])
    node.emit(CountDoubt("front", "door_silent", True, 0.0))
    again, service = restarted(node)
    async with beams(pins, again):
        await asyncio.sleep(0.05)
        assert service.snapshot().doubt == ["door_silent"]
        now = time.monotonic()
        again.emit(VehicleDoorStatus("front", 0, now))  # still shut
        assert service.snapshot().doubt == ["door_silent"]
        again.emit(VehicleDoorStatus("front", 1, now + 0.1))
        again.emit(VehicleDoorStatus("front", 1, now + 1.0))
        await wait_until(lambda: service.snapshot().doubt is None, 1, "the doubt cleared")


async def test_a_door_stuck_shut_kept_for_beams_no_door_gates_now_clears_at_a_walk(
    pins: MockFactory,
) -> None:
    """The door's contact left the config while the node was off, no bus tells of it: the
    beams count every walk, none is dropped, so the first walk counted clears it."""
    node, _, _ = make(count_from=["beams"])
    node.emit(CountDoubt("front", "door_silent", True, 0.0))
    again, service = restarted(node)
    async with beams(pins, again):
        await asyncio.sleep(0.05)
        assert service.snapshot().doubt == ["door_silent"]
        for pin, level in ((OUTER, 1), (INNER, 1), (OUTER, 0), (INNER, 0)):
            (pins.pin(pin).drive_high if level else pins.pin(pin).drive_low)()
            await asyncio.sleep(STEP_S)
        await wait_until(lambda: service.snapshot().doubt is None, 1, "the doubt cleared")
        assert service.count == 1


async def test_a_contact_the_wrong_way_round_kept_across_a_restart_outlasts_a_walk_counted(
    pins: MockFactory,
) -> None:
    """Read the wrong way round, the contact reads open while the door is shut: a rider
    moving about inside it, through the beams, counts. In a run that does not clear the
    finding (the walks dropped at the last stops outnumber it); after a restart, with no
    walk judged yet, that one walk did."""
    node, _, _ = make(count_from=["beams"])
    node.emit(CountDoubt("front", "door_gate_inverted", True, 0.0))
    again, service = restarted(node)
    pins.pin(DOOR).drive_high()  # reads open
    contact = [{"name": "front", "pin": DOOR, "bounce_s": 0.005}]
    async with beams(pins, again, doors=contact):
        await asyncio.sleep(0.05)
        assert service.snapshot().doubt == ["door_gate_inverted"]
        for pin, level in ((OUTER, 1), (INNER, 1), (OUTER, 0), (INNER, 0)):
            (pins.pin(pin).drive_high if level else pins.pin(pin).drive_low)()
            await asyncio.sleep(STEP_S)
        await wait_until(lambda: service.count == 1, 2, "the walk counted")
        assert service.snapshot().doubt == ["door_gate_inverted"]


async def test_a_restart_of_the_gpio_driver_alone_keeps_the_doubt(pins: MockFactory) -> None:
    node, service, _ = make(count_from=["beams"])
    async with beams(pins, node) as gpio:
        await back_outs(pins, 10)
        await wait_until(lambda: doubt(node) == ["beam_one_sided"], 1, "the doubt")
        await gpio.fail_once()
        await back_outs(pins, 2)  # which beam was silent is not known after a restart
        assert service.snapshot().doubt == ["beam_one_sided"]
        await back_outs(pins, 1, pin=INNER)
        await wait_until(lambda: doubt(node) is None, 1, "the doubt cleared")


def test_two_findings_at_two_doors_give_each_name_once() -> None:
    node, _, _ = make(count_from=["beams"])
    for door in ("front", "rear"):
        node.emit(CountDoubt(door, "beam_stuck", True, 0.0))
    node.emit(CountDoubt("rear", "beam_rests_blocked", True, 0.0))
    assert doubt(node) == ["beam_rests_blocked", "beam_stuck"]
    node.emit(CountDoubt("front", "beam_stuck", False, 0.0))
    assert doubt(node) == ["beam_rests_blocked", "beam_stuck"]  # the rear one still is


def test_findings_of_beams_that_do_not_count_put_no_doubt() -> None:
    node, service, _ = make(count_from=["taps"])
    node.emit(CountDoubt("front", "beam_stuck", True, 0.0))
    assert service.snapshot().doubt is None


def test_a_doubt_kept_while_the_beams_counted_is_dropped_once_they_no_longer_count() -> None:
    node, _, _ = make(count_from=["beams"])
    node.emit(CountDoubt("front", "beam_stuck", True, 0.0))
    _, again, _ = make(TestHost(state=node.state), count_from=["taps"])
    assert again.snapshot().doubt is None


async def test_no_command_sets_the_doubt_and_a_reset_does_not_clear_it() -> None:
    """Only the node's own beams say it: `occupancy.reset` takes no `doubt`, and a count
    given by eye leaves the beams as faulty as they were."""
    node, service, _ = make(count_from=["beams"])
    with pytest.raises(CommandError) as info:
        await service.command_reset({"doubt": ["beam_stuck"]})
    assert info.value.code == "bad_args" and service.snapshot().doubt is None
    node.emit(CountDoubt("front", "door_silent", True, 0.0))
    await service.command_reset({"count": 3})
    assert doubt(node) == ["door_silent"]


@pytest.mark.parametrize(
    "junk",
    ["beam_stuck", [["front"]], [["front", "a_finding_we_do_not_know"]], [[1, "beam_stuck"]]],
)
def test_unreadable_saved_doubts_are_dropped(junk: Any) -> None:
    node, service, _ = make(count_from=["beams"])
    service.add(4, "beam")
    node.emit(CountDoubt("front", "beam_stuck", True, 0.0))
    state = {"occupancy": {**node.state["occupancy"], "doubt": junk}}
    _, again, _ = make(TestHost(state=state), count_from=["beams"])
    assert again.snapshot().doubt is None and again.count == 4  # the count kept


@pytest.mark.parametrize("bad", [[], ["not_a_finding"], "beam_stuck"])
def test_the_payload_takes_only_known_finding_names(bad: Any) -> None:
    fields = {"count": 1, "capacity": 10, "percent": 10, "status": "EMPTY"}
    with pytest.raises(ValidationError):
        Occupancy(**fields, entries=1, exits=0, reset_at=0, doubt=bad)


async def test_a_stuck_beam_s_doubt_reaches_dispatch_retained_and_survives_a_restart(
    tmp_path: Path, pins: MockFactory
) -> None:
    """End to end: the in-process node with the GPIO driver on mock pins, a real Mosquitto.
    A beam blocked: the retained `occupancy` says `doubt`; after a restart of the node with
    the beam still blocked, the retained one of its start says it at once."""
    broker = Mosquitto(tmp_path).start()
    gpio = (
        '[[drivers]]\nname = "gpio"\ndriver = "gpio.gpiozero"\n[drivers.options]\n'
        'pin_factory = "mock"\nbeams = [{ door = "front", outer = 20, inner = 21, '
        "min_block_s = 0.005, max_transit_s = 0.2 }]\n"
    )
    config = write_config(
        tmp_path, broker.port, gps=False, extra=gpio, occupancy='count_from = ["beams"]'
    )

    async def run_node(until: Any) -> None:
        node = Node(load_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        try:
            await until(node.topics.of(OCCUPANCY))
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    async def doubted(topic: str) -> None:
        async with Collector(broker.port, topic, client_id="doubt-1") as c:
            await c.wait_for(lambda: bool(c.messages), 5, "the start's occupancy")
            pins.pin(OUTER).drive_high()
            await c.wait_for(lambda: "doubt" in c.messages[-1].payload, 2, "the doubt")
            assert c.messages[-1].payload["doubt"] == ["beam_stuck"]

    async def retained(topic: str) -> None:
        async with Collector(broker.port, topic, client_id="doubt-2") as c:
            await c.wait_for(lambda: bool(of_this_run(c)), 5, "the start's occupancy")
            assert of_this_run(c)[0].payload["doubt"] == ["beam_stuck"]  # not 0.2 s later
            pins.pin(OUTER).drive_low()
            await c.wait_for(lambda: "doubt" not in c.messages[-1].payload, 2, "cleared")

    def of_this_run(c: Collector) -> list[Any]:
        return [m for m in c.messages if m.payload["ts"] >= restarted_at]

    try:
        await run_node(doubted)
        restarted_at = int(time.time() * 1000)
        await run_node(retained)
    finally:
        broker.stop()

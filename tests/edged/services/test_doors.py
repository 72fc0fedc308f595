"""GPIO doors: contact changes become events/door; door.unlock pulses the relay."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from core.events import DoorInput, Unlock
from edged.config.models import SupervisorConfig
from edged.errors import CommandError
from edged.services.doors import DoorService
from tests.drivers.gpio.fakes import SupervisedBoard, wait_until
from tests.helpers.host import TestHost

DOOR = 5


def make(lock: bool = True) -> tuple[TestHost, DoorService]:
    """`lock`: a lock relay listens for Unlock on the bus (the test host records them)."""
    node = TestHost(relay=lock)
    service = DoorService(node, default_pulse_s=3.0)
    return node, service


def test_a_door_contact_change_becomes_a_door_event_from_the_sensor() -> None:
    node, _ = make()
    node.emit(DoorInput("side", False, 0.0))  # the state at start: not an event
    node.emit(DoorInput("side", True, 0.0))
    node.emit(DoorInput("side", True, 0.0))  # no change: no event
    node.emit(DoorInput("side", False, 0.0))
    events = node.bodies("events/door")
    assert [(e.door, e.open, e.source) for e in events] == [
        ("side", True, "sensor"),
        ("side", False, "sensor"),
    ]


def test_unlock_command_pulses_the_relay_for_the_default_time() -> None:
    node, service = make()
    result = asyncio.run(service.command_unlock({}))
    assert result == {"unlocked": True, "pulse_s": 3.0}
    assert [u.pulse_s for u in node.of_type(Unlock)] == [3.0]


def test_unlock_command_takes_a_pulse_length() -> None:
    node, service = make()
    asyncio.run(service.command_unlock({"pulse_s": 8}))
    assert node.of_type(Unlock)[0].pulse_s == 8.0


@pytest.mark.parametrize(
    "args",
    [
        {"pulse_s": 0},
        {"pulse_s": 5e-324},
        {"pulse_s": 0.05},
        {"pulse_s": 31},
        {"pulse_s": "5"},
        {"pulse_s": True},
        {"door": "x"},
    ],
)
def test_unlock_command_refuses_bad_arguments(args: dict[str, Any]) -> None:
    node, service = make()
    with pytest.raises(CommandError) as info:
        asyncio.run(service.command_unlock(args))
    assert info.value.code == "bad_args" and node.of_type(Unlock) == []


def test_unlock_command_says_when_there_is_no_lock_relay() -> None:
    _, service = make(lock=False)
    with pytest.raises(CommandError) as info:
        asyncio.run(service.command_unlock({}))
    assert info.value.code == "no_lock"


async def test_a_door_opened_while_the_gpio_driver_was_down_is_published_open_when_it_is_back(
    pins: MockFactory,
) -> None:
    """Nothing reads the contact while the driver backs off; the restarted driver says
    the door's state at its start, and the service, which knew it closed, publishes it."""
    node, _ = make()
    gpio = SupervisedBoard(
        node,
        config=SupervisorConfig(backoff_initial_s=0.6, backoff_max_s=0.6),
        doors=[{"name": "side", "pin": DOOR}],
    )
    pins.pin(DOOR).drive_low()  # closed (a reed contact to ground, pull-up)
    try:
        await gpio.start()
        await gpio.fail_once()  # the first restart is at once
        gpio.fail()  # failing again: 0.3-0.6 s down
        await wait_until(lambda: gpio.status.state == "backoff", 1, "the backoff")
        pins.pin(DOOR).drive_high()  # opened while nothing reads the pin
        assert not gpio.running()
        await gpio.restarted(3)
        await wait_until(lambda: bool(node.bodies("events/door")), 1, "a door event")
        assert [(e.door, e.open) for e in node.bodies("events/door")] == [("side", True)]
    finally:
        await gpio.stop()


async def test_a_node_whose_lock_relay_is_not_running_answers_no_lock(tmp_path: Path) -> None:
    # the real node's wiring: the update manager watches unlocks as activity (is it a safe
    # moment to switch releases?); a watcher is no relay, so dispatch is not told a door
    # opened when nothing took the pulse
    from edged.config import load_config
    from edged.node import Node
    from tests.helpers.broker import free_port
    from tests.helpers.nodes import write_config

    node = Node(load_config(write_config(tmp_path, free_port(), gps=False)))
    await node.outbox.open()
    try:
        node._start_services()  # the drivers (the GPIO board's relay) are not started
        doors = node.services["doors"]
        assert isinstance(doors, DoorService)
        with pytest.raises(CommandError) as info:
            await doors.command_unlock({})
    finally:
        await node.outbox.close()
    assert info.value.code == "no_lock"

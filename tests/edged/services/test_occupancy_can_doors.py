"""A shuttle's counting beams gated by a door known only from its CAN bus (DC2), through the
real path: DC2 frames on python-can's virtual bus, the real CAN driver, the vehicle service,
the real GPIO driver on mock pins, the occupancy service. Times are scaled down (a grace of
0.3 s, a bus silent after 0.4 s, DC2 every 0.1 s) so each test takes about a second."""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import can
import pytest
from gpiozero.pins.mock import MockFactory

from core.driver import DriverContext
from core.events import VehicleDoorStatus, VehicleDoorUnheard
from drivers.can.bus import CanBusDriver, CanBusOptions
from drivers.can.j1939 import make_id
from edged.config.models import SupervisorConfig
from edged.config.services import TripServiceConfig, VehicleServiceConfig
from edged.services.occupancy import OccupancyService
from edged.services.vehicle import VehicleService
from tests.drivers.gpio.fakes import SupervisedBoard, wait_until
from tests.edged.services.test_occupancy import _walk, make
from tests.helpers.host import TestHost

GRACE_S = 0.3
SILENT_S = 0.4
PERIOD_S = 0.1
UNHEARD_S = 0.4
CLOSED, OPEN, ERROR, NOT_AVAILABLE = 0, 1, 2, 3
CCVS1 = bytes([0xF4, 0x80, 0x25, 0x10, 0xFF, 0x50, 0xFF, 0xFF])  # 37.5 km/h


@dataclass
class Shuttle:
    node: TestHost
    occupancy: OccupancyService
    sender: "can.BusABC"
    outer: Any
    inner: Any
    front: int | None = CLOSED  # the status DC2 sends for door 1; None: DC2 stopped
    period_s: float = PERIOD_S
    talks: bool = True  # the rest of the bus: CCVS1 every `period_s`
    gpio: SupervisedBoard[TestHost] | None = None

    def counted(self, key: str) -> int:
        return self.node.counters.snapshot().get(f"driver.gpio.{key}", 0)

    async def dc2(self) -> None:
        """The door controller: DC2 every `period_s`, door 2 not available; and the
        vehicle's other ECUs, CCVS1 as often."""
        while True:
            if self.talks:
                self.sender.send(
                    can.Message(
                        arbitration_id=make_id(65265, 0x00), data=CCVS1, is_extended_id=True
                    )
                )
            if self.front is not None:
                data = bytes([0xF3 | self.front << 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
                self.sender.send(
                    can.Message(arbitration_id=make_id(64933, 0x21), data=data, is_extended_id=True)
                )
            await asyncio.sleep(self.period_s)

    async def walk(self, direction: str = "in") -> None:
        await _walk(self.outer, self.inner, direction, step_s=0.01)


@contextlib.asynccontextmanager
async def shuttle(
    pins: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
    *,
    front: int | None = CLOSED,
    talks: bool = True,
    vehicle: VehicleServiceConfig | None = None,
    min_interval_s: float = 0,
    unheard_s: float = UNHEARD_S,
    **gpio_options: Any,
) -> AsyncIterator[Shuttle]:
    """Beams at `front`, no contact on GPIO (unless `gpio_options` add one); `front` is a
    door of [services.vehicle.doors] (unless `vehicle` says otherwise). With `front` None
    DC2 does not come, and the shuttle is handed over as soon as the drivers run."""
    from drivers.gpio import board, candoor
    from edged.services import vehicle as vehicle_service

    monkeypatch.setattr(board, "DOOR_GRACE_S", GRACE_S)
    monkeypatch.setattr(candoor, "CAN_SILENT_S", SILENT_S)
    monkeypatch.setattr(vehicle_service, "DOOR_UNHEARD_S", unheard_s)
    node, occupancy, _ = make(count_from=["beams"], capacity=20)
    vehicle = vehicle or VehicleServiceConfig()
    VehicleService(node, vehicle, TripServiceConfig(auto=False))
    channel = f"candoors-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel)
    options = CanBusOptions(interface="virtual", channel=channel, min_interval_s=min_interval_s)
    options.use_doors(vehicle.doors.values())  # as the config's loader tells it
    ctx = DriverContext("can", node.bus, node.counters)
    can_task = asyncio.create_task(CanBusDriver(options).run(ctx))
    outer, inner = pins.pin(20), pins.pin(21)
    outer.drive_low()
    inner.drive_low()
    gpio = SupervisedBoard(
        node,
        beams=[{"door": "front", "outer": 20, "inner": 21, "min_block_s": 0.005}],
        **gpio_options,
    )
    bus = Shuttle(node, occupancy, sender, outer, inner, front=front, talks=talks, gpio=gpio)
    dc2 = asyncio.create_task(bus.dc2())
    try:
        await gpio.start()
        if front is not None:
            await wait_until(
                lambda: any(isinstance(e, VehicleDoorStatus) for e in node.emitted), 2, "DC2"
            )
            await asyncio.sleep(GRACE_S + 0.1)  # the gate heard the door for a whole window
        yield bus
    finally:
        dc2.cancel()
        await gpio.stop()
        can_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await can_task
        sender.shutdown()


async def test_hands_waved_either_way_behind_a_shut_can_door_count_no_one_and_tell_ops(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rider waves at the beams to make the shuttle look full, or walks a hand "out" to
    make it look empty, while DC2 says the front door is shut: nobody is counted."""
    async with shuttle(pins, monkeypatch) as bus:
        bus.occupancy.add(2, "command")
        for direction in ("in", "in", "out"):
            await bus.walk(direction)
        await wait_until(lambda: bus.counted("beam_door_closed") == 3, 10, "three walks judged")
        assert bus.occupancy.count == 2 and bus.counted("beam_door_unheard") == 0


async def test_a_rider_walking_through_the_open_can_door_is_counted(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with shuttle(pins, monkeypatch) as bus:
        bus.front = OPEN
        await asyncio.sleep(0.15)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 1, "the rider")
        assert bus.counted("beam_door_closed") == 0


async def test_a_rider_pushing_in_as_the_can_door_opens_is_counted(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rider is on the beams before the door opens; DC2 says open a moment later."""
    async with shuttle(pins, monkeypatch) as bus:
        await bus.walk("in")
        await asyncio.sleep(0.1)
        bus.front = OPEN
        await wait_until(lambda: bus.occupancy.count == 1, 1, "the rider")
        assert bus.counted("beam_door_closed") == 0


async def test_a_door_opening_told_by_the_first_frame_after_the_grace_still_counts(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DC2 every second and a grace of two (scaled: every 0.5 s, a grace of 0.3 s): the
    door opened as the rider crossed, but the frame that says so comes after the grace.
    The walk waits for that frame, and counts."""
    from drivers.gpio import candoor

    async with shuttle(pins, monkeypatch) as bus:
        monkeypatch.setattr(candoor, "CAN_SILENT_S", 0.8)
        bus.period_s = 0.5
        await asyncio.sleep(0.5)

        def frames() -> int:
            return sum(isinstance(e, VehicleDoorStatus) for e in bus.node.emitted)

        seen = frames()
        await wait_until(lambda: frames() > seen, 1, "a frame")  # the next is 0.5 s away
        await bus.walk("in")  # 0.04 s
        crossed = time.monotonic()
        bus.front = OPEN
        await wait_until(lambda: bus.occupancy.count == 1, 1.5, "the rider")
        assert time.monotonic() - crossed > GRACE_S  # told after the grace, not within it
        assert bus.counted("beam_door_closed") == 0


async def test_walks_count_ungated_and_reported_while_dc2_is_silent_and_gated_once_back(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FMS adapter unplugged (or the ignition off at the stop) as a rider crosses: no
    frame closes the walk's window, so it is not judged shut; the door is unknown, and real
    riders must not be dropped for ever: the walk counts once the bus is silent, and
    `beam_door_unheard` tells ops. DC2 back, the gate is."""
    async with shuttle(pins, monkeypatch) as bus:
        bus.front = None  # the walk's window is not all heard
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 2, "the walk, ungated")
        assert bus.counted("beam_door_unheard") == 1 and bus.counted("beam_door_closed") == 0
        bus.front = CLOSED
        await asyncio.sleep(GRACE_S + 0.1)  # the window of the next walk all heard
        await bus.walk("in")
        await wait_until(lambda: bus.counted("beam_door_closed") == 1, 2, "gated again")
        assert bus.occupancy.count == 1


async def test_a_walk_while_dc2_is_silent_is_warned_with_a_gateway_dropping_it_among_the_causes(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A door heard once whose DC2 then stops, the bus still talking, is a gateway no longer
    passing it on as much as the ignition off: the warning names both, and where to look."""
    caplog.set_level(logging.INFO, logger="edged.driver.gpio")
    async with shuttle(pins, monkeypatch) as bus:
        bus.front = None
        await bus.walk("in")
        await wait_until(lambda: bus.counted("beam_door_unheard") == 1, 2, "the walk, unheard")
        (warning,) = warnings(caplog, "counted without knowing whether the door was open")
        assert "ignition off" in warning and "gateway no longer passing DC2" in warning
        assert "CAN driver's health" in warning


@pytest.mark.parametrize("status", [ERROR, NOT_AVAILABLE])
async def test_walks_count_and_are_reported_while_the_can_door_is_in_error_or_not_available(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    async with shuttle(pins, monkeypatch) as bus:
        bus.front = status
        await asyncio.sleep(0.15)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 2, "the walk")
        assert bus.counted("beam_door_unknown") == 1 and bus.counted("beam_door_closed") == 0


async def test_a_rider_leaning_on_a_beam_and_waving_behind_the_shut_can_door_counts_no_one(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Holding the outer beam and sweeping the inner one again and again, door shut."""
    async with shuttle(pins, monkeypatch) as bus:
        bus.outer.drive_high()
        for _ in range(4):
            await asyncio.sleep(0.02)
            bus.inner.drive_high()
            await asyncio.sleep(0.02)
            bus.inner.drive_low()
        bus.outer.drive_low()
        await bus.walk("in")
        await asyncio.sleep(GRACE_S + 0.3)
        assert bus.occupancy.count == 0 and bus.counted("beam_door_closed") >= 1


async def test_a_contact_on_the_door_outranks_its_status_on_the_can_bus(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A contact wired on the door itself, and DC2 saying open (a door controller that
    reports the wrong door): the contact, shut, gates the beams."""
    pins.pin(17).drive_low()
    contact = {"doors": [{"name": "front", "pin": 17}]}
    async with shuttle(pins, monkeypatch, **contact) as bus:
        bus.front = OPEN
        await asyncio.sleep(0.15)
        await bus.walk("in")
        await wait_until(lambda: bus.counted("beam_door_closed") == 1, 2, "the walk judged")
        assert bus.occupancy.count == 0


def warnings(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and words in r.getMessage()
    ]


async def test_beams_of_a_door_the_talking_bus_never_gives_count_reported_until_dc2_comes(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """CCVS1 comes, DC2 never (an FMS gateway that filters it, someone who filtered it to
    turn the gate off): the gate is off and every walk counts, a hand waved behind the shut
    door too. Ops learn it once, `door_never_heard`, and how many walks counted ungated.
    DC2 comes: the gate is on, said once."""
    caplog.set_level(logging.INFO, logger="edged.driver.gpio")
    async with shuttle(pins, monkeypatch, front=None) as bus:
        await wait_until(lambda: bus.counted("door_never_heard") == 1, 2, "the report")
        for _ in range(2):
            await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 2, 1, "the walks, ungated")
        assert bus.counted("beam_door_never_heard") == 2
        (warning,) = warnings(caplog, "not once given the door's status")
        assert "not one DC2 frame" in warning and "DC2.Door1OpenStatus" in warning
        bus.front = CLOSED
        await wait_until(
            lambda: any("at last" in m for m in caplog.messages), 1, "the gate on, said"
        )
        await asyncio.sleep(GRACE_S + 0.1)  # a whole window heard
        await bus.walk("in")
        await wait_until(lambda: bus.counted("beam_door_closed") == 1, 2, "gated")
        assert bus.occupancy.count == 2 and bus.counted("beam_door_never_heard") == 2
        assert bus.counted("door_never_heard") == 1


async def test_a_wrong_door_number_is_reported_naming_the_doors_dc2_gives(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`front` configured as door 2, which DC2 says not available in every frame; door 1,
    the real front door, it gives."""
    caplog.set_level(logging.WARNING, logger="edged.driver.gpio")
    wrong = VehicleServiceConfig(doors={"front": "DC2.Door2OpenStatus"})
    async with shuttle(pins, monkeypatch, vehicle=wrong) as bus:
        await wait_until(lambda: bus.counted("door_never_heard") == 1, 2, "the report")
        (warning,) = warnings(caplog, "not once given the door's status")
        assert "gives door 1)" in warning and "door's number" in warning
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 2, "the walk, ungated")
        assert bus.counted("beam_door_unknown") == 1


async def test_a_quiet_bus_reports_no_door_never_heard(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ignition off, the adapter unplugged: the CAN driver's health tells it, not the
    beams; they count as without a door."""
    async with shuttle(pins, monkeypatch, front=None, talks=False) as bus:
        await asyncio.sleep(UNHEARD_S + 0.2)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 1, "the walk")
        assert bus.counted("door_never_heard") == 0 and bus.counted("beam_door_never_heard") == 0


async def test_a_gpio_driver_restarted_still_counts_walks_of_a_door_never_heard(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vehicle service tells the new start again (`DriverReady`)."""
    async with shuttle(pins, monkeypatch, front=None) as bus:
        await wait_until(lambda: bus.counted("door_never_heard") == 1, 2, "the report")
        assert bus.gpio is not None
        bus.gpio.fail()
        await bus.gpio.restarted(2)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 1, "the walk")
        assert bus.counted("beam_door_never_heard") == 1


async def test_a_door_never_heard_is_not_reported_where_a_contact_gates_its_beams(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contact gates the beams whatever the bus says; `rear`, a door of the config
    with no beams at all, is no fault either."""
    pins.pin(17).drive_low()
    contact = {"doors": [{"name": "front", "pin": 17}]}
    async with shuttle(pins, monkeypatch, front=None, **contact) as bus:
        await wait_until(
            lambda: len(bus.node.of_type(VehicleDoorUnheard)) == 2, 2, "both doors unheard"
        )
        assert bus.counted("door_never_heard") == 0


async def test_a_gpio_driver_restarted_after_dc2_stopped_counts_its_walks_unheard(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DC2 heard, then stopped while CCVS1 talks on (a gateway told to filter it); the GPIO
    driver restarts. Its new gate must know the door and that it went quiet, not count the
    beams as without a door, unreported, for ever."""
    async with shuttle(pins, monkeypatch) as bus:
        bus.front = None
        await asyncio.sleep(SILENT_S)
        assert bus.gpio is not None
        bus.gpio.fail()
        await bus.gpio.restarted(2)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 2, "the walk, ungated")
        assert bus.counted("beam_door_unheard") == 1


async def test_a_door_never_heard_is_counted_and_warned_once_across_gpio_driver_restarts(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A GPIO driver in a restart loop is told the door again at each start: that is no new
    finding, and must not inflate `door_never_heard` nor warn again."""
    caplog.set_level(logging.INFO, logger="edged.driver.gpio")
    async with shuttle(pins, monkeypatch, front=None) as bus:
        await wait_until(lambda: bus.counted("door_never_heard") == 1, 2, "the report")
        assert bus.gpio is not None
        for starts in (2, 3):
            bus.gpio.fail()
            await bus.gpio.restarted(starts)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 1, "the walk, ungated")
        assert bus.counted("beam_door_never_heard") == 1
        assert bus.counted("door_never_heard") == 1
        assert len(warnings(caplog, "not once given the door's status")) == 1


async def test_a_door_found_never_heard_while_the_gpio_driver_was_down_is_counted_at_its_start(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The GPIO driver down (a restart's backoff) when the vehicle service finds the bus
    never gives the door: nobody heard the finding, so the start after counts and warns
    it, once."""
    from edged.services import vehicle as vehicle_service

    caplog.set_level(logging.INFO, logger="edged.driver.gpio")
    slow = SupervisorConfig(backoff_initial_s=0.8, backoff_max_s=0.8, stable_after_s=30)
    async with shuttle(pins, monkeypatch, front=None, unheard_s=60, config=slow) as bus:
        assert bus.gpio is not None
        bus.gpio.fail()
        await bus.gpio.restarted(2)  # the first failure restarts at once
        await asyncio.sleep(UNHEARD_S)  # the bus has talked long enough: found at a frame
        bus.gpio.fail()  # the second backs off, 0.4 s at least
        await wait_until(lambda: bus.gpio is not None and not bus.gpio.running(), 1, "down")
        monkeypatch.setattr(vehicle_service, "DOOR_UNHEARD_S", UNHEARD_S)
        await wait_until(lambda: bus.node.of_type(VehicleDoorUnheard), 1, "the finding")
        assert not bus.gpio.running()
        await bus.gpio.restarted(3)
        await wait_until(lambda: bus.counted("door_never_heard") == 1, 1, "the report")
        assert len(warnings(caplog, "not once given the door's status")) == 1


async def dc2_from(bus: Shuttle, source: int, status: list[int]) -> None:
    """Another ECU sending DC2 (a gateway, a device on the FMS port): door 1 `status[0]`."""
    while True:
        data = bytes([0xF3 | status[0] << 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        bus.sender.send(
            can.Message(arbitration_id=make_id(64933, source), data=data, is_extended_id=True)
        )
        await asyncio.sleep(PERIOD_S)


@contextlib.asynccontextmanager
async def second_source(bus: Shuttle, status: list[int]) -> AsyncIterator[None]:
    task = asyncio.create_task(dc2_from(bus, 0x4A, status))
    try:
        yield
    finally:
        task.cancel()


async def test_a_second_ecu_saying_not_available_first_does_not_hide_the_door_controller(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway sends DC2 with door 1 not available before the door controller wakes:
    no value, no claim; the door controller's opening counts the rider."""
    async with shuttle(pins, monkeypatch, front=None) as bus, second_source(bus, [NOT_AVAILABLE]):
        await asyncio.sleep(0.2)
        bus.front = OPEN
        await asyncio.sleep(GRACE_S + 0.1)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 1, "the rider")
        assert bus.counted("beam_door_unknown") == 0 and bus.counted("beam_door_closed") == 0


async def test_a_second_ecu_saying_closed_against_the_door_controller_loses_no_rider(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A device on the FMS port (or a gateway filling in "closed") sends DC2 door 1 closed
    from before the door controller wakes, and so is the ECU the door follows; the door
    controller says open. Nobody can tell which is right: the rider counts, reported."""
    from edged.services import vehicle as vehicle_service

    monkeypatch.setattr(vehicle_service, "DOOR_DISAGREE_S", 0.3)
    caplog.set_level(logging.INFO, logger="edged.services.vehicle")
    async with shuttle(pins, monkeypatch, front=None) as bus, second_source(bus, [CLOSED]):
        await asyncio.sleep(0.2)
        bus.front = OPEN
        await asyncio.sleep(GRACE_S + 0.4)
        await bus.walk("in")
        await wait_until(lambda: bus.occupancy.count == 1, 1.5, "the rider")
        assert bus.counted("beam_door_unknown") == 1 and bus.counted("beam_door_closed") == 0
        assert bus.node.counters.snapshot().get("vehicle.door_sources_disagree") == 1
        (warning,) = warnings(caplog, "ECUs on the CAN bus have given different statuses")
        assert "0x21 open" in warning and "0x4a closed" in warning


async def forged_closed(bus: Shuttle, source: int, per_10ms: int, *, vary: bool = False) -> None:
    """A device on the FMS port: DC2 door 1 closed, `per_10ms` frames every 10 ms; `vary`:
    with another byte (a door not in use) different in each frame."""
    data = bytes([0xF3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    ident = make_id(64933, source)
    n = 0
    while True:
        for _ in range(per_10ms):
            n += 1
            frame = data[:3] + bytes([n % 256]) + data[4:] if vary else data
            bus.sender.send(can.Message(arbitration_id=ident, data=frame, is_extended_id=True))
        await asyncio.sleep(0.01)


async def test_a_flood_of_forged_closed_under_the_door_controller_s_address_loses_no_rider(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2000 DC2 "closed" a second under the door controller's own address, through the
    CAN driver's default throttle (0.1 s): its "open" frames still reach the gate."""
    async with shuttle(pins, monkeypatch, min_interval_s=0.1) as bus:
        bus.front = OPEN
        forger = asyncio.create_task(forged_closed(bus, 0x21, 20))
        try:
            await asyncio.sleep(GRACE_S + 0.1)  # the whole window flooded
            await bus.walk("in")
            await wait_until(lambda: bus.occupancy.count == 1, 1, "the rider")
        finally:
            forger.cancel()
        assert bus.counted("beam_door_closed") == 0


async def test_a_forged_flood_varying_a_byte_no_door_uses_loses_no_rider(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same flood with another byte of DC2 different in each frame: each was a change
    to the throttle, and took the prompt passes the door controller's "open" needed."""
    async with shuttle(pins, monkeypatch, min_interval_s=0.1) as bus:
        bus.front = OPEN
        forger = asyncio.create_task(forged_closed(bus, 0x21, 20, vary=True))
        try:
            await asyncio.sleep(GRACE_S + 0.1)  # the whole window flooded
            await bus.walk("in")
            await wait_until(lambda: bus.occupancy.count == 1, 1, "the rider")
        finally:
            forger.cancel()
        assert bus.counted("beam_door_closed") == 0


async def test_a_door_two_ecus_disagree_on_is_told_to_dispatch_as_disputed(
    pins: MockFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ECU the door follows says closed, the door controller open: dispatch is not
    told the door shut, but disputed, and `unknown` in `vehicle`."""
    from edged.services import vehicle as vehicle_service

    monkeypatch.setattr(vehicle_service, "DOOR_DISAGREE_S", 0.3)
    async with shuttle(pins, monkeypatch, front=None) as bus, second_source(bus, [CLOSED]):
        await asyncio.sleep(0.2)
        bus.front = OPEN

        def disputed() -> list[Any]:
            return [b for b in bus.node.bodies("events/door") if b.disputed]

        await wait_until(lambda: bool(disputed()), 2, "the door disputed")
        assert [(b.door, b.open) for b in disputed()] == [("front", False)]
        assert bus.node.bodies("vehicle")[-1].doors == {"front": "unknown"}

"""The board's inputs on gpiozero's MockFactory, driven as the hardware would drive them."""

import asyncio

from gpiozero.pins.mock import MockFactory

from core.events import Crossing, DoorInput, IgnitionInput, PanicInput
from tests.drivers.gpio.conftest import Start
from tests.drivers.gpio.fakes import SupervisedBoard, chatter, wait_until
from tests.helpers.drivers import Recorder

DOOR, OUTER, INNER, PANIC, IGNITION = 5, 6, 13, 19, 26


async def test_current_door_and_ignition_state_is_emitted_at_start(start: Start) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR}], ignition={"pin": IGNITION})
    # pull-ups, nothing driving: the contact is open (HIGH), the optocoupler is off (HIGH)
    assert [(e.door, e.open) for e in r.rec.of(DoorInput)] == [("front", True)]
    assert [e.on for e in r.rec.of(IgnitionInput)] == [False]


async def test_door_closing_and_opening_emit_door_input(start: Start, factory: MockFactory) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR, "bounce_s": 0.01}])
    pin = factory.pin(DOOR)
    pin.drive_low()  # the magnet closes the reed contact to ground
    await wait_until(lambda: len(r.rec.of(DoorInput)) == 2, 1, "door closed")
    pin.drive_high()
    await wait_until(lambda: len(r.rec.of(DoorInput)) == 3, 1, "door opened")
    assert [e.open for e in r.rec.of(DoorInput)] == [True, False, True]


async def test_active_low_door_contact_reads_the_other_way(
    start: Start, factory: MockFactory
) -> None:
    r = await start(doors=[{"name": "rear", "pin": DOOR, "active_high": False, "bounce_s": 0}])
    factory.pin(DOOR).drive_low()
    await wait_until(lambda: len(r.rec.of(DoorInput)) == 2, 1, "door change")
    assert [e.open for e in r.rec.of(DoorInput)] == [False, True]


async def test_contact_bounce_gives_one_event_dated_at_the_first_edge(
    start: Start, factory: MockFactory
) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR, "bounce_s": 0.05}])
    pin = factory.pin(DOOR)
    loop = asyncio.get_running_loop()
    first = loop.time()
    for _ in range(5):  # 5 ms of chatter, ending closed
        pin.drive_low()
        await asyncio.sleep(0.001)
        pin.drive_high()
        await asyncio.sleep(0.001)
    pin.drive_low()
    await asyncio.sleep(0.15)
    events = r.rec.of(DoorInput)[1:]
    assert [e.open for e in events] == [False]
    assert abs(events[0].ts - first) < 0.01


async def test_a_clean_close_is_reported_bounce_s_after_its_edge(
    start: Start, factory: MockFactory
) -> None:
    # the chatter rule (module docstring) must not slow the normal case down, nor hurry it
    r = await start(doors=[{"name": "front", "pin": DOOR, "bounce_s": 0.05}])
    edge = asyncio.get_running_loop().time()
    factory.pin(DOOR).drive_low()
    await wait_until(lambda: len(r.rec.of(DoorInput)) == 2, 1, "door closed")
    assert 0.05 <= r.rec.arrived[-1] - edge < 0.07


async def test_glitch_shorter_than_bounce_s_is_ignored(start: Start, factory: MockFactory) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR, "bounce_s": 0.05}])
    pin = factory.pin(DOOR)
    pin.drive_low()
    await asyncio.sleep(0.01)
    pin.drive_high()  # back where it was before the bounce time is up
    await asyncio.sleep(0.1)
    assert len(r.rec.of(DoorInput)) == 1  # only the state at start


async def test_a_glitch_whose_return_edge_was_lost_is_read_from_the_pin(
    start: Start, factory: MockFactory
) -> None:
    # an edge gpiozero never delivered (RPi.GPIO can miss one, or pass a stale level): the
    # edges say closed, the pin says open; the pin is read when the change is decided
    r = await start(doors=[{"name": "front", "pin": DOOR, "bounce_s": 0.05}])
    pin = factory.pin(DOOR)
    pin.drive_low()
    await asyncio.sleep(0.01)
    pin.edges = "falling"  # the rising edge is lost
    pin.drive_high()
    pin.edges = "both"
    await asyncio.sleep(0.2)
    assert len(r.rec.of(DoorInput)) == 1  # only the state at start


async def _clear_beams(factory: MockFactory) -> None:
    """Receivers see their light: LOW (the pull-up reads blocked until they drive)."""
    factory.pin(OUTER).drive_low()
    factory.pin(INNER).drive_low()
    await asyncio.sleep(0.03)


async def _walk(factory: MockFactory, *steps: str, gap: float = 0.015) -> None:
    for step in steps:
        pin = factory.pin(OUTER if step[0] == "O" else INNER)
        pin.drive_high() if step[1] == "+" else pin.drive_low()
        await asyncio.sleep(gap)


BEAMS = [{"door": "front", "outer": OUTER, "inner": INNER, "min_block_s": 0.005}]


async def test_walking_through_the_beams_emits_crossings_in_then_out(
    start: Start, factory: MockFactory
) -> None:
    r = await start(beams=BEAMS)
    await _clear_beams(factory)
    await _walk(factory, "O+", "I+", "O-", "I-")
    await _walk(factory, "I+", "O+", "I-", "O-")
    await wait_until(lambda: len(r.rec.of(Crossing)) == 2, 1, "two crossings")
    assert [(c.door, c.direction) for c in r.rec.of(Crossing)] == [
        ("front", "in"),
        ("front", "out"),
    ]


async def test_backing_out_of_the_beams_emits_nothing(start: Start, factory: MockFactory) -> None:
    r = await start(beams=BEAMS)
    await _clear_beams(factory)
    await _walk(factory, "O+", "I+", "I-", "O-")
    await asyncio.sleep(0.05)
    assert r.rec.of(Crossing) == []


async def test_beam_glitches_are_counted_not_crossed(start: Start, factory: MockFactory) -> None:
    r = await start(beams=[{**BEAMS[0], "min_block_s": 0.03}])
    await _clear_beams(factory)
    await _walk(factory, "O+", "O-", "I+", "I-", gap=0.002)
    await asyncio.sleep(0.06)
    assert r.rec.of(Crossing) == []
    assert r.rec.counts["beam_glitch"] == 2


async def test_beam_stuck_blocked_is_counted_by_the_board_timer(
    start: Start, factory: MockFactory
) -> None:
    r = await start(beams=[{**BEAMS[0], "max_transit_s": 0.1}])
    await _clear_beams(factory)
    factory.pin(OUTER).drive_high()
    await wait_until(lambda: r.rec.counts["beam_stuck"] == 1, 1, "a stuck report")


async def test_panic_counts_only_after_hold_s(start: Start, factory: MockFactory) -> None:
    r = await start(panic={"pin": PANIC, "hold_s": 0.1, "bounce_s": 0.005})
    pin = factory.pin(PANIC)
    assert [e.pressed for e in r.rec.of(PanicInput)] == [False]  # up at start
    pin.drive_low()  # pressed: the button shorts the pull-up to ground
    await asyncio.sleep(0.06)
    assert len(r.rec.of(PanicInput)) == 1
    await wait_until(lambda: len(r.rec.of(PanicInput)) == 2, 1, "the press")
    pin.drive_high()
    await wait_until(lambda: len(r.rec.of(PanicInput)) == 3, 1, "the release")
    assert [e.pressed for e in r.rec.of(PanicInput)] == [False, True, False]


async def test_panic_brush_shorter_than_hold_s_is_no_press(
    start: Start, factory: MockFactory
) -> None:
    r = await start(panic={"pin": PANIC, "hold_s": 0.1, "bounce_s": 0.005})
    pin = factory.pin(PANIC)
    pin.drive_low()
    await asyncio.sleep(0.04)
    pin.drive_high()  # and it stays up: counted once up longer than a drop-out (dropout_s)
    await wait_until(lambda: r.rec.counts["panic_brush"] == 1, 1, "the brush")
    await asyncio.sleep(0.1)
    assert [e.pressed for e in r.rec.of(PanicInput)] == [False]  # only the state at start


async def test_ignition_on_and_off_after_its_debounce(start: Start, factory: MockFactory) -> None:
    r = await start(ignition={"pin": IGNITION, "bounce_s": 0.02})
    pin = factory.pin(IGNITION)
    pin.drive_low()  # the optocoupler conducts: ignition on
    await wait_until(lambda: len(r.rec.of(IgnitionInput)) == 2, 1, "ignition on")
    pin.drive_high()
    await wait_until(lambda: len(r.rec.of(IgnitionInput)) == 3, 1, "ignition off")
    assert [e.on for e in r.rec.of(IgnitionInput)] == [False, True, False]


async def test_cranking_dip_shorter_than_the_debounce_keeps_ignition_on(
    start: Start, factory: MockFactory
) -> None:
    r = await start(ignition={"pin": IGNITION, "bounce_s": 0.05})
    pin = factory.pin(IGNITION)
    pin.drive_low()
    await wait_until(lambda: len(r.rec.of(IgnitionInput)) == 2, 1, "ignition on")
    pin.drive_high()
    await asyncio.sleep(0.02)
    pin.drive_low()
    await asyncio.sleep(0.1)
    assert [e.on for e in r.rec.of(IgnitionInput)] == [False, True]


async def test_a_cranking_dip_that_flickers_mostly_off_keeps_ignition_on(
    start: Start, factory: MockFactory
) -> None:
    """The starter pulls the battery down and the sense line flickers, off 5-15 ms, back on
    1-5 ms, for longer than bounce_s. The ignition is decided only by a steady level: read
    as "off", it would close the trip and let a parked update switch at the engine's start."""
    r = await start(ignition={"pin": IGNITION, "bounce_s": 0.05})
    pin = factory.pin(IGNITION)
    pin.drive_low()
    await wait_until(lambda: len(r.rec.of(IgnitionInput)) == 2, 1, "ignition on")
    held = await chatter(pin, made=True, seconds=0.3)  # made: the pin high, optocoupler off
    pin.drive_low()
    await asyncio.sleep(0.15)
    if held.made >= 0.05:  # this machine held the line off past the debounce: really off
        assert [e.on for e in r.rec.of(IgnitionInput)][-1] is True
        return
    assert [e.on for e in r.rec.of(IgnitionInput)] == [False, True]


async def test_a_service_failing_on_its_events_is_counted_and_the_driver_goes_on(
    start: Start, factory: MockFactory
) -> None:
    r = await start(doors=[{"name": "front", "pin": DOOR, "bounce_s": 0}])

    def broken(event: DoorInput) -> None:
        raise RuntimeError("a service failed")

    r.rec.bus.subscribe(DoorInput, broken)
    factory.pin(DOOR).drive_low()
    await wait_until(lambda: r.rec.counters["service.doorinput.error"] == 1, 1, "the count")
    factory.pin(DOOR).drive_high()
    await wait_until(lambda: len(r.rec.of(DoorInput)) == 3, 1, "the next door event")
    assert not r.task.done()


async def test_a_person_on_the_beams_at_a_driver_restart_is_not_counted_the_next_one_is(
    factory: MockFactory,
) -> None:
    """On both beams when the driver fails, through after its restart: the restarted
    driver found the doorway occupied and waits for it to empty (a count lost, never a
    phantom one at the restart); the next person counts."""
    gpio = SupervisedBoard(Recorder("gpio"), beams=BEAMS)
    await _clear_beams(factory)
    try:
        await gpio.start()
        await _walk(factory, "O+", "I+")
        await gpio.fail_once()
        await _walk(factory, "O-", "I-")  # the first person, through
        await _walk(factory, "O+", "I+", "O-", "I-")  # the next
        await wait_until(lambda: bool(gpio.host.of(Crossing)), 1, "a crossing")
        await asyncio.sleep(0.05)
        assert [c.direction for c in gpio.host.of(Crossing)] == ["in"]
    finally:
        await gpio.stop()

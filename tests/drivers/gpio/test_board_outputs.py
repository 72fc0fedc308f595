"""The board's outputs on MockFactory: relay pulses and indicator patterns as pin timelines
(the MockPin records every change with its time), and the safe state when it stops."""

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device, InputDevice, OutputDevice
from gpiozero.pins.mock import MockFactory

from core.errors import DriverError
from core.events import DoorInput, Feedback, Unlock
from drivers.gpio import mock
from drivers.gpio.board import GpioBoard
from drivers.gpio.options import GpioOptions
from edged.config.loader import load_config
from edged.config.models import SupervisorConfig
from edged.node import Node
from tests.drivers.gpio.conftest import Start
from tests.drivers.gpio.fakes import SupervisedBoard, assert_timeline, fresh, timeline, wait_until
from tests.helpers.broker import free_port
from tests.helpers.drivers import Recorder
from tests.helpers.nodes import write_config

LOCK, GREEN, RED, BUZZER = 17, 22, 23, 24
DOOR = 5
OUTPUTS: dict[str, Any] = {
    "lock": {"pin": LOCK},
    "green": {"pin": GREEN},
    "red": {"pin": RED},
    "buzzer": {"pin": BUZZER},
}
FAST = {
    "granted_s": 0.2,
    "denied_s": 0.2,
    "beep_s": 0.04,
    "alarm_blink_s": 0.05,
    "alarm_beep_s": 0.1,
    "acked_on_s": 0.05,
    "acked_off_s": 0.15,
}


def unlock(pulse_s: float) -> Unlock:
    return Unlock(pulse_s, time.monotonic())


def feedback(pattern: str) -> Feedback:
    return Feedback(pattern, time.monotonic())  # type: ignore[arg-type]


def test_the_mock_pins_of_a_node_keep_a_bounded_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's and the rig's pins (no test installed a factory): a node that blinks its
    LEDs for weeks must not keep every change of every pin."""
    monkeypatch.setattr(mock, "_shared_mock", None)
    monkeypatch.setattr(Device, "pin_factory", None)
    factory = mock.mock_factory()
    try:
        pin = factory.pin(GREEN)
        pin.function = "output"
        for i in range(10_000):
            pin.state = i % 2 == 0
        assert len(pin.states) <= mock.MOCK_HISTORY
        # still gpiozero's list, as bench.tap and the rig read it (sliced), newest last
        assert isinstance(pin.states, list) and [s.state for s in pin.states[-2:]] == [1, 0]
    finally:
        factory.reset()


async def test_unlock_energises_the_relay_for_pulse_s(start: Start, factory: MockFactory) -> None:
    r = await start(**OUTPUTS)
    relay = factory.pin(LOCK)
    fresh(relay)
    r.rec.send(unlock(0.1))
    assert relay.state  # written before the handler returned
    await asyncio.sleep(0.2)
    # 27 ms late once in a CI-equivalent run (three workers on two cores): the pulse is
    # 0.1 s, the default 3 s, a wrong one far off either way
    assert_timeline(relay, [(0, True), (0.1, False)], tol=0.05)


async def test_unlock_while_energised_extends_the_pulse(start: Start, factory: MockFactory) -> None:
    r = await start(**OUTPUTS)
    relay = factory.pin(LOCK)
    fresh(relay)
    r.rec.send(unlock(0.1))
    await asyncio.sleep(0.05)
    r.rec.send(unlock(0.1))
    await asyncio.sleep(0.15)
    assert_timeline(relay, [(0, True), (0.15, False)], tol=0.02)


async def test_shorter_unlock_while_energised_does_not_cut_the_pulse(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS)
    relay = factory.pin(LOCK)
    fresh(relay)
    r.rec.send(unlock(0.15))
    await asyncio.sleep(0.03)
    r.rec.send(unlock(0.01))
    await asyncio.sleep(0.17)
    assert_timeline(relay, [(0, True), (0.15, False)], tol=0.02)


async def test_unlock_longer_than_max_unlock_s_is_capped(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, max_unlock_s=0.05)
    fresh(factory.pin(LOCK))
    r.rec.send(unlock(3600))
    await asyncio.sleep(0.1)
    assert_timeline(factory.pin(LOCK), [(0, True), (0.05, False)], tol=0.02)


@pytest.mark.parametrize("pulse", [0.0, -1.0, float("nan"), float("inf")])
async def test_unlock_with_a_nonsense_pulse_is_refused_and_counted(
    start: Start, factory: MockFactory, pulse: float
) -> None:
    r = await start(**OUTPUTS)
    r.rec.send(Unlock(pulse, time.monotonic()))
    assert not factory.pin(LOCK).state
    assert r.rec.counts["unlock_refused"] == 1


async def test_active_low_relay_is_energised_by_driving_low(
    start: Start, factory: MockFactory
) -> None:
    r = await start(lock={"pin": LOCK, "active_high": False})
    relay = factory.pin(LOCK)
    assert relay.state  # de-energised: HIGH
    r.rec.send(unlock(0.05))
    assert not relay.state
    await asyncio.sleep(0.08)
    assert relay.state


async def test_granted_is_green_for_granted_s_and_one_beep(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    fresh(*(factory.pin(p) for p in (GREEN, RED, BUZZER)))
    r.rec.send(feedback("granted"))
    await asyncio.sleep(0.3)
    assert_timeline(factory.pin(GREEN), [(0, True), (0.2, False)])
    assert_timeline(factory.pin(BUZZER), [(0, True), (0.04, False)])
    assert timeline(factory.pin(RED)) == []


async def test_denied_is_red_for_denied_s_and_three_beeps(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    fresh(*(factory.pin(p) for p in (GREEN, RED, BUZZER)))
    r.rec.send(feedback("denied"))
    await asyncio.sleep(0.3)
    assert_timeline(factory.pin(RED), [(0, True), (0.2, False)])
    beeps = [(0, True), (0.04, False), (0.08, True), (0.12, False), (0.16, True), (0.2, False)]
    assert_timeline(factory.pin(BUZZER), beeps)
    assert timeline(factory.pin(GREEN)) == []


async def test_alarm_blinks_red_and_sounds_until_acknowledged(
    start: Start, factory: MockFactory
) -> None:
    """gpiozero's blink threads keep the wall-clock time: on a machine loaded by the other
    test workers one transition came 30 ms late, and each after it inherits the delay. The
    sequence is tried up to three times; a wrong pattern fails every try."""
    r = await start(**OUTPUTS, feedback=FAST)
    for attempt in range(3):
        try:
            await _alarm_then_acknowledged(r, factory)
            return
        except AssertionError:
            if attempt == 2:
                raise
            r.rec.send(feedback("alarm_off"))
            await asyncio.sleep(0.05)


async def _alarm_then_acknowledged(r: Any, factory: MockFactory) -> None:
    red, buzzer = factory.pin(RED), factory.pin(BUZZER)
    fresh(red, buzzer)
    r.rec.send(feedback("alarm"))
    await asyncio.sleep(0.32)
    assert_timeline(red, [(i * 0.05, i % 2 == 0) for i in range(6)], until=0.275)
    assert_timeline(buzzer, [(i * 0.1, i % 2 == 0) for i in range(3)], until=0.25)
    red_was_on, buzzer_was_on = red.state, buzzer.state
    fresh(red, buzzer)
    r.rec.send(feedback("alarm_acked"))  # help is coming: slow blink, silence
    await asyncio.sleep(0.45)
    assert_timeline(buzzer, [(0, False)] if buzzer_was_on else [])
    slow = [(0, True), (0.05, False), (0.2, True), (0.25, False), (0.4, True)]
    assert_timeline(red, slow[1:] if red_was_on else slow, until=0.425)


async def test_alarm_off_turns_everything_off_and_keeps_it_off(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    r.rec.send(feedback("alarm"))
    await asyncio.sleep(0.07)
    r.rec.send(feedback("alarm_off"))
    pins = [factory.pin(p) for p in (GREEN, RED, BUZZER)]
    assert not any(p.state for p in pins)
    fresh(*pins)
    await asyncio.sleep(0.2)
    assert all(timeline(p) == [] for p in pins)


async def test_granted_during_an_alarm_shows_green_and_the_alarm_goes_on(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    red, green, buzzer = factory.pin(RED), factory.pin(GREEN), factory.pin(BUZZER)
    r.rec.send(feedback("alarm"))
    await asyncio.sleep(0.12)
    fresh(red, buzzer)
    r.rec.send(feedback("granted"))
    assert green.state
    await asyncio.sleep(0.15)
    assert len(timeline(red)) >= 2 and len(timeline(buzzer)) >= 1  # the alarm goes on
    await asyncio.sleep(0.1)  # granted_s (0.2) is over
    assert not green.state


async def test_taps_in_a_row_during_an_alarm_never_silence_it(
    start: Start, factory: MockFactory
) -> None:
    """Someone tapping a card every 0.1 s (granted_s 0.2 here; a second by default) kept
    the red light and the buzzer of a panic alarm off for as long as they went on."""
    r = await start(**OUTPUTS, feedback=FAST | {"beep_s": 0.01})
    red, buzzer = factory.pin(RED), factory.pin(BUZZER)
    r.rec.send(feedback("alarm"))
    await asyncio.sleep(0.05)
    fresh(red, buzzer)
    began = time.monotonic()
    for _ in range(8):
        r.rec.send(feedback("granted"))
        await asyncio.sleep(0.1)
    window = time.monotonic() - began  # 0.8 s, longer on a loaded machine
    assert len(timeline(red)) >= 8  # blinking all along (0.05 on, 0.05 off)
    changes = [*timeline(buzzer), (window, False)]
    sounding = sum(t1 - t0 for (t0, on), (t1, _) in itertools.pairwise(changes) if on)
    # the alarm's 0.1 s on, 0.1 s off: half the time; silenced by the taps, their 0.01 s
    # beeps only (~1/10)
    assert sounding > 0.3 * window, f"sounding {sounding:.2f} of {window:.2f} s"


async def test_acknowledging_during_a_short_pattern_resumes_with_the_slow_blink(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    buzzer = factory.pin(BUZZER)
    r.rec.send(feedback("alarm"))
    r.rec.send(feedback("denied"))
    r.rec.send(feedback("alarm_acked"))
    await asyncio.sleep(0.25)
    fresh(buzzer)
    await asyncio.sleep(0.3)
    assert not buzzer.state
    assert timeline(buzzer) == []  # acknowledged: silent
    assert r.driver.board is not None and r.driver.board.indicators is not None
    assert r.driver.board.indicators.state == "alarm_acked"


async def test_new_alarm_cuts_a_short_pattern_at_once(start: Start, factory: MockFactory) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    r.rec.send(feedback("granted"))
    r.rec.send(feedback("alarm"))
    assert not factory.pin(GREEN).state
    assert factory.pin(RED).state and factory.pin(BUZZER).state


async def test_cancel_leaves_relay_buzzer_and_leds_off(start: Start, factory: MockFactory) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    r.rec.send(feedback("alarm"))
    r.rec.send(unlock(60))
    assert factory.pin(LOCK).state and factory.pin(BUZZER).state
    r.task.cancel()
    await asyncio.gather(r.task, return_exceptions=True)
    assert not any(factory.pin(p).state for p in (LOCK, GREEN, RED, BUZZER))


async def test_cancel_leaves_an_active_low_relay_high(start: Start, factory: MockFactory) -> None:
    r = await start(lock={"pin": LOCK, "active_high": False})
    r.rec.send(unlock(60))
    assert not factory.pin(LOCK).state
    r.task.cancel()
    await asyncio.gather(r.task, return_exceptions=True)
    assert factory.pin(LOCK).state


async def test_failure_leaves_the_relay_off(start: Start, factory: MockFactory) -> None:
    r = await start(**OUTPUTS)
    r.rec.send(unlock(60))
    assert r.driver.board is not None
    r.driver.board.fail(RuntimeError("a pin write failed"))
    await wait_until(r.task.done, 1, "the driver to stop")
    assert isinstance(r.task.exception(), RuntimeError)
    assert not factory.pin(LOCK).state


async def test_a_start_failing_on_an_input_puts_a_relay_left_energised_at_rest(
    start: Start, factory: MockFactory
) -> None:
    """A kill -9 during an unlock leaves the relay pin energised (the kernel keeps an
    output's level when its holder dies). The restarted driver writes it at rest when it
    opens it: that must happen though a door contact then fails to open (in use), or the
    door stays unlocked while the driver fails, start after start."""
    factory.pin(LOCK).output_with_state(True)  # what the killed daemon left
    other = InputDevice(DOOR, pin_factory=factory)
    try:
        with pytest.raises(DriverError, match="in use"):
            await start(doors=[{"name": "front", "pin": DOOR}], **OUTPUTS)
    finally:
        other.close()
    assert not factory.pin(LOCK).state


async def test_an_unlock_cut_by_a_driver_failure_is_not_resumed_by_the_restart(
    factory: MockFactory,
) -> None:
    """A venue door: an unlock in progress ends when the driver fails (the relay at rest
    before the pins are released) and the restarted driver leaves it at rest: the door is
    never left unlocked by a failure, and who was let in taps again."""
    gpio = SupervisedBoard(Recorder("gpio", kinds=()), **OUTPUTS)
    relay = factory.pin(LOCK)
    try:
        await gpio.start()
        gpio.host.send(unlock(60))
        assert relay.state
        fresh(relay)
        await gpio.fail_once()
        await asyncio.sleep(0.1)
    finally:
        await gpio.stop()
    assert [level for _, level in timeline(relay)] == [False]


async def test_a_node_told_to_stop_puts_the_relay_at_rest_before_it_drains(
    factory: MockFactory, tmp_path: Path
) -> None:
    """SIGTERM (systemd's stop, `Node.terminate`) during an unlock: the node cancels its
    drivers before it drains the outbox (up to 4 s), so the relay is at rest at once."""
    gpio = f"""
[[drivers]]
name = "gpio"
driver = "gpio.gpiozero"
[drivers.options]
pin_factory = "mock"
lock = {{ pin = {LOCK} }}
"""
    config = write_config(tmp_path, free_port(), gps=False, extra=gpio)
    node = Node(load_config(config), base_dir=tmp_path)
    task = asyncio.create_task(node.run(asyncio.Event()))
    relay = factory.pin(LOCK)
    try:
        await asyncio.wait_for(node.ready.wait(), 5)
        status = node.supervisor.drivers
        await wait_until(lambda: status["gpio"].state == "running", 2, "the gpio driver")
        node.bus.emit(unlock(60))
        assert relay.state
        node.terminate()
        await wait_until(lambda: not relay.state, 0.5, "the relay at rest")
    finally:
        node.terminate()
        await asyncio.wait_for(task, 10)


async def test_handler_kept_after_the_stop_does_not_touch_the_pins(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS)
    assert r.driver.board is not None
    stale_unlock, stale_feedback = r.driver.board.on_unlock, r.driver.board.on_feedback
    r.task.cancel()
    await asyncio.gather(r.task, return_exceptions=True)
    assert not r.rec.bus.has_subscribers(Unlock)  # the context dropped them
    assert not r.rec.bus.has_subscribers(Feedback)
    stale_unlock(unlock(5))
    stale_feedback(feedback("alarm"))
    assert not any(factory.pin(p).state for p in (LOCK, RED, BUZZER))


async def test_supervised_driver_leaves_no_subscription_behind(factory: MockFactory) -> None:
    rec = Recorder("gpio", kinds=())
    options = GpioOptions(pin_factory="mock", **OUTPUTS)
    sup = rec.supervisor(
        SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.1, stable_after_s=10)
    )
    task = asyncio.create_task(sup.supervise("gpio", "gpio.gpiozero", lambda: GpioBoard(options)))
    await wait_until(
        lambda: sup.drivers.get("gpio") is not None and sup.drivers["gpio"].state == "running",
        2,
        "running",
    )
    assert rec.bus.has_subscribers(Unlock) and rec.bus.has_subscribers(Feedback)
    rec.bus.emit(unlock(60))
    assert factory.pin(LOCK).state
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not rec.bus.has_subscribers(Unlock) and not rec.bus.has_subscribers(Feedback)
    assert not factory.pin(LOCK).state


async def test_restart_keeps_the_levels_the_rig_drove(start: Start, factory: MockFactory) -> None:
    r = await start(doors=[{"name": "front", "pin": 5, "bounce_s": 0}])
    factory.pin(5).drive_low()  # closed
    await asyncio.sleep(0.01)
    r.task.cancel()
    await asyncio.gather(r.task, return_exceptions=True)
    r2 = await start(doors=[{"name": "front", "pin": 5, "bounce_s": 0}])
    assert [e.open for e in r2.rec.of(DoorInput)] == [False]


async def test_pin_in_use_elsewhere_in_the_process_is_a_driver_error(
    start: Start, factory: MockFactory
) -> None:
    other = OutputDevice(LOCK, pin_factory=factory)
    try:
        with pytest.raises(DriverError, match="GPIO17 is already in use"):
            await start(**OUTPUTS)
        OutputDevice(GREEN, pin_factory=factory).close()  # the board released what it opened
    finally:
        other.close()


async def test_unknown_feedback_pattern_is_counted_and_shows_nothing(
    start: Start, factory: MockFactory
) -> None:
    r = await start(**OUTPUTS, feedback=FAST)
    pins = [factory.pin(p) for p in (GREEN, RED, BUZZER)]
    fresh(*pins)
    r.rec.send(feedback("party"))
    await asyncio.sleep(0.02)
    assert r.rec.counts["feedback_unknown"] == 1
    assert all(timeline(p) == [] for p in pins)

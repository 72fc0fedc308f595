"""The panic alarm: raised at once with the position, kept until acknowledged, restored."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from core.driver import DriverContext, DriverReady
from core.events import Feedback, Fix, PanicInput
from drivers.gpio.board import GpioBoard
from drivers.gpio.options import GpioOptions
from edged.commands.spec import SENT_AT
from edged.config.access import PanicServiceConfig
from edged.config.models import SupervisorConfig
from edged.errors import CommandError, EdgedError
from edged.node import Node
from edged.outbox.journal import read as journal_read
from edged.services.events import LinkChanged, PositionUpdated
from edged.services.panic import HELD_KEY, STATE_KEY, PanicService
from tests.drivers.gpio.fakes import SupervisedBoard
from tests.helpers.drivers import wait_until
from tests.helpers.host import TestHost
from tests.helpers.journal import FEW, Journal
from tests.helpers.kiosk import Nodes

FIX = Fix(fix_time=datetime(2026, 11, 25, 9, 0, tzinfo=UTC), lat=46.17, lon=1.87, speed=3.2)


def make(
    node: TestHost | None = None, *, fix: Fix | None = FIX, connected: bool = True, **cfg: Any
) -> tuple[TestHost, PanicService]:
    """The service on `node`, told by the bus where the vehicle is and whether the link is up."""
    node = node or TestHost()
    service = PanicService(node, PanicServiceConfig(**cfg))
    if fix is not None:
        node.emit(PositionUpdated(fix))
    node.emit(LinkChanged(connected))
    return node, service


def press(node: TestHost) -> None:
    node.emit(PanicInput(True, 0.0))
    node.emit(PanicInput(False, 0.0))


def alarms(node: TestHost) -> list[Any]:
    return node.bodies("alarm/{name}")


def patterns(node: TestHost) -> list[str]:
    return [f.pattern for f in node.of_type(Feedback)]


def test_a_press_raises_a_panic_alarm_with_the_last_position() -> None:
    node, _ = make()
    press(node)
    (alarm,) = alarms(node)
    assert (alarm.kind, alarm.active) == ("panic", True)
    assert (alarm.details["lat"], alarm.details["lon"]) == (46.17, 1.87)
    assert node.names == ["panic"]  # published on alarm/panic


def test_a_press_gives_the_last_believed_position_not_a_suspect_one() -> None:
    """Rule 7: whoever spoofs the GPS while robbing the driver would send responders to
    the place spoofed (docs/topics.md, *Suspect positions*)."""
    node, _ = make()
    node.emit(PositionUpdated(replace(FIX, lat=46.19), suspect="wheels"))
    press(node)
    assert (alarms(node)[0].details["lat"], alarms(node)[0].details["lon"]) == (46.17, 1.87)


def test_a_press_starts_the_local_alarm_pattern_at_once() -> None:
    node, _ = make()
    press(node)
    assert patterns(node) == ["alarm"]


def test_without_a_fix_the_alarm_still_goes_without_position() -> None:
    node, _ = make(fix=None)
    press(node)
    assert "lat" not in alarms(node)[0].details


def test_pressing_again_resends_at_once_and_counts_the_presses() -> None:
    node, _ = make()
    press(node)
    press(node)
    assert [a.details["presses"] for a in alarms(node)] == [1, 2]
    assert len({a.details["alarm_id"] for a in alarms(node)}) == 1


def test_presses_again_while_offline_wait_as_one_message_with_their_count() -> None:
    """A rider jabbing the button for as long as the link is down (a press again every
    second through the real driver) piles up one message, not one per press."""
    node, _ = make(connected=False)
    for _ in range(50):
        press(node)
    assert len(alarms(node)) == 1  # the alarm itself, waiting in the outbox
    node.emit(LinkChanged(True))
    assert [(a.reason, a.details["presses"]) for a in alarms(node)[1:]] == [("pressed again", 50)]


async def test_presses_again_in_a_row_are_sent_once_per_window_with_their_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edged.services.panic.REPRESS_EVERY_S", 0.1, raising=False)
    node, service = make()
    for _ in range(30):
        press(node)
    assert [a.details["presses"] for a in alarms(node)] == [1, 2]  # the first again at once
    task = asyncio.create_task(service.run())
    await wait_until(lambda: len(alarms(node)) > 2, 2, "the presses folded in the window")
    task.cancel()
    assert (alarms(node)[2].reason, alarms(node)[2].details["presses"]) == ("pressed again", 30)


def test_the_raised_alarm_is_stored_before_any_acknowledgement() -> None:
    node, service = make()
    press(node)
    assert node.state[STATE_KEY]["alarm_id"] == service.active["alarm_id"]  # type: ignore[index]


async def test_after_a_restart_the_alarm_is_restored_and_sent_again() -> None:
    node, _ = make()
    press(node)
    restarted = TestHost(state=node.state)
    _, service = make(restarted, repeat_s=5)
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.05)
    task.cancel()
    assert patterns(restarted) == ["alarm"]
    assert alarms(restarted)[0].reason == "still active after a restart"


async def test_ack_clears_the_alarm_and_shows_help_is_coming() -> None:
    node, service = make(acked_indicator_s=0.05)
    press(node)
    alarm_id = service.active["alarm_id"]  # type: ignore[index]
    result = await service.command_ack({"alarm_id": alarm_id, "by": "dispatch-gueret"})
    assert result == {"alarm_id": alarm_id, "acked": True}
    cleared = alarms(node)[-1]
    assert (cleared.active, cleared.reason, cleared.details["acked_by"]) == (
        False,
        "acknowledged",
        "dispatch-gueret",
    )
    assert node.state[STATE_KEY] is None
    await asyncio.sleep(0.1)
    assert patterns(node) == ["alarm", "alarm_acked", "alarm_off"]


async def test_every_alarm_raised_and_acknowledged_is_in_the_journal_during_a_flood(
    journal: Journal,
) -> None:
    """The log holds back a flood's lines after its first ones; never an alarm's, however
    many come (here three times what a flood may show), nor under a flood of other lines."""
    node, service = make(acked_indicator_s=0.01)
    refusals = logging.getLogger("edged.commands.router")
    for n in range(3 * FEW):
        for _ in range(100):
            refusals.warning("command %r refused: %s %s", "ping", "bad_json", "not JSON")
        press(node)
        await service.command_ack({"by": f"dispatch-{n}"})
    assert len(journal.with_("PANIC alarm")) == 3 * FEW
    assert len(journal.with_("acknowledged by dispatch-")) == 3 * FEW
    assert len(journal.with_("refused: bad_json")) <= FEW


async def test_ack_of_another_alarm_is_refused_and_changes_nothing() -> None:
    node, service = make()
    press(node)
    with pytest.raises(CommandError) as info:
        await service.command_ack({"alarm_id": "123-abc"})
    assert info.value.code == "wrong_alarm" and service.active is not None


async def test_an_ack_sent_before_the_alarm_was_raised_is_refused_and_changes_nothing() -> None:
    """An older alarm's ack, kept by the broker through a dead zone, arrives after a new
    press: it must not clear the alarm nobody has seen yet."""
    node, service = make(TestHost(synced=True))
    press(node)
    raised_at = service.active["raised_at"]  # type: ignore[index]
    SENT_AT.set(raised_at - 1)
    with pytest.raises(CommandError) as info:
        await service.command_ack({"by": "dispatch"})
    assert info.value.code == "wrong_alarm" and "alarm_id" in info.value.message
    assert service.active is not None and node.state[STATE_KEY] is not None
    assert [a.active for a in alarms(node)] == [True]


async def test_an_ack_sent_after_the_alarm_was_raised_clears_it_without_its_id() -> None:
    node, service = make(TestHost(synced=True))
    press(node)
    SENT_AT.set(service.active["raised_at"])  # type: ignore[index]
    assert (await service.command_ack({}))["acked"] is True


async def test_an_ack_by_its_alarm_id_clears_it_whenever_it_was_sent() -> None:
    node, service = make(TestHost(synced=True))
    press(node)
    SENT_AT.set(0)
    alarm_id = service.active["alarm_id"]  # type: ignore[index]
    assert (await service.command_ack({"alarm_id": alarm_id}))["acked"] is True


async def test_an_alarm_raised_by_an_unsynced_clock_is_cleared_by_an_earlier_ack() -> None:
    """Its `raised_at` may be hours off: the node cannot tell which came first."""
    node, service = make(TestHost(synced=False))
    press(node)
    SENT_AT.set(service.active["raised_at"] - 60_000)  # type: ignore[index]
    assert (await service.command_ack({}))["acked"] is True


async def test_ack_without_an_alarm_is_refused() -> None:
    _, service = make()
    with pytest.raises(CommandError) as info:
        await service.command_ack({})
    assert info.value.code == "no_alarm"


@pytest.mark.parametrize("args", [{"alarm_id": 5}, {"by": "x" * 65}, {"who": "me"}])
async def test_ack_refuses_malformed_arguments(args: dict[str, Any]) -> None:
    node, service = make()
    press(node)
    with pytest.raises(CommandError) as info:
        await service.command_ack(args)
    assert info.value.code == "bad_args"


async def test_an_unacknowledged_alarm_repeats_while_connected() -> None:
    node, service = make(repeat_s=5)
    service.config = PanicServiceConfig.model_construct(repeat_s=0.05, acked_indicator_s=0)
    press(node)
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.3)
    task.cancel()
    repeats = [a for a in alarms(node) if a.reason == "not acknowledged yet"]
    assert len(repeats) >= 2


async def test_no_repeats_pile_up_while_offline() -> None:
    node, service = make(connected=False)
    service.config = PanicServiceConfig.model_construct(repeat_s=0.05, acked_indicator_s=0)
    press(node)
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.3)
    task.cancel()
    assert len(alarms(node)) == 1  # the first one waits in the outbox


def test_a_new_press_after_an_ack_raises_a_new_alarm() -> None:
    node, service = make()
    press(node)
    first = service.active["alarm_id"]  # type: ignore[index]

    async def ack() -> None:
        await service.command_ack({})

    asyncio.run(ack())
    press(node)
    assert service.active is not None and service.active["alarm_id"] != first


def ack(service: PanicService) -> None:
    asyncio.run(service.command_ack({}))


def fast(service: PanicService, **cfg: Any) -> None:
    """Shorter timings than the config allows, so the service's loop turns in a test."""
    values = {"repeat_s": 0.02, "acked_indicator_s": 60, "stuck_after_s": 300} | cfg
    service.config = PanicServiceConfig.model_construct(**values)


# -- the lights after a restart of the driver alone ------------------------------------

PANIC, RED, BUZZ = 19, 20, 21
LIGHTS = {
    "red": {"pin": RED},
    "buzzer": {"pin": BUZZ},
    "feedback": {"alarm_blink_s": 0.02, "alarm_beep_s": 0.02},
}


def shown(gpio: SupervisedBoard[TestHost]) -> str:
    """The lasting pattern the running driver's indicators show."""
    indicators = gpio.board.indicators
    assert indicators is not None
    return str(indicators.state)


@pytest.fixture
async def gpio(pins: MockFactory) -> AsyncIterator[SupervisedBoard[TestHost]]:
    """The real GPIO driver on mock pins under the node's real supervisor (fast backoff)."""
    driver = SupervisedBoard(TestHost(), **LIGHTS)
    yield driver
    await driver.stop()


async def test_the_alarm_light_comes_back_when_the_gpio_driver_restarts(
    gpio: SupervisedBoard[TestHost], pins: MockFactory
) -> None:
    service = PanicService(gpio.host, PanicServiceConfig())
    await gpio.start()
    gpio.host.emit(PanicInput(True, time.monotonic()))
    await gpio.fail_once()
    pins.pin(RED).clear_states()
    pins.pin(BUZZ).clear_states()
    await asyncio.sleep(0.2)
    assert service.active is not None and shown(gpio) == "alarm"
    assert len(pins.pin(RED).states) > 3 and len(pins.pin(BUZZ).states) > 3  # blinking


async def test_help_is_coming_comes_back_when_the_gpio_driver_restarts(
    gpio: SupervisedBoard[TestHost],
) -> None:
    service = PanicService(gpio.host, PanicServiceConfig())
    await gpio.start()
    gpio.host.emit(PanicInput(True, time.monotonic()))
    await service.command_ack({})
    await gpio.fail_once()
    assert shown(gpio) == "alarm_acked"


async def test_a_driver_restart_after_help_is_coming_leaves_the_lights_dark(
    gpio: SupervisedBoard[TestHost],
) -> None:
    service = PanicService(gpio.host, PanicServiceConfig())
    fast(service, acked_indicator_s=0.01)
    await gpio.start()
    gpio.host.emit(PanicInput(True, time.monotonic()))
    await service.command_ack({})
    await asyncio.sleep(0.05)
    await gpio.fail_once()
    assert shown(gpio) == "alarm_off"


def test_an_alarm_restored_from_the_state_is_shown_to_a_driver_ready_before_run() -> None:
    node, _ = make()
    press(node)
    restarted, _ = make(TestHost(state=node.state))
    restarted.emit(DriverReady("gpio", time.monotonic()))
    assert patterns(restarted) == ["alarm"]


def test_without_an_alarm_a_driver_start_changes_no_light() -> None:
    node, _ = make()
    node.emit(DriverReady("gpio", time.monotonic()))
    assert patterns(node) == []


# -- a button stuck down ----------------------------------------------------------------


async def test_a_button_stuck_down_raises_one_alarm_across_driver_restarts(
    pins: MockFactory,
) -> None:
    """A shorted wire: the real driver reports the button down at each of its starts."""
    node, service = make()
    pins.pin(PANIC).drive_low()  # pressed, for good
    options = GpioOptions(pin_factory="mock", panic={"pin": PANIC, "hold_s": 0.02})
    heard = 0

    def press_heard() -> bool:
        return service.active is not None or node.counters["panic.still_held"] > heard

    for start in range(3):  # ignition cycles, or the supervisor restarting the driver
        heard = max(0, start - 1)
        ctx = DriverContext("gpio", node.bus, node.counters)
        task = asyncio.create_task(GpioBoard(options).run(ctx))
        await wait_until(press_heard, 2, "the press at start")
        if service.active is not None:
            await service.command_ack({})
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ctx.close()
    assert len([a for a in alarms(node) if a.active]) == 1
    assert node.counters.snapshot()["panic.still_held"] == 2


def test_a_button_down_at_a_start_is_not_raised_again_after_an_ack_while_held() -> None:
    node, service = make()
    node.emit(PanicInput(True, time.monotonic()))
    ack(service)
    restarted, again = make(TestHost(state=node.state))  # the whole node restarted
    ready = time.monotonic()
    restarted.emit(DriverReady("gpio", ready))
    restarted.emit(PanicInput(True, ready - 0.001))  # the driver read it down at its start
    assert again.active is None and alarms(restarted) == []
    assert restarted.counters.snapshot() == {"panic.still_held": 1}


def test_a_press_after_a_release_raises_though_the_last_ack_came_while_held() -> None:
    node, service = make()
    node.emit(PanicInput(True, time.monotonic()))
    ack(service)
    node.emit(PanicInput(False, time.monotonic()))
    node.emit(DriverReady("gpio", time.monotonic()))
    node.emit(PanicInput(True, time.monotonic() - 1))  # even one stamped before a start
    assert service.active is not None and node.state[HELD_KEY] is None


def test_a_press_after_the_driver_is_ready_raises_when_the_release_was_missed() -> None:
    """Acked while held, let go while the node was off: the next real press is an alarm."""
    node, service = make()
    node.emit(PanicInput(True, time.monotonic()))
    ack(service)
    restarted, again = make(TestHost(state=node.state))
    restarted.emit(DriverReady("gpio", time.monotonic()))  # no button down at this start
    restarted.emit(PanicInput(True, time.monotonic()))
    assert again.active is not None and restarted.state[HELD_KEY] is None


def test_a_button_down_at_boot_raises_when_no_alarm_was_acked_while_it_was_held() -> None:
    node, service = make()
    ready = time.monotonic()
    node.emit(DriverReady("gpio", ready))
    node.emit(PanicInput(True, ready - 0.001))  # a rider pressing while the node boots
    assert service.active is not None


def test_an_ack_after_the_release_keeps_no_hold() -> None:
    node, service = make()
    press(node)
    ack(service)
    assert node.state.get(HELD_KEY) is None


@pytest.mark.parametrize("junk", ["held", 1, ["alarm"], True])
def test_an_unreadable_hold_in_the_state_never_silences_a_press(junk: Any) -> None:
    node, service = make(TestHost(state={HELD_KEY: junk}))
    ready = time.monotonic()
    node.emit(DriverReady("gpio", ready))
    node.emit(PanicInput(True, ready - 0.001))
    assert service.active is not None


async def test_a_button_held_past_stuck_after_s_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, service = make()
    fast(service, stuck_after_s=0.05)
    node.emit(PanicInput(True, time.monotonic()))
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.3)
    task.cancel()
    assert node.counters.snapshot().get("panic.stuck") == 1
    assert any(
        "stuck or shorted" in r.message for r in caplog.records if r.levelno >= logging.ERROR
    )


async def test_a_press_let_go_before_stuck_after_s_is_not_reported() -> None:
    node, service = make()
    fast(service, stuck_after_s=0.1)
    task = asyncio.create_task(service.run())
    for _ in range(3):
        press(node)
        await asyncio.sleep(0.06)
    task.cancel()
    assert "panic.stuck" not in node.counters.snapshot()


async def test_each_long_hold_is_reported_again_after_a_release() -> None:
    node, service = make()
    fast(service, stuck_after_s=0.05)
    task = asyncio.create_task(service.run())
    for _ in range(2):
        node.emit(PanicInput(True, time.monotonic()))
        await asyncio.sleep(0.15)
        node.emit(PanicInput(False, time.monotonic()))
    task.cancel()
    assert node.counters.snapshot()["panic.stuck"] == 2


@pytest.mark.parametrize("bad", [0, 9.9, -1, 86401, "5 min"])
def test_a_stuck_limit_outside_10_s_to_a_day_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ValueError, match="stuck_after_s"):
        PanicServiceConfig(stuck_after_s=bad)


# -- the button across a restart of the GPIO driver alone --------------------------------


class Runs:
    """Starts of the real GPIO driver on one panic pin, each in its own context (one start
    each, as the supervisor gives it), on the service's bus."""

    def __init__(self, node: TestHost) -> None:
        self.node = node
        self.options = GpioOptions(pin_factory="mock", panic={"pin": PANIC, "hold_s": 0.02})
        self.current: tuple[DriverContext, asyncio.Task[None]] | None = None

    async def start(self) -> None:
        readies: list[bool] = []
        ctx = DriverContext(
            "gpio", self.node.bus, self.node.counters, on_ready=lambda: readies.append(True)
        )
        task = asyncio.create_task(GpioBoard(self.options).run(ctx))
        self.current = (ctx, task)
        await wait_until(lambda: bool(readies), 2, "the driver to be ready")

    async def stop(self) -> None:
        assert self.current is not None
        ctx, task = self.current
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ctx.close()
        self.current = None


async def raised_then_driver_stopped(runs: Runs, pin: Any, service: PanicService) -> None:
    """The button held until the alarm, then the GPIO driver stopped (a restart begins)."""
    pin.drive_low()
    await runs.start()
    await wait_until(lambda: service.active is not None, 2, "the alarm")
    await runs.stop()


async def test_a_release_while_the_gpio_driver_was_down_lets_the_next_press_at_a_start_raise(
    pins: MockFactory,
) -> None:
    """Held, raised; let go while the driver restarted (it then runs with the button up);
    dispatch acknowledges; later the rider presses while the driver (re)starts: an alarm.
    The hold ("still held since the ack") is only for a button never seen let go, and the
    restarted driver saw it up (docs/topics.md, alarm/panic: "until it sees the button let
    go")."""
    node, service = make()
    runs = Runs(node)
    pin = pins.pin(PANIC)
    await raised_then_driver_stopped(runs, pin, service)
    pin.drive_high()  # let go while the driver was down
    await runs.start()
    await asyncio.sleep(0.1)  # the driver runs with the button up
    await service.command_ack({})
    await runs.stop()
    pin.drive_low()  # pressed while the driver restarts
    await runs.start()
    await wait_until(
        lambda: service.active is not None or node.counters["panic.still_held"] > 0,
        2,
        "the press at start",
    )
    await runs.stop()
    assert service.active is not None
    assert "panic.still_held" not in node.counters.snapshot()


async def test_a_button_let_go_while_the_gpio_driver_was_down_is_not_reported_stuck(
    pins: MockFactory,
) -> None:
    node, service = make()
    fast(service, stuck_after_s=0.15)
    runs = Runs(node)
    pin = pins.pin(PANIC)
    await raised_then_driver_stopped(runs, pin, service)
    pin.drive_high()  # let go while the driver was down
    await runs.start()
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.4)
    task.cancel()
    await runs.stop()
    assert "panic.stuck" not in node.counters.snapshot()


async def test_a_button_held_through_a_gpio_driver_restart_is_one_press_not_pressed_again(
    pins: MockFactory,
) -> None:
    """The restarted driver finds the button down and reports it as a press: the same
    press, already raised, not a new one ("pressed again" tells dispatch the rider pressed
    again: docs/topics.md, alarm/panic `presses`)."""
    node, service = make()
    runs = Runs(node)
    pin = pins.pin(PANIC)
    await raised_then_driver_stopped(runs, pin, service)
    await runs.start()  # still held
    await asyncio.sleep(0.1)  # past hold_s: the restarted driver reported the press
    await runs.stop()
    assert [(a.reason, a.details["presses"]) for a in alarms(node)] == [("panic button pressed", 1)]


# -- a press while the GPIO driver fails and its supervisor restarts it -----------------

BUTTON = {"pin": PANIC, "hold_s": 0.3}
"""Held 0.3 s raises; the restart tests press around a failure with it."""


@pytest.fixture
async def panic(pins: MockFactory) -> AsyncIterator[SupervisedBoard[TestHost]]:
    """The panic service, and the real GPIO driver with the button under the node's real
    supervisor (fast backoff), on one bus."""
    node, _ = make()
    driver = SupervisedBoard(node, panic=BUTTON)
    yield driver
    await driver.stop()


def raises(node: TestHost) -> list[str]:
    """The reasons of the alarms published active."""
    return [a.reason for a in alarms(node) if a.active]


async def test_a_button_pressed_while_the_gpio_driver_backs_off_raises_once_it_is_back(
    pins: MockFactory,
) -> None:
    """The driver down (its second failure in a row: it waits), a rider presses and holds:
    the restarted driver finds the button down, and its hold raises the alarm."""
    node, _ = make()
    gpio = SupervisedBoard(
        node, config=SupervisorConfig(backoff_initial_s=0.6, backoff_max_s=0.6), panic=BUTTON
    )
    try:
        await gpio.start()
        await gpio.fail_once()  # the first restart is at once
        gpio.fail()  # failing again: 0.3-0.6 s down
        await wait_until(lambda: gpio.status.state == "backoff", 1, "the backoff")
        pins.pin(PANIC).drive_low()  # pressed, and held, while nothing reads the pin
        assert not gpio.running()
        await gpio.restarted(3)
        await wait_until(lambda: bool(raises(node)), 1, "the alarm")
        assert raises(node) == ["panic button pressed"]
    finally:
        await gpio.stop()


async def test_a_press_begun_before_a_gpio_driver_failure_and_held_after_raises_once(
    panic: SupervisedBoard[TestHost], pins: MockFactory
) -> None:
    """Down 0.1 s of its 0.3 s hold when the driver fails: the restarted driver's hold
    raises it, once (its hold starts over: what was held before the failure is not known
    to the new start)."""
    await panic.start()
    pins.pin(PANIC).drive_low()
    await asyncio.sleep(0.1)
    await panic.fail_once()
    await asyncio.sleep(0.6)  # held past the new start's hold_s, and longer
    assert raises(panic.host) == ["panic button pressed"]
    assert [e.pressed for e in panic.host.of_type(PanicInput)] == [False, True]


async def test_a_press_raised_before_a_gpio_driver_failure_and_held_after_is_not_raised_again(
    panic: SupervisedBoard[TestHost], pins: MockFactory
) -> None:
    await panic.start()
    pins.pin(PANIC).drive_low()
    await wait_until(lambda: bool(raises(panic.host)), 1, "the alarm")
    await panic.fail_once()
    await asyncio.sleep(0.5)  # the restarted driver reports the button down again
    assert [e.pressed for e in panic.host.of_type(PanicInput)] == [False, True, True]
    assert [(a.reason, a.details["presses"]) for a in alarms(panic.host)] == [
        ("panic button pressed", 1)
    ]


async def test_a_press_right_after_a_gpio_driver_failure_raises_when_it_ran_well_before(
    pins: MockFactory,
) -> None:
    """The default backoff (from 1 s), after a run longer than stable_after_s: the first
    restart used to wait 0.5-1 s, and a press held 0.5 s (longer than hold_s) from the
    failure was over before the driver read the pin again: no alarm."""
    node, _ = make()
    gpio = SupervisedBoard(node, config=SupervisorConfig(stable_after_s=0.2), panic=BUTTON)
    try:
        await gpio.start()
        await asyncio.sleep(0.3)  # a healthy run
        gpio.fail()
        pins.pin(PANIC).drive_low()
        await asyncio.sleep(0.5)
        pins.pin(PANIC).drive_high()
        await asyncio.sleep(0.3)
        assert raises(node) == ["panic button pressed"]
    finally:
        await gpio.stop()


async def test_the_alarm_is_in_the_journal_before_the_light_says_it_was_taken(
    node: Node,
) -> None:
    """The red light tells the provider the alarm is taken: a power cut right after it must
    still find the alarm in the journal. The light went on first, the journal record after
    (the message built and encoded in between); and an outbox that refused it (closed at
    a stop) left the light saying it was taken."""
    assert "panic" in node.services
    lit_with: list[list[str]] = []

    def on_light(event: Feedback) -> None:
        if event.pattern == "alarm":
            records = journal_read(node.outbox.journal.path.read_bytes())
            lit_with.append([r.topic for r in records])

    node.bus.subscribe(Feedback, on_light)
    node.bus.emit(PanicInput(True, time.monotonic()))
    assert lit_with, "the light never went on"
    assert f"{node.topics.base}/alarm/panic" in lit_with[0], "lit before it was journaled"


def test_a_press_the_outbox_refuses_says_so_and_the_next_press_raises_the_alarm() -> None:
    """The light waits for the alarm to be put; an outbox that raised (closed at a stop, a
    bug) left the alarm held in memory, unsent and dark: every next press was taken for a
    "pressed again" of it, and no press ever lit the light or raised an alarm. Now the press
    says it was not taken (the "denied" pattern) and the next one raises the alarm."""
    node, service = make()
    publish = node.publish

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise EdgedError("the outbox is closed: edged is shutting down")

    node.publish = refuse  # type: ignore[method-assign]
    press(node)
    assert patterns(node) == ["denied"], "the light said the alarm was taken, or nothing did"
    assert service.active is None and node.counters["panic.not_taken"] == 1
    node.publish = publish  # type: ignore[method-assign]
    press(node)
    assert patterns(node)[-1] == "alarm", "the press after it never lit the light"
    assert [a.reason for a in alarms(node)] == ["panic button pressed"]


# -- a flapping button: presses again, bounded on the card and in the log ----------------


def state_writes(node: TestHost) -> list[Any]:
    """Every value of `panic.active` written to the state from now on (with a message or
    alone): each a synced commit of the state store on a node."""
    writes: list[Any] = []
    set_ = node.state.set

    def spy(key: str, value: Any, *, may_wait: bool = False) -> None:
        if key == STATE_KEY:
            writes.append(dict(value) if isinstance(value, dict) else value)
        set_(key, value, may_wait=may_wait)

    node.state.set = spy  # type: ignore[method-assign]
    return writes


def test_presses_again_folded_offline_write_the_state_at_most_once_per_window() -> None:
    """A flapping switch made each press again a synced commit of its count: some 40 a
    minute, 58,000 a day on the SD card."""
    node, _ = make(connected=False)
    press(node)
    writes = state_writes(node)
    for _ in range(50):
        press(node)
    assert len(writes) <= 1


async def test_presses_again_folded_reach_the_state_once_their_window_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edged.services.panic.REPRESS_EVERY_S", 0.05)
    node, service = make(connected=False)
    press(node)
    for _ in range(20):
        press(node)
    task = asyncio.create_task(service.run())
    await wait_until(lambda: node.state[STATE_KEY]["presses"] == 21, 1, "the folded count")
    task.cancel()


async def test_a_press_again_after_a_quiet_window_is_written_at_once_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("edged.services.panic.REPRESS_EVERY_S", 0.05)
    node, _ = make(connected=False)
    press(node)
    await asyncio.sleep(0.06)
    press(node)
    assert node.state[STATE_KEY]["presses"] == 2


def test_a_flapping_button_is_reported_once_naming_the_likely_causes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, _ = make()
    for _ in range(100):
        press(node)
    assert node.counters.snapshot().get("panic.flapping") == 1
    (error,) = [r for r in caplog.records if "loose wire" in r.message]
    assert error.levelno >= logging.ERROR


def test_a_rider_pressing_again_a_few_times_is_not_reported_flapping() -> None:
    node, _ = make()
    for _ in range(10):
        press(node)
    assert "panic.flapping" not in node.counters.snapshot()


async def test_a_switch_flapping_on_the_real_driver_writes_the_state_at_most_once_per_window(
    pins: MockFactory,
) -> None:
    """The switch made and broken every 40 ms, read by the real GPIO driver (hold_s and
    dropout_s short so each make raises a press again): offline, the count of presses
    again went to the state store at each one."""
    node, service = make(connected=False)
    writes = state_writes(node)
    options = GpioOptions(
        pin_factory="mock", panic={"pin": PANIC, "hold_s": 0.02, "dropout_s": 0, "bounce_s": 0.005}
    )
    ctx = DriverContext("gpio", node.bus, node.counters)
    task = asyncio.create_task(GpioBoard(options).run(ctx))
    pin = pins.pin(PANIC)
    try:
        for _ in range(15):
            pin.drive_low()
            await asyncio.sleep(0.04)
            pin.drive_high()
            await asyncio.sleep(0.04)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ctx.close()
    assert service.active is not None and service.active["presses"] >= 8, "the flap raised little"
    assert writes[0]["presses"] == 1, "the alarm itself not written at once"
    assert len(writes) <= 2, f"{len(writes)} synced writes of the count in 1.2 s"


async def test_presses_again_folded_offline_are_kept_across_a_stop_of_the_node(
    nodes: Nodes,
) -> None:
    """A stop (an update, `systemctl restart`) within the window of a press again: its
    count, only in memory until the window's end, was lost with the process, and the
    alarm sent again after the restart said the rider pressed once."""
    node = await nodes.start()
    node.bus.emit(PanicInput(True, time.monotonic()))
    node.bus.emit(PanicInput(False, time.monotonic()))
    for _ in range(3):  # offline, within REPRESS_EVERY_S of the raise: folded
        node.bus.emit(PanicInput(True, time.monotonic()))
        node.bus.emit(PanicInput(False, time.monotonic()))
    await nodes.stop(node)
    restarted = await nodes.start()
    assert restarted.host.state.get(STATE_KEY)["presses"] == 4


async def test_presses_again_held_back_are_not_written_over_the_acknowledgement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acknowledged within the window of presses again not yet written: the window's end
    (and the service's stop) must not bring the alarm back into the state."""
    monkeypatch.setattr("edged.services.panic.REPRESS_EVERY_S", 0.05)
    node, service = make(connected=False)
    press(node)
    press(node)  # folded: only in memory
    task = asyncio.create_task(service.run())
    await service.command_ack({})
    await asyncio.sleep(0.2)  # windows over, ticks run
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert node.state.get(STATE_KEY) is None
    assert service.active is None

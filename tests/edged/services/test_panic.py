"""The panic alarm: raised at once with the position, kept until acknowledged, restored."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from core.events import Feedback, Fix, PanicInput
from edged.config.access import PanicServiceConfig
from edged.errors import CommandError
from edged.services.events import LinkChanged, PositionUpdated
from edged.services.panic import STATE_KEY, PanicService
from tests.helpers.host import TestHost

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


async def test_ack_of_another_alarm_is_refused_and_changes_nothing() -> None:
    node, service = make()
    press(node)
    with pytest.raises(CommandError) as info:
        await service.command_ack({"alarm_id": "123-abc"})
    assert info.value.code == "wrong_alarm" and service.active is not None


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

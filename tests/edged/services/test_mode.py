"""The mode: one home for its key, its default, `mode.set`, and `ModeChanged`."""

import asyncio

import pytest

from edged.errors import CommandError
from edged.services.events import ModeChanged
from edged.services.mode import STATE_KEY, ModeService
from tests.helpers.host import TestHost


def test_the_kept_mode_goes_on_the_bus_when_the_service_is_built() -> None:
    node = TestHost(state={STATE_KEY: "school"})
    ModeService(node)
    assert node.of_type(ModeChanged) == [ModeChanged("school")]


@pytest.mark.parametrize("kept", [None, "holiday", 7, "x" * 100])
def test_a_missing_or_unknown_kept_mode_is_on_demand(kept: object) -> None:
    node = TestHost(state={} if kept is None else {STATE_KEY: kept})
    assert ModeService(node).mode == "on-demand"


def test_mode_set_keeps_the_mode_and_tells_the_others() -> None:
    node = TestHost()
    service = ModeService(node)
    result = asyncio.run(service.command_set({"mode": "out-of-service"}))
    assert result == {"mode": "out-of-service", "previous": "on-demand"}
    assert node.state[STATE_KEY] == "out-of-service"
    assert node.of_type(ModeChanged)[-1] == ModeChanged("out-of-service")
    assert ModeService(TestHost(state=node.state)).mode == "out-of-service"  # a restart


@pytest.mark.parametrize("args", [{}, {"mode": "holiday"}, {"mode": "school", "x": 1}, {"mode": 1}])
def test_mode_set_refuses_what_is_not_a_mode_and_changes_nothing(args: dict[str, object]) -> None:
    node = TestHost()
    service = ModeService(node)
    with pytest.raises(CommandError) as refused:
        asyncio.run(service.command_set(args))
    assert refused.value.code == "bad_args"
    assert service.mode == "on-demand" and STATE_KEY not in node.state
    assert len(node.of_type(ModeChanged)) == 1


def test_mode_set_is_declared_under_operate() -> None:
    assert [(c.name, c.scope) for c in ModeService(TestHost()).commands()] == [
        ("mode.set", "operate")
    ]

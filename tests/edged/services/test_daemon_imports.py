"""A node loads the code of the services its config turns on (#19): the access service (its
signed lists, decisions, card refs and the lists' pydantic models) only where
`[services.access] enabled`, off in every shipped config. Each module a start imports costs
CPU: ~6 ms of this one here, ~40 ms at a sixth of a Pi Zero 2 W's core."""

from tests.helpers.daemon_imports import loaded_of


def test_a_node_without_access_control_has_not_loaded_the_access_code() -> None:
    assert loaded_of(("edged.services.access", "edged.access")) == []

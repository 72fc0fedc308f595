"""What only a command uses is imported when it comes (#19): a node at rest has not loaded
tomli_w, which writes the TOML of a `config.set`, nor the checks of what a pushed config may
reach (tests/edged/commands cover the command)."""

from tests.helpers.daemon_imports import loaded_of


def test_a_node_at_rest_has_not_loaded_the_toml_writer_of_config_set() -> None:
    assert loaded_of(("tomli_w",)) == []


def test_a_node_at_rest_has_not_loaded_the_checks_of_a_pushed_config() -> None:
    assert loaded_of(("edged.config.pushed",)) == []

"""bench.unit: the benchmarks start the daemon with the Environment= of systemd/edged.service."""

from pathlib import Path

import pytest

from bench.unit import UNIT, unit_environment, unit_interpreter_flags
from tests.systemd.test_unit import parse_unit


def test_the_environment_is_every_assignment_of_the_shipped_unit() -> None:
    values = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]["Environment"]
    env = unit_environment()
    assert env
    assert sorted(env) == sorted({v.split("=", 1)[0] for line in values for v in line.split()})
    for line in values:
        for word in line.split():
            key, value = word.split("=", 1)
            assert env[key] == value


def test_quoted_values_several_per_line_and_later_ones_win(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text(
        "[Unit]\nEnvironment=NOT_THIS=1\n"
        '[Service]\n# Environment=COMMENTED=1\nEnvironment=A=1 "B=two words"\n'
        "Environment=A=3\nExecStart=/bin/true\n"
        "[Install]\nEnvironment=NOR_THIS=1\n"
    )
    assert unit_environment(unit) == {"A": "3", "B": "two words"}


def test_the_daemon_gets_the_optimisation_level_the_unit_gives_the_launcher() -> None:
    """The shipped ExecStart runs the launcher with -OO, which passes it on to edged."""
    line = next(
        v for v in UNIT.read_text(encoding="utf-8").splitlines() if v.startswith("ExecStart=")
    )
    assert " -OO " in line
    assert unit_interpreter_flags() == ["-OO"]


@pytest.mark.parametrize(
    ("flags", "daemon"),
    [("-I -OO", ["-OO"]), ("-I -O -O", ["-OO"]), ("-IOO", ["-OO"]), ("-I -O", ["-O"]),
     ("-I", []), ("", [])],
)  # fmt: skip
def test_any_spelling_of_the_launchers_flags_gives_the_level_it_passes_on(
    tmp_path: Path, flags: str, daemon: list[str]
) -> None:
    unit = tmp_path / "x.service"
    unit.write_text(
        "[Unit]\nExecStart=/bin/false\n"
        f"[Service]\nExecStart=/usr/bin/python3 {flags} /opt/edged/launcher.py -O run\n"
        "ExecStopPost=/usr/bin/python3 -OO /opt/edged/launcher.py --stopped\n"
    )
    assert unit_interpreter_flags(unit) == daemon

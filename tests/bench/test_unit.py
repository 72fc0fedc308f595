"""bench.unit: the benchmarks start the daemon with the Environment= of systemd/edged.service."""

from pathlib import Path

from bench.unit import UNIT, unit_environment
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

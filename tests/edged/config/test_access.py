"""`[services.access]` names the rooms and profiles of the signed access lists: a name those
lists can never hold (their pattern, `edged.access.lists`) is refused at load with what to
write, instead of matching no booking or card, silently."""

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from edged.access.lists import AccessLists
from edged.config import load_config
from tests.helpers.nodes import write_venue_config


def refusals(tmp_path: Path, access: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write_venue_config(tmp_path, access=access))
    return info.value.problems


def toml_list(*names: str) -> str:
    return json.dumps(list(names))  # a JSON array of strings is a TOML one (\\u escapes too)


@pytest.mark.parametrize(
    "room",
    ["salle 1", "-salle", "salle/1", "salle.1", "salle-é", "", " ahun-salle-1"],
    ids=["space", "leading-dash", "slash", "dot", "accent", "empty", "outer-space"],
)
def test_a_room_the_lists_cannot_hold_is_refused_with_how_to_write_it(
    tmp_path: Path, room: str
) -> None:
    (problem,) = refusals(tmp_path, f"rooms = {toml_list('ahun-salle-2', room)}\n")
    assert problem.startswith("services.access.rooms[1]: ")
    assert "no booking" in problem and "lowercase letters a-z" in problem and "(line " in problem


def test_a_room_name_in_capitals_is_refused_suggesting_the_lowercase_name(tmp_path: Path) -> None:
    (problem,) = refusals(tmp_path, 'rooms = ["Ahun-Salle-1"]\n')
    assert "did you mean 'ahun-salle-1'?" in problem


def test_a_room_longer_than_the_lists_allow_is_refused(tmp_path: Path) -> None:
    (problem,) = refusals(tmp_path, f'rooms = ["{"a" * 33}"]\n')
    assert problem.startswith("services.access.rooms[0]: ") and "1 to 32 characters" in problem


def test_a_huge_room_name_is_refused_without_being_echoed_whole(tmp_path: Path) -> None:
    (problem,) = refusals(tmp_path, f'rooms = ["{"x" * 100_000}"]\n')
    assert "1 to 32 characters" in problem and len(problem) < 1000


def test_a_room_with_terminal_escapes_is_refused_and_shown_escaped(tmp_path: Path) -> None:
    hostile = "\x1b]0;owned\x07\x1b[2J\u202esalle"
    (problem,) = refusals(tmp_path, f"rooms = {toml_list(hostile)}\n")
    assert "\x1b" not in problem and "\x07" not in problem and "\u202e" not in problem
    assert "\\x1b" in problem


def test_a_staff_profile_the_lists_cannot_hold_is_refused(tmp_path: Path) -> None:
    (problem,) = refusals(tmp_path, 'staff_profiles = ["Staff member"]\n')
    assert problem.startswith("services.access.staff_profiles[0]: ") and "lowercase" in problem


def test_every_room_and_profile_the_config_accepts_is_one_the_lists_accept(
    tmp_path: Path,
) -> None:
    names = ["ahun-salle-1", "b", "0", "salle_2", "x" * 32]
    access = load_config(
        write_venue_config(tmp_path, access=f"rooms = {toml_list(*names)}\n")
    ).services.access
    assert access.rooms == names
    bookings = [
        {"room": r, "start": "2026-12-01T09:00Z", "end": "2026-12-01T10:00Z"} for r in names
    ]
    lists = AccessLists.model_validate(
        {"fleet": "creuse", "version": 1, "bookings": {"ab" * 8: bookings}}
    )
    assert [b.room for b in lists.bookings["ab" * 8]] == names

"""docs/drivers.md and the drivers' option models describe the same options: every driver
the registry lists has its section, and every option its model takes (nested ones too:
a door's `bounce_s`) is named in that section or in its kind's shared part."""

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from core import events
from drivers.registry import REGISTRY, options_model

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "drivers.md").read_text()
KINDS = sorted({name.partition(".")[0] for name in REGISTRY})


def section(name: str) -> str:
    """The driver's own section, and the part of its kind's section before the first driver
    (where options shared by the kind's drivers are written)."""
    own = re.search(rf"^### `{re.escape(name)}`\n(.*?)(?=^##)", DOC + "\n##", re.M | re.S)
    assert own, f"docs/drivers.md has no section for `{name}`"
    kind = name.partition(".")[0].upper()
    shared = re.search(rf"^## {kind}\b.*?\n(.*?)(?=^###)", DOC, re.M | re.S)
    return own.group(1) + (shared.group(1) if shared else "")


def models_in(annotation: object) -> list[type[BaseModel]]:
    """The models an option's type holds (a model, a list of models, an optional one)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def options(model: type[BaseModel]) -> set[str]:
    """Every option key the model takes, nested models' keys included."""
    keys: set[str] = set()
    for key, field in model.model_fields.items():
        keys.add(field.alias or key)
        for nested in models_in(field.annotation):
            keys |= options(nested)
    return keys


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_driver_has_its_section(name: str) -> None:
    section(name)


def named(text: str) -> set[str]:
    """Every word written as code: `port`, and `{ name, pin, pull = "up" }` alike."""
    return {word for span in re.findall(r"`([^`]+)`", text) for word in re.findall(r"\w+", span)}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_option_of_a_driver_is_in_its_section(name: str) -> None:
    missing = sorted(options(options_model(name)) - named(section(name)))
    assert missing == [], f"options of {name} docs/drivers.md does not name"


def test_every_driver_section_is_a_registered_driver() -> None:
    documented = re.findall(r"^### `([a-z0-9.-]+)`", DOC, re.M)
    assert sorted(documented) == sorted(REGISTRY)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_says_what_its_drivers_emit(kind: str) -> None:
    heading = re.search(rf"^## {kind.upper()} \(emit [^`]*`(\w+)`", DOC, re.M)
    assert heading, f"docs/drivers.md: the {kind.upper()} heading says what its drivers emit"
    assert hasattr(events, heading.group(1)), f"{heading.group(1)} is not a core.events type"

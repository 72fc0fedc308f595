"""TOML has `inf` and `nan`: no number in a node's config may be either.

A NaN CO2 factor put NaN, which is no JSON, into every trip report; `stable_after_s = inf`
switched the supervisor's back-off reset off without a word. The rule is held here for
every float of every model a config reaches, the drivers' options included, so a knob added
later is held too."""

import math
import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from drivers.registry import REGISTRY, options_model
from edged.config.models import EdgedConfig
from tests.edged.config.test_loader import MINIMAL, problems

NOT_FINITE = (math.inf, -math.inf, math.nan)


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for inner in _types(field.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                yield from _models(inner, seen)


def _types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types(arg)


def _config_fields() -> Iterator[tuple[type[BaseModel], str, FieldInfo]]:
    """(model, name, field) of every model a config reaches, the drivers' options included."""
    seen: set[type[BaseModel]] = set()
    for root in [EdgedConfig, *(options_model(name) for name in REGISTRY)]:
        for model in _models(root, seen):
            for name, field in model.model_fields.items():
                yield model, name, field


def _float_fields() -> list[tuple[type[BaseModel], str, str]]:
    """(model, field, shape): shape is "value", "list" or "dict" of floats."""
    out = []
    for model, name, field in _config_fields():
        ann = field.annotation
        origin = typing.get_origin(ann)
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if ann is float or (origin in (typing.Union, types.UnionType) and float in args):
            out.append((model, name, "value"))
        elif origin is list and _is_float(args[0]):
            out.append((model, name, "list"))
        elif origin is dict and _is_float(args[1]):
            out.append((model, name, "dict"))
    return out


def _is_float(annotation: Any) -> bool:
    return annotation is float or typing.get_args(annotation)[:1] == (float,)


FLOATS = _float_fields()


def test_the_walk_finds_the_knobs_it_is_meant_to_hold() -> None:
    names = {(m.__name__, f) for m, f, _ in FLOATS}
    assert {("SupervisorConfig", "stable_after_s"), ("TripServiceConfig", "co2e_kg_per_l")} <= names
    assert len(FLOATS) > 40, len(FLOATS)


@pytest.mark.parametrize(
    ("model", "field", "shape"), FLOATS, ids=lambda v: getattr(v, "__name__", v)
)
@pytest.mark.parametrize("value", NOT_FINITE, ids=["inf", "-inf", "nan"])
def test_no_float_in_the_config_takes_an_infinite_or_nan_value(
    model: type[BaseModel], field: str, shape: str, value: float
) -> None:
    given = {"value": value, "list": [value], "dict": {"x": value}}[shape]
    with pytest.raises(ValidationError) as info:
        model.model_validate({field: given})
    assert [e for e in info.value.errors() if e["loc"][:1] == (field,)], info.value


def test_an_infinite_knob_in_a_toml_file_is_refused_with_its_name() -> None:
    found = problems(MINIMAL + "[supervisor]\nstable_after_s = inf\n")
    assert any("supervisor.stable_after_s" in p and "finite" in p for p in found), found


def test_a_nan_co2_factor_is_refused_with_its_name() -> None:
    text = MINIMAL + "[services.trips.co2e_kg_per_l]\ndiesel = nan\n"
    assert any("co2e_kg_per_l" in p for p in problems(text)), problems(text)


# -- TOML true/false is no number ------------------------------------------------------


def _number_fields() -> list[tuple[type[BaseModel], str]]:
    """(model, field) of every field that takes an int or a float and no bool (nor a
    string: a pin's number or name says its own error)."""
    out = []
    for model, name, field in _config_fields():
        ann = field.annotation
        origin = typing.get_origin(ann)
        if any(type(m).__name__.endswith("Validator") for m in field.metadata):
            continue  # a pin: 17 or 'GPIO17', read by its own validator
        if origin not in (None, typing.Union, types.UnionType):
            continue  # a list or a dict of numbers: held below, by example
        args = typing.get_args(ann) if origin else (ann,)
        if not {bool, str} & set(args) and any(a in (int, float) for a in args):
            out.append((model, name))
    return out


NUMBERS = _number_fields()


def test_the_walk_finds_the_counts_and_periods_it_is_meant_to_hold() -> None:
    names = {(m.__name__, f) for m, f in NUMBERS}
    assert {("OccupancyServiceConfig", "capacity"), ("HealthConfig", "interval_s")} <= names
    assert len(NUMBERS) > len(FLOATS), len(NUMBERS)


@pytest.mark.parametrize(("model", "field"), NUMBERS, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("value", [True, False])
def test_no_number_in_the_config_takes_true_or_false(
    model: type[BaseModel], field: str, value: bool
) -> None:
    # pydantic's lax mode read `capacity = true` as 1: a bus full with one rider
    with pytest.raises(ValidationError) as info:
        model.model_validate({field: value})
    assert any(field in e["msg"] for e in info.value.errors()), info.value


def test_a_capacity_of_true_in_a_toml_file_is_refused_with_its_name() -> None:
    found = problems(MINIMAL + "[services.occupancy]\ncapacity = true\n")
    assert any("capacity takes a number" in p for p in found), found


def test_a_knob_that_takes_a_number_or_a_bool_still_takes_a_bool() -> None:
    from core.confignumbers import _takes_a_number_not_a_bool

    assert not _takes_a_number_not_a_bool(int | bool)
    assert _takes_a_number_not_a_bool(float | None) and _takes_a_number_not_a_bool(int)
    assert not _takes_a_number_not_a_bool(str) and not _takes_a_number_not_a_bool(int | str)


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("[services.trips.co2e_kg_per_l]", "diesel = true"),
        ("[services.vehicle.deadbands]", "speed_kmh = true"),
        ("[[services.geofences.fences]]", 'id = "depot"\ncenter = [true, false]\nradius_m = 50'),
    ],
    ids=["dict", "dict-deadband", "tuple"],
)
def test_true_or_false_among_a_knobs_numbers_is_refused_with_its_name(
    section: str, line: str
) -> None:
    # `diesel = true` was a factor of 1 kg CO2e per litre, `center = [true, false]` a fence
    # in the Gulf of Guinea: each without a word
    name = section.strip("[]").split(".")[-1] if "fences" not in section else "center"
    found = problems(MINIMAL + f"{section}\n{line}\n")
    assert any(f"{name} takes numbers" in p for p in found), found


def test_true_in_a_drivers_list_of_numbers_is_refused_with_its_name() -> None:
    from drivers.can.options import CanDecodeOptions

    with pytest.raises(ValidationError) as info:
        CanDecodeOptions.model_validate({"pgns": [65265, True]})
    assert any("pgns takes numbers" in e["msg"] for e in info.value.errors()), info.value

"""A config's numbers are numbers: TOML `true` and `false` are not 1 and 0.

pydantic's lax mode reads a bool as 1 or 0 for an int or float field, so `capacity = true`
made a bus full with one rider and `interval_s = true` health every second, without a word.
Every config model's base takes `NumbersNotBools`: a bool given for a field that takes
numbers and no bool is refused, with the field's name; so is one among the numbers of a
list, a tuple or a table of them (`co2e_kg_per_l = { diesel = true }`, a fence's `center`)."""

import functools
import types
import typing
from typing import Any

from pydantic import BaseModel, BeforeValidator, PlainValidator, WrapValidator, model_validator

_NUMBERS = (int, float)
_OWN_CHECK = (BeforeValidator, PlainValidator, WrapValidator)


class NumbersNotBools(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_bools(cls, data: Any) -> Any:
        if isinstance(data, dict):
            numeric = _numeric_keys(cls)
            for key, value in data.items():
                if isinstance(value, bool) and key in numeric:
                    raise ValueError(
                        f"{key} takes a number, not {str(value).lower()}: write the number"
                    )
                annotation = _annotations(cls).get(key)
                if annotation is not None and _bool_among_numbers(annotation, value):
                    raise ValueError(f"{key} takes numbers, not true or false: write the numbers")
        return data


@functools.cache
def _annotations(model: type[BaseModel]) -> dict[str, Any]:
    """The annotation of each field (by name and alias) that reads its own value."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if any(isinstance(m, _OWN_CHECK) for m in field.metadata):
            continue
        out[name] = field.annotation
        if field.alias:
            out[field.alias] = field.annotation
    return out


def _bool_among_numbers(annotation: Any, value: Any) -> bool:
    """Whether `value`, a list, tuple or table, holds a bool where `annotation` takes a
    number and no bool (a bool given for the field itself is said apart)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if bool in args or str in args:
            return False
        return any(_bool_among_numbers(a, value) for a in args if a is not type(None))
    if origin in (list, set, frozenset) and isinstance(value, (list, tuple)):
        return any(_bool_for_number(args[0], v) for v in value)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return any(_bool_for_number(args[0], v) for v in value)
        return any(_bool_for_number(a, v) for a, v in zip(args, value, strict=False))
    if origin is dict and isinstance(value, dict):
        return any(_bool_for_number(args[1], v) for v in value.values())
    return False


def _bool_for_number(annotation: Any, value: Any) -> bool:
    """Whether `value` is, or holds, a bool where `annotation` takes a number and no bool."""
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        if any(isinstance(m, _OWN_CHECK) for m in metadata):
            return False  # its own validator reads what it is given
        annotation = inner
    if isinstance(value, bool):
        return _takes_a_number_not_a_bool(annotation)
    return _bool_among_numbers(annotation, value)


@functools.cache
def _numeric_keys(model: type[BaseModel]) -> frozenset[str]:
    """The names (and aliases) of `model`'s fields that take a number and never a bool
    (nor a string)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        if any(isinstance(m, _OWN_CHECK) for m in field.metadata):
            continue  # its own validator reads what it is given (a pin: 17 or 'GPIO17')
        if _takes_a_number_not_a_bool(field.annotation):
            keys.add(name)
            if field.alias:
                keys.add(field.alias)
    return frozenset(keys)


def _takes_a_number_not_a_bool(annotation: Any) -> bool:
    if annotation in _NUMBERS:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        # a number or a name (a GPIO pin: 17 or 'GPIO17') says its own error
        return bool not in args and str not in args and any(a in _NUMBERS for a in args)
    return False

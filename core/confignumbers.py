"""A config's numbers are numbers: TOML `true` and `false` are not 1 and 0.

pydantic's lax mode reads a bool as 1 or 0 for an int or float field, so `capacity = true`
made a bus full with one rider and `interval_s = true` health every second, without a word.
Every config model's base takes `NumbersNotBools`: a bool given for a field that takes
numbers and no bool is refused, with the field's name."""

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
        return data


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

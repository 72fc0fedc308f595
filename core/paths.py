"""Paths in a config file are relative to that file, so a config can travel with its data."""

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ValidationInfo


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = value.expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


ConfigPath = Annotated[Path, AfterValidator(_resolve)]
"""A path resolved against the directory of the config file that names it."""


def _must_exist(value: Path) -> Path:
    if not value.is_file():
        raise ValueError(f"no such file: {value}")
    return value


ExistingConfigPath = Annotated[Path, AfterValidator(_resolve), AfterValidator(_must_exist)]
"""A `ConfigPath` that must name an existing file when the config is checked."""


def _private(value: Path) -> Path:
    import stat

    try:
        mode = value.stat().st_mode
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"{value} is readable by other users (mode {stat.S_IMODE(mode):o}): run "
            f"`chmod 600 {value}` (the user that reads it must own it: edged, on a node)"
        )
    return value


PrivateConfigPath = Annotated[Path, AfterValidator(_resolve), AfterValidator(_private)]
"""A secret (password, private key): must exist and be private to its owner."""


def _is_private(annotation: Any) -> bool:
    """Whether a field's type is (or contains) PrivateConfigPath."""
    private = typing.get_args(PrivateConfigPath)[-1]
    assert isinstance(private, AfterValidator)
    if typing.get_origin(annotation) is typing.Annotated and any(
        isinstance(m, AfterValidator) and m.func is private.func
        for m in typing.get_args(annotation)[1:]
    ):
        return True
    return any(_is_private(arg) for arg in typing.get_args(annotation))


def private_files(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """Every secret file a config names (key path, file), found by type so new ones are
    found too: the doctor checks them, `config.set` may not change them."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, Path) and _is_private(info.annotation):
            yield key, value
        elif isinstance(value, BaseModel):
            yield from private_files(value, f"{key}.")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from private_files(item, f"{key}[{i}].")

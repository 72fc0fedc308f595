"""Paths in a config file are relative to that file, so a config can travel with its data."""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo


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

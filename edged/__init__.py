"""edged: the gateway daemon that bridges a vehicle's or venue's hardware to MQTT."""

import os

# pydantic reads the entry points of every installed distribution for plugins when it
# builds its first model: 0.1-0.2 s of a start here, more on a Pi whose venv sees the system
# site packages. edged uses no pydantic plugin.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

__version__ = "0.1.0"
"""The one place the version is written: pyproject.toml reads it (setuptools' `attr`, from
the source without importing it) for the wheel and a release bundle's name. Read here, not
from the installed METADATA, which would parse the 26 KB of it (the README is its long
description) at every start: 0.24 MB kept and ~1 ms here, several on a Pi Zero."""

__all__ = ["__version__"]

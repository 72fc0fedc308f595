"""edged: the gateway daemon that bridges a vehicle's or venue's hardware to MQTT."""

import os
from importlib.metadata import PackageNotFoundError, version

# pydantic reads the entry points of every installed distribution for plugins when it
# builds its first model: 0.1-0.2 s of a start here, more on a Pi whose venv sees the system
# site packages. edged uses no pydantic plugin.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

try:
    __version__ = version("edged")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+src"

__all__ = ["__version__"]

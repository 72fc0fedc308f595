"""A system without the time zone database, as a minimal Debian image comes."""

import contextlib
import sys
import zoneinfo
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def no_zone_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No /usr/share/zoneinfo (the Debian package tzdata) and no pip `tzdata`: every
    `ZoneInfo` fails, as on such an image; put back as it was after."""
    monkeypatch.setitem(sys.modules, "tzdata", None)  # `import tzdata` fails
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        yield
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()

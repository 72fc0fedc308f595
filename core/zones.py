"""IANA time zone names: one check for every place a zone is configured or read."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NO_DATABASE = (
    "this system has no time zone database: install the Debian package tzdata "
    "(`sudo apt install tzdata`)"
)


def zone_database() -> bool:
    """Whether zones can be read at all: a minimal Debian image may come without tzdata
    (and pip's `tzdata`, zoneinfo's fallback, is not installed with edged)."""
    try:
        ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check_zone(value: str) -> str:
    """`value` when it names an IANA zone, else ValueError saying what to write (a path such
    as `/etc/localtime` or `../x` is no zone name: zoneinfo refuses it), or that the system
    has no zone database to find any name in."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        if not zone_database():
            raise ValueError(f"time zone {value!r} cannot be read: {NO_DATABASE}") from None
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Paris"
        ) from None
    return value

"""IANA time zone names: one check for every place a zone is configured or read."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def check_zone(value: str) -> str:
    """`value` when it names an IANA zone, else ValueError saying what to write (a path such
    as `/etc/localtime` or `../x` is no zone name: zoneinfo refuses it)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Paris"
        ) from None
    return value

"""Instants as dispatch writes them: RFC 3339 times with a zone, and ISO 8601's 24:00."""

import re
from datetime import date, timedelta
from typing import Any

_END_OF_DAY = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ]24:00(?::00(?:\.0+)?)?([Zz]|[+-]\d{2}:?\d{2})"
)  # RFC 3339 5.6: `t` and `z` may be lower case, the `T` a space, as pydantic reads them


def end_of_day(value: Any) -> Any:
    """ISO 8601's 24:00 with a zone (a booking or a market to midnight, as planning tools
    often write it) is the next day's 00:00 at the same offset: pydantic reads no hour 24,
    and one such time made a whole list or schedule refused. A pydantic BeforeValidator:
    anything else is left as it is."""
    if isinstance(value, str) and (found := _END_OF_DAY.fullmatch(value)):
        try:
            day = date.fromisoformat(found[1]) + timedelta(days=1)
        except OverflowError:  # 9999-12-31: bad input, not a command failing `internal`
            raise ValueError("24:00 of 9999-12-31 is past the last time a date can hold") from None
        return f"{day.isoformat()}T00:00:00{found[2].upper()}"
    return value

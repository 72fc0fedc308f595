"""What a log call may tell the node's flood guard (edged/logs.py), from any floor.

The guard lets the first lines of each message template through and summarises the rest
of a flood ("N more like this in the last 60 s"). Two words change that, passed as a log
call's `extra`:

- `KEEP`: a line that must never be summarised away, however often it comes (an alarm
  raised, an update's state, a driver failed): one an operator acts on.
- `flood_key(x)`: problems one template covers but an operator must tell apart (which
  door, which error code); each gets its own first lines. `x` must come from a small,
  known set (the config, the code), never from what a peer sends.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

KEEP_ATTR: Final = "flood_keep"
"""The LogRecord attribute `KEEP` sets."""
KEY_ATTR: Final = "flood_key"
"""The LogRecord attribute `flood_key` sets."""

KEEP: Final[Mapping[str, object]] = MappingProxyType({KEEP_ATTR: True})


def flood_key(key: str) -> Mapping[str, object]:
    """`extra=` for a line whose floods are counted apart from its template's other ones."""
    return {KEY_ATTR: key}

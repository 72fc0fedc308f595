"""What the CAN driver tests share: frame builders (drivers run in their real context:
tests/helpers/drivers.py)."""

from typing import Any

import can

from drivers.can.j1939 import GLOBAL, make_id


def frame(
    pgn: int,
    data: bytes,
    *,
    source: int = 0x00,
    priority: int = 6,
    destination: int = GLOBAL,
    **flags: Any,
) -> can.Message:
    """A python-can message as a J1939 node would send it."""
    return can.Message(
        arbitration_id=make_id(pgn, source, priority=priority, destination=destination),
        is_extended_id=True,
        data=data,
        check=False,
        **flags,
    )

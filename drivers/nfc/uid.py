"""ISO/IEC 14443A UIDs: 4 (single), 7 (double) or 10 (triple size) bytes; nothing else.

Config and test scripts write them as hex text; `parse_uid` accepts the usual spellings
("04A1B2C3", "04:a1:b2:c3", "04 A1 B2 C3", "04-a1-b2-c3") and says exactly what is wrong
with anything else. Between separators come whole bytes: "4:a1:b2:c3" (a byte printed
without its leading zero) is refused, not joined into other bytes. `HexUid` is the pydantic
field type that uses it.
"""

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

UID_LENGTHS = (4, 7, 10)
_SEPARATORS = re.compile(r"[:\s-]+")


def valid_uid(uid: bytes) -> bool:
    return len(uid) in UID_LENGTHS


def parse_uid(text: str) -> bytes:
    """Hex text to a UID's bytes; `ValueError` with a message a person can act on."""
    groups = [g for g in _SEPARATORS.split(text.strip()) if g]
    digits = "".join(groups)
    if not digits:
        raise ValueError("a UID is hex digits, e.g. '04A1B2C3'; got an empty string")
    try:
        uid: bytes | None = bytes.fromhex(digits)
    except ValueError:
        uid = None
    # an odd group between separators is a byte cut in two or missing its leading zero
    # ("4:a1:b2:c3"): joined anyway, every digit after it would shift into another byte
    if uid is None or any(len(g) % 2 for g in groups):
        raise ValueError(
            f"{text!r} is not a hex UID: use the digits 0-9 and A-F, two per byte, "
            "e.g. '04A1B2C3' or '04:A1:B2:C3'"
        )
    if not valid_uid(uid):
        raise ValueError(
            f"{text!r} is {len(uid)} bytes; an ISO 14443A UID is 4, 7 or 10 bytes "
            "(8, 14 or 20 hex digits)"
        )
    return uid


def _from_config(value: object) -> bytes:
    if isinstance(value, bytes):
        if not valid_uid(value):
            raise ValueError(f"a UID is 4, 7 or 10 bytes, not {len(value)}")
        return value
    if isinstance(value, str):
        return parse_uid(value)
    raise ValueError(f"a UID is hex text such as '04A1B2C3', not {type(value).__name__}")


HexUid = Annotated[
    bytes,
    BeforeValidator(_from_config),
    PlainSerializer(lambda uid: uid.hex().upper(), return_type=str),
]
"""A UID in a config model: hex text in, bytes inside, upper-case hex out."""

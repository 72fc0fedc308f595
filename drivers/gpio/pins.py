"""Pin specs as gpiozero accepts them, checked and reduced to one BCM number at config time.

gpiozero names a pin many ways (`17`, `"17"`, `"GPIO17"`, `"BCM17"`, `"BOARD11"`,
`"J8:11"`, `"WPI0"`) and only learns which exist when a device opens it on the board. The
config check must catch a typo or a pin used twice before a node goes on the road, without
a Pi at hand, so this module knows the 40-pin header itself: every Pi edged supports
(Pi 2 to 5, Zero 2 W, the CM4 IO board) has the same one. Two spellings of one pin reduce
to the same number, so "17 and BOARD11" is caught as a pin used twice.

WiringPi numbers (`WPI0`) are refused: wiringPi is deprecated and its numbering is the one
people most often confuse with BCM.
"""

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

HEADER_TO_BCM: dict[int, int] = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24,
    19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12,
    33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip
"""Physical pin of the 40-pin header (`BOARDn`, `J8:n`) -> BCM GPIO number."""

FIXED_PULL_UP = frozenset((2, 3))
"""GPIO2 and GPIO3 (I2C) have 1.8 kΩ pull-ups on the board: they cannot be pulled down."""

_NAMED = re.compile(r"(GPIO|BCM|BOARD|J8:)(\d{1,2})")
HELP = "use a BCM number 0-27 or 'GPIO17', 'BCM17', 'BOARD11', 'J8:11'"


def bcm(spec: object) -> int:
    """The BCM number of a gpiozero pin spec; ValueError says what is accepted."""
    if isinstance(spec, bool):  # bool is an int: `pin = true` is a mistake, not GPIO1
        raise ValueError(f"pin {spec!r} is not a pin: {HELP}")
    if isinstance(spec, int):
        number = spec
    elif isinstance(spec, str):
        text = spec.strip().upper()
        match = _NAMED.fullmatch(text)
        if text.isdigit() and len(text) <= 2:
            number = int(text)
        elif match is None:
            raise ValueError(f"pin {spec!r} is not a pin name gpiozero knows here: {HELP}")
        elif match[1] in ("BOARD", "J8:"):
            physical = int(match[2])
            if physical not in HEADER_TO_BCM:
                raise ValueError(
                    f"pin {spec!r}: physical pin {physical} of the 40-pin header is not a GPIO "
                    "(power, ground or out of range)"
                )
            return HEADER_TO_BCM[physical]
        else:
            number = int(match[2])
    else:
        raise ValueError(f"pin {spec!r} is not a pin: {HELP}")
    if not 0 <= number <= 27:
        raise ValueError(f"pin {spec!r}: the 40-pin header has GPIO0 to GPIO27; {HELP}")
    return number


def name(number: int) -> str:
    """How logs and errors show a pin: gpiozero's own name for it."""
    return f"GPIO{number}"


Pin = Annotated[
    int,
    BeforeValidator(bcm),
    PlainSerializer(name, return_type=str),
    WithJsonSchema({"type": ["integer", "string"], "examples": [17, "GPIO17", "BOARD11"]}),
]
"""A pin in options: any gpiozero spelling in, the BCM number inside, "GPIO17" written out."""

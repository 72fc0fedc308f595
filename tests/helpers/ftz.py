"""Flush-to-zero: whether this process can hold subnormal floats, measured, and what to do.

GCC before 13 links `crtfastmath.o` into a shared library linked with `-Ofast` or
`-ffast-math`; its constructor sets the FPU's flush-to-zero bit when the library is loaded
(FPSCR.FZ on 32-bit ARM, MXCSR FTZ/DAZ on x86), in the loading thread and every thread it
starts later. yarl compiles its extension with `-Ofast`, and its armv7l wheels are built
with GCC 9: importing yarl (through aiohttp, as `edgectl feed` and these tests do) on
armhf turns every subnormal into 0.0, `float("5e-324")` included. Its x86-64 and aarch64
wheels come from GCC 14 and leave the bit alone. The bit is architectural: a real 32-bit
Pi flushes just as QEMU does.

Hypothesis refuses a float strategy whose range holds subnormals the process cannot
represent. Where flush-to-zero is measured on, `exclude_subnormals()` makes
`hypothesis.strategies.floats` leave them out unless a test asks for them, and the test
report's header says so; elsewhere nothing changes and subnormals are drawn as usual.
"""

import functools
import sys
from typing import Any

from hypothesis import strategies as st


def flush_to_zero() -> bool:
    """Whether the FPU flushes subnormals in this thread, right now."""
    return sys.float_info.min / 2 == 0.0


def measure() -> tuple[bool, str]:
    """Flush-to-zero once the suite's libraries are loaded, and what turned it on."""
    before = flush_to_zero()
    import yarl  # noqa: F401  (loaded by the suite through aiohttp anyway: measure after it)

    if not flush_to_zero():
        return False, ""
    if before:
        return True, "already on before the tests imported yarl"
    return True, "set by importing yarl, whose compiled module was linked with -Ofast"


def exclude_subnormals() -> None:
    """`st.floats(...)` without `allow_subnormal` leaves subnormals out from now on."""
    floats = st.floats
    if getattr(floats, "excludes_subnormals", False):
        return

    @functools.wraps(floats)
    def without_subnormals(*args: Any, **kwargs: Any) -> st.SearchStrategy[float]:
        kwargs.setdefault("allow_subnormal", False)
        return floats(*args, **kwargs)

    without_subnormals.excludes_subnormals = True  # type: ignore[attr-defined]
    st.floats = without_subnormals


def header(on: bool, culprit: str) -> list[str]:
    if not on:
        return []
    return [
        f"floats: flush-to-zero is on in this process ({culprit}): subnormals read as 0.0, "
        "so Hypothesis' float strategies leave them out (tests/helpers/ftz.py says why)"
    ]

"""The fleet view's field readers: the fast paths for the types JSON and CBOR give must
accept and refuse exactly what the plain checks do (bool is not a number, NaN and the
infinities are refused, an int too large for a float is refused, bounds are inclusive)."""

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edged.ops.fleet import _int, _num


def _num_reference(value: Any, lo: float, hi: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    if not math.isfinite(number) or not lo <= number <= hi:
        return None
    return number


def _int_reference(value: Any, lo: int, hi: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**1023, max_value=2**1100)
    | st.floats()
    | st.text(max_size=5)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)
BOUNDS = st.sampled_from([(-math.inf, math.inf), (-90.0, 90.0), (0.0, 360.0), (0.0, 1000.0)])
INT_BOUNDS = st.sampled_from([(0, 2**63), (1, 2**63), (0, 1000), (0, 1)])


@given(VALUES, BOUNDS)
def test_num_refuses_and_accepts_what_the_plain_check_does(value: Any, bounds: Any) -> None:
    got, want = _num(value, *bounds), _num_reference(value, *bounds)
    assert got == want
    assert got is None or type(got) is float


@given(VALUES, INT_BOUNDS)
def test_int_refuses_and_accepts_what_the_plain_check_does(value: Any, bounds: Any) -> None:
    assert _int(value, *bounds) == _int_reference(value, *bounds)


def test_num_refuses_nan_infinities_bools_and_huge_ints() -> None:
    for hostile in (math.nan, math.inf, -math.inf, True, False, 10**400, "1.0", None):
        assert _num(hostile) is None, hostile
    assert _num(90.0, -90, 90) == 90.0 and _num(90.0000001, -90, 90) is None
    assert _num(3, 0, 10) == 3.0 and type(_num(3, 0, 10)) is float

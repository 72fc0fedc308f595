"""Server-Sent Events frames: nothing in a payload can start a field or end a frame."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.web import sse

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSONISH)
def test_any_data_is_one_data_line_in_one_frame(data: object) -> None:
    frame = sse.event("state", data)
    assert frame.endswith(b"\n\n") and frame.count(b"\n\n") == 1
    lines = frame.decode().rstrip("\n").split("\n")
    assert lines[0] == "event: state" and len(lines) == 2 and lines[1].startswith("data: ")
    assert json.loads(lines[1][len("data: ") :]) == data


@pytest.mark.parametrize("name", ["", "a b", "state\ndata: x", "x\r"])
def test_an_event_name_that_is_not_one_word_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        sse.event(name, {})


def test_retry_is_its_own_frame() -> None:
    assert sse.retry(1000) == b"retry: 1000\n\n"

"""Canonical JSON in pieces is the one-call text a signature covers."""

import asyncio
import gc
import json
import random
import time
from itertools import pairwise
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edged.security.canonical import canonical_json
from edged.security.signing import signed_message

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=6),
    max_leaves=60,
)


@given(JSON, st.integers(min_value=1, max_value=8))
def test_canonical_json_in_pieces_is_the_one_call_text(value: Any, step: int) -> None:
    one_call = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value, step=step) == one_call


def test_a_long_text_cut_in_pieces_keeps_its_escapes() -> None:
    text = 'a"\\\n\u00e9\U0001f600' * 5000
    assert canonical_json({"t": text}, step=3) == json.dumps(
        {"t": text}, separators=(",", ":"), ensure_ascii=False
    )


def test_a_commands_signed_text_is_the_one_call_canonical_json() -> None:
    # what dispatch signs in any language: sorted keys, no spaces, UTF-8 as it is
    args = {"z": [1, 2.5, None], "a": "\u00e9\U0001f600", "m": {"b": True, "a": "x" * 200}}
    doc = {"args": args, "id": "c1", "topic": "t/cmd/x", "ts": 1}
    expected = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert signed_message("t/cmd/x", "c1", 1, args) == expected.encode()


async def test_a_map_of_250_000_keys_in_a_shuffled_order_is_encoded_while_the_loop_turns() -> None:
    # A forged command's args (no key needed to send one): sorting its keys in one call
    # held the GIL, so the event loop, ~90 ms here. Measured in the process's CPU time: a
    # call into C holding the GIL spends CPU all the while the loop stands still, a worker
    # descheduled by the others on a loaded machine spends none (in wall time it looked
    # like a stand-still: 309, 558 ms seen under load, against a sort of ~100).
    keys = [f"k{i}" for i in range(250_000)]
    random.Random(7).shuffle(keys)
    value = {"args": dict.fromkeys(keys, "a")}
    text, longest, one_sort = await _encode_watching_the_loop(value)
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert longest < one_sort / 2, (
        f"the loop stood still {longest * 1000:.0f} ms of CPU, one sort takes {one_sort * 1000:.0f}"
    )


async def _encode_watching_the_loop(value: dict[str, Any]) -> tuple[str, float, float]:
    """`canonical_json(value)` in a worker thread: its text, the event loop's longest stand-
    still meanwhile, and how long one sort of the args' keys takes (the collector off), both
    in the process's CPU time (`time.process_time`)."""
    gc.disable()
    try:
        started = time.process_time()
        sorted(value["args"])
        one_sort = time.process_time() - started
        turns: list[float] = []
        done = False

        async def turn() -> None:
            while not done:
                turns.append(time.process_time())
                await asyncio.sleep(0)

        ticker = asyncio.create_task(turn())
        await asyncio.sleep(0)
        started = time.process_time()
        text = await asyncio.to_thread(canonical_json, value)
        ended = time.process_time()
        done = True
        await ticker
    finally:
        gc.enable()
    marks = [started, *(t for t in turns if started < t < ended), ended]
    return text, max(b - a for a, b in pairwise(marks)), one_sort

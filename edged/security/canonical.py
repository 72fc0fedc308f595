"""Canonical JSON (sorted keys, no spaces, UTF-8 as it is) in pieces.

The text a signature covers: `json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`. One such call on a 4 MiB command or access list holds the GIL for a
tenth of a second on this machine (half a second on a Pi Zero 2 W): made in a worker thread
a piece of about `STEP` entries at a time, it lets the event loop decide taps between two
pieces, and gives the same text.
"""

import heapq
import json
from collections.abc import Iterable
from typing import Any

STEP = 1000
"""Entries (cards, scalars, 64 characters of text) handled per call into C."""


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _weight(value: Any, limit: int) -> int:
    """How big `value` is (a scalar or a key 1, a text 1 per 64 characters), counted only
    until it passes `limit`."""
    if isinstance(value, str):
        return 1 + len(value) // 64
    if isinstance(value, dict):
        total, children = 1 + len(value), iter(value.values())
    elif isinstance(value, list):
        total, children = 1, iter(value)
    else:
        return 1
    for child in children:
        if total > limit:
            break
        total += _weight(child, limit - total)
    return total


def _encode(value: Any, out: list[str], step: int) -> None:
    if _weight(value, step) <= step:
        out.append(_dumps(value))
    elif isinstance(value, str):  # escaping is per character: any cut gives the same text
        size = 64 * step
        out.append('"')
        out.extend(_dumps(value[i : i + size])[1:-1] for i in range(0, len(value), size))
        out.append('"')
    elif isinstance(value, dict):
        _encode_items(value, out, step, "{}")
    else:
        _encode_items(value, out, step, "[]")


def _encode_items(value: dict[str, Any] | list[Any], out: list[str], step: int, ends: str) -> None:
    """A big object or array: its small members a batch of `step` at a time, its big ones
    one by one."""
    out.append(ends[0])
    parts: list[str] = []
    batch_d: dict[str, Any] = {}
    batch_l: list[Any] = []
    weight = 0

    def flush() -> None:
        nonlocal weight
        if batch_d or batch_l:
            parts.append(_dumps(batch_d if ends == "{}" else batch_l)[1:-1])
            batch_d.clear()
            batch_l.clear()
            weight = 0

    if isinstance(value, dict):
        pairs: Iterable[tuple[Any, Any]] = ((k, value[k]) for k in _sorted_keys(value, step))
    else:
        pairs = enumerate(value)
    for key, member in pairs:
        w = _weight(member, step)
        if w > step:
            flush()
            inner: list[str] = [_dumps(key) + ":"] if isinstance(value, dict) else []
            _encode(member, inner, step)
            parts.append("".join(inner))
            continue
        if weight + w > step:
            flush()
        if isinstance(value, dict):
            batch_d[key] = member
        else:
            batch_l.append(member)
        weight += w + 1
    flush()
    out.append(",".join(parts))
    out.append(ends[1])


def _sorted_keys(value: dict[str, Any], step: int) -> Iterable[str]:
    """The keys of `value` in order, sorted a piece of `step` at a time and merged in
    Python: one `sorted` of a forged command's 250,000 keys in a shuffled order held the GIL
    86 ms here."""
    if len(value) <= step:
        return sorted(value)
    keys = list(value)
    return heapq.merge(*(sorted(keys[i : i + step]) for i in range(0, len(keys), step)))


def canonical_json(value: Any, *, step: int = STEP) -> str:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, the
    same text, made a piece of at most about `step` entries at a time."""
    out: list[str] = []
    _encode(value, out, step)
    return "".join(out)

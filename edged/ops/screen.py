"""Text from the broker, made safe for an operator's terminal: the one place edgectl does it.

Any fleet node with a valid certificate can put any string in its own messages (a reply, an
alarm's kind, an update's reason, a log line in `diag.dump`). Printed as is, a string can act
on the terminal instead of showing: C0 and C1 controls (ESC and its 8-bit form U+009B start
an escape sequence: colours, a cleared screen, an OSC 52 clipboard write, a window title), a
carriage return or U+2028 that overwrites what was printed, a bidi override (U+202E) or an
invisible character that makes a line read as something else; and a lone surrogate (JSON's
`"\\ud800"`) cannot be encoded at all, so printing it ends the tool with a traceback.

The rule is Python's `str.isprintable`, which the node uses for the text it accepts
(`edged/services/journey.py`): what it refuses is replaced (`printable`) or, in JSON,
written as its `\\uXXXX` escape (`json_for_terminal`), which keeps the value exactly.
"""

import json
import unicodedata
from typing import Any

REPLACEMENT = "?"


def _safe_char(c: str) -> str:
    if c.isprintable():
        return c
    return " " if unicodedata.category(c) == "Zs" else REPLACEMENT  # a no-break space stays one


def printable(text: str) -> str:
    """`text` with every character a terminal could act on replaced: `?`, or a space for a
    space character such as U+00A0. Printable text comes back as it is, at once."""
    if text.isprintable():
        return text
    return "".join(map(_safe_char, text))


def _escaped(c: str) -> str:
    if c.isprintable() or c == "\n":
        return c
    return json.dumps(c)[1:-1]  # `\u202e`, or a surrogate pair for a character past U+FFFF


MAX_INDENTED_DEPTH = 32
"""Deeper than any reply of edged's (CBOR's bound, `edged.codec.cbor.MAX_DEPTH`)."""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` lists or objects deep (without recursing)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False


def json_for_terminal(value: Any) -> str:
    """`value` as indented JSON whose every character prints as itself: the others (only
    ever inside strings, where JSON already escapes C0 controls) as `\\uXXXX` escapes, so
    the text reads back to the same value and pipes into `jq` unchanged.

    A value deeper than `MAX_INDENTED_DEPTH` is written on one line: indented, each line
    carries two spaces a level, and a reply 900 levels deep printed 900 times its size
    (gigabytes from a node's one 4 MiB reply)."""
    indent = None if _deeper_than(value, MAX_INDENTED_DEPTH) else 2
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    if all(line.isprintable() for line in text.split("\n")):
        return text
    return "".join(map(_escaped, text))

"""The report: one line per check for a person, or a JSON list for a program."""

import json
import shutil
import textwrap
from collections import Counter

from edged.doctor.check import Check, Status

LABEL = {Status.OK: "ok", Status.WARN: "warn", Status.FAIL: "FAIL", Status.SKIP: "skip"}
NAME_WIDTH = 26
MIN_TEXT = 40


def text(checks: list[Check], title: str, elapsed_s: float) -> str:
    """Aligned lines; advice under its line, after an arrow, where the eye looks next."""
    width = min(NAME_WIDTH, max((len(c.name) for c in checks), default=0))
    indent = " " * (2 + 4 + 2 + width + 2)
    columns = max(len(indent) + MIN_TEXT, shutil.get_terminal_size((100, 24)).columns)

    def wrapped(first: str, body: str, rest: str = indent) -> list[str]:
        return textwrap.wrap(
            body,
            columns,
            initial_indent=first,
            subsequent_indent=rest,
            break_on_hyphens=False,
            break_long_words=False,
        ) or [first.rstrip()]

    lines = [title]
    for c in checks:
        lines += wrapped(f"  {LABEL[c.status]:<4}  {c.name:<{width}}  ", c.detail)
        for item in c.items:
            lines += wrapped(f"{indent}- ", item, indent + "  ")
        if c.advice and c.status is not Status.OK:
            lines += wrapped(f"{indent}-> ", c.advice, indent + "   ")
    counts = Counter(c.status for c in checks)
    parts = [
        f"{counts[Status.FAIL]} failed",
        f"{counts[Status.WARN]} warning(s)",
        f"{counts[Status.OK]} ok",
    ]
    if counts[Status.SKIP]:
        parts.append(f"{counts[Status.SKIP]} skipped")
    lines.append(f"{', '.join(parts)} in {elapsed_s:.1f} s")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> str:
    return json.dumps([c.to_json() for c in checks], indent=2, ensure_ascii=False)

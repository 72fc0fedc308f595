"""The broker-check report as a table for a person or JSON for a script."""

import json
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edged.ops.brokercheck.result import Finding, Verdict

_STYLE = {Verdict.OK: "green", Verdict.LIMITED: "yellow", Verdict.MISSING: "red"}


def table(findings: Sequence[Finding], url: str, version: str | None) -> Table:
    t = Table(
        title=f"edgectl broker-check {url}",
        caption=f"probed with MQTT {version}" if version else None,
        show_lines=True,
    )
    t.add_column("what", no_wrap=True)
    t.add_column("", no_wrap=True)
    t.add_column("measured")
    t.add_column("what edged does")
    for f in findings:
        mark = f"{f.verdict.value}{' (needed)' if f.fails else ''}"
        t.add_row(
            escape(f.title), f"[{_STYLE[f.verdict]}]{mark}[/]", escape(f.measured), escape(f.edged)
        )
    return t


def print_table(findings: Sequence[Finding], url: str, version: str | None) -> None:
    Console(width=150, highlight=False).print(table(findings, url, version))
    failed = [f.title for f in findings if f.fails]
    if failed:
        print(f"edgectl: this broker lacks what edged needs: {', '.join(failed)}")


def as_json(
    findings: Sequence[Finding], url: str, version: str | None, error: str | None = None
) -> str:
    doc = {
        "broker": url,
        "protocol": version,
        "ok": error is None and not any(f.fails for f in findings),
        "findings": [f.to_json() for f in findings],
    }
    if error is not None:
        doc["error"] = error
    return json.dumps(doc, indent=2)

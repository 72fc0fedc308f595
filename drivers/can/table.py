"""A DBC compiled to a plain table, so the running node decodes without cantools.

cantools parses and checks a DBC (its import alone costs ~19 MB of RSS on the node); what
decoding needs of it is a few numbers per signal. `compile_dbc` keeps those numbers, in the
shape of cantools' own multiplexing tree, as JSON. The shipped DBC comes with its table as
package data (`fms.dbc.json`, rebuilt by `python -m drivers.can.table`; a test fails when it
is out of date). Any other DBC is compiled once with cantools and its table cached under its
sha256 (`$STATE_DIRECTORY/dbc-cache`, i.e. /var/lib/edged under systemd, else
`$XDG_CACHE_HOME/edged/dbc-cache`), so later starts do not import cantools either.
"""

import functools
import hashlib
import io
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

from core.errors import ConfigError
from core.files import head_of, replace_atomically

SHIPPED_DBC = Path(str(resources.files("drivers.can") / "fms.dbc"))
"""The FMS database used when a config names none: package data of drivers.can, so an
installed edged (install.sh's venv, a wheel) has it too; config/fms.dbc links to it."""

SHIPPED_TABLE = SHIPPED_DBC.with_name("fms.dbc.json")
MAX_DBC_BYTES = 4 * 1024 * 1024
"""A DBC larger is refused unread. cantools holds some 60 bytes per byte of a DBC as it
parses it (a 1.8 MB one: 106 MB at its peak, 4 s on a PC), 25 of junk (a 4.8 MB log: 120
MB): a config (`config.set`) naming the outbox (64 MiB) or a log as its DBC had the node
killed for memory on a 512 MB Pi Zero, and /dev/zero was read for ever. The full J1939
DBCs known are under 2 MB."""
FORMAT = 2
"""Bumped whenever the table's shape changes: a cached table of another format is rebuilt
(2: signals carry their value table, `choices`)."""

Table: TypeAlias = dict[str, Any]
"""{"format", "sha256", "messages": [message, ...]}; a message is {"name", "frame_id",
"extended", "length", "signals" (every signal, in the DBC's order, each with its value
table `choices`: [[raw, name], ...]), "node"}; a node is {"signals": [...], "multiplexers":
[[signal name, [[id, node], ...]], ...]}."""


def _signal(s: Any) -> dict[str, Any]:
    return {
        "name": s.name,
        "start": s.start,
        "length": s.length,
        "big_endian": s.byte_order == "big_endian",
        "signed": bool(s.is_signed),
        "float": bool(s.conversion.is_float),
        "scale": s.scale,
        "offset": s.offset,
    }


def _choices(s: Any) -> list[list[Any]]:
    """The signal's value table (VAL_): J1939 states, some of them error or not available."""
    return [[int(raw), str(name)] for raw, name in (s.choices or {}).items()]


def _node(codec: Any) -> dict[str, Any]:
    return {
        "signals": [_signal(s) for s in codec["signals"]],
        "multiplexers": [
            [name, [[mux, _node(child)] for mux, child in children.items()]]
            for name, children in codec["multiplexers"].items()
        ],
    }


def compile_dbc(path: Path, data: bytes | None = None) -> Table:
    """The table of a DBC (its bytes `data` if given), read and checked by cantools (strict:
    overlapping signals refused)."""
    if data is None:
        data = path.read_bytes()
    import cantools.database  # the build side only: see the module's docstring

    db = cantools.database.can.Database(strict=True)
    try:
        # read as cantools' add_dbc_file reads a file, from the bytes that are hashed
        db.add_dbc(io.TextIOWrapper(io.BytesIO(data), encoding="cp1252", errors="replace"))
    except Exception as exc:  # cantools raises many kinds: parse, overlap, encoding…
        raise ConfigError(
            str(path), [f"dbc: cannot read this DBC ({type(exc).__name__}: {_why(exc)})"]
        ) from exc
    return {
        "format": FORMAT,
        "sha256": hashlib.sha256(data).hexdigest(),
        "messages": [
            {
                "name": m.name,
                "frame_id": m.frame_id,
                "extended": bool(m.is_extended_frame),
                "length": int(m.length),
                "signals": [  # in the DBC's order
                    {**_signal(s), "choices": _choices(s)} for s in m.signals
                ],
                # cantools' own decoding tree (private, pinned by pyproject's cantools<46):
                # the table decodes exactly what cantools would, multiplexers included
                "node": _node(m._codecs),
            }
            for m in db.messages
        ],
    }


def _why(exc: Exception) -> str:
    """What cantools says, without the text of the file it quotes at a syntax error: the
    file named may be no DBC at all but a secret (a password file: its one line), and the
    refusal goes to a `config.set`'s sender, the log, `edged check-config`."""
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    if isinstance(line, int) and isinstance(column, int):
        return f"invalid syntax at line {line}, column {column}"
    return str(exc)


def cache_dir() -> Path:
    """Where tables of DBCs other than the shipped one are kept, beside the node's data."""
    state = os.environ.get("STATE_DIRECTORY")  # systemd's StateDirectory=edged
    if state:
        return Path(state.split(":")[0]) / "dbc-cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edged" / "dbc-cache"


def _usable(path: Path, sha256: str) -> Table | None:
    """The table stored at `path` if it is one of this format for this DBC, else None."""
    try:
        table = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if (
        isinstance(table, dict)
        and table.get("format") == FORMAT
        and table.get("sha256") == sha256
        and isinstance(table.get("messages"), list)
        and all(_message_ok(m) for m in table["messages"])
    ):
        return table
    return None


_SIGNAL = {
    "name": str,
    "start": int,
    "length": int,
    "big_endian": bool,
    "signed": bool,
    "float": bool,
    "scale": (int, float),
    "offset": (int, float),
}
_MESSAGE = {"name": str, "frame_id": int, "extended": bool, "length": int}


def _fields_ok(item: object, fields: dict[str, Any]) -> bool:
    return isinstance(item, dict) and all(isinstance(item.get(k), t) for k, t in fields.items())


def _signal_ok(s: object) -> bool:
    return (
        _fields_ok(s, _SIGNAL)
        and isinstance(s, dict)
        and 0 <= s["start"] < 512
        and 1 <= s["length"] <= 64
        and (not s["float"] or s["length"] in (16, 32, 64))
    )


def _choices_ok(s: object) -> bool:
    choices = s.get("choices") if isinstance(s, dict) else None
    return isinstance(choices, list) and all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and isinstance(c[1], str)
        for c in choices
    )


def _node_ok(node: object) -> bool:
    """A tree as compile_dbc writes it (a corrupt cache file is compiled again)."""
    if not isinstance(node, dict) or not isinstance(node.get("signals"), list):
        return False
    muxes = node.get("multiplexers")
    return (
        all(_signal_ok(s) for s in node["signals"])
        and isinstance(muxes, list)
        and all(
            isinstance(m, list)
            and len(m) == 2
            and isinstance(m[0], str)
            and isinstance(m[1], list)
            and all(
                isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and _node_ok(c[1])
                for c in m[1]
            )
            for m in muxes
        )
    )


def _message_ok(m: object) -> bool:
    return (
        _fields_ok(m, _MESSAGE)
        and isinstance(m, dict)
        and isinstance(m.get("signals"), list)
        and all(_signal_ok(s) and _choices_ok(s) for s in m["signals"])
        and _node_ok(m.get("node"))
    )


def _store(path: Path, table: Table) -> None:
    """Write the table atomically; a cache that cannot be written only costs the next start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, json.dumps(table, separators=(",", ":")))
    except OSError:
        pass


def load_table(path: Path) -> Table:
    """The table of a DBC file; an unchanged file is not read again (the config check and the
    driver both ask for it at start-up)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(str(path), ["dbc: no such file; set options.dbc"]) from None
    return _table(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _table(path: str, mtime_ns: int, size: int) -> Table:
    if size > MAX_DBC_BYTES:
        raise ConfigError(path, [_too_large(size)])
    try:  # a FIFO or a device never opened: read, it waits for a writer or never ends
        data = head_of(Path(path), MAX_DBC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, [f"dbc: cannot read this file ({exc.strerror})"]) from None
    if data is None:
        raise ConfigError(path, ["dbc: no such file; set options.dbc"])
    if len(data) > MAX_DBC_BYTES:  # grown since its size was taken
        raise ConfigError(path, [_too_large(len(data))])
    sha256 = hashlib.sha256(data).hexdigest()
    shipped = _usable(SHIPPED_TABLE, sha256)
    if shipped is not None:
        return shipped
    cached = cache_dir() / f"{sha256}.json"
    table = _usable(cached, sha256)
    if table is None:
        table = compile_dbc(Path(path), data)
        _store(cached, table)
    return table


def _too_large(size: int) -> str:
    return (
        f"dbc: larger than {MAX_DBC_BYTES >> 20} MiB ({size} bytes): no DBC is that large, "
        "and reading it would take the node's memory; name the vehicle's DBC"
    )


def main() -> int:
    """`python -m drivers.can.table`: rebuild the shipped DBC's table after editing it."""
    table = compile_dbc(SHIPPED_DBC)
    SHIPPED_TABLE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {SHIPPED_TABLE} ({len(table['messages'])} messages)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

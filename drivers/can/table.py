"""A DBC compiled to a plain table, so the running node decodes without cantools.

cantools parses and checks a DBC (its import alone costs ~19 MB of RSS on the node); what
decoding needs of it is a few numbers per signal. `compile_dbc` keeps those numbers, in the
shape of cantools' own multiplexing tree, as JSON. The shipped DBC comes with its table as
package data (`fms.dbc.json`, rebuilt by `python -m drivers.can.table`; a test fails when it
is out of date). Any other DBC is compiled once with cantools and its table cached under its
sha256 (`$STATE_DIRECTORY/dbc-cache`, i.e. /var/lib/edged under systemd, else
`$XDG_CACHE_HOME/edged/dbc-cache`), so later starts do not import cantools either.

That compilation runs in a child process (`child_main`, in `python -I`), never in the
node: cantools holds some 40 to 60 bytes per byte of a DBC while it parses (a 3.5 MB
J1939 DBC: +125 MB at the peak), and a node that had compiled kept most of it (+100 MB of
RSS for good: cantools' modules, glibc's heap), on a 512 MB Pi Zero 2 W beside a kiosk.
The child is bounded in address space (`COMPILE_MAX_MEMORY`), CPU and time
(`COMPILE_TIMEOUT_S`), and offers itself first to the OOM killer; the node reads back its
JSON table (at most `MAX_TABLE_BYTES`), checked as a cached table is. A DBC crafted to
take the memory (`SG_MUL_VAL_ ... 0-4000000000`: one line, cantools lists every id) or
the time is a `ConfigError` saying so, as a DBC that does not parse.
"""

import contextlib
import functools
import hashlib
import io
import json
import os
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

from core.errors import ConfigError
from core.files import clear_left, head_of, replace_atomically

SHIPPED_DBC = Path(str(resources.files("drivers.can") / "fms.dbc"))
"""The FMS database used when a config names none: package data of drivers.can, so an
installed edged (install.sh's venv, a wheel) has it too; config/fms.dbc links to it."""

SHIPPED_TABLE = SHIPPED_DBC.with_name("fms.dbc.json")
MAX_DBC_BYTES = 4 * 1024 * 1024
"""A DBC larger is refused unread. cantools holds some 40 to 60 bytes per byte of a DBC as
it parses it (a 1.8 MB J1939 DBC: +66 to +106 MB at its peak), 25 of junk (a 4.8 MB log:
120 MB): a config (`config.set`) naming the outbox (64 MiB) or a log as its DBC had the
node killed for memory on a 512 MB Pi Zero, and /dev/zero was read for ever. Kept at 4
MiB now that a bounded child compiles: the full J1939 DBCs known are 1.5 to 3.5 MB; a 4
MiB one takes 140 to 250 MB at the peak of a parse, about what a 512 MB node can lend for
a moment (`COMPILE_MAX_MEMORY`), and its table, compiled there or on a PC, ~5 MB that the
node holds as ~25 MB of objects while it reads its config (`MAX_TABLE_BYTES`): a larger
cap would let through DBCs that the child is killed for, or tables the node can hardly
hold."""
COMPILE_MAX_MEMORY = 400 * 1024 * 1024
"""The compiling child's address space (RLIMIT_AS): a 4 MiB DBC of the densest J1939 kind
measured (short comments, a value table per signal) peaks at ~190 MB, a comment-heavy one
less; beyond, cantools is stopped by a MemoryError (a range of ids without end) rather
than the node's memory taken. Python, cantools' modules and glibc count ~35 MB of it.
Under systemd the child counts in the service's cgroup with the node (MemoryMax=150M, the
node ~50-75 MB, the child ~30 MB plus 26 to 37 bytes per byte of the DBC measured): there
a DBC beyond about 1 to 1.5 MB gets the child, not the node, killed (its oom_score_adj is
1000), and the DBC refused; its table is then compiled on a PC (`main`),
or MemoryMax raised by a drop-in."""
COMPILE_TIMEOUT_S = 120.0
"""A 3.5 MB DBC compiles in 2.2 s on a PC, some 20 s on a Pi Zero 2 W: a child still at it
after this is stopped (a DBC that makes cantools loop), the DBC refused."""
MAX_TABLE_BYTES = 2 * MAX_DBC_BYTES
"""A compiled table larger is refused, from the child as from the cache: a table is about
the size of its DBC (1.2 times for one with a value table per signal), and the node holds
it in memory (a 4 MB table: ~20 MB with its decoders). A multiplexer of many ids
(`SG_MUL_VAL_` ranges) repeats its signals once per id: a DBC of 300 bytes made a table of
29 MB."""
MAX_MUX_DEPTH = 16
"""Multiplexers nested deeper make the DBC refused: a vehicle's nest two or three (extended
multiplexing), and each level is a recursion in the compiler, the check of a table and
the decoding of every frame; a DBC of 36 KB chaining 400 (`SG_MUL_VAL_`) raised a
RecursionError out of the node's config check."""
MAX_MESSAGE_BYTES = 1785
"""A message longer makes the DBC refused, its table not used: J1939's transport protocol
carries at most 1785 bytes, and a short frame is padded to its message's length as it is
decoded (a table giving 10**12 bytes: a MemoryError on every frame)."""
MAX_FACTOR = 1e100
"""A signal's scale or offset larger makes the DBC refused, its table not used: a raw value
(at most 2**64) times it must stay a float. cantools makes a scale of 1e308 an int of 309
digits, and each value decoded with it an int no float can hold: `float()` of it in the
vehicle service raised OverflowError on every frame, and an IEEE float signal's raw value
times it did in the decoder. A vehicle signal's factors and offsets are many orders smaller."""
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


class _Refused(ValueError):
    """A DBC cantools reads that the node does not decode: why, as said to the user."""


def _node(codec: Any, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_MUX_DEPTH:
        raise _Refused(f"dbc: multiplexers nested more than {MAX_MUX_DEPTH} deep (SG_MUL_VAL_)")
    return {
        "signals": [_signal(s) for s in codec["signals"]],
        "multiplexers": [
            [name, [[mux, _node(child, depth + 1)] for mux, child in children.items()]]
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
        messages = [_message(m) for m in db.messages]
    except _Refused as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    except Exception as exc:  # cantools raises many kinds: parse, overlap, encoding, recursion…
        raise ConfigError(
            str(path), [f"dbc: cannot read this DBC ({type(exc).__name__}: {_why(exc)})"]
        ) from exc
    return {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "messages": messages}


def _message(m: Any) -> dict[str, Any]:
    if not 0 <= m.length <= MAX_MESSAGE_BYTES:
        raise _Refused(
            f"dbc: message {m.name} is {m.length} bytes long: J1939 carries at most "
            f"{MAX_MESSAGE_BYTES} (its transport protocol)"
        )
    for s in m.signals:
        if s.length > 64:  # the decoder's bound (_signal_ok): J1939 has none longer
            raise _Refused(
                f"dbc: signal {s.name} of message {m.name} is {s.length} bits long: the node "
                "decodes signals of at most 64"
            )
        if not (_finite(s.scale) and _finite(s.offset)):
            raise _Refused(
                f"dbc: signal {s.name} of message {m.name} has the factor {s.scale} and the "
                f"offset {s.offset}: the node decodes factors and offsets of at most "
                f"{MAX_FACTOR:g} (a value must stay a number a float holds)"
            )
    return {
        "name": m.name,
        "frame_id": m.frame_id,
        "extended": bool(m.is_extended_frame),
        "length": int(m.length),
        "signals": [  # in the DBC's order
            {**_signal(s), "choices": _choices(s)} for s in m.signals
        ],
        # cantools' own decoding tree (private, pinned by pyproject's cantools<46): the
        # table decodes exactly what cantools would, multiplexers included
        "node": _node(m._codecs),
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
    """The table stored at `path` if it is one of this format for this DBC, else None (a
    file too large to be one is not read whole)."""
    try:
        raw = head_of(path, MAX_TABLE_BYTES + 1)
    except OSError:
        return None
    if raw is None or len(raw) > MAX_TABLE_BYTES:
        return None
    return _valid(raw, sha256)


def _valid(raw: bytes, sha256: str) -> Table | None:
    """`raw` read as a table of this format for this DBC, else None."""
    try:  # NaN and Infinity are no numbers a compilation writes
        table = json.loads(raw, parse_constant=_no_number)
    except (ValueError, RecursionError):  # RecursionError: JSON nested without end
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


def _no_number(constant: str) -> None:
    raise ValueError(constant)


def _finite(number: int | float) -> bool:
    """A factor or offset a decoded value can be made of (`MAX_FACTOR`): not NaN, not
    infinite, not an int of hundreds of digits (cantools' reading of a scale of 1e308)."""
    return abs(number) <= MAX_FACTOR  # False for NaN


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
        and 0 <= s["start"] < 8 * MAX_MESSAGE_BYTES  # a transport message's, reassembled
        and 1 <= s["length"] <= 64
        and (not s["float"] or s["length"] in (16, 32, 64))
        and _finite(s["scale"])
        and _finite(s["offset"])
    )


def _choices_ok(s: object) -> bool:
    choices = s.get("choices") if isinstance(s, dict) else None
    return isinstance(choices, list) and all(
        isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and isinstance(c[1], str)
        for c in choices
    )


def _node_ok(node: object, depth: int = 0) -> bool:
    """A tree as compile_dbc writes it (a corrupt cache file is compiled again)."""
    if depth > MAX_MUX_DEPTH:
        return False
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
                isinstance(c, list)
                and len(c) == 2
                and isinstance(c[0], int)
                and _node_ok(c[1], depth + 1)
                for c in m[1]
            )
            for m in muxes
        )
    )


def _message_ok(m: object) -> bool:
    return (
        _fields_ok(m, _MESSAGE)
        and isinstance(m, dict)
        and 0 <= m["length"] <= MAX_MESSAGE_BYTES
        and isinstance(m.get("signals"), list)
        and all(_signal_ok(s) and _choices_ok(s) for s in m["signals"])
        and _node_ok(m.get("node"))
    )


def _store(path: Path, raw: bytes) -> None:
    """Write the table atomically; a cache that cannot be written only costs the next start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, raw)
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
    for ready in (SHIPPED_TABLE, Path(f"{path}.json")):  # shipped, or compiled off the node
        table = _usable(ready, sha256)
        if table is not None:
            return table
    cached = cache_dir() / f"{sha256}.json"
    clear_left(cached.parent, r"[0-9a-f]{64}\.json")  # tables a write killed midway left
    table = _usable(cached, sha256)
    if table is None:
        raw = compile_in_child(Path(path), data)
        table = _valid(raw, sha256)
        if table is None:  # the child is this module: never, unless it was changed
            raise ConfigError(path, ["dbc: the DBC compiler gave no usable table"])
        _store(cached, raw)
    return table


def forget() -> None:
    """Drop the tables read, when a CAN driver runs, its decoders built: they keep only the
    messages the node decodes (`pgns`), the table every one (a 3.5 MB DBC with one PGN
    decoded: 48 MB of RSS for the node, 29 without it). Nothing in the running node reads a
    table again until a config is read (a `config.set`, a restart: the cached table, 0.15 s)."""
    _table.cache_clear()


_one_at_a_time = threading.Lock()
"""Two config.set at once each naming a big DBC would be two children of ~250 MB."""

_MEMORY, _TOO_LARGE, _UNREAD, _GONE = 4, 5, 3, 6
"""The child's exit codes: out of memory, table too large, DBC refused (stderr says why),
the node gone (no one to tell)."""


def compile_in_child(path: Path, data: bytes) -> bytes:
    """The table of the DBC `data` (named `path` in errors), as JSON, compiled by cantools in
    a child process bounded in memory and time; ConfigError when it could not be."""
    import signal
    import subprocess  # a compilation's only (the node at rest has no child to run)

    root = Path(__file__).resolve().parents[2]  # where `drivers` is found
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import drivers.can.table as t; "
    code += "raise SystemExit(t.child_main(sys.argv[1:]))"
    limits = [str(COMPILE_MAX_MEMORY), str(MAX_TABLE_BYTES), str(int(COMPILE_TIMEOUT_S) + 1)]
    limits.append(str(os.getpid()))
    with _one_at_a_time:
        try:  # -I: no PYTHONPATH, no user site, no current directory: only what is named
            done = subprocess.run(
                [sys.executable, "-I", "-c", code, str(path), *limits],
                input=data,
                capture_output=True,
                timeout=COMPILE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(str(path), [_slow(path)]) from None
        except OSError as exc:  # no process could be started (no memory, no PIDs left)
            why = exc.strerror or str(exc)
            raise ConfigError(str(path), [f"dbc: cannot start its compiler ({why})"]) from None
    said = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == 0 and len(done.stdout) <= MAX_TABLE_BYTES:
        return done.stdout
    if done.returncode == _UNREAD and said:
        raise ConfigError(str(path), said.splitlines()[-12:])
    if done.returncode == _TOO_LARGE or done.returncode == 0:
        raise ConfigError(str(path), [_table_too_large()])
    if done.returncode in (_MEMORY, -signal.SIGKILL):  # SIGKILL: the OOM killer's
        raise ConfigError(str(path), [_too_much_memory(path)])
    if done.returncode == -signal.SIGXCPU:
        raise ConfigError(str(path), [_slow(path)])
    last = said.splitlines()[-1][:200] if said else "nothing said"
    raise ConfigError(str(path), [f"dbc: its compiler failed (exit {done.returncode}: {last})"])


def child_main(argv: list[str]) -> int:
    """The compiling child: the DBC's bytes on stdin, its table as JSON on stdout; argv: the
    DBC's name (for errors), the address space, the table's size, the CPU seconds allowed and
    the node's pid."""
    import logging
    import resource
    import warnings

    # the node reads stderr whole: cantools logs two warnings per message repeating another's
    # name and id (~190 bytes per DBC line of 13, 19 MB for a DBC of 1.3 MB); only a
    # refusal's reason is said
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    name, memory, table_max, cpu_s = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    _end_with(int(argv[4]))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # a DBC that loops ends all the same
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    # the kernel short of memory all the same (a kiosk beside): this one goes first
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    data = sys.stdin.buffer.read(MAX_DBC_BYTES + 1)
    try:
        out = json.dumps(compile_dbc(Path(name), data), separators=(",", ":")).encode()
    except ConfigError as exc:
        if isinstance(exc.__cause__, MemoryError):
            return _MEMORY
        print("\n".join(exc.problems), file=sys.stderr)
        return _UNREAD
    except MemoryError:
        return _MEMORY
    if len(out) > table_max:
        return _TOO_LARGE
    sys.stdout.buffer.write(out)
    return 0


def _end_with(node: int) -> None:
    """The child ends with the node, not before: killed when the node ends (the thread that
    started it, which waits on it till its end), else a node killed while it compiles,
    outside systemd (which kills the unit's cgroup), left it at work alone, up to its 400
    MiB and 120 s, and a node started again compiled beside it; deaf to the stop signals
    meant for the node."""
    import ctypes
    import signal

    # a stop is the node's to decide: systemd's signals every process of the unit, Ctrl-C
    # the whole foreground group, and a child dead of it had the DBC refused (exit 78, a
    # trial failed, a probation rolled back) where the node only meant to stop; the node's
    # end (at most 4.7 s after its signal, edged.cli.signals) ends the child below
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.SIG_IGN)
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the CPU limit holds
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != node:  # the node ended before the line above
        os._exit(_GONE)


def _off_node(path: Path) -> str:
    """What to do instead; `path` as the node reads it, a link followed: its table is looked
    for there, not beside the link."""
    table = Path(f"{path}.json")
    there = (
        f" ({table.name} there is not this DBC's table: made from other bytes of the DBC, "
        "or by another version of edged)"
        if table.exists()
        else ""
    )
    return (
        "name a DBC of this vehicle's messages only, or compile its table on a PC "
        f"(`python -m drivers.can.table {path.name}` writes {path.name}.json) and put it on "
        f"the node as {table}{there}"
    )


def _too_much_memory(path: Path) -> str:
    return (
        "dbc: compiling this DBC took more memory than the node lends it "
        f"({COMPILE_MAX_MEMORY >> 20} MiB, or the service's MemoryMax=: cantools holds 40 "
        "to 60 bytes per byte of a DBC, a "
        f"multiplexer range of ids without end more): not used; {_off_node(path)}"
    )


def _slow(path: Path) -> str:
    return (
        f"dbc: cantools did not finish compiling this DBC within {COMPILE_TIMEOUT_S:g} s: "
        f"not used; {_off_node(path)}"
    )


def _table_too_large() -> str:
    return (
        f"dbc: its compiled table is larger than {MAX_TABLE_BYTES >> 20} MiB (a multiplexer "
        "with a range of many ids repeats its signals for each, SG_MUL_VAL_): not used; "
        "name a DBC of this vehicle's messages only"
    )


def _too_large(size: int) -> str:
    return (
        f"dbc: larger than {MAX_DBC_BYTES >> 20} MiB ({size} bytes): no DBC is that large, "
        "and reading it would take the node's memory; name the vehicle's DBC"
    )


def main(argv: list[str]) -> int:
    """`python -m drivers.can.table`: rebuild the shipped DBC's table after editing it;
    `python -m drivers.can.table vehicle.dbc`: write vehicle.dbc.json beside it, the table a
    node uses as it is (its sha256 is the DBC's), so a DBC too big to compile on the node
    (its memory, the service's MemoryMax=) is compiled on a PC."""
    if argv:
        dbc = Path(argv[0])
        out = dbc.with_name(f"{dbc.name}.json")
        raw = json.dumps(compile_dbc(dbc), separators=(",", ":")).encode()
        if len(raw) > MAX_TABLE_BYTES:
            print(_table_too_large(), file=sys.stderr)
            return 1
        replace_atomically(out, raw)
        print(f"wrote {out}: put it beside {dbc.name} on the node", file=sys.stderr)
        return 0
    table = compile_dbc(SHIPPED_DBC)
    SHIPPED_TABLE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {SHIPPED_TABLE} ({len(table['messages'])} messages)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""What a store's place on the disk holds, told without opening it for writing: the
checks a pushed config's places pass (edged/config/pushed.py) and the state store's moves
(edged/outbox/moves.py) share, here below both (a config names the stores; the outbox
reads its config)."""

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

NOTE_SUFFIX = ".state-store"
"""The note beside the config naming the state store the node ran with (moves.py)."""


def noted_store(config_path: Path) -> Path | None:
    """The state store the node ran with, as the note beside its config names it (None: no
    note, or a first line naming no file)."""
    try:
        with open(config_path.with_name(config_path.name + NOTE_SUFFIX), encoding="utf-8") as f:
            line = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(line) if line and "\x00" not in line and Path(line).is_absolute() else None


def same_store(a: Path, b: Path) -> bool:
    """`a` and `b` name one file, however spelt (`x/..`, a linked directory): a store named
    again by another path is no move; carried over itself, the store the node runs on
    was set aside and then removed as the one left.
    Raises OSError when it cannot be told (both there, one not readable)."""
    a, b = a.absolute(), b.absolute()
    if a == b or os.path.realpath(a) == os.path.realpath(b):
        return True
    return a.exists() and b.exists() and a.samefile(b)


def an_outbox(path: Path) -> bool:
    """An outbox's file (its tap journal or marks beside it, or its `msg` table): set aside
    for a state store to take its place, its queued messages (a panic raised offline)
    would be named nowhere."""
    if any(path.with_name(path.name + s).exists() for s in ("-taps", "-marks")):
        return True
    table = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'msg'"
    return has_data(path) and bool(look(path, table))


def has_data(path: Path) -> bool:
    """A regular file with bytes in it (an empty one is no store yet)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def look(path: Path, sql: str) -> int | None:
    """The first column of `sql`'s first row in the database at `path`, read-only (None:
    it cannot be read), as an int."""
    found = first(path, sql)
    return found if found is None or isinstance(found, int) else int(str(found))


def sound(path: Path) -> bool:
    """SQLite's `quick_check` passes on the database at `path`, read-only: a file whose
    header is right may still be garbled past it (a failing SD card's bit flips)."""
    return first(path, "PRAGMA quick_check(1)") == "ok"


def first(path: Path, sql: str) -> object | None:
    """The first column of `sql`'s first row in the database at `path`, read-only (None:
    it cannot be read). The `-wal` and `-shm` files the look makes, empty, are removed."""
    with _no_trace(path):
        for flags in ("mode=ro", "immutable=1"):
            try:
                db = sqlite3.connect(f"{path.absolute().as_uri()}?{flags}", uri=True, timeout=0)
            except sqlite3.Error:
                continue
            try:
                row = db.execute(sql).fetchone()
                return None if row is None else row[0]
            except sqlite3.Error:
                continue
            finally:
                db.close()
        return None


def held(path: Path) -> bool:
    """Another process runs on the database at `path`: it holds it as the node does
    (`locking_mode=EXCLUSIVE`), and a read gets SQLITE_BUSY (False when not known)."""
    with _no_trace(path):
        try:
            db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=0)
        except sqlite3.Error:
            return False
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            return getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")
        finally:
            db.close()
        return False


@contextlib.contextmanager
def _no_trace(path: Path) -> Iterator[None]:
    """The `-wal` and `-shm` files a read-only look at `path` makes, empty, removed after."""
    wal, shm = (path.with_name(path.name + s) for s in ("-wal", "-shm"))
    had = {f: f.exists() for f in (wal, shm)}
    try:
        yield
    finally:
        for file, there in had.items():
            with contextlib.suppress(OSError):
                if not there and (file == shm or file.stat().st_size == 0):
                    file.unlink()

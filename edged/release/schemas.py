"""Versions of what edged keeps on disk, so a release and the one before it can share it.

An update must not strand the data: the new release reads what the old one wrote (it
migrates forward), and after a rollback the old release must still read what the new one
wrote during its trial. Each kind of data ("store") has a schema with three numbers:

- `version`: the format this release writes;
- `compat`: the oldest reader that still reads it. A migration that only adds (a table, a
  column with a default, a state key) keeps `compat`: the previous release reads the file
  and ignores what it does not know. One that renames, drops or reshapes raises it;
- `reads_from`: the oldest format this release can still migrate forward.

SQLite files carry their stamp in a table `edged_schema(store, version, compat)`: the
outbox file holds two stores today, `outbox` (messages, retained copies) and `state` (the
services' state and the per-stream `seq` counters). A file without the table predates the
stamps and is format 0, the same tables as version 1. The config is not stamped: its
version is the release's, and every new release is checked against the running config
(`edged check-config` with the new release) before it is staged.

Before it installs a bundle the running release compares the manifest with this table and
refuses (`incompatible_data`) a release that cannot read the data on disk, or that would
write data this release could not read after a rollback (its `compat` above this release's
`version`). A change that is not additive therefore takes two releases ("expand, then
contract"): one that reads the new format and still writes the old, then one that writes
it. A copy restored at a rollback was the other way, not taken: the outbox's `seq`
counters would go back in time, and a `seq` must never be reused for other content.
"""

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import EdgedError


@dataclass(frozen=True)
class Schema:
    store: str
    version: int
    compat: int
    reads_from: int

    def as_json(self) -> dict[str, int]:
        return {"version": self.version, "compat": self.compat, "reads_from": self.reads_from}


SCHEMAS: dict[str, Schema] = {
    "config": Schema("config", version=1, compat=1, reads_from=1),
    "outbox": Schema("outbox", version=1, compat=1, reads_from=0),
    "state": Schema("state", version=1, compat=1, reads_from=0),
}
"""What this release writes and reads. Change a number only with a migration below."""

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: dict[tuple[str, int], Migration] = {}
"""(store, from_version) -> the step to from_version + 1, run in the same transaction as the
new stamp. Version 0 -> 1 needs none: the tables are the same, only the stamp is new."""

TABLE = """CREATE TABLE IF NOT EXISTS edged_schema (
    store TEXT PRIMARY KEY, version INTEGER NOT NULL, compat INTEGER NOT NULL
)"""


class SchemaError(EdgedError):
    """A data file this release cannot read; the message says what to do."""


def stamped(db: sqlite3.Connection, store: str) -> tuple[int, int]:
    """(version, compat) of `store` in this file; (0, 0) for a file from before the stamps."""
    try:
        row = db.execute(
            "SELECT version, compat FROM edged_schema WHERE store = ?", (store,)
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise  # locked, unreadable: not "from before the stamps"
        return (0, 0)  # written before stamps existed
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def open_stores(
    db: sqlite3.Connection, stores: Iterable[str], where: str
) -> dict[str, tuple[int, int]]:
    """Check that this release reads `stores` in `db`, migrate them forward, stamp them;
    returns the stamps now on disk.

    A file a newer release wrote stays stamped with the newer version (this release writes
    it the way it always did, which that release reads: it kept `compat`)."""
    db.execute(TABLE)
    stores = list(stores)
    for store in stores:
        ours = SCHEMAS[store]
        version, compat = stamped(db, store)
        if compat > ours.version:
            raise SchemaError(
                f"{where}: its {store} data is format {version}, written by a newer edged "
                f"release that this one ({ours.version}) cannot read. The update's rollback "
                "should have put back the copy kept at the switch: start the newer release "
                "again (edged-launcher), or move the file aside to start empty"
            )
        if version < ours.reads_from:
            raise SchemaError(
                f"{where}: its {store} data is format {version}, older than this release "
                f"reads (from {ours.reads_from}): update through an intermediate release"
            )
        if version >= ours.version:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            for step in range(version, ours.version):
                migrate = MIGRATIONS.get((store, step))
                if migrate is not None:
                    migrate(db)
            db.execute(
                "INSERT INTO edged_schema(store, version, compat) VALUES (?, ?, ?) ON CONFLICT"
                "(store) DO UPDATE SET version = excluded.version, compat = excluded.compat",
                (store, ours.version, ours.compat),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return {store: stamped(db, store) for store in stores}


def read_stamps(path: str, stores: Iterable[str]) -> dict[str, tuple[int, int]]:
    """The stamps of a data file, read-only (the file may be missing: nothing yet)."""
    try:
        db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return {store: stamped(db, store) for store in stores}
    except sqlite3.Error:
        return {}
    finally:
        db.close()

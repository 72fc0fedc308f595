"""The state store: what the node must keep even when its outbox is lost.

A small SQLite file beside the outbox (`state.sqlite` by default) holding the services'
state (access lists, who is inside, the open trip, the odometer, dispatch's geofences, the
kiosk's schedule, seen command ids…) and, per stream, the highest `seq` ever written to
the outbox. It lives apart so that a corrupt outbox, moved aside, does not take the access
lists with it, and so that an outbox that went back in time (its WAL lost, the file
emptied or replaced) is noticed: the outbox's counters are then below the marks kept here.

Until this file existed the state lived in the outbox's `kv` table; the first start with a
state store copies it over (and the stream counters), then empties that table.
"""

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.outbox import sqlitefile
from edged.release.schemas import open_stores

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seqs (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Loss:
    """Something stored was lost, found when the files were opened; `alarm/outbox_lost`."""

    cause: str  # corrupt, rolled_back, missing, state_corrupt, state_missing
    reason: str  # for a person
    moved_to: str | None = None
    gaps: dict[str, list[int]] = field(default_factory=dict)  # stream -> [first, last] lost

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cause": self.cause}
        if self.moved_to:
            out["moved_to"] = self.moved_to
        if self.gaps:
            out["gaps"] = self.gaps
        return out


class _Corrupt(sqlite3.DatabaseError):
    """`quick_check` found problems."""


class StateStore:
    """Key-value state and seq high-water marks; used from the outbox's one thread."""

    def __init__(self, path: Path, *, wal_bytes: int) -> None:
        self.path = path
        self.wal_bytes = wal_bytes
        self.db: sqlite3.Connection | None = None
        self.kv: dict[str, str] = {}
        self.seqs: dict[str, int] = {}
        self.durable = True
        self.created = False  # this start made the file (first start, or after a loss)
        self.losses: list[Loss] = []
        self.schema_stamps: dict[str, tuple[int, int]] = {}  # edged.release.schemas

    def open(self) -> None:
        """Open (or create) the file; a corrupt one is moved aside and what can still be
        read from it is kept; a disk that refuses the file leaves the state in memory."""
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self.db = self._connect()
            found = sqlitefile.problems(self.db)
            if found is not None:
                raise _Corrupt(found)
        except (sqlite3.Error, OSError) as exc:
            if self.db is not None:
                self.db.close()
                self.db = None
            if isinstance(exc, _Corrupt) or sqlitefile.is_corrupt(exc):
                self._replace_corrupt(exc)
            elif sqlitefile.is_disk_error(exc):
                copy = sqlitefile.read_only_copy(self.path)
                self._in_memory(exc, copy)
                if copy is None and existed:  # not a mere full disk: what it held is lost
                    self.losses.append(
                        Loss(
                            "state_missing",
                            f"the state store {self.path} cannot be read ({str(exc)[:80]}): "
                            "access lists and the services' state start empty; check the "
                            "file (a directory in its place, a failing SD card)",
                        )
                    )
                return
            else:
                raise sqlitefile.open_error("state store", self.path, exc) from exc
        assert self.db is not None
        try:
            self._load()
        except sqlite3.Error as exc:  # tables unreadable though quick_check passed
            self.db.close()
            self.db = None
            self._replace_corrupt(exc)
            self._load()
        self.created = not existed or self.meta("created") is None
        if self.created and self.durable:
            try:
                self._write_meta("created", "1")
            except sqlite3.Error as exc:
                if not sqlitefile.is_disk_error(exc):
                    raise
                log.error("cannot write the state store %s: %s", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        sqlitefile.make_private(self.path)
        sqlitefile.set_aside_foreign_wal(self.path, "kv")
        db = sqlitefile.connect(self.path, wal_bytes=self.wal_bytes)
        return db

    def _load(self) -> None:
        db = self.db
        assert db is not None
        db.executescript(SCHEMA)
        self.schema_stamps = open_stores(db, ("state",), str(self.path))
        self.kv = dict(db.execute("SELECT key, value FROM kv").fetchall())
        self.seqs = {s: int(n) for s, n in db.execute("SELECT stream, seq FROM seqs")}

    def _replace_corrupt(self, exc: BaseException) -> None:
        salvaged = self._salvage()
        try:
            moved = sqlitefile.move_aside(self.path)
        except OSError as refused:
            # a read-only disk: the corrupt file stays where it is, the node runs with
            # what could be read from it
            log.error(
                "the state store %s is corrupt (%s) and cannot be moved aside (%s); %d "
                "value(s) could still be read from it",
                self.path,
                exc,
                refused,
                len(salvaged),
            )
            self.losses.append(
                Loss(
                    "state_corrupt",
                    f"the state store was corrupt ({str(exc)[:80]}) and the disk refused "
                    f"to move it aside; {len(salvaged)} value(s) read back from it",
                )
            )
            self._in_memory(refused, None)
            if salvaged:
                self.commit(salvaged, {}, sync=False)
            return
        log.error(
            "the state store %s is corrupt (%s): moved aside to %s; %d value(s) could still "
            "be read from it",
            self.path,
            exc,
            moved,
            len(salvaged),
        )
        self.losses.append(
            Loss(
                "state_corrupt",
                f"the state store was corrupt ({str(exc)[:80]}): moved aside to {moved}; "
                f"{len(salvaged)} value(s) read back from it",
                moved_to=str(moved),
            )
        )
        try:
            self.db = self._connect()
            self.db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as again:
            self._in_memory(again, None)
        self.kv.update(salvaged)
        if salvaged and self.db is not None:
            self.commit(salvaged, {}, sync=True)

    def _salvage(self) -> dict[str, str]:
        """Whatever rows of `kv` a corrupt file still gives (read-only, best effort)."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error:
            return {}
        out: dict[str, str] = {}
        try:
            for key, value in db.execute("SELECT key, value FROM kv"):
                out[str(key)] = str(value)
        except sqlite3.Error:
            pass
        finally:
            db.close()
        return out

    def _in_memory(self, exc: BaseException, copy: sqlite3.Connection | None) -> None:
        """Run on a database in memory: `copy` (what the file holds, read from a disk that
        refuses writes: the access lists keep opening doors) or an empty one."""
        log.error(
            "cannot write the state store %s (%s): state is kept in memory (%s) until the "
            "disk takes writes again and edged restarts",
            self.path,
            exc,
            "read from the file" if copy is not None else "starting empty",
        )
        self.durable = False
        if copy is not None:
            self.db = copy
            try:
                self._load()
                return
            except sqlite3.Error as unreadable:
                log.error("cannot read the state store %s: %s", self.path, unreadable)
                copy.close()
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)

    def meta(self, key: str) -> str | None:
        assert self.db is not None
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _write_meta(self, key: str, value: str) -> None:
        assert self.db is not None
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def commit(
        self,
        kv: dict[str, str] | None,
        seqs: dict[str, int],
        *,
        sync: bool,
        meta: dict[str, str] | None = None,
    ) -> None:
        """One transaction: changed state and the new seq marks (never lowered)."""
        db = self.db
        assert db is not None, "state store not open"
        if not kv and not seqs and not meta:
            return
        db.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")
        try:
            if seqs:
                db.executemany(
                    "INSERT INTO seqs(stream, seq) VALUES (?, ?) "
                    "ON CONFLICT(stream) DO UPDATE SET seq = max(seq, excluded.seq)",
                    seqs.items(),
                )
            if kv:
                db.executemany(
                    "INSERT INTO kv(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    kv.items(),
                )
            for key, value in (meta or {}).items():
                self._write_meta(key, value)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        for stream, seq in seqs.items():
            if seq > self.seqs.get(stream, 0):
                self.seqs[stream] = seq

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

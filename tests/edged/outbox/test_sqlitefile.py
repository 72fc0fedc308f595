import os
import sqlite3
import time
from pathlib import Path

import pytest

from bench.memory import sqlite_memory_used
from edged.outbox import sqlitefile


def test_a_connection_gets_the_bounded_page_cache(tmp_path: Path) -> None:
    db = sqlitefile.connect(tmp_path / "x.sqlite", wal_bytes=65536)
    try:
        assert db.execute("PRAGMA cache_size").fetchone()[0] == -sqlitefile.CACHE_KIB
    finally:
        db.close()


def test_reading_a_file_larger_than_the_cache_stays_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    db = sqlitefile.connect(path, wal_bytes=65536)
    db.execute("CREATE TABLE t (b BLOB)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (?)", ((bytes(1000),) for _ in range(4000)))
    db.execute("COMMIT")
    db.close()
    before = sqlite_memory_used()
    db = sqlitefile.connect(path, wal_bytes=65536)
    try:
        assert sqlitefile.problems(db) is None  # quick_check reads every page: ~4 MB
        grown = sqlite_memory_used() - before
    finally:
        db.close()
    # the cache's pages and their headers, the schema, the WAL index: not the whole file
    assert grown < 1.5 * sqlitefile.CACHE_KIB * 1024, f"{grown / 1e6:.2f} MB"


def a_foreign_wal_beside(path: Path, table: str) -> bytes:
    """A `-wal` of another database (one table `table`) put beside `path`; its bytes."""
    other = path.with_name(f"other-{table}.sqlite")
    db = sqlite3.connect(other, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(f"CREATE TABLE {table} (a)")
    data = other.with_name(other.name + "-wal").read_bytes()
    db.close()
    path.with_name(path.name + "-wal").write_bytes(data)
    return data


def test_foreign_wals_set_aside_in_the_same_second_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    db = sqlitefile.connect(path, wal_bytes=65536)
    db.execute("CREATE TABLE msg (a)")
    db.close()
    time.sleep(1 - time.time() % 1)  # both within the next second
    kept = []
    for table in ("first", "second"):
        wal = a_foreign_wal_beside(path, table)
        target = sqlitefile.set_aside_foreign_wal(path, "msg")
        assert target is not None
        kept.append(wal)
    found = sorted(f.read_bytes() for f in tmp_path.glob("outbox.sqlite-wal.foreign-*"))
    assert found == sorted(kept), "each foreign WAL is kept under a name of its own"


def test_a_copy_left_by_a_node_killed_as_it_read_is_removed_by_the_next_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node killed while it read a database through a copy on a RAM disk (a read-only
    card, a state store carried) left the copy there, an outbox's size of RAM, until the
    boot; the next read removes old ones of ours, nothing else."""
    base = tmp_path / "shm"
    base.mkdir()
    monkeypatch.setattr(sqlitefile, "SCRATCH_DIRS", (str(base),))
    left, young, other = base / "edged-ro-abcd_123", base / "edged-ro-young123", base / "mine"
    for d in (left, young, other):
        d.mkdir()
        (d / "outbox.sqlite").write_bytes(b"x" * 4096)
    for d in (left, other):
        os.utime(d, (1, 1))
    db = tmp_path / "state.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE kv (k)")
    c.close()
    copy = sqlitefile.read_only_copy(db)
    assert copy is not None
    copy.close()
    assert sorted(p.name for p in base.iterdir()) == ["edged-ro-young123", "mine"]


def test_a_copy_being_read_is_kept_when_the_clock_jumped_since_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NTP moved a Pi's clock forward by years while a node read a 128 MiB outbox through a
    copy on a RAM disk (tens of seconds on a Pi Zero): the copy looked an hour old to another
    node's read, which removed it, and the first started with an empty outbox in memory,
    its queued messages unsent. The reader's lock keeps it."""
    import subprocess
    import sys
    import threading

    base = tmp_path / "shm"
    base.mkdir()
    monkeypatch.setattr(sqlitefile, "SCRATCH_DIRS", (str(base),))
    db = tmp_path / "outbox.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE msg (m)")
        c.execute("INSERT INTO msg VALUES ('panic')")
    c.close()
    started, go = threading.Event(), threading.Event()
    copy_database = sqlitefile.copy_database

    def slow(path: Path, copy: Path) -> None:
        copy_database(path, copy)
        started.set()
        go.wait(5)

    monkeypatch.setattr(sqlitefile, "copy_database", slow)
    got: list[sqlite3.Connection | None] = []
    reader = threading.Thread(target=lambda: got.append(sqlitefile.read_only_copy(db)))
    reader.start()
    try:
        assert started.wait(5)
        (scratch,) = list(base.iterdir())
        os.utime(scratch, (time.time() - 3600,) * 2)  # what the jump makes of its time
        code = (
            "import sys, pathlib\nfrom edged.outbox import sqlitefile\n"
            "sqlitefile.clear_scratch(pathlib.Path(sys.argv[1]))\n"
        )
        root = Path(__file__).resolve().parents[3]
        subprocess.run([sys.executable, "-c", code, str(base)], cwd=root, check=True)
    finally:
        go.set()
        reader.join(5)
    (copy,) = got
    assert copy is not None
    assert copy.execute("SELECT m FROM msg").fetchall() == [("panic",)]
    copy.close()

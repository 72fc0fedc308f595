from pathlib import Path

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

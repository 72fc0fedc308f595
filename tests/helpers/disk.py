"""A real small filesystem to fill up (`hil.disk`), and a copy of the node's files to read
behind it: the outbox holds its database exclusively, so tests read what it has on disk
from a copy."""

import contextlib
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.outbox.sqlitefile import copy_database
from hil.disk import fill, small_disk

__all__ = ["fill", "mounted_tmpfs", "read_only", "rows_on_disk"]


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs for the test; the test is skipped where it cannot be mounted (not root)."""
    with small_disk(where, size) as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        yield disk


def rows_on_disk(
    database: Path, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[Any, ...]]:
    """Run `sql` on a copy of `database` and its WAL, as a recovery after a crash would."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / database.name
        copy_database(database, copy)
        db = sqlite3.connect(copy)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


@contextlib.contextmanager
def read_only(disk: Path) -> Iterator[Path]:
    """`disk` remounted read-only, as the kernel leaves an SD card after an ext4 error
    (EROFS on every write, reads still work); read-write again at the end."""
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True)
    try:
        yield disk
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True, capture_output=True)

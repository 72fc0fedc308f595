"""A real small filesystem to fill up, and a copy of the node's files to read behind it.

A full disk is made, not mocked: a tmpfs of a few hundred KiB mounted for the test (root
only: the test is skipped elsewhere), filled by a file written to the last block. The
outbox holds its database exclusively, so tests read what it has on disk from a copy."""

import contextlib
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.outbox.sqlitefile import companions


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, name: str = "filler") -> Path:
    """Write until the filesystem refuses; returns the file (unlink it to free the disk)."""
    filler = disk / name
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as f:
        while True:  # the last partial block
            f.write(b"\0" * 64)
    return filler


def rows_on_disk(
    database: Path, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[Any, ...]]:
    """Run `sql` on a copy of `database` and its WAL, as a recovery after a crash would."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / database.name
        for src, dst in zip(companions(database), companions(copy), strict=True):
            if src.exists() and not src.name.endswith("-shm"):
                shutil.copyfile(src, dst)
        db = sqlite3.connect(copy)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

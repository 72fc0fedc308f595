"""A real small filesystem to fill up: the full disk of the fault scenarios and tests.

A tmpfs of a few MiB mounted for the occasion (root only: where it cannot be mounted the
caller says so and skips), filled by a file written to its last block."""

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path | None]:
    """A tmpfs at `where`, unmounted at the end; None when it cannot be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        yield None
        return
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

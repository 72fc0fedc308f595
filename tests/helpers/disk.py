"""A real small filesystem to fill up (`hil.disk`), and a copy of the node's files to read
behind it: the outbox holds its database exclusively, so tests read what it has on disk
from a copy."""

import contextlib
import fcntl
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.outbox.sqlitefile import copy_database
from hil.disk import fill, small_disk

__all__ = [
    "ext4_error",
    "fifo_let_go_after",
    "fill",
    "mounted_tmpfs",
    "power_back",
    "power_cut",
    "read_only",
    "rows_on_disk",
    "sd_card",
]

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2  # stop now: neither dirty pages nor the journal written


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


@contextlib.contextmanager
def sd_card(where: Path, size_mib: int = 32) -> Iterator[Path]:
    """An ext4 filesystem on a loop device mounted at `where`, a card that `power_cut` can
    cut; skipped where it cannot be made (not root, no loop devices)."""
    where.mkdir(parents=True, exist_ok=True)
    image = where.with_name(where.name + ".img")
    with image.open("wb") as f:
        f.truncate(size_mib << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True)
    mounted = made.returncode == 0 and _mount(image, where)
    if not mounted:
        image.unlink()
        pytest.skip("cannot mount an ext4 image here (needs root and loop devices)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
        image.unlink()


def _mount(image: Path, where: Path) -> bool:
    done = subprocess.run(["mount", "-o", "loop", str(image), str(where)], capture_output=True)
    return done.returncode == 0


def power_cut(card: Path) -> None:
    """The power goes: the filesystem stops at once (EXT4_IOC_SHUTDOWN without flushing
    its journal), so only what was fsync'd is on the card; every later call on it fails
    with EIO. Call `power_back` once the processes using it are gone."""
    fd = os.open(card, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, EXT4_GOING_FLAGS_NOLOGFLUSH.to_bytes(4, "little"))
    finally:
        os.close(fd)


def ext4_error(card: Path) -> None:
    """The card's filesystem hits an error and the kernel remounts it read-only at once
    (`errors=remount-ro`, as Raspberry Pi OS mounts its root), files open for writing
    included: every write EROFS, reads still work, until fsck and a reboot."""
    source = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", str(card)], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["mount", "-o", "remount,errors=remount-ro", str(card)], check=True)
    Path(f"/sys/fs/ext4/{os.path.basename(source)}/trigger_fs_error").write_text("1")


def power_back(card: Path) -> None:
    """The card mounted again, as at boot (ext4 replays its journal). What is mounted is a
    copy of the card as the cut left it: the cut filesystem may live on in a mount
    namespace made meanwhile (another test's), and the same image mounted again would
    give it back, still cut."""
    image = card.with_name(card.name + ".img")
    subprocess.run(["umount", "-l", str(card)], check=True, capture_output=True)
    copy = image.with_name(image.name + ".new")
    shutil.copyfile(image, copy)
    os.replace(copy, image)
    assert _mount(image, card), "the card did not mount again"
    probe = card / ".power-back"
    probe.write_bytes(b"")
    probe.unlink()


@contextlib.contextmanager
def fifo_let_go_after(fifo: Path, seconds: float) -> Iterator[None]:
    """A FIFO at `fifo` whose reader, if one opened it and waits for a writer (the code
    before the fix), is let go after `seconds` by a writer opening it: the test then sees
    a late answer, not a hang."""
    os.mkfifo(fifo)

    def unblock() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(seconds, unblock)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()

"""A serial device as a USB adapter presents it: a raw pty, behind a stable symlink.

The GPS, slcan and PN532 emulators all plug and replug this way; the link is swapped
atomically (a staged symlink renamed over it), so a driver never sees it missing while
a device is replugged, only pointing at the new pty."""

import contextlib
import os
import tty
from pathlib import Path


def open_raw_pty() -> tuple[int, int, str]:
    """(master, slave, slave's path), raw: no echo or line editing before the driver sets
    its own mode; the master non-blocking for the emulator's loop."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def staged_link(link: Path, target: str) -> Path:
    """A symlink to `target` beside `link`; `os.replace(staged, link)` then swaps it in."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    return tmp

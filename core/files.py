"""Replacing a file whole, for the node's small state files (caches, records, configs)."""

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path


def replace_atomically(
    path: Path, data: str | bytes, *, mode: int | None = None, sync: bool = False
) -> None:
    """Write `data` to a new file beside `path`, then rename it over `path`: a reader (the
    node's next start, NetworkManager, a reboot) sees the old content or the new, never half.

    The temporary file is created `O_EXCL | O_NOFOLLOW` under an unguessable name, so a link
    or file planted in the directory is neither followed nor written through; the rename
    replaces whatever had `path`'s name. Its mode is what `open()` gives (0o666 less the
    umask) unless `mode` is set: then it is created private to its owner and given `mode`
    before any byte is written, so a secret is never readable by others, not even through a
    descriptor opened in passing. `sync`: the data reaches the disk before the rename.
    Raises `OSError`, with the temporary file removed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    created = 0o666 if mode is None else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, created)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data.encode() if isinstance(data, str) else data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def head_of(path: Path, size: int) -> bytes | None:
    """The first `size` bytes of the regular file at `path` (None: nothing there); raises
    OSError for anything else found there, never opened: a FIFO or a serial port, read like
    a file, waits for a writer for ever (a check on the event loop stood the node still),
    and opening a device may act (a watchdog armed, a board reset by DTR). Opened without
    waiting, and told again by the file opened, should it have been swapped meanwhile."""

    def regular(mode: int) -> None:
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"no regular file ({stat.filemode(mode)})", str(path))

    try:
        regular(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    try:
        regular(os.fstat(fd).st_mode)
        return os.read(fd, size)
    finally:
        os.close(fd)

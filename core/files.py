"""Replacing a file whole, for the node's small state files (caches, records, configs)."""

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

LEFT_AFTER_S = 600.0
"""A temporary file of `replace_atomically` this old is one a write killed midway left (a
write takes milliseconds; one stuck on a failing card this long has failed anyway)."""


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
    Raises `OSError`, with the temporary file removed. The temporary files of earlier
    writes to `path` killed midway are removed first (`clear_left`)."""
    clear_left(path.parent, re.escape(path.name))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    created = 0o666 if mode is None else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, created)
    try:
        with os.fdopen(fd, "wb") as f:
            # held until renamed: `clear_left` of another process leaves a write in progress
            # whatever its age says (a clock that jumped years forward at a boot's NTP sync)
            with contextlib.suppress(OSError):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()  # all of it in the file before its name is `path`'s
            if sync:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def clear_left(directory: Path, names: str, older_than_s: float = LEFT_AFTER_S) -> list[Path]:
    """Remove the temporary files `replace_atomically` left in `directory` for the files
    whose names match the regular expression `names` (a write killed midway: the OOM
    killer, the watchdog, a power cut), returned: each a few KB, never cleaned, they
    gathered beside the config and the caches at each kill. Only what is provably such a
    file: its name exactly `.NAME.` and 16 hex digits, a regular file (no link followed)
    of this process's user, untouched for `older_than_s` and not locked by its writer
    (never a write in progress, whatever the clock did since it began). Never raises: one
    that cannot be removed is logged."""
    pattern = re.compile(rf"\.(?:{names})\.[0-9a-f]{{16}}")
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            if now - st.st_mtime < older_than_s or _being_written(entry.path):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove %s, left by a write killed midway: %s", entry.path, exc)
    if removed:
        log.warning(
            "removed %d temporary file(s) left by writes killed midway in %s: %s",
            len(removed),
            directory,
            ", ".join(p.name for p in removed),
        )
    return removed


def _being_written(path: str) -> bool:
    """A writer holds the file's lock (`replace_atomically` until its rename): a write in
    progress, however old its time says it is. Told without blocking; True when the file
    cannot be opened to tell (kept: not provably left)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system without locks: its age alone tells, as before
    finally:
        os.close(fd)  # the lock goes with it: a write beginning now takes its own name
    return False


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

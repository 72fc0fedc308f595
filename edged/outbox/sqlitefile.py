"""Opening the node's SQLite files so that a bad disk degrades the node and never stops it.

Both files (the outbox and the state store) are opened the same way:

- created mode 0600 before SQLite touches them (SQLite creates `-wal` with the database
  file's mode), and set back to 0600 when found wider: they hold card refs and lists;
- `locking_mode=EXCLUSIVE` before WAL mode, so SQLite keeps the WAL index in memory and
  never needs a `-shm` file: an existing database opens on a disk that is full (a `-shm`
  cannot be created there: SQLITE_IOERR_SHMSIZE), and a second process cannot open the
  same outbox by mistake;
- the WAL bounded: checkpointed once it passes `wal_bytes` and truncated back to it;
- the page cache bounded to CACHE_KIB (SQLite's default is 2 MB a connection, filled at
  open by `quick_check`, which reads every page): a drain's working set (the head of each
  class, a commit's dirty pages) is a few hundred KB, and the OS caches the file anyway;
- a `-wal` left beside it by another database set aside first (`set_aside_foreign_wal`);
- checked with `PRAGMA quick_check`; a corrupt file is renamed aside (kept for forensics,
  with its `-wal`): the newest `KEEP_ASIDE` of a file's, older ones deleted (`prune_aside`);
- on a disk that refuses writes (an SD card the kernel remounted read-only after an ext4
  error) read into memory: SQLite cannot read a WAL database it may not write (it needs a
  lock or a `-shm`), so the file and its WAL are copied to a RAM disk and read from there.
"""

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
from pathlib import Path

from core.errors import EdgedError

log = logging.getLogger(__name__)

PAGE = 4096
CACHE_KIB = 1024
"""Page cache of a connection: 256 pages, room for the dirty pages of a commit of 2,000 door
events (~120 pages). A bigger commit (2,000 payloads of 1 KB) writes some of its pages to
the WAL before COMMIT: still one transaction, and the default 2 MB did as much for 2 KB
payloads. Against that default: -1 MB of the node's RSS, and the outbox's CPU per message
unchanged (measured with 1024, 512 and 256 KiB; issue #19)."""
COMPANIONS = ("-wal", "-shm", "-journal")
KEEP_ASIDE = 3
"""Files set aside of one database, per reason (`corrupt`, `foreign`), kept for forensics:
the newest ones. A card that fails at each boot corrupts the outbox at each start, and each
copy kept was up to the outbox's hard cap (128 MiB): kept for ever, they filled the card
within days of restarts, and a full card stays full (nothing else of edged deletes them)."""
SCRATCH_DIRS = ("/dev/shm", "/run")
"""RAM disks to read a copy of a database from when its own disk refuses writes (the unit's
`PrivateTmp` puts /tmp on the SD card); the system's temporary directory comes last."""


def companions(path: Path) -> list[Path]:
    """The database and the files SQLite keeps beside it."""
    return [path, *(path.with_name(path.name + s) for s in COMPANIONS)]


def is_corrupt(exc: BaseException) -> bool:
    """SQLite says the file is not a database or a page is malformed."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


def is_disk_error(exc: BaseException) -> bool:
    """The disk refused: full, read-only, failing, or the file cannot be created."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EIO)


def make_private(path: Path) -> None:
    """Create `path` mode 0600 if missing; narrow an existing file and its companions."""
    if path.parent != path and not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for file in companions(path):
        try:
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except FileNotFoundError:
            pass


def connect(path: Path | str, *, wal_bytes: int) -> sqlite3.Connection:
    """One exclusive WAL connection (see the module docstring); raises sqlite3.Error."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=2.0)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA cache_size={-CACHE_KIB}")
        db.execute(f"PRAGMA journal_size_limit={int(wal_bytes)}")
        db.execute(f"PRAGMA wal_autocheckpoint={max(1, int(wal_bytes) // PAGE)}")
    except BaseException:
        db.close()
        raise
    return db


def read_only_copy(path: Path) -> sqlite3.Connection | None:
    """An in-memory database holding what `path` (and its WAL) holds, for a disk that
    refuses writes; None when there is no such file or it cannot be read."""
    try:
        if path.stat().st_size == 0:
            return None
    except OSError:
        return None
    for base in (*SCRATCH_DIRS, tempfile.gettempdir()):
        clear_scratch(Path(base))
        try:
            scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=base))
        except OSError:
            continue
        held = _lock(scratch)  # the copy is in use: no other node's `clear_scratch` takes it
        try:
            return _copy_to_memory(path, scratch / path.name)
        except (sqlite3.Error, OSError) as exc:
            log.error("cannot read %s from a copy in %s: %s", path, base, exc)
            if not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
                return None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if held is not None:
                os.close(held)
    return None


def _lock(directory: Path | str) -> int | None:
    """`directory` locked (a descriptor to close), or None: held by another (BlockingIOError
    raised), or a file system without locks (None: its age alone tells)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:
        os.close(fd)
        return None
    return fd


SCRATCH_PREFIX = "edged-ro-"
SCRATCH_LEFT_S = 600.0
"""A copy's directory this old was left by a node killed as it read (a copy takes seconds)."""


def clear_scratch(base: Path, older_than_s: float = SCRATCH_LEFT_S) -> None:
    """Remove the copies a node killed while it read one left in `base` (`edged-ro-*`,
    mkdtemp's): on a RAM disk (/dev/shm, /run) each held an outbox's size (up to its
    128 MiB cap) of a Pi Zero's 512 MB until the next boot. Only directories of this
    user, by that name, untouched for `older_than_s` and not locked by its reader (never
    another node's copy being made, whatever the clock did since). Never raises."""
    pattern = re.compile(rf"{re.escape(SCRATCH_PREFIX)}[A-Za-z0-9_]{{8}}")
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        if now - st.st_mtime < older_than_s:
            continue
        try:  # its reader's lock: a copy being read, whatever the clock did since it began
            held = _lock(entry.path)
        except OSError:
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            if held is not None:
                os.close(held)
        log.warning("removed %s, a copy left by a node killed as it read it", entry.path)


def copy_database(path: Path, copy: Path) -> None:
    """`path` and its WAL (and rollback journal) copied to `copy`, private: what a reader
    of the copy sees is what the file holds, committed frames of the WAL included. The
    `-shm` index is not copied: SQLite rebuilds it from the WAL."""
    for src, dst in zip(companions(path), companions(copy), strict=True):
        if src.exists() and not src.name.endswith("-shm"):
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)


def _copy_to_memory(path: Path, copy: Path) -> sqlite3.Connection:
    copy_database(path, copy)
    source = sqlite3.connect(copy, isolation_level=None)
    try:
        source.execute("PRAGMA locking_mode=EXCLUSIVE")
        found = problems(source)
        if found is not None:
            raise sqlite3.DatabaseError(f"corrupt: {found}")
        memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        source.backup(memory)
    finally:
        source.close()
    return memory


def set_aside_foreign_wal(path: Path, table: str) -> Path | None:
    """A `-wal` beside `path` that belongs to another database is renamed aside (returned);
    None when there is none. SQLite cannot tell (https://www.sqlite.org/howtocorrupt.html,
    2.4: mispairing database files and journals) and would apply its pages to this file,
    then checkpoint them into it: an outbox or state store replaced by a stranger's pages
    for good. Told apart by `table`: in the file alone (`immutable`: read without its WAL)
    and gone once the WAL is read, which none of edged's writes can do."""
    wal = path.with_name(path.name + "-wal")
    shm = path.with_name(path.name + "-shm")
    try:
        if path.stat().st_size == 0 or wal.stat().st_size == 0:
            return None
    except OSError:
        return None
    had_shm = shm.exists()
    try:
        alone = _has_table(f"file:{path}?immutable=1", table)
        with_wal = _has_table(f"file:{path}?mode=ro", table)
    finally:
        if not had_shm:  # the read-only look made one: the node's connection needs none
            with contextlib.suppress(OSError):
                shm.unlink()
    if not (alone and with_wal is False):
        return None
    target = aside_name(wal, "foreign")
    try:
        os.replace(wal, target)
    except OSError as exc:
        log.error("%s belongs to another database, and cannot be moved aside: %s", wal, exc)
        return None
    prune_aside(wal, "foreign", target)
    log.error(
        "%s belonged to another database (%s is not in it): moved aside to %s, and %s is "
        "opened without it; if the files were copied from elsewhere, check that they match",
        wal,
        table,
        target,
        path,
    )
    return target


def _has_table(uri: str, table: str) -> bool | None:
    """Whether the database at `uri` has `table`; None when it cannot be read."""
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return None
    try:
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return found is not None


def problems(db: sqlite3.Connection) -> str | None:
    """What `quick_check` found wrong, or None when the file is sound."""
    rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)").fetchall()]
    return None if rows == ["ok"] else "; ".join(rows)[:300]


def move_aside(path: Path) -> Path:
    """Rename a corrupt database and its companions to `NAME.corrupt-UTC`; returns the new
    name of the database (kept for forensics, the newest `KEEP_ASIDE`: `prune_aside`)."""
    target = aside_name(path, "corrupt", COMPANIONS)
    for file, suffix in zip(companions(path), ("", *COMPANIONS), strict=True):
        if file.exists():
            os.replace(file, target.with_name(target.name + suffix))
    prune_aside(path, "corrupt", target, COMPANIONS)
    return target


def prune_aside(
    path: Path, why: str, newest: Path, companions: tuple[str, ...] = (), keep: int = KEEP_ASIDE
) -> list[Path]:
    """Delete the files `aside_name(path, why)` named (with their `companions`) but the
    newest `keep`, `newest` (the one just set aside) always among them; returns those
    deleted. Oldest by the time each was set aside (a rename sets its ctime; a chmod, chown
    or hard link by ops since sets it too, and keeps that copy a while longer). Both ctime
    and the name's stamp come from the system clock: on a Pi that started without a synced
    clock in the past, an older copy may pass for a newer one (the one just set aside is
    kept whatever the clock). A file that cannot be deleted is left, and said."""
    head = f"{path.name}.{why}-"
    try:
        found = [
            f
            for f in path.parent.iterdir()
            if f.name.startswith(head) and not f.name.endswith(companions)
        ]
    except OSError as exc:
        log.error("cannot list %s to bound the files set aside: %s", path.parent, exc)
        return []

    def set_aside_at(f: Path) -> tuple[float, str]:
        try:
            return (f.stat().st_ctime, f.name)
        except OSError:
            return (float("-inf"), f.name)

    older = sorted((f for f in found if f != newest), key=set_aside_at)
    doomed = older[: max(0, len(older) - (keep - 1))]
    for f in doomed:
        for s in ("", *companions):
            try:
                f.with_name(f.name + s).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("cannot delete %s, an older copy set aside: %s", f.name + s, exc)
    if doomed:
        log.warning(
            "deleted %d older cop%s of %s set aside (%s), keeping the newest %d: %s",
            len(doomed),
            "y" if len(doomed) == 1 else "ies",
            path.name,
            why,
            keep,
            ", ".join(f.name for f in doomed),
        )
    return doomed


def aside_name(path: Path, why: str, companions: tuple[str, ...] = ()) -> Path:
    """`NAME.WHY-UTC`, or `NAME.WHY-UTC-N` when that name (or one of its `companions`) is
    taken: two files set aside in the same second keep both (never one over the other)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = path.with_name(f"{path.name}.{why}-{stamp}"), 1
    while any(target.with_name(target.name + s).exists() for s in ("", *companions)):
        n += 1
        target = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
    return target


def open_error(what: str, path: Path, exc: BaseException) -> EdgedError:
    """Neither corrupt nor a refusing disk: the node cannot start, say what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        hint = "another process holds it: is edged already running with this config?"
    else:
        hint = "check that the directory exists and is writable by edged"
    return EdgedError(f"cannot open the {what} at {path}: {exc}; {hint}")

"""Room for the outbox: its directory is writable, and the disk can hold its caps.

The outbox is where messages wait through a day without network. If its directory is not
writable the daemon cannot start; if the disk fills before the soft cap, SQLite fails
with "database or disk full" exactly when the node has been offline longest. The caps
count the outbox's WAL; the state store, the tap journal and the counters' file need room
beside it.
"""

import os
import pwd
import stat
from pathlib import Path

from edged.config.models import OutboxConfig
from edged.config.stores import same_store
from edged.doctor.check import Check, fail, ok, size, warn
from edged.outbox import moves
from edged.outbox.journal import SIZE as JOURNAL_SIZE
from edged.outbox.marks import SLOT

SECTION = "storage"
MARKS_SIZE = 2 * SLOT
STATE_MIN = 256 * 1024  # a state store with small lists; a provisioned one counts as it is


def check_outbox(config: OutboxConfig, config_path: Path | None = None) -> list[Check]:
    """The directory (or the one the daemon will create it in) and the free space; the
    state store counted is the one the node runs on (the note beside its config), which a
    moved `state_path` may not be yet; an outbox a move left on the card is named."""
    note = moves.note_of(config_path) if config_path is not None else None
    path = Path(config.path)
    directory = path.parent
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    me = _user(os.geteuid())
    if not os.access(existing, os.W_OK | os.X_OK):
        owner = _owner(existing)
        missing = "" if existing == directory else f" ({directory} does not exist yet)"
        return [
            fail(
                SECTION,
                "outbox directory",
                f"{me} cannot write in {existing}{missing} ({owner})",
                f"`sudo install -d -o {me} -m 750 {directory}` (the user running edged owns "
                "the outbox directory)",
            )
        ]
    for file in _files(path):
        if file.exists() and not os.access(file, os.R_OK | os.W_OK):
            return [
                fail(
                    SECTION,
                    "outbox directory",
                    f"{me} cannot read and write {file} ({_owner(file)})",
                    f"`sudo chown {me} {file}`: the outbox belongs to the user running edged",
                )
            ]
    if existing == directory:
        where = ok(SECTION, "outbox directory", f"{directory} is writable by {me}")
    else:
        where = ok(
            SECTION,
            "outbox directory",
            f"{directory} does not exist yet; edged creates it ({existing} is writable by {me})",
        )
    state, moved = in_use(config, note)
    if config_path is not None:
        moved += _outbox_left(moves.outbox_note_of(config_path), path)
    return [where, _space(config, existing, path, state), *moved]


def _outbox_left(note: Path, configured: Path) -> list[Check]:
    """A moved `[outbox] path` (a `config.set`, its rollback) leaves the old outbox, its
    unsent messages in it, never sent nor removed: up to `max_bytes` on the card each."""
    return [
        warn(
            SECTION,
            "outbox left",
            f"{left} ({size(_held(left))}, {moves.unsent(left)} message(s) unsent): an "
            f"outbox the node ran with before the config moved it to {configured}",
            "stop edged and move it back in place of the new one to send its messages, or "
            "remove it and its -wal, -shm, -taps and -marks files",
        )
        for left in moves.outboxes_left(note, configured)
    ]


def _held(left: Path) -> int:
    return sum(f.stat().st_size for f in moves.outbox_files(left) if f.is_file())


def in_use(config: OutboxConfig, note: Path | None) -> tuple[Path, list[Check]]:
    """The state store the node runs on, and a line when it is not the configured one: a
    config (`config.set`) that moved it to a place the node could not write keeps the node
    on the old store, which the config no longer names, and its size was not counted."""
    configured = Path(config.state_file).absolute()
    last = moves.last_store(note) if note is not None else None
    try:
        holds = (
            last is not None and not same_store(last, configured) and last.stat().st_size > 0
        )
    except OSError:
        holds = False
    if last is None or not holds:
        return configured, []
    line = warn(
        SECTION,
        "state store",
        f"the node runs on {last} ({size(last.stat().st_size)}); the config names {configured}",
        "the node carries the store to the configured place at its next start; if it "
        "stays here (the log says why: a place it cannot write), make that place "
        "writable or put the old path back in the config",
    )
    return last, [line]


def _files(path: Path) -> list[Path]:
    """The database, SQLite's WAL-mode companions, the tap journal and the counters."""
    return [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-taps", "-marks"))]


def _space(config: OutboxConfig, existing: Path, path: Path, state: Path) -> Check:
    """The caps count the outbox's WAL; beside it the disk must hold the tap journal, the
    counters' file and the state store (its size now, at least STATE_MIN, plus its WAL)."""
    fs = os.statvfs(existing)
    free = fs.f_bavail * fs.f_frsize
    used = sum(f.stat().st_size for f in _files(path) if f.is_file())
    state_used = sum(f.stat().st_size for f in _files(state)[:3] if f.is_file())
    same_disk = _device(state) == _device(existing)
    extra = JOURNAL_SIZE + MARKS_SIZE
    if same_disk:
        used += state_used
        extra += max(state_used, STATE_MIN) + config.wal_bytes
    room = free + used  # what edged's files can grow to
    detail = (
        f"{size(free)} free on {existing}, outbox {size(used)}; caps {size(config.max_bytes)} "
        f"(max_bytes), {size(config.hard_max_bytes)} (hard_max_bytes), WAL included; "
        f"{size(extra)} more for the state store, tap journal and counters"
    )
    if room < config.max_bytes + extra:
        return fail(
            SECTION,
            "outbox space",
            detail,
            "the disk fills before the outbox reaches max_bytes: free space (`du -xh -d1 /` "
            "shows what uses it) or lower [outbox] max_bytes and hard_max_bytes",
        )
    if room < config.hard_max_bytes + extra:
        return warn(
            SECTION,
            "outbox space",
            detail,
            "the disk fills before hard_max_bytes: events would fail with disk full instead "
            "of the outbox-full alarm; free space or lower [outbox] hard_max_bytes",
        )
    return ok(SECTION, "outbox space", detail)


def _device(path: Path) -> int | None:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return path.stat().st_dev
    except OSError:
        return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _owner(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        return str(exc.strerror)
    return f"{stat.filemode(st.st_mode)} {_user(st.st_uid)}"

"""The state store follows the node when its config moves it (`[outbox] path`, `state_path`).

The state store holds what protects the node's signed inputs: the command ids it spent
(`security.seen_ids`, no replay of a signed `door.unlock`) and the access lists' version
(no older signed list played back). A config that names another place for it, pushed by
`config.set` or edited by a technician, would start the node on an empty store there, and
whoever recorded signed commands of the last minutes or an old signed list could play them
again. So the node notes, beside its config file (`NAME.state-store`, a place a config
cannot move), which state store it last ran with; at a start whose config names another,
that one is carried to the new place first (what ops expect of a move: the access lists,
the open trip and the odometer come along too), and the old file is removed once the note
names the new one; each step of the move is noted first (a second line naming the copy
it may leave), so a node killed midway removes that copy at its next start (kept while
the store in use is not there: its disk not mounted). The copy is read back from the
disk and compared with the store before it is named (a failing card garbles what it is
given: the node then keeps the old one), and the old one is kept while the copy in use
fails its check (found corrupt as it opened; at a start after a kill, before the node ran
on the copy, the old one is taken again and carried anew). A store that
cannot be carried (the new disk refuses it) is not left behind: the node keeps the old
one, and says so. To start a node on an empty state store
on purpose, remove the file (the note names it, or the config does).
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import EdgedError
from core.files import head_of, replace_atomically
from edged.config.stores import NOTE_SUFFIX, an_outbox, held, same_store
from edged.config.stores import has_data as _has_data
from edged.config.stores import look as _look
from edged.config.stores import sound as _sound
from edged.outbox import sqlitefile

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"


LOCK_SUFFIX = ".moving"
LOCK_WAIT_S = 30.0


def hold(config_path: Path, wait_s: float = LOCK_WAIT_S) -> int | None:
    """A lock beside the config (`NAME.moving`, a descriptor to close) held from the move
    to the stores' opening: a second edged started with the same config (by hand, as the
    unit restarts) read the note mid-move and removed the copy the first was renaming into
    place, or the store it had just carried, as the copy a killed move left; it then
    waits, and finds the store moved and the outbox held. None (the move unguarded, as
    before) when the config's directory takes no file. Raises EdgedError after `wait_s`."""
    path = config_path.with_name(config_path.name + LOCK_SUFFIX)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.warning("cannot lock %s (%s): a second edged could start mid-move", path, exc)
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise EdgedError(
                    f"{path} is held by another edged starting with this config: stop it "
                    "(one edged a config)"
                ) from None
            time.sleep(0.05)
        except OSError as exc:  # a file system without locks
            os.close(fd)
            log.warning("cannot lock %s (%s): a second edged could start mid-move", path, exc)
            return None


def note_of(config_path: Path) -> Path:
    """Where the node notes the state store it ran with: beside its config file."""
    return config_path.with_name(config_path.name + NOTE_SUFFIX)


def last_store(note: Path) -> Path | None:
    """The state store the note names (None: no note, or one unreadable)."""
    return _read(note)[0]


def _read(note: Path) -> tuple[Path | None, Path | None]:
    """The note's first two lines: the store in use, and a copy a move left that is to go
    (a move's copy not yet named the store, or the store it was carried from). A third,
    `ran` and the leftover's identity, once the node ran on the store (`_ran`)."""
    try:
        lines = note.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None, None
    paths = [Path(t) if _a_path(t) else None for t in lines[:2]]
    used, leftover, *_ = [*paths, None, None]
    return used, leftover


def _text(used: Path, leftover: Path | None, ran: bool) -> str:
    if leftover is None:
        return f"{used}\n"
    if not ran:
        return f"{used}\n{leftover}\n"
    return f"{used}\n{leftover}\n" + " ".join((RAN, *_identity(leftover))) + "\n"


def _ran(note: Path) -> tuple[bool, tuple[str, ...]]:
    """Whether the node ran on the store the note names since the move that left its
    second line (a note of an older edged, two lines: not known, taken as not), and the
    identity then noted of that leftover (`_identity`; empty: none noted)."""
    try:
        lines = note.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False, ()
    words = lines[2].split() if len(lines) > 2 else []
    return words[:1] == [RAN], tuple(words[1:])


def _identity(path: Path) -> tuple[str, ...]:
    """What tells the file at `path` from another put at its name since (a disk swapped or
    formatted anew, another node's store on it): inode, size and time of its last change,
    none of which the old store sees once the node runs on its copy. Empty: not there."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return ()
    return (str(st.st_ino), str(st.st_size), str(st.st_mtime_ns))


def _a_path(text: str) -> bool:
    """A note's line that names a file: absolute, no NUL (which the path's checks raise
    ValueError for, stopping the start)."""
    return bool(text.strip()) and "\x00" not in text and Path(text).is_absolute()


RAN = "ran"
"""The note's third line once the node ran on the store it names: the `leftover` kept named
(its disk refused its removal) is then older than the store, never to be taken back."""


def _note(note: Path, used: Path, leftover: Path | None = None, ran: bool = False) -> None:
    """The note names `used`, and the `leftover` to remove, on the disk with its directory
    (the config may be on another file system than the stores); `ran`: the node ran on
    `used` (settled), so the leftover holds less than it does."""
    text = _text(used, leftover, ran)
    replace_atomically(note, text, sync=True)
    try:
        _sync_dir(note.parent)
    except OSError as exc:  # the note is written: a power cut alone could lose it
        log.error("cannot sync %s, which notes the state store's place: %s", note.parent, exc)


def _clear(note: Path, outbox: Path, sound: bool | None = None) -> Path | None:
    """The copy a move killed midway left (the note's second line): removed, each time
    the store in use is another, and it is neither an outbox's file nor another kind of
    file (it is named before it exists: a file of another kind there is not the copy).
    A node killed at each move (the OOM killer, the watchdog) left a whole store each
    time, kept for ever. Kept while the store in use is not `sound` (None: checked here):
    the store a move carried from may be the only intact one (a failing card). Returns
    the leftover when its disk refused its removal (to stay named), else None."""
    used, leftover = _read(note)
    if leftover is None:
        return None
    # garbled from its first page (any page of a failing card is hit alike): no SQLite
    # header, but there, so not a disk unmounted; a store that fails its check, below
    garbled = used is not None and _has_data(used) and not _a_store(used)
    if used is None or not (garbled or _a_store(used)):
        # the store in use is not there (its disk not mounted, the note's line unreadable):
        # the leftover may be the only store holding the spent ids, the one the config names
        log.warning("the state store %s is not there: %s, left by a move, is kept", used, leftover)
        return None
    try:
        # an outbox besides the one in use: the old store's file became the outbox, which
        # moved again since (its messages unsent)
        kept = same_store(leftover, outbox) or same_store(leftover, used)
        kept = kept or an_outbox(leftover)
    except OSError:
        kept = True  # not known: kept
    ran, was = _ran(note)
    now = _identity(leftover)
    if ran and now and now != was:
        # named since a start long ago (its disk refused the removal): what is there now
        # is another file (the disk swapped, formatted anew), not provably the move's; no
        # identity noted, the file was gone then (a companion of it stayed): one put since
        log.warning(
            "%s, the store a move left, is another file now (its disk changed since): "
            "left alone, no longer to be removed",
            leftover,
        )
        return None
    a_copy = leftover.name.endswith(".carried")  # a copy being made: never the only one
    if not a_copy and not (_sound(used) if sound is None else sound):
        # the old store is taken back only while the node never ran on the copy: once it
        # did, the old one lacks the ids spent and the lists taken since (a look that
        # failed once on a slow card traded them for the day of the move's)
        if sound is None and not ran and not kept and _a_store(leftover) and _sound(leftover):
            _back(note, used, leftover)
            return None
        log.error(
            "the state store %s fails its check (corrupt, or the card would not read): %s, "
            "the store it was carried from, is kept, not removed; %s",
            used,
            leftover,
            f"it holds only what the node had the day of the move (the node ran on {used} "
            "since): put it back only if the store cannot be opened"
            if ran
            # named in the config instead, it is set aside as replaced: the node carries the
            # store it runs on (the note's) to the place the config names
            else f"to run on what it holds, stop edged, remove {used} and {used}-wal, and "
            f"copy it to {used} (not named in the config: it would be set aside)",
        )
        return None
    removing = not kept and _sqlite_or_absent(leftover)
    if removing:
        _remove(leftover)
    _remove(_carrying(leftover))  # the copy killed before its rename, as it was named
    if (removing and _there(leftover)) or _there(_carrying(leftover)):
        return leftover  # its disk refused (remounted read-only): named until it is gone
    return None


def _there(store: Path) -> bool:
    """A file of the store at `store` is there (True when it cannot be told)."""
    try:
        return any(os.path.lexists(f) for f in sqlitefile.companions(store))
    except (OSError, ValueError):
        return True


def _back(note: Path, used: Path, carried_from: Path) -> None:
    """The copy a move named the store (`used`), garbled before the node ran on it (a
    failing card, found at a start after a kill): the store it was `carried_from`, intact
    and holding all the copy held (the move's last step, the old store's removal, was not
    taken, so the node never ran on the copy), is the one in use again; the copy is set
    aside as corrupt (the newest few kept) and the move tried again."""
    try:
        _note(note, carried_from)
    except OSError as exc:
        log.error("cannot note %s as the state store again (%s): both kept", carried_from, exc)
        return
    log.error(
        "the state store %s, carried from %s, fails its check (corrupt; a failing card?) "
        "and the node has not run on it: it goes on with %s, which holds what the copy "
        "did, and carries it again",
        used,
        carried_from,
        carried_from,
    )
    try:
        sqlitefile.move_aside(used)
    except OSError as exc:  # the carry sets it aside, or keeps the node where it is
        log.error("cannot set the corrupt copy %s aside: %s", used, exc)


def follow(note: Path, configured: Path, outbox: Path) -> Path:
    """The state store to open: `configured`, with the one the note names carried there
    first when it is another (the note then names the copy); that old one when it cannot
    be carried or the note cannot say so (nothing lost).

    Each step is noted before it is taken, so that a node killed at any of them comes back
    on the store the note names and removes the copy it left: the copy being made (the
    note names the old store, and the copy's temporary file to go), the copy renamed into
    place (the old store, and the copy to go), the copy in use (the copy, and the old
    store to go; `settle` removes it)."""
    configured = configured.absolute()
    _clear(note, outbox)
    last = last_store(note)
    if last is None or not _has_data(last):
        return configured
    if not _a_store(last):  # a key, the config: opened as a store, set aside as corrupt
        log.error(
            "%s, which the note %s names as the state store, is no SQLite database: "
            "left alone, the node opens the state store at %s",
            last,
            note,
            configured,
        )
        return configured
    try:
        if same_store(last, configured):
            return configured
    except OSError as exc:  # not known: no move, the store as it runs
        log.error("cannot tell whether %s is the state store %s: %s", configured, last, exc)
        return last
    if an_outbox(configured):
        log.error(
            "the config moved the state store from %s to %s, which holds an outbox (its "
            "messages unsent): the node keeps the store at %s and leaves the outbox in "
            "place; name a new file for the state store",
            last,
            configured,
            last,
        )
        return last
    if held(last):  # carried now, the copy misses what that one spends from then on
        raise EdgedError(
            f"the config moves the state store from {last} to {configured}, but {last} is "
            "held by another process (an edged already running with the config before its "
            "edit?): not carried, both left as they are; stop that edged first"
        )
    try:
        _note(note, last, _carrying(configured))
    except OSError as exc:
        _unnoted(last, configured, note, exc)
        return last
    try:
        _carry(last, configured, lambda: _note(note, last, configured))
    except (ReadBack, sqlite3.Error, OSError) as exc:
        if isinstance(exc, ReadBack):
            why = f"but the copy written there read back wrong ({exc}): the card may be failing"
            what = "It tries again at the next start: check the card (dmesg)"
        else:
            why = f"which cannot be written ({exc})"
            what = "Make the new place writable"
        log.error(
            "the config moved the state store from %s to %s, %s; the node keeps the one at "
            "%s (its spent command ids, access lists, trips). %s, or put the old path back "
            "in the config",
            last,
            configured,
            why,
            last,
            what,
        )
        with contextlib.suppress(OSError):  # else the next start's _clear removes it
            _note(note, last, _copy_left(configured))
        return last
    # the note names the copy before the node runs on it: a copy the note did not name
    # would be carried over again at the next start, with the commands spent meanwhile
    try:
        _note(note, configured, last)
    except OSError as exc:
        _unnoted(last, configured, note, exc)
        _remove(configured)
        return last
    log.warning("the config moved the state store: carried from %s to %s", last, configured)
    return configured


def shared(note: Path, used: Path, configured: Path, outbox: Path) -> None:
    """Raises EdgedError when the state store to open at `used` (what `follow` gave) is the
    file the config names as the `outbox`: opened twice, the second opening found it held
    ("database is locked") and the node restarted for ever, naming neither file's role.
    Neither file is touched: both hold what the node had."""
    try:
        one = same_store(used, outbox)
    except OSError:
        return
    if not one:
        return
    swapped = an_outbox(configured)
    raise EdgedError(
        f"the config names {outbox} as the outbox ([outbox] path), but that is the state "
        f"store the node ran on (noted in {note})"
        + (
            f", and names {configured} as the state store (state_path), which holds the "
            "outbox: the two places are swapped. Put them back: "
            f'[outbox] path = "{configured}", state_path = "{outbox}"'
            if swapped
            else f'; name another file for the outbox, or put state_path = "{outbox}"'
        )
        + "; both files are left as they are"
    )


def _unnoted(last: Path, configured: Path, note: Path, exc: OSError) -> None:
    log.error(
        "the config moved the state store from %s to %s, but %s cannot say so (%s): "
        "the node keeps the one at %s; free room beside the config",
        last,
        configured,
        note,
        exc,
        last,
    )


def settle(note: Path, used: Path, outbox: Path, sound: bool = True) -> None:
    """After the store at `used` opened on the disk: the note names it, and the store it
    was carried from is removed, unless the config made it the `outbox`'s file or the
    store at `used` was not `sound` when opened (found corrupt, set aside: the one it was
    carried from is then kept, and named in the log). Never fails the start."""
    # what a move left that its disk refused to remove stays named, to go at a start it can
    left = _clear(note, outbox, sound) if last_store(note) == used else None
    try:
        noted = note.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        noted = None
    if noted != _text(used, left, True):
        try:
            _note(note, used, left, ran=True)
        except OSError as exc:
            log.error("cannot note the state store's place in %s: %s", note, exc)


def _carrying(configured: Path) -> Path:
    """The copy's name until it is whole: one of ours, never a file of someone else's."""
    return configured.with_name(f".{configured.name}.carried")


def _copy_left(configured: Path) -> Path | None:
    """The copy's name while a file of it is still there (a disk that refused its removal:
    remounted read-only, cut), to be removed at a start it is back; named nowhere, it was
    left there for good once the config went back to the old place."""
    return _carrying(configured) if _there(_carrying(configured)) else None


def _remove(store: Path) -> None:
    """`store` and its companions, each that is there (a read-only disk refuses even the
    removal of a file it does not hold: only those there are said)."""
    for file in sqlitefile.companions(store):
        if not os.path.lexists(file):
            continue
        try:
            file.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot remove %s, of the state store %s: %s", file, store, exc)


def _a_store(path: Path) -> bool:
    """A SQLite database with data at `path` (never a FIFO or a device opened)."""
    try:
        return _has_data(path) and head_of(path, len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _sqlite_or_absent(path: Path) -> bool:
    """A SQLite database or nothing at `path`; False for anything else (a FIFO or a device
    never opened: a FIFO would hold the start until a writer came)."""
    try:
        return head_of(path, len(SQLITE_HEADER)) in (None, b"", SQLITE_HEADER)
    except OSError:
        return False


class ReadBack(OSError):
    """The copy of a state store, read back from the disk, is not what was written."""


def _carry(last: Path, configured: Path, renaming: Callable[[], None]) -> None:
    """`last` copied to `configured` (its WAL's committed frames included), on the disk
    and read back from it before the rename, `renaming` called just before it; a file
    found at `configured` is set aside, not overwritten. Raises ReadBack when the copy
    read back is not sound or not what `last` holds."""
    copy = sqlitefile.read_only_copy(last)
    if copy is None:
        raise OSError(f"cannot read {last}")
    configured.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmp = _carrying(configured)
    for file in sqlitefile.companions(tmp):
        file.unlink(missing_ok=True)
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        target = sqlite3.connect(tmp, isolation_level=None)
        try:
            copy.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one file to rename
        finally:
            target.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
            with contextlib.suppress(OSError):  # the read-back comes from the card
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        _read_back(tmp, copy)
        if not _sqlite_or_absent(configured):  # the config file, a key: not ours to move
            raise OSError(f"{configured} is a file but no SQLite database")
        if any(f.exists() for f in sqlitefile.companions(configured)):
            aside = sqlitefile.aside_name(configured, "replaced", sqlitefile.COMPANIONS)
            for file, suffix in zip(
                sqlitefile.companions(configured), ("", *sqlitefile.COMPANIONS), strict=True
            ):
                if file.exists():
                    os.replace(file, aside.with_name(aside.name + suffix))
            log.warning("%s was there already: set aside as %s", configured, aside.name)
        renaming()
        os.replace(tmp, configured)
        _sync_dir(configured.parent)
    finally:
        copy.close()
        for file in sqlitefile.companions(tmp):
            file.unlink(missing_ok=True)


def _read_back(tmp: Path, copy: sqlite3.Connection) -> None:
    """The copy at `tmp` as the disk gives it back: sound, and holding what `copy` does
    (a bit flipped in a row's value passes `quick_check`). A failing card garbles what it
    is given; the old store is removed only once its copy reads back whole."""
    try:
        written = sqlite3.connect(f"{tmp.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReadBack(f"cannot open the copy: {exc}") from exc
    try:
        found = sqlitefile.problems(written)
        if found is not None:
            raise ReadBack(f"corrupt: {found}")
        if _digest(written) != _digest(copy):
            raise ReadBack("its rows differ from the store's")
    except sqlite3.Error as exc:
        raise ReadBack(f"cannot read the copy: {exc}") from exc
    finally:
        written.close()


def _digest(db: sqlite3.Connection) -> bytes:
    """What the database holds, schema and rows, as a digest."""
    h = hashlib.sha256()
    for line in db.iterdump():
        h.update(line.encode("utf-8", "surrogatepass") + b"\n")
    return h.digest()


def _sync_dir(directory: Path) -> None:
    """A rename in `directory` on the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


OUTBOX_NOTE_SUFFIX = ".outbox"


def outbox_note_of(config_path: Path) -> Path:
    """Where the node notes the outbox it ran with, and one a move left: beside its config."""
    return config_path.with_name(config_path.name + OUTBOX_NOTE_SUFFIX)


MAX_LEFT = 8
"""Outboxes left that a note names at most (each is counted at each start)."""


def outboxes_left(note: Path, configured: Path) -> list[Path]:
    """The outboxes the node ran with that the config no longer names, still on the card: a
    moved `[outbox] path` (a `config.set`, or its rollback) leaves its unsent messages in
    it, up to `max_bytes` with the tap journal beside it, never sent nor removed. Each
    move's is kept named, not only the last one's: a panic queued before two moves is
    still somewhere."""
    try:
        lines = note.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    left: list[Path] = []
    for text in lines[: MAX_LEFT + 1]:
        path = Path(text)
        if not _a_path(text) or not _has_data(path):
            continue
        if not _same_or_unknown(path, configured) and not any(
            _same_or_unknown(path, p) for p in left
        ):
            left.append(path)
    return left[:MAX_LEFT]


def note_outbox(note: Path, used: Path) -> list[Path]:
    """After the outbox at `used` opened: the note names it, and those left by moves while
    they are there (returned, and logged at each start). Never fails the start."""
    used = used.absolute()
    left = outboxes_left(note, used)
    for path in left:
        log.error(
            "the config moved the outbox from %s to %s: %s message(s) unsent stay in %s "
            "(%d bytes), not sent from there; stop edged and move it back to send them, "
            "or remove it",
            path,
            used,
            unsent(path),
            path,
            sum(f.stat().st_size for f in outbox_files(path) if f.is_file()),
        )
    text = "".join(f"{p}\n" for p in (used, *left))
    try:
        noted = note.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        noted = None
    if noted != text:
        try:
            replace_atomically(note, text, sync=True)
        except OSError as exc:
            log.error("cannot note the outbox's place in %s: %s", note, exc)
    return left


def _same_or_unknown(a: Path, b: Path) -> bool:
    try:
        return same_store(a, b)
    except OSError:
        return True


def outbox_files(path: Path) -> list[Path]:
    """The outbox's database and the files beside it (SQLite's, the tap journal, marks)."""
    beside = (path.with_name(path.name + s) for s in ("-taps", "-marks"))
    return [*sqlitefile.companions(path), *beside]


def unsent(path: Path) -> int | str:
    """How many messages wait in the outbox at `path` ("?" when it cannot be read). Read
    in place, never copied (an outbox is up to `max_bytes`, a Pi Zero has 512 MB); one
    whose WAL cannot be read in place (held by another process) is counted without it, at
    once: SQLite's busy wait (5 s) held each start for each outbox left."""
    found = _look(path, "SELECT count(*) FROM msg")
    return "?" if found is None else found

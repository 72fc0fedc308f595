"""The journal: a tap's record is in the kernel before the door moves, an alarm's as it
is raised (with the state that goes with it: the panic service's memory of its alarm).

The outbox commits in batches (`flush_interval_ms`), so a message waits up to one interval
before it is in SQLite. For most messages that window only delays them; for a tap it would
mean a door that opened, a fare that was charged, and no record if the process dies in
those milliseconds (`kill -9`, the OOM killer, the watchdog). So a tap is first written
here — one `pwrite` into a file allocated in advance, so it works on a full disk too —
before the relay is commanded; the outbox writer folds it into SQLite with its batch and
records, in the same transaction, how far the journal is folded. At the next start, every
record beyond that mark is put into the outbox with its original bytes (same epoch and
`seq`: a copy that did go out is a duplicate dispatch drops).

The file is mapped into memory and a record is copied into the mapping: the page is the
kernel's page cache, so it survives the process, not a power cut. (A `pwrite` did the same
but changed the file's mtime each time, which on ext4 waits behind any journal commit in
progress — the outbox's own fsyncs: bench.tap saw the decision's p99 grow by 1–3 ms.)
With `[outbox] journal_sync = true` an `msync` of the record's pages follows, so it
survives a power cut too, at the price of that call in the decision (bench.tap measures
both).

A mapping has a fault a `pwrite` has not: touching a page the kernel cannot give is
SIGBUS, the daemon killed, not an error (the moment a door opens). Two ways it could:
the file cut short under the mapping (another process truncating it), and a page the
kernel evicted (a node short of memory) read back from a card that fails. So the mapping
is locked in memory (`mlock`: 256 KiB, within the default 8 MiB `RLIMIT_MEMLOCK`): its
pages are never read from the card again; and each write first checks the file's size
(`fstat`, about a microsecond): a file cut short is written out to its size again (its
unfolded records are in the outbox's batch anyway), or the journal stops. Where the lock
is refused, records are written with `pwrite` instead (safe, slower at p99).

Records are `MAGIC, length, crc32, rn` then a JSON body; `rn` counts up across restarts.
The write position goes back to the start whenever everything written is folded; a reader
finds records by their magic and checksum, and keeps only those beyond the folded mark.

The state a message carries (an alarm's: the panic service's memory of it) is a record of
its own (`STATE_MAGIC`, the same `rn`), written just before the message's in the same copy
into the mapping, and taken back with it (`read`). Not a tenth field in the message's body: a
release before it unpacks exactly nine and skips any other record, and a release on trial
that dies right after a panic press is rolled back to that release at once
(edged.release.schemas: the release before must read what its successor wrote). It looks
for `MAGIC` only, so it reads the alarm and passes over its state.
"""

import ctypes
import errno
import json
import logging
import mmap
import os
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.libc import LIBC
from edged.topics import Priority

log = logging.getLogger(__name__)

MAGIC = b"EJR1"
STATE_MAGIC = b"EJS1"
"""A message's state (module doc): unknown to a release before it, which skips it."""
HEAD = struct.Struct("<4sIIQ")  # magic, body length, crc32 of the body, record number
SIZE = 256 * 1024
ALARM_ROOM = 32 * 1024
"""The journal's last bytes take alarms only (some 30 panic records with their state). A
record is folded only by a commit that succeeds: on a full card with the link down none
does, and a service day of taps (~600) filled the whole file, so the panic pressed then was
in memory only and a power cut lost it, with the panic service's memory of it."""


def _lock(mm: mmap.mmap, size: int) -> int:
    """mlock the mapping (its pages stay in memory: module doc); 0, or the errno."""
    buf = (ctypes.c_char * size).from_buffer(mm)
    try:
        done = LIBC.mlock(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size))
    finally:
        del buf  # an exported buffer would keep the mapping from closing
    return 0 if done == 0 else ctypes.get_errno() or errno.EIO


@dataclass(frozen=True, slots=True)
class Record:
    rn: int
    topic: str
    stream: str
    seq: int
    prio: int
    qos: int
    retain: bool
    latest_only: bool
    created: int
    payload: bytes
    state: dict[str, str] | None = None
    """State-store values (key: JSON text) set with this message (`Outbox.put_nowait`):
    an alarm comes back with the service's memory of it (its own record: module doc)."""

    def body(self) -> bytes:
        """The message's record: nine fields, as every release reads it (module doc)."""
        fields: list[Any] = [
            self.topic,
            self.stream,
            self.seq,
            self.prio,
            self.qos,
            self.retain,
            self.latest_only,
            self.created,
            self.payload.decode(),
        ]
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()

    def state_body(self) -> bytes | None:
        """Its state's record (`STATE_MAGIC`), None when it carries none."""
        if not self.state:
            return None
        return json.dumps(self.state, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def parse(cls, rn: int, body: bytes, state_body: bytes | None = None) -> "Record":
        t, st, sq, p, q, r, lo, c, b, *more = json.loads(body)
        # a tenth field: the state as edged wrote it for a while, in the message's record
        state = json.loads(state_body) if state_body is not None else (more[0] if more else None)
        if state is not None and not (
            isinstance(state, dict) and all(isinstance(v, str) for v in state.values())
        ):
            raise ValueError("a journal record's state is not a map of JSON texts")
        return cls(
            rn,
            str(t),
            str(st),
            int(sq),
            int(p),
            int(q),
            bool(r),
            bool(lo),
            int(c),
            b.encode(),
            state,
        )


class Journal:
    """One file, written from the event loop (one `pwrite`), folded by the outbox writer."""

    def __init__(self, path: Path, *, sync: bool = False, size: int = SIZE) -> None:
        self.path = path
        self.sync = sync
        self.size = size
        self.fd: int | None = None
        self.mm: mmap.mmap | None = None  # None with `fd`: written with pwrite (module doc)
        self.pos = 0
        self.next_rn = 1
        self._unfolded: deque[int] = deque()  # rns written and not yet folded, in order
        self.full = 0  # records that did not fit: stored only through the outbox batch
        self.errors = 0

    def open(self, folded: int) -> list[Record]:
        """Open or create the file; returns the records beyond `folded`, in order."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error(
                "cannot open the tap journal %s (%s): taps rely on the outbox alone", self.path, exc
            )
            # a disk remounted read-only still reads: the taps it holds are not lost
            return self._beyond(folded, read_only(self.path, self.size))
        data = b""
        try:
            data = os.pread(fd, self.size, 0)
            if len(data) < self.size:  # new (or cut short): allocate it now, while we can
                os.pwrite(fd, b"\0" * (self.size - len(data)), len(data))
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            log.error(
                "cannot prepare the tap journal %s (%s): taps rely on the outbox alone",
                self.path,
                exc,
            )
            return self._beyond(folded, data)
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        try:
            mm = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except (OSError, ValueError) as exc:
            os.close(fd)
            log.error(
                "cannot map the tap journal %s (%s): taps rely on the outbox alone", self.path, exc
            )
            return self._beyond(folded, data)
        refused = _lock(mm, self.size)
        if refused:
            mm.close()
            log.warning(
                "cannot lock the tap journal %s in memory (%s): written with pwrite instead "
                "(a little slower at p99); raise LimitMEMLOCK to 1M or more",
                self.path,
                os.strerror(refused),
            )
        else:
            self.mm = mm
        self.fd = fd
        return self._beyond(folded, data)

    def _beyond(self, folded: int, data: bytes) -> list[Record]:
        """The records of `data` beyond `folded`, in order; numbering goes on above all."""
        records = sorted(read(data), key=lambda r: r.rn)
        self.next_rn = max([folded, *(r.rn for r in records)]) + 1
        return [r for r in records if r.rn > folded]

    def write(self, record: "Record") -> bool:
        """Append one record; False when it could not be (full, or the disk failed)."""
        fd, mm = self.fd, self.mm
        if fd is None:
            return False
        body = record.body()
        blob = HEAD.pack(MAGIC, len(body), zlib.crc32(body), record.rn) + body
        state = record.state_body()
        if state is not None:  # first: a message is taken back only with its state
            blob = HEAD.pack(STATE_MAGIC, len(state), zlib.crc32(state), record.rn) + state + blob
        if not self._unfolded:
            self.pos = 0
        end = self.pos + len(blob)
        if end > (self.size if record.prio == Priority.ALARM else self.size - ALARM_ROOM):
            self.full += 1
            return False
        if mm is None:
            return self._pwrite(fd, blob, end, record.rn)
        if not self._whole(fd, mm):
            return False
        mm[self.pos : end] = blob
        if self.sync:
            start = self.pos - self.pos % mmap.ALLOCATIONGRANULARITY
            try:
                mm.flush(start, end - start)
            except OSError as exc:
                self.errors += 1
                log.error("tap journal sync failed: %s", exc)
                return False
        self.pos = end
        self._unfolded.append(record.rn)
        return True

    def _pwrite(self, fd: int, blob: bytes, end: int, rn: int) -> bool:
        """The record written without the mapping (its lock was refused: module doc)."""
        try:
            os.pwrite(fd, blob, self.pos)
            if self.sync:
                os.fdatasync(fd)
        except OSError as exc:
            self.errors += 1
            log.error("tap journal write failed: %s", exc)
            return False
        self.pos = end
        self._unfolded.append(rn)
        return True

    def _whole(self, fd: int, mm: mmap.mmap) -> bool:
        """The file still spans the mapping: a page past its end is SIGBUS. One cut short
        (another process truncated it) is written out to its size again, or the journal
        stops (taps rely on the outbox alone)."""
        try:
            have = os.fstat(fd).st_size
            if have >= self.size:
                return True
            log.error(
                "the tap journal %s was cut short to %d bytes by another process: written "
                "out to its size again (taps not yet in the outbox are in its next commit)",
                self.path,
                have,
            )
            os.pwrite(fd, b"\0" * (self.size - have), have)
            os.fsync(fd)
            refused = _lock(mm, self.size)  # its pages are back in the file
            if refused:
                raise OSError(refused, os.strerror(refused))
        except OSError as exc:
            self.errors += 1
            log.error(
                "the tap journal %s stops (%s): taps rely on the outbox alone", self.path, exc
            )
            self.close()
            return False
        return True

    def take_rn(self) -> int:
        rn, self.next_rn = self.next_rn, self.next_rn + 1
        return rn

    def folded(self, rns: "list[int]") -> None:
        """These records are in SQLite (or were refused there, and counted)."""
        done = set(rns)
        self._unfolded = deque(rn for rn in self._unfolded if rn not in done)

    @property
    def mark(self) -> int:
        """Every record up to this rn is folded."""
        return (self._unfolded[0] if self._unfolded else self.next_rn) - 1

    def mark_with(self, rns: "list[int]") -> int:
        """The mark once `rns` are folded too: records written before them and not folded
        (a batch the disk refused, kept in memory) stay beyond it, for the next start."""
        done = set(rns)
        rest = [rn for rn in self._unfolded if rn not in done]
        return (rest[0] if rest else self.next_rn) - 1

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_only(path: Path, size: int) -> bytes:
    """What a file holds, when it cannot be opened for writing (nothing if unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.pread(fd, size, 0)
    except OSError as exc:
        log.error("cannot read %s: %s", path, exc)
        return b""
    finally:
        os.close(fd)


def read(data: bytes) -> list[Record]:
    """Every intact record in `data`, wherever it starts (stale ones included), each
    message with the state record written just before it (same `rn`), if intact. Copied
    in that order, a process killed mid-copy leaves the message torn, never its state
    alone; a message whose state the card damaged since still comes back, without it."""
    out: list[Record] = []
    state: tuple[int, bytes] | None = None  # the intact state record just before: (rn, body)
    at = _next_magic(data, 0)
    while at >= 0:
        nxt = at + 1
        if at + HEAD.size <= len(data):
            magic, length, crc, rn = HEAD.unpack_from(data, at)
            end = at + HEAD.size + length
            body = data[at + HEAD.size : end]
            intact = end <= len(data) and zlib.crc32(body) == crc
            carried = state[1] if state is not None and state[0] == rn else None
            state = None
            if intact and magic == STATE_MAGIC:
                state, nxt = (rn, body), end
            elif intact:
                try:
                    out.append(Record.parse(rn, body, carried))
                    nxt = end
                except (ValueError, TypeError, UnicodeDecodeError):
                    pass
        at = _next_magic(data, nxt)
    return out


def _next_magic(data: bytes, start: int) -> int:
    """Where the next record of either kind begins at or after `start` (-1: none)."""
    found = [at for at in (data.find(MAGIC, start), data.find(STATE_MAGIC, start)) if at >= 0]
    return min(found, default=-1)


def record_fields(record: Record) -> dict[str, Any]:
    return {"rn": record.rn, "stream": record.stream, "seq": record.seq}

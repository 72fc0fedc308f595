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

Records are `MAGIC, length, crc32, rn` then a JSON body; `rn` counts up across restarts.
The write position goes back to the start whenever everything written is folded; a reader
finds records by their magic and checksum, and keeps only those beyond the folded mark.
"""

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

log = logging.getLogger(__name__)

MAGIC = b"EJR1"
HEAD = struct.Struct("<4sIIQ")  # magic, body length, crc32 of the body, record number
SIZE = 256 * 1024


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
    an alarm and the service's memory of it come back together, or not at all."""

    def body(self) -> bytes:
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
        if self.state:
            fields.append(self.state)
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def parse(cls, rn: int, body: bytes) -> "Record":
        t, st, sq, p, q, r, lo, c, b, *more = json.loads(body)
        state = more[0] if more else None
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
        self.mm: mmap.mmap | None = None
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
            self.mm = mmap.mmap(fd, self.size)
        except (OSError, ValueError) as exc:
            os.close(fd)
            log.error(
                "cannot map the tap journal %s (%s): taps rely on the outbox alone", self.path, exc
            )
            return self._beyond(folded, data)
        self.fd = fd
        return self._beyond(folded, data)

    def _beyond(self, folded: int, data: bytes) -> list[Record]:
        """The records of `data` beyond `folded`, in order; numbering goes on above all."""
        records = sorted(read(data), key=lambda r: r.rn)
        self.next_rn = max([folded, *(r.rn for r in records)]) + 1
        return [r for r in records if r.rn > folded]

    def write(self, record: "Record") -> bool:
        """Append one record; False when it could not be (full, or the disk failed)."""
        mm = self.mm
        if mm is None:
            return False
        body = record.body()
        blob = HEAD.pack(MAGIC, len(body), zlib.crc32(body), record.rn) + body
        if not self._unfolded:
            self.pos = 0
        end = self.pos + len(blob)
        if end > self.size:
            self.full += 1
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
    """Every intact record in `data`, wherever it starts (stale ones included)."""
    out: list[Record] = []
    at = data.find(MAGIC)
    while at >= 0:
        nxt = at + 1
        if at + HEAD.size <= len(data):
            _, length, crc, rn = HEAD.unpack_from(data, at)
            end = at + HEAD.size + length
            body = data[at + HEAD.size : end]
            if end <= len(data) and zlib.crc32(body) == crc:
                try:
                    out.append(Record.parse(rn, body))
                    nxt = end
                except (ValueError, TypeError, UnicodeDecodeError):
                    pass
        at = data.find(MAGIC, nxt)
    return out


def record_fields(record: Record) -> dict[str, Any]:
    return {"rn": record.rn, "stream": record.stream, "seq": record.seq}

"""The seq counters in a small file allocated in advance, so they are kept on a full disk.

The outbox's counters are written with its commits, and the state store's high-water marks
with the state store's; on a disk that refuses writes neither moves, while the node goes on
stamping (messages go out from memory, the direct `alarm/outbox_full`, births and wills).
So the counters are also written here, after every batch, committed or not: two slots of
a file allocated when the outbox is created, written in place (a `pwrite` needs no new
block), each with a checksum and a generation; the newest intact slot wins. At the next
start the counters go on from the highest of the outbox, the state store and this file, so
`seq` does not go back even after a restart on a full disk (the epoch changes anyway).

Like the tap journal, a `pwrite` survives the process, not a power cut: the last batch's
stamps may then be counted again, in a new epoch.
"""

import json
import logging
import os
import struct
import zlib
from pathlib import Path

from edged.outbox.journal import read_only

log = logging.getLogger(__name__)

MAGIC = b"EMK1"
HEAD = struct.Struct("<4sIIQ")  # magic, body length, crc32 of the body, generation
SLOT = 16 * 1024


class Marks:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.generation = 0
        self._too_big = False

    def open(self) -> dict[str, int]:
        """Open or create the file; the counters of its newest intact slot."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error("cannot open %s (%s): seq counters kept with the outbox only", self.path, exc)
            # a disk remounted read-only still reads: its counters keep seq from going back
            return _newest(read_only(self.path, 2 * SLOT))[1]
        data = b""
        try:
            data = os.pread(fd, 2 * SLOT, 0)
            if len(data) < 2 * SLOT:
                os.pwrite(fd, b"\0" * (2 * SLOT - len(data)), len(data))
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            log.error(
                "cannot prepare %s (%s): seq counters kept with the outbox only", self.path, exc
            )
            return _newest(data)[1]
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        self.fd = fd
        self.generation, counters = _newest(data)
        return counters

    def write(self, seqs: dict[str, int]) -> None:
        """Write the counters to the older slot (no fsync: see the module docstring)."""
        if self.fd is None:
            return
        body = json.dumps(seqs, separators=(",", ":"), sort_keys=True).encode()
        if HEAD.size + len(body) > SLOT:
            if not self._too_big:
                self._too_big = True
                log.error(
                    "%d streams: too many for %s; counters kept with the outbox only",
                    len(seqs),
                    self.path,
                )
            return
        generation = self.generation + 1
        blob = HEAD.pack(MAGIC, len(body), zlib.crc32(body), generation) + body
        try:
            os.pwrite(self.fd, blob, (generation % 2) * SLOT)
        except OSError as exc:
            log.error("cannot write %s: %s", self.path, exc)
            return
        self.generation = generation

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _newest(data: bytes) -> tuple[int, dict[str, int]]:
    """The generation and counters of the newest intact slot (0 and none without one)."""
    best: tuple[int, dict[str, int]] = (0, {})
    for slot in (0, 1):
        found = _read(data[slot * SLOT : (slot + 1) * SLOT])
        if found is not None and found[0] > best[0]:
            best = found
    return best


def _read(slot: bytes) -> tuple[int, dict[str, int]] | None:
    if len(slot) < HEAD.size:
        return None
    magic, length, crc, generation = HEAD.unpack_from(slot)
    body = slot[HEAD.size : HEAD.size + length]
    if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
        return None
    try:
        raw = json.loads(body)
        return generation, {str(k): int(v) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError):
        return None

"""SQLite (WAL) outbox: durable before sent, deleted only when the broker acknowledged it.

One connection, used from one worker thread, so the event loop never waits on the SD card.
Writes gather for `flush_interval_ms` and commit together (SD cards wear); a caller of
`put` is told its message is durable only after that commit. Some wait longer, as nobody
needs them committed sooner (each commit writes whole pages: docs/storage.md):
acknowledgements alone (ACK_COMMIT_S), samples and health while the link is down
(OFFLINE_GATHER_S), samples for their share of `[broker] batch_s` while it is up
(`sample_gather_s`). A commit holding an alarm, an
event or a trip waits for the card (`synchronous=FULL`: it survives a power cut, and so do
the commits before it, in the same WAL); one of samples and health alone does not
(`NORMAL`: it survives the process, and a power cut only once the kernel wrote it), nor
does the state store's commit of state alone, unless someone waits for it (`sync_state`:
a signed command's spent id, on the card before the command acts). A tap
is also written to the tap journal before the door moves, and an alarm as soon as it is
raised (`edged.outbox.journal`).

Sending order: priority class first (alarm > events > state > trips > samples > health);
within a class, messages younger than `live_window_s` (the live lane) go before older ones
(the backlog), each lane in write order (`edged.outbox.lanes`). So a live tap is not stuck
behind a day of queued positions, on a steady link or a flapping one; dispatch orders by
`seq`.

When the outbox passes its soft cap, samples are thinned by a rule that keeps an even
spread: at thinning level L only samples whose `seq` is a multiple of 2**L are kept, both
those stored and those arriving. Past the hard cap, events are refused with
`OutboxFullError` (counted, and `on_pressure` raises an alarm); alarms still have a reserve.
Replies to commands are refused from the soft cap on (counted apart, no alarm): a commander's flood
cannot take the room the node's own events, state and trips have up to the hard cap.
The byte caps compare what the database's pages take on disk (the rows, and the room
deletions left in pages SQLite does not fill again: thinned samples, acknowledged rows) and
the WAL's bound, so `hard_max_bytes` bounds the files on disk.

A disk that refuses writes does not stop anything: the batch's messages stay in memory
(`edged.outbox.memory`) and still go out while the link holds, and are stored with the
first commit the disk takes again (`_store_again`); a database that cannot be
opened at all (a full disk at first start) is replaced by one in memory. A corrupt file is
moved aside at open and a new one started (`edged.outbox.sqlitefile`), with the queued
messages it still gives back (`_restore_rows`); the services' state
and the seq marks live in the state store beside it (`edged.outbox.state`), which notices
an outbox that went back in time.

Every message carries the envelope's `epoch`, new at every start: a `seq` may be stamped
that never reached the disk (a commit that failed, the last batch before a crash, the
direct `alarm/outbox_full`), and the next start may count from below it, but never within
the same epoch.
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from core.errors import EdgedError
from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.errors import NotDurableError, OutboxFullError
from edged.outbox import idsets, sqlitefile
from edged.outbox.journal import Journal, Record
from edged.outbox.lanes import Lanes
from edged.outbox.marks import Marks
from edged.outbox.memory import MemoryLane
from edged.outbox.publication import Publication, Stored
from edged.outbox.state import Loss, StateStore
from edged.payloads import Body, OutboxHealth, encode
from edged.release.schemas import open_stores
from edged.topics import REPLY, Priority, urgent

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Outbox", "PutResult", "encode"]

_ROW_OVERHEAD = 64  # bytes counted per row on top of topic and payload (≈ file size)
_MAX_THIN_LEVEL = 16
_BATCH_MAX = 2000
ACK_COMMIT_S = 5.0
"""Acknowledgements alone wait this long for a commit (a put's commit takes them at once):
each commit writes whole pages to the WAL, and a message's delete would otherwise cost a
commit of its own. A row whose delete is not yet committed is never handed out again; a
restart (kill -9, power cut) sends it again, a duplicate dispatch drops (QoS 1 allows it)."""
ACK_COMMIT_ROWS = 1000
"""... or until this many are gathered: a fast drain commits them as often as before."""
OFFLINE_GATHER_S = 10.0
"""While the link is down (`set_linked`), a commit of samples and health alone (no event, no
journaled message, no state set without `may_wait`) waits this long for more: nobody can take
them before the link is back, and each commit writes whole pages. A message that is not a
sample commits at once, with the samples gathered. A kill -9 while offline may lose these
(never acknowledged: their callers are told once they are durable); a power cut could lose
them anyway (`synchronous=NORMAL`: on the card once the kernel writes them, ~30 s)."""
READ_RETRY_S = 5.0  # after a failed read, the database is tried again this much later
JOURNAL_MARK = "journal_rn"
JOURNAL_STATE_MARK = "journal_state_rn"
"""State store meta: the journal record (rn) up to which the state that journaled messages
carried is in the state store; a newer record's state is applied at the next start."""
RETAINED_IDS_KEY = "outbox.retained_ids"
OVERTAKEN_KEY = "outbox.overtaken"  # `_overtaken` by a message the broker took from memory
"""State key: the row id of the newest message of each retained topic the broker took. An
older row of that topic (refused, then tried again; left from a session that ended) is
`superseded`: sent retained, it would put the broker's retained value back in time."""
STATE_STORE_MARK = "state_store"
ACK_STATE = frozenset({RETAINED_IDS_KEY})
"""State that acknowledgements write, committed with whatever commit comes next
(ACK_COMMIT_S): alone, it does not make an event's commit sync the state store (it used to
go in an unsynced commit of its own, and a power cut that loses it at worst lets a
superseded retained row go once more, without the retain flag's protection). The outbox's
own commit, synced, notes them too (its `meta`), with the deletes they stand for."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS msg (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created INTEGER NOT NULL,
    size INTEGER NOT NULL,
    latest_only INTEGER NOT NULL,
    corr BLOB
);
CREATE INDEX IF NOT EXISTS msg_prio_id ON msg (prio, id);
CREATE TABLE IF NOT EXISTS streams (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class PutResult(StrEnum):
    STORED = "stored"
    THINNED = "thinned"  # a sample dropped by the thinning rule
    DROPPED = "dropped"  # a sample or health report dropped at the hard cap


@dataclass(slots=True)
class _Matching:
    """Rows a condition names (`Outbox._matching`), counted before they are deleted."""

    cond: str
    params: list[Any]
    found: list[tuple[int, int, int]]  # (prio, rows, bytes)

    @property
    def count(self) -> int:
        return sum(rows for _, rows, _ in self.found)

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.found)


@dataclass(slots=True)
class _Pending:
    pub: Publication
    payload: bytes
    seq: int
    created: int
    future: "asyncio.Future[PutResult]"
    rn: int | None = None  # its journal record
    again: list[int] | None = None
    """Refused by the disk once, stored now from memory: its ids there (`_store_again`)."""
    plain: bool = False  # stored without the retain flag: a newer one of its topic exists


@dataclass
class _Counts:
    rows: int = 0
    bytes: int = 0
    by_prio: dict[int, int] = field(default_factory=lambda: {int(p): 0 for p in Priority})


class _Corrupt(sqlite3.DatabaseError):
    """`quick_check` found problems."""


class Outbox:
    def __init__(
        self,
        config: OutboxConfig,
        clock: Clock,
        *,
        on_pressure: Callable[[bool, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_pressure = on_pressure
        self.epoch = secrets.token_hex(8)
        path = Path(config.path)
        self.state = StateStore(config.state_file, wal_bytes=config.wal_bytes)
        self.journal = Journal(path.with_name(path.name + "-taps"), sync=config.journal_sync)
        self.marks = Marks(path.with_name(path.name + "-marks"))
        self.lanes = Lanes(config.live_window_s)
        self.memory = MemoryLane()
        self.losses: list[Loss] = []
        self.durable = True  # False: the disk refused the file; the outbox is in memory
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._seqs: dict[str, int] = {}
        self._pending: list[_Pending] = []
        self._acks: list[Stored] = []
        self._unstored: list[tuple[_Pending, list[int]]] = []
        """Puts the disk refused, with their messages' ids in the memory lane: stored in
        the outbox once a commit succeeds again (`_store_again`)."""
        self._recovered: list[tuple[Record, int]] = []
        """Journal records the disk refused at open, with their ids in the memory lane:
        likewise (`_store_again`), and kept in the journal meanwhile."""
        self._recovered_again: list[tuple[Record, int]] = []  # for the next commit
        self._fold_next: list[int] = []
        """Journal records of messages that left memory unstored (the broker took them, or a
        newer one replaced them): folded with the next commit, or a restart sends them again."""
        self._memory_after: dict[int, int] = {}
        """Memory lane id -> the newest row id when its message went to memory: every row
        up to it was stamped before that message."""
        self._overtaken: dict[str, int] = {}
        """Retained topic -> rows up to this id are older than a message of that topic
        handed out from memory (`next_batch`), which memory sends first: `superseded`."""
        self._kept_overtaken: dict[str, int] = {}  # OVERTAKEN_KEY: those the broker took
        self._wake_writer = asyncio.Event()
        self._new_data = asyncio.Event()
        self.alarm_data = asyncio.Event()
        """Set when an alarm (`Priority.ALARM`) can be fetched that was not when the last
        fetch began: the uplink, its read-ahead full, reads it past that (`next_alarms`)."""
        self.urgent_put = asyncio.Event()
        """Set at each put of an alarm a person raised (the panic: `edged.topics.urgent`):
        the uplink, waiting to reconnect, tries at once (`edged.uplink.client.Uplink.run`);
        it clears it."""
        self._urgent_rows: set[int] = set()  # ids of such alarms' rows (`urgent_waiting`)
        self._in_commit: list[_Pending] = []  # the puts of the commit under way
        self._counts = _Counts()
        self._slack = 0
        self._page_size = 0
        """Bytes the database's pages in use take beyond the rows' counted size (page
        headers, room deletions left in pages new rows, always appended, never fill):
        measured at each commit and after each thinning step (`_measure_slack`)."""
        self._inflight: dict[int, int] = {}  # id -> size
        self._acked: set[int] = set()
        self._acked_waiting = 0  # rows in `_acks`: acknowledged, not yet in a commit
        self._ack_timer: asyncio.TimerHandle | None = None  # ACK_COMMIT_S
        self._acks_due = False  # acks waited ACK_COMMIT_S (or are ACK_COMMIT_ROWS): no
        # gathering holds them longer
        self._committing = 0  # puts in the commit under way, not yet counted in `depth`
        """Rows the broker acknowledged whose deletion is not committed yet (the next
        commit, or a later one while the disk refuses it): never handed out again, even
        by a new session, nor deleted by another statement (each is counted out once)."""
        self._retained_ids: dict[str, int] = {}  # RETAINED_IDS_KEY: topic -> last taken
        self._taken: dict[str, Stored] = {}  # the newest taken per retained topic, until
        # the commit that writes it to `retained`: what `retained()` restores meanwhile
        self.thin_level = 0
        self.refused = 0  # events (alarms, trips) refused at the hard cap
        self.refused_replies = 0  # replies refused at the soft cap: no event was lost
        self.thinned = 0
        self.dropped = 0
        self.write_errors = 0
        self.read_errors = 0
        self._read_failed_at = float("-inf")
        self._full = False
        self._refused_before_full = 0  # `refused` when the current full episode began
        self._pressure_reported = False
        self._kv_dirty: set[str] = set()  # state keys changed since the last commit
        self._state_now = False  # state set that no gathering of samples holds (`set_state`)
        self._state_waiters: list[asyncio.Future[bool]] = []  # `sync_state`: the next commit
        self._streams_dirty: set[str] = set()
        self._state_rn = 0  # the last journal record that carried state (JOURNAL_STATE_MARK)
        self._last_id = 0
        self.schema_stamps: dict[str, tuple[int, int]] = {}  # edged.release.schemas
        self._closed = False
        self.linked = True
        """The uplink has a session (`set_linked`); False: samples gather (OFFLINE_GATHER_S)."""
        self.sample_gather_s = 0.0
        """Online, a commit of samples alone waits this long for more (SD wear): the node
        sets it to the uplink's share of `[broker] batch_s` (`edged.uplink.batching.
        outbox_share`), samples waiting there for company anyway; 0: at once."""

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        await self._call(self._open)
        self.begin_session()

    def _open(self) -> None:
        self.state.open()
        self.losses.extend(self.state.losses)
        self.schema_stamps |= self.state.schema_stamps
        path = Path(self.config.path)
        existed = path.exists() and path.stat().st_size > 0
        salvaged = self._open_database(path)
        db = self._db
        assert db is not None
        moved = any(loss.cause == "corrupt" for loss in self.losses)
        self._migrate_state(db, salvaged)
        streams = {str(k): int(v) for k, v in db.execute("SELECT name, seq FROM streams")}
        for stream, seq in salvaged.get("streams", {}).items():
            streams[stream] = max(streams.get(stream, 0), seq)
        counts = _Counts()
        for prio, n, size in db.execute("SELECT prio, count(*), sum(size) FROM msg GROUP BY prio"):
            counts.by_prio[prio] = n
            counts.rows += n
            counts.bytes += size or 0
        self._counts = counts
        self._find_urgent_rows(db)
        self._page_size = 0  # this file's, read again
        self._measure_slack(db)
        self._last_id = int(db.execute("SELECT coalesce(max(id), 0) FROM msg").fetchone()[0])
        # taps the journal gives back first: a seq they fill is not a gap
        for stream, seq in self._recover_journal(db, fresh=not existed or moved).items():
            streams[stream] = max(streams.get(stream, 0), seq)
        self._seqs = dict(streams)
        if self.durable:
            self._compare_marks(streams, existed=existed and not moved)
        for stream, seq in [*self.state.seqs.items(), *self.marks.open().items()]:
            self._seqs[stream] = max(self._seqs.get(stream, 0), seq)
        self.lanes.start(self._last_id)
        # row ids count on within one outbox file only: ids noted beyond this file's
        # counter are another file's (a corrupt one moved aside, one deleted), and would
        # make every new retained row look superseded
        issued = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'msg'").fetchone()
        top = int(issued[0]) if issued else 0
        retained_ids: dict[str, int] = {}
        raw = self._meta(db, RETAINED_IDS_KEY)  # the newer after a power cut (`_commit`)
        in_file: Any = {}
        with contextlib.suppress(ValueError):
            in_file = json.loads(raw) if raw else {}
        for known in (self.get_state(RETAINED_IDS_KEY, {}), in_file):
            if isinstance(known, dict):
                for t, i in known.items():
                    if isinstance(i, int) and 0 < i <= top:
                        retained_ids[str(t)] = max(retained_ids.get(str(t), 0), i)
        self._retained_ids = retained_ids
        overtaken = self.get_state(OVERTAKEN_KEY, {})
        if isinstance(overtaken, dict):  # rows still queued may be older than the broker's
            self._overtaken = {
                str(t): i for t, i in overtaken.items() if isinstance(i, int) and 0 < i <= top
            }
            self._kept_overtaken = dict(self._overtaken)

    def _open_database(self, path: Path) -> dict[str, Any]:
        """Open the outbox file; a corrupt one is moved aside (what it still gives back is
        returned) and a new one started; a disk that refuses it leaves one in memory."""
        try:
            self._db = self._connect(path)
            return {}
        except (sqlite3.Error, OSError) as exc:
            if path.is_dir():  # not the disk's fault: say so, and what to do
                self._directory_in_place(path)
                self._in_memory(path, exc, copy=False)
                return {}
            if not (sqlitefile.is_corrupt(exc) or isinstance(exc, _Corrupt)):
                if sqlitefile.is_disk_error(exc):
                    self._in_memory(path, exc)
                    return {}
                raise sqlitefile.open_error("outbox", path, exc) from exc
            problem = exc
        salvaged = _salvage(path)
        moved: Path | None = None
        try:
            moved = sqlitefile.move_aside(path)
            where = f"moved aside to {moved}"
        except OSError as refused:  # a read-only disk: the file stays where it is
            where = f"left in place (the disk refused to move it: {refused})"
            self._in_memory(path, refused, copy=False)
        if self._db is None:
            try:
                self._db = self._connect(path)
            except (sqlite3.Error, OSError) as again:
                self._in_memory(path, again, copy=False)
        restored: dict[str, int] = {}
        if moved is not None and self.durable and self._db is not None:
            restored = _restore_rows(moved, self._db)
        queued = salvaged.get("queued", {})
        total, back = sum(n for _, _, n in queued.values()), sum(restored.values())
        log.error(
            "the outbox %s is corrupt (%s): %s and a new one started; %d of %d queued "
            "message(s) in it read back and sent",
            path,
            problem,
            where,
            back,
            total,
        )
        sent = f"{back} of {total} queued message(s) in it read back and sent"
        loss = Loss(
            "corrupt",
            f"the outbox was corrupt ({str(problem)[:80]}): {where}; {sent}"
            if back
            else f"the outbox was corrupt ({str(problem)[:80]}): {where}; "
            "messages queued in it were not sent",
            moved_to=None if moved is None else str(moved),
        )
        loss.gaps = {s: [lo, hi] for s, (lo, hi, n) in queued.items() if restored.get(s, 0) < n}
        self.losses.append(loss)
        return salvaged

    def _connect(self, path: Path) -> sqlite3.Connection:
        sqlitefile.make_private(path)
        sqlitefile.set_aside_foreign_wal(path, "msg")
        db = sqlitefile.connect(path, wal_bytes=self.config.wal_bytes)
        try:
            found = sqlitefile.problems(db)
            if found is not None:
                raise _Corrupt(found)
            db.executescript(SCHEMA)
            self.schema_stamps |= open_stores(db, ("outbox",), str(path))
        except BaseException:
            db.close()
            raise
        return db

    def _directory_in_place(self, path: Path) -> None:
        """A directory where the outbox file should be: what it held is gone (reported,
        `outbox_lost`), and only a person can put a file back."""
        log.error(
            "the outbox %s is a directory, not a file: remove it (or move it aside) and "
            "restart edged; until then the outbox is in memory",
            path,
        )
        self.losses.append(
            Loss(
                "missing",
                f"the outbox {path} is a directory: messages queued before were not sent; "
                "remove it and restart edged",
            )
        )

    def _in_memory(self, path: Path, exc: BaseException, *, copy: bool = True) -> None:
        """An outbox in memory; on a disk that refuses writes but reads (remounted
        read-only) it starts with what the file holds: its queued messages still go out."""
        db = sqlitefile.read_only_copy(path) if copy else None
        log.error(
            "cannot write the outbox at %s (%s): running with an outbox in memory (%s; "
            "nothing survives a restart) until the disk takes writes and edged restarts",
            path,
            exc,
            "its queued messages read from the file" if db is not None else "empty",
        )
        self.durable = False
        if db is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(SCHEMA)
        self._db = db

    def _migrate_state(self, db: sqlite3.Connection, salvaged: dict[str, Any]) -> None:
        """The first start with a state store copies the state out of the outbox's `kv`;
        a state store that vanished afterwards is reported."""
        state = self.state
        old_kv = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM kv")}
        old_kv.update(salvaged.get("kv", {}))
        had_store = self._meta(db, STATE_STORE_MARK) is not None
        if state.created and old_kv:
            kept = {k: v for k, v in old_kv.items() if k not in state.kv}
            streams = {str(k): int(v) for k, v in db.execute("SELECT name, seq FROM streams")}
            if state.durable:
                state.commit(kept, streams, sync=True)
                log.info("state moved from the outbox to %s (%d value(s))", state.path, len(kept))
            state.kv.update(kept)
        elif state.created and had_store and not state.losses:
            self.losses.append(
                Loss(
                    "state_missing",
                    f"the state store {state.path} was missing: access lists and the "
                    "services' state start empty",
                )
            )
        if state.durable and self.durable and (old_kv or not had_store):

            def forget_old_state() -> None:
                db.execute("DELETE FROM kv")
                self._set_meta(db, STATE_STORE_MARK, "1")

            _write(db, forget_old_state, "marking the state as moved")

    def _compare_marks(self, streams: dict[str, int], *, existed: bool) -> None:
        """The state store's seq marks above the outbox's counters: the outbox went back."""
        gaps = {
            s: [streams.get(s, 0) + 1, mark]
            for s, mark in sorted(self.state.seqs.items())
            if mark > streams.get(s, 0)
        }
        if not gaps:
            return
        if existed:
            listed = ", ".join(f"{s} {lo}-{hi}" for s, (lo, hi) in list(gaps.items())[:5])
            log.error(
                "the outbox has fewer writes than its marks (a commit cut short by a power "
                "cut or kill -9, or its WAL lost): seq gaps %s",
                listed,
            )
            self.losses.append(
                Loss(
                    "rolled_back",
                    "the outbox lost its last writes (a commit cut short, or its WAL): "
                    f"messages in the gaps may not have been sent: {listed}"[:200],
                    gaps=gaps,
                )
            )
        elif not any(loss.cause == "corrupt" for loss in self.losses):
            log.error("the outbox file was missing or empty: started a new one")
            self.losses.append(
                Loss(
                    "missing",
                    "the outbox file was missing or empty: messages it held were not sent",
                )
            )

    def _recover_journal(self, db: sqlite3.Connection, *, fresh: bool) -> dict[str, int]:
        """Taps written to the journal and not yet in the outbox go in now; returns the
        highest seq recovered per stream."""
        mark_text = self._meta(db, JOURNAL_MARK)
        if mark_text is None or fresh:
            mark_text = self.state.meta(JOURNAL_MARK) if self.state.db is not None else None
        folded = int(mark_text or 0)
        records = self.journal.open(folded)
        top: dict[str, int] = {}
        for r in records:
            top[r.stream] = max(top.get(r.stream, 0), r.seq)
        self._recover_journal_state(records)
        if not records:
            return top
        saved = (
            _Counts(self._counts.rows, self._counts.bytes, dict(self._counts.by_prio)),
            self._last_id,
        )

        def fold() -> None:
            for r in records:
                self._insert_record(db, r)
            db.executemany(
                "INSERT INTO streams(name, seq) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
                top.items(),
            )
            self._set_meta(db, JOURNAL_MARK, str(records[-1].rn))

        if _write(db, fold, "folding the tap journal"):
            log.warning("%d message(s) recovered from the journal (taps, alarms)", len(records))
            if self.durable:  # a fresh outbox starts from this mark
                with contextlib.suppress(sqlite3.Error):
                    self.state.commit(
                        None, {}, sync=False, meta={JOURNAL_MARK: str(records[-1].rn)}
                    )
            return top
        self._counts, self._last_id = saved
        self._streams_dirty.update(top)
        for r in records:  # the disk refuses them: they go out from memory, stay in the
            # journal (written again: unfolded, the mark stays below them and new records
            # go after them) and are stored once the disk takes a commit (`_store_again`)
            size = len(r.topic) + len(r.payload) + _ROW_OVERHEAD
            mid = self.memory.add(
                Stored(0, r.topic, r.payload, r.qos, r.retain, None, size, r.prio),
                latest_only=r.latest_only,
            )
            self._memory_after[mid] = self._last_id  # stamped after every row
            self._recovered.append((r, mid))
            self.journal.write(r)
        return top

    def _recover_journal_state(self, records: list[Record]) -> None:
        """The state that journaled messages carried and the state store did not get (the
        process died before their commit): a panic alarm recovered from the journal is an
        active alarm again, its light and `alarm.ack` included."""
        state = self.state
        mark = int(state.meta(JOURNAL_STATE_MARK) or 0) if state.db is not None else 0
        newer = [r for r in records if r.state and r.rn > mark]
        # numbering goes on above the mark, whatever became of the journal file
        self.journal.next_rn = max(self.journal.next_rn, mark + 1)
        if not newer:
            return
        kv: dict[str, str] = {}
        for r in newer:
            kv.update(r.state or {})
        state.kv.update(kv)
        self._state_rn = newer[-1].rn
        log.warning("state of %d journaled message(s) recovered: %s", len(newer), ", ".join(kv))
        try:
            if state.durable:
                state.commit(kv, {}, sync=True, meta={JOURNAL_STATE_MARK: str(self._state_rn)})
                return
        except sqlite3.Error as exc:
            log.error("cannot write the recovered state to the state store: %s", exc)
        self._kv_dirty.update(kv)  # tried again with the next commit

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def close(self) -> None:
        """Commit what is pending and close; safe to call twice, and on a failing disk."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.flush()
        except (sqlite3.Error, OSError, EdgedError) as exc:
            log.error("outbox: the last commit failed (%s); unsent messages are lost", exc)
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self.state.close()
        self.journal.close()
        self.marks.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- writing ----------------------------------------------------------------------

    def put_nowait(
        self, pub: Publication, *, state: dict[str, Any] | None = None
    ) -> "asyncio.Future[PutResult]":
        """Stamp the envelope now and queue the write; the future resolves once durable.

        `state`: state-store values that go with the message (`set_state`), committed
        with it. A topic that journals (a tap, an alarm) is in the journal when this
        returns, its `state` in the same record: a process that dies before the commit
        gets both back at its next start."""
        if self._closed:
            raise EdgedError("the outbox is closed: edged is shutting down")
        payload, seq, ts = self.stamp(pub.stream, pub.body, pub.spec.version)
        for key, value in (state or {}).items():
            self.set_state(key, value)
        future: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        item = _Pending(pub, payload, seq, ts, future)
        if pub.spec.journal and pub.response_topic is None:
            carried = {key: self.state.kv[key] for key in state} if state else None
            item.rn = self._journal(item, carried)
            if carried and item.rn is not None:
                self._state_rn = item.rn
        self._pending.append(item)
        self._wake_writer.set()
        if urgent(pub.priority, pub.topic):
            self.urgent_put.set()
        return future

    def _journal(self, item: _Pending, state: dict[str, str] | None) -> int | None:
        pub = item.pub
        rn = self.journal.take_rn()
        record = Record(
            rn,
            pub.topic,
            pub.stream,
            item.seq,
            int(pub.priority),
            pub.qos,
            pub.spec.retain,
            pub.spec.latest_only,
            item.created,
            item.payload,
            state,
        )
        return rn if self.journal.write(record) else None

    def stamp(self, stream: str, body: BaseModel, version: int = 1) -> tuple[bytes, int, int]:
        """Payload bytes with the envelope; the stream's new `seq` is written with the next
        commit (if the disk takes it: the epoch keeps (epoch, seq) unique regardless).
        Returns (payload, seq, ts)."""
        seq = self._seqs.get(stream, 0) + 1
        self._seqs[stream] = seq
        self._streams_dirty.add(stream)
        ts, source = self.clock.now()
        data = (
            body.to_json_dict()
            if isinstance(body, Body)
            else body.model_dump(mode="json", exclude_none=True)
        )
        payload = encode(data, v=version, epoch=self.epoch, seq=seq, ts=ts, clock=source.value)
        return payload, seq, ts

    async def put(self, pub: Publication) -> PutResult:
        """Store a publication; returns once it is on disk (or says why it was not kept)."""
        return await self.put_nowait(pub)

    def ack(self, msg: Stored) -> None:
        """The broker has the message (PUBACK, or written for QoS 0): delete it soon."""
        if msg.id < 0:
            self.memory.ack(msg.id)
            after = self._memory_after.pop(msg.id, 0)
            if msg.retain:  # the topic's value now (`retained`), though in no row
                self._taken[msg.topic] = msg
                if after > self._kept_overtaken.get(msg.topic, 0):
                    # kept: a restart must not send a row stamped before it retained
                    self._kept_overtaken[msg.topic] = after
                    self.set_state(OVERTAKEN_KEY, self._kept_overtaken)
                self._acks.append(msg)  # to `retained`: a broker's restore after a restart
                self._wake_writer.set()
            return
        if msg.id not in self._inflight:
            return  # acknowledged twice, or from a session that was reset
        self._acked.add(msg.id)  # first: the outbox's thread sees it in one set or the other
        del self._inflight[msg.id]
        if (
            msg.retain
            and msg.id > self._retained_ids.get(msg.topic, 0)
            and msg.id > self._overtaken.get(msg.topic, 0)
        ):
            self._retained_ids[msg.topic] = msg.id
            self._taken[msg.topic] = msg
            # written with the acks' commit (`set_state` would wake the writer now)
            self.state.kv[RETAINED_IDS_KEY] = json.dumps(self._retained_ids)
            self._kv_dirty.add(RETAINED_IDS_KEY)
        self._acks.append(msg)
        self._acked_waiting += 1
        if self._acked_waiting >= ACK_COMMIT_ROWS:
            self._ack_due()  # no gathering holds them: a restart would send them again
        elif self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_COMMIT_S, self._ack_due)

    def _ack_due(self) -> None:
        """Acknowledgements waited ACK_COMMIT_S (or ACK_COMMIT_ROWS of them gathered):
        committed now, samples gathering or not."""
        self._acks_due = True
        self._wake_writer.set()

    def superseded(self, msg: Stored) -> bool:
        """Whether the broker already took a newer message of this retained topic: sent
        retained, this one would become the topic's value, older than the one the broker
        has (a refused row tried again, a row a session left unsent). The sender sends it
        without the retain flag."""
        if not msg.retain or msg.id <= 0:
            return False
        return msg.id < self._retained_ids.get(msg.topic, 0) or msg.id <= self._overtaken.get(
            msg.topic, 0
        )

    def set_state(self, key: str, value: Any, *, may_wait: bool = False) -> None:
        """Small persistent state for services (a panic button let go, the mode, an open
        trip...), written with the next commit to the state store, within
        `flush_interval_ms`. `may_wait`: state set often whose loss to a kill -9 costs
        little (the odometer, an open trip's progress) waits with samples gathering
        instead (up to OFFLINE_GATHER_S): ended at each set, the gathering would hardly
        save a write."""
        self.state.kv[key] = json.dumps(value)
        self._kv_dirty.add(key)
        if not may_wait:
            self._state_now = True
        self._wake_writer.set()

    async def sync_state(self, *keys: str) -> bool:
        """The state set so far on the card (the state store's next commit waits for it,
        `synchronous=FULL`, whatever goes with it), `keys` written again so that there is
        something to commit. For state that must survive a power cut before what it allows
        happens: a spent command id before the door it opens moves. False when it is not
        on the card (the disk refused the commit, or the state store is in memory)."""
        if self._closed:
            return False
        self._kv_dirty.update(k for k in keys if k in self.state.kv)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._state_waiters.append(future)
        self._wake_writer.set()
        return await future

    def get_state(self, key: str, default: Any = None) -> Any:
        raw = self.state.kv.get(key)
        return default if raw is None else json.loads(raw)

    def set_linked(self, up: bool) -> None:
        """The uplink's session came up or went down. Up: what gathered offline is
        committed now, for the uplink to send."""
        self.linked = up
        if up:
            self._wake_writer.set()

    def _may_gather(self) -> bool:
        """Only samples wait, and nobody needs them committed yet: offline, samples and
        health (OFFLINE_GATHER_S); online, samples that will wait in the uplink for company
        anyway (`sample_gather_s`)."""
        if self._closed or self._state_waiters or self._recovered_again or self._fold_next:
            return False
        if self._acks_due or self._state_now:
            return False
        if not self.linked:
            return all(i.pub.priority >= Priority.SAMPLE and i.rn is None for i in self._pending)
        return (
            self.sample_gather_s > 0
            and bool(self._pending)
            and all(i.pub.priority == Priority.SAMPLE and i.rn is None for i in self._pending)
        )

    async def _gather(self) -> None:
        """Wait while `_may_gather`, up to OFFLINE_GATHER_S offline or `sample_gather_s`
        online; a put that is not a sample, the link back or a `sync_state` ends the wait
        (each wakes the writer)."""
        start = time.monotonic()
        while True:
            self._wake_writer.clear()
            wait = OFFLINE_GATHER_S if not self.linked else self.sample_gather_s
            remaining = start + wait - time.monotonic()
            if remaining <= 0 or not self._may_gather():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake_writer.wait()

    def hurry(self) -> None:
        """The node stops: nothing waits for company any more (`sample_gather_s`)."""
        self.sample_gather_s = 0.0
        self._wake_writer.set()

    @property
    def uncommitted(self) -> int:
        """Puts waiting for their commit, or in the commit under way (not in `depth` yet)."""
        return len(self._pending) + self._committing

    async def run_writer(self) -> None:
        """Commit gathered writes and acks; the only task that writes to the database."""
        while True:
            await self._wake_writer.wait()
            if not self._gathered():
                # woken with nothing to commit (the link back, a stop's `hurry`): only a
                # commit clears the wake, and a wake left set looped here for good (with
                # flush_interval_ms = 0 without ever yielding: the event loop froze)
                self._wake_writer.clear()
                continue
            if self.config.flush_interval_ms and not self._state_waiters:
                # (state waited for, `sync_state`: a command waits to act, commit now)
                await asyncio.sleep(self.config.flush_interval_ms / 1000)
            if self._may_gather():
                await self._gather()
            try:
                # one commit of all that gathered, then back to back only while puts
                # wait (their callers wait for durability); acks that come in
                # meanwhile wait for the next interval: during a drain they arrive
                # all the time, and committing them back to back made 150-200
                # commits a second, each one holding up the next fetch
                await self._commit_gathered()
                while self._pending or self._recovered_again:
                    await self._commit_gathered()
            except (sqlite3.Error, OSError, EdgedError):
                # the batch's callers got the error; keep writing what comes next
                self.write_errors += 1
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Commit everything gathered so far."""
        while self._gathered():
            await self._commit_gathered()

    def _gathered(self) -> bool:
        """Something waits for a commit."""
        return bool(
            self._pending
            or self._acks
            or self._kv_dirty
            or self._streams_dirty
            or self._recovered_again
            or self._fold_next
            or self._state_waiters
        )

    async def _commit_gathered(self) -> None:
        """One commit of what is gathered now (puts: at most _BATCH_MAX of them)."""
        if not self._gathered():
            return
        self._wake_writer.clear()
        batch, self._pending = self._pending[:_BATCH_MAX], self._pending[_BATCH_MAX:]
        recovered, self._recovered_again = self._recovered_again, []
        acks, self._acks = self._acks, []
        self._acked_waiting = 0
        self._acks_due = False
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        # only the keys that changed: the access lists (megabytes) are not bound and
        # compared again at each trip or count change
        kv = {k: self.state.kv[k] for k in self._kv_dirty} if self._kv_dirty else None
        self._kv_dirty = set()
        state_now, self._state_now = self._state_now, False
        state_rn = self._state_rn if kv is not None else 0  # its state is in `kv`
        streams = {name: self._seqs[name] for name in self._streams_dirty}
        self._streams_dirty.clear()
        marks = dict(self._seqs) if streams else None
        gone, self._fold_next = self._fold_next, []
        waiters, self._state_waiters = self._state_waiters, []
        rns = [item.rn for item in batch if item.rn is not None] + [r.rn for r, _ in recovered]
        rns += gone
        folded = self.journal.mark_with(rns) if rns else None
        records = [r for r, _ in recovered]
        self._committing = len(batch)
        self._in_commit = batch
        try:
            results = await self._call(
                self._commit,
                batch,
                acks,
                kv,
                streams,
                marks,
                state_rn,
                folded,
                records,
                bool(waiters),
            )
        except Exception as exc:
            _settle(waiters, False)
            # nothing of this commit happened: acks, state and seqs are tried again; the
            # batch stays in memory and goes out live (the callers are told it is not
            # durable)
            self._acks[:0] = acks
            self._acked_waiting += sum(1 for m in acks if m.id > 0)
            if acks and self._ack_timer is None:  # tried again, whether or not more come
                self._ack_timer = asyncio.get_running_loop().call_later(ACK_COMMIT_S, self._ack_due)
            self._streams_dirty.update(streams)
            self._kv_dirty.update(kv or ())
            self._state_now |= state_now
            self._unstored.extend((i, i.again) for i in batch if i.again is not None)
            self._recovered.extend(recovered)
            self._fold_next[:0] = gone
            self._keep_in_memory([i for i in batch if i.again is None], exc)
            log.error("outbox commit failed: %s", exc)
            raise
        finally:
            self._committing = 0
            self._in_commit = []
        _settle(waiters, self.state.durable)
        self._acked.difference_update(m.id for m in acks)
        for m in acks:
            if self._taken.get(m.topic) is m:  # in `retained` now
                del self._taken[m.topic]
        self.journal.folded(rns)
        self.memory.drop([mid for _, mid in recovered])
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            elif not self.durable and result is PutResult.STORED:
                item.future.set_exception(
                    NotDurableError("the outbox is in memory: the disk refused its file")
                )
            else:
                item.future.set_result(result)
        if recovered or any(r is PutResult.STORED for r in results):
            self.lanes.committed(self._last_id)
            self._new_data.set()
            if recovered or any(
                r is PutResult.STORED and i.pub.priority is Priority.ALARM
                for i, r in zip(batch, results, strict=True)
            ):
                self.alarm_data.set()
        for item, result in zip(batch, results, strict=True):
            # one the caps refused, thinned or dropped stays in memory, to be sent
            if item.again is not None and result is PutResult.STORED:
                self.memory.drop(item.again)
        if self.durable and (self._unstored or self._recovered):
            self._store_again()
        self._check_pressure()

    def _store_again(self) -> None:
        """The disk took a commit: what it refused before and memory still holds (not
        acknowledged, not pushed out) goes into the next commit, so a restart before the
        link is back does not lose it; memory sends it until that commit (one sent from
        there meanwhile may go twice: QoS 1 allows it). Each is stored with its original
        bytes (same epoch and seq) and its journal record, folded then.

        Stored now, it comes after what was stored meanwhile: one a newer message of its
        stream was stamped after (`seq`) must not become its topic's value again. A
        latest-only one stays in memory (the newer replaces it); a retained one is stored
        without the retain flag (the broker's retained value stays the newer one's)."""
        hold = self.memory.holds
        again: list[_Pending] = []
        for item, mids in self._unstored:
            pub = item.pub
            overtaken = item.seq < self._seqs.get(pub.stream, 0)
            if not hold(mids) or (overtaken and pub.spec.latest_only):
                if item.rn is not None:
                    self._fold_next.append(item.rn)
                continue
            future: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieved)  # its caller had NotDurableError
            plain = overtaken and pub.spec.retain
            again.append(
                _Pending(pub, item.payload, item.seq, item.created, future, item.rn, mids, plain)
            )
        self._unstored = []
        for r, mid in self._recovered:
            overtaken = r.seq < self._seqs.get(r.stream, 0)
            if not hold([mid]) or (overtaken and r.latest_only):
                self._fold_next.append(r.rn)
                continue
            record = dataclasses.replace(r, retain=False) if overtaken else r
            self._recovered_again.append((record, mid))
        self._recovered = []
        if again:
            self._pending[:0] = again
        if again or self._recovered_again or self._fold_next:
            self._wake_writer.set()

    def _keep_in_memory(self, batch: list[_Pending], exc: BaseException) -> None:
        """The batch's messages wait in memory, and for a commit that succeeds
        (`_store_again`)."""
        memory = self.memory
        unstored, self._unstored = self._unstored, []
        for i, held in unstored:
            if memory.holds(held):
                self._unstored.append((i, held))
            elif i.rn is not None:  # sent from memory: not to be sent again at a restart
                self._fold_next.append(i.rn)
        after = self._memory_after
        for mid in [mid for mid in after if not memory.holds([mid])]:
            del after[mid]
        for item in batch:
            pub = item.pub
            rows: list[tuple[str, bytes | None]] = [(pub.topic, None)]
            if pub.response_topic:
                rows.append((pub.response_topic, pub.correlation))
            mids: list[int] = []
            self._unstored.append((item, mids))
            for topic, corr in rows:
                mid = self.memory.add(
                    Stored(
                        0,
                        topic,
                        item.payload,
                        pub.qos,
                        pub.spec.retain and corr is None,
                        corr,
                        len(topic) + len(item.payload) + _ROW_OVERHEAD,
                        int(pub.priority),
                    ),
                    latest_only=pub.spec.latest_only or pub.priority >= Priority.SAMPLE,
                )
                mids.append(mid)
                self._memory_after[mid] = self._last_id
            if not item.future.done():
                item.future.set_exception(
                    NotDurableError(
                        f"the outbox could not store the message ({exc}): kept in memory, "
                        "sent if the link holds, stored once the disk takes writes again, "
                        "lost on a restart before either"
                    )
                )
        if batch:
            self._new_data.set()
            if any(i.pub.priority is Priority.ALARM for i in batch):
                self.alarm_data.set()

    def _commit(
        self,
        batch: list[_Pending],
        acks: list[Stored],
        kv: dict[str, str] | None,
        streams: dict[str, int],
        marks: dict[str, int] | None = None,
        state_rn: int = 0,
        folded: int | None = None,
        records: list[Record] | None = None,
        sync_state: bool = False,
    ) -> list[PutResult | BaseException]:
        """One transaction of `batch`, `acks` and the state; `folded`: the journal's mark
        once this batch is in (`Journal.mark_with`), never past a record not yet stored
        (None: the mark does not move);
        `records`: journal records the disk refused at open, stored as the open would;
        `sync_state`: the state store's commit waits for the card (`sync_state`)."""
        db = self._db
        assert db is not None, "outbox not open"
        if marks:  # first: this file takes writes when the disk refuses SQLite's
            self.marks.write(marks)
        important = any(item.pub.priority <= Priority.TRIP for item in batch) or any(
            r.prio <= Priority.TRIP for r in records or ()
        )
        # the state store first: its seq marks are never below what the outbox holds, so
        # an outbox that loses writes shows as a gap (and its services' state stays whole)
        if kv is not None or streams:
            meta = {JOURNAL_MARK: str(self.journal.mark)} if folded is not None else {}
            if state_rn:
                meta[JOURNAL_STATE_MARK] = str(state_rn)
            # the acknowledgements' bookkeeping alone (ACK_STATE) is not the event's state
            sync = kv is not None and (sync_state or (important and not kv.keys() <= ACK_STATE))
            self.state.commit(kv, streams, sync=sync, meta=meta)
        db.execute(f"PRAGMA synchronous={'FULL' if important else 'NORMAL'}")
        results: list[PutResult | BaseException] = []
        saved = (
            _Counts(self._counts.rows, self._counts.bytes, dict(self._counts.by_prio)),
            self.thin_level,
            self._last_id,
            self.thinned,
            self.dropped,
            self.refused,
            self.refused_replies,
            self._full,
            self._refused_before_full,
        )
        db.execute("BEGIN IMMEDIATE")
        try:
            self._measure_slack(db)
            if acks:
                self._delete_acked(db, acks)
            for item in batch:
                results.append(self._insert(db, item))
            for r in records or ():
                self._insert_record(db, r)
            if streams:
                db.executemany(
                    "INSERT INTO streams(name, seq) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
                    streams.items(),
                )
            if kv is not None and RETAINED_IDS_KEY in kv:
                # with the deletes they note, in the outbox's own commit: the state store's
                # is not synced for them (ACK_STATE), a power cut may lose it and keep this
                self._set_meta(db, RETAINED_IDS_KEY, kv[RETAINED_IDS_KEY])
            if folded is not None:  # not max(rns): an older record the disk refused is not
                # folded
                self._set_meta(db, JOURNAL_MARK, str(folded))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite has already rolled back after SQLITE_FULL
                db.execute("ROLLBACK")
            (
                self._counts,
                self.thin_level,
                self._last_id,
                self.thinned,
                self.dropped,
                self.refused,
                self.refused_replies,
                self._full,
                self._refused_before_full,
            ) = saved
            raise
        return results

    def _delete_acked(self, db: sqlite3.Connection, acks: list[Stored]) -> None:
        # one statement text for any number of acks (`edged.outbox.idsets`), a step per
        # run of consecutive ids: a drain acknowledges them mostly in order
        rows = [m for m in acks if m.id > 0]  # not those the broker took from memory
        db.executemany("DELETE FROM msg WHERE id BETWEEN ? AND ?", idsets.runs(m.id for m in rows))
        for m in rows:
            self._counts.rows -= 1
            self._counts.bytes -= m.size
            self._counts.by_prio[m.priority] -= 1
        self._urgent_rows.difference_update(m.id for m in rows)
        retained: dict[str, Stored] = {}
        for m in acks:  # the newest of each topic the broker took (`ack` noted its id)
            newest = m.id >= self._retained_ids.get(m.topic, 0)
            if m.retain and (m.id < 0 or (newest and m.id > self._overtaken.get(m.topic, 0))):
                retained[m.topic] = m
        if retained:
            db.executemany(
                "INSERT INTO retained(topic, payload, qos) VALUES (?, ?, ?) "
                "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos",
                ((m.topic, m.payload, m.qos) for m in retained.values()),
            )
        if (
            self.thin_level
            and self._counts.rows < self.config.max_rows // 2
            and self._data_bytes() < self.config.max_bytes // 2
        ):
            log.info("outbox below half its soft cap: samples no longer thinned")
            self.thin_level = 0

    def _data_bytes(self) -> int:
        """What the caps compare: what the rows take in the database's pages, plus the
        room the WAL may take."""
        return self._counts.bytes + self._slack + self.config.wal_bytes

    def _measure_slack(self, db: sqlite3.Connection) -> None:
        """The pages in use against the rows' counted size. Rows are always appended (ids
        grow), so the room a deleted row leaves in a page is taken again only once the
        whole page is free: after thinning, the file holds more than the rows counted."""
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        if not self._page_size:  # fixed once the file exists
            (self._page_size,) = db.execute("PRAGMA page_size").fetchone()
        self._slack = max(0, (pages - free) * self._page_size - self._counts.bytes)

    def _insert(self, db: sqlite3.Connection, item: _Pending) -> PutResult | BaseException:
        pub, cfg, counts = item.pub, self.config, self._counts
        prio = pub.priority
        rows: list[tuple[str, bytes | None]] = [(pub.topic, None)]
        if pub.response_topic:
            rows.append((pub.response_topic, pub.correlation))
        size = sum(len(t) + len(item.payload) + _ROW_OVERHEAD for t, _ in rows)
        if prio is Priority.SAMPLE and not self._keeps_sample(item.seq):
            self.thinned += 1
            return PutResult.THINNED
        # a latest-only message replaces its unsent predecessor, which leaves only if this
        # one is taken: refused at the hard cap, the topic keeps its last value, not none
        superseded = self._superseded(db, pub.topic, prio) if pub.spec.latest_only else None
        freed_rows = superseded.count if superseded else 0
        freed_bytes = superseded.size if superseded else 0

        def over_soft() -> bool:
            return (
                counts.rows - freed_rows + len(rows) > cfg.max_rows
                or self._data_bytes() - freed_bytes + size > cfg.max_bytes
            )

        if over_soft():
            self._thin(db)
            if prio is Priority.SAMPLE and not self._keeps_sample(item.seq):
                self.thinned += 1
                return PutResult.THINNED
            if pub.spec is REPLY and over_soft():
                # what a commander makes the node say stops at the soft cap: a flood of
                # commands (diag.dump: 60 KB of reply for 200 bytes) faster than the
                # uplink takes their replies leaves the node room for its own events,
                # journeys and trips up to the hard cap
                # (counted in `refused_replies`, apart: `alarm/outbox_full` counts the
                # events refused at the hard cap, which dispatch reads as events lost)
                self.refused_replies += 1
                return self._full_error(pub, "replies stop at the soft cap")
        over_hard = (
            counts.rows - freed_rows + len(rows) > cfg.hard_max_rows
            or self._data_bytes() - freed_bytes + size > cfg.hard_max_bytes
        )
        if over_hard:
            in_reserve = counts.rows + len(rows) <= cfg.hard_max_rows + cfg.alarm_reserve_rows
            if prio is Priority.ALARM and in_reserve:
                pass
            elif prio >= Priority.SAMPLE:
                self.dropped += 1
                return PutResult.DROPPED
            else:
                if not self._full:
                    self._refused_before_full = self.refused
                self.refused += 1
                self._full = True
                return self._full_error(pub, "")
        if superseded is not None:
            self._delete(db, superseded)
        for topic, corr in rows:
            self._insert_row(
                db,
                int(prio),
                topic,
                item.payload,
                pub.qos,
                bool(pub.spec.retain and corr is None and not item.plain),
                pub.stream,
                item.seq,
                item.created,
                pub.spec.latest_only,
                corr,
            )
        return PutResult.STORED

    def _full_error(self, pub: Publication, why: str) -> OutboxFullError:
        counts = self._counts
        return OutboxFullError(
            f"outbox full ({counts.rows} rows, {counts.bytes} bytes{', ' + why if why else ''}): "
            f"{pub.topic} refused; the uplink has been down too long or the caps are too small"
        )

    def _insert_record(self, db: sqlite3.Connection, r: Record) -> None:
        """A journal record as a row, as it was written (its epoch, seq and bytes)."""
        self._insert_row(
            db, r.prio, r.topic, r.payload, r.qos, r.retain, r.stream, r.seq, r.created,
            r.latest_only, None,
        )  # fmt: skip

    def _insert_row(
        self,
        db: sqlite3.Connection,
        prio: int,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        stream: str,
        seq: int,
        created: int,
        latest_only: bool,
        corr: bytes | None,
    ) -> None:
        size = len(topic) + len(payload) + _ROW_OVERHEAD
        cur = db.execute(
            "INSERT INTO msg(prio, topic, payload, qos, retain, stream, seq, created, size,"
            " latest_only, corr) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                prio,
                topic,
                payload,
                qos,
                int(retain),
                stream,
                seq,
                created,
                size,
                int(latest_only),
                corr,
            ),
        )
        assert cur.lastrowid is not None
        self._last_id = int(cur.lastrowid)
        if urgent(prio, topic):
            self._urgent_rows.add(self._last_id)
        self._counts.rows += 1
        self._counts.bytes += size
        self._counts.by_prio[prio] += 1

    def _keeps_sample(self, seq: int) -> bool:
        return seq % (1 << self.thin_level) == 0

    def _not_inflight(self) -> tuple[str, list[Any]]:
        """The rows in flight, or acknowledged and not yet deleted, left out, by one
        parameter (`edged.outbox.idsets`)."""
        if not self._inflight and not self._acked:
            return "", []
        ids = [*self._inflight, *self._acked]  # this order: `ack` adds before it pops
        return " AND id NOT IN (SELECT value FROM json_each(?))", [idsets.as_json(ids)]

    def _delete_where(self, db: sqlite3.Connection, where: str, args: list[Any]) -> int:
        return self._delete(db, self._matching(db, where, args))

    def _matching(self, db: sqlite3.Connection, where: str, args: list[Any]) -> _Matching:
        """The rows `where` names, not in flight: the condition and, per class, how many and
        their bytes (what deleting them frees)."""
        extra, ids = self._not_inflight()
        cond, params = where + extra, [*args, *ids]
        found = db.execute(
            f"SELECT prio, count(*), coalesce(sum(size), 0) FROM msg WHERE {cond} GROUP BY prio",
            params,
        ).fetchall()
        return _Matching(cond, params, found)

    def _delete(self, db: sqlite3.Connection, rows: _Matching) -> int:
        if not rows.found:
            return 0
        db.execute(f"DELETE FROM msg WHERE {rows.cond}", rows.params)
        for prio, count, size in rows.found:
            self._counts.rows -= count
            self._counts.bytes -= size
            self._counts.by_prio[prio] -= count
        if any(prio == Priority.ALARM for prio, _, _ in rows.found):
            self._find_urgent_rows(db)
        return rows.count

    def _superseded(self, db: sqlite3.Connection, topic: str, prio: Priority) -> _Matching:
        """The unsent predecessors a latest-only message would replace."""
        return self._matching(db, "prio = ? AND topic = ? AND latest_only = 1", [int(prio), topic])

    def _thin(self, db: sqlite3.Connection) -> None:
        cfg, counts = self.config, self._counts
        while (
            counts.rows >= cfg.max_rows or self._data_bytes() >= cfg.max_bytes
        ) and self.thin_level < _MAX_THIN_LEVEL:
            if counts.by_prio[Priority.SAMPLE] == 0:
                break  # nothing to thin: events and state are never thinned
            self.thin_level += 1
            n = self._delete_where(
                db, "prio = ? AND seq % ? != 0", [int(Priority.SAMPLE), 1 << self.thin_level]
            )
            self.thinned += n
            self._measure_slack(db)
            log.warning(
                "outbox over its soft cap: samples thinned to 1 in %d (%d removed)",
                1 << self.thin_level,
                n,
            )
            if counts.by_prio[Priority.SAMPLE] == 0:
                break

    def _check_pressure(self) -> None:
        """Tell the node once when events start being refused, and once when that ends,
        with the number refused in between."""
        if not self.on_pressure:
            return
        refused = self.refused - self._refused_before_full
        if self._full and not self._pressure_reported:
            self._pressure_reported = True
            self.on_pressure(
                True,
                f"outbox at its hard cap: events refused ({refused} so far, "
                "health.outbox.refused keeps counting)",
                {"refused": refused},
            )
        elif (
            self._pressure_reported
            and self._counts.rows < self.config.max_rows
            and self._data_bytes() < self.config.max_bytes
        ):
            self._full = self._pressure_reported = False
            self.on_pressure(
                False,
                f"outbox back under its soft cap: {refused} event(s) refused while it was full",
                {"refused": refused},
            )

    # -- reading (the uplink) ---------------------------------------------------------

    def begin_session(self) -> None:
        """A new MQTT session: unacknowledged sends are retried."""
        self._inflight.clear()
        self.lanes.reset()
        self.memory.reset()
        self._new_data.set()
        self.alarm_data.set()

    async def next_batch(self, limit: int) -> list[Stored]:
        """The next messages to send, in sending order; waits while there are none.

        A database that cannot be read (a bad page) does not end the session: what is
        in memory still goes, and the database is tried again every READ_RETRY_S."""
        while True:
            self._new_data.clear()
            self.alarm_data.clear()
            batch = self._handed_out(await self._call(self._fetch, limit))
            if batch:
                return batch
            if time.monotonic() - self._read_failed_at < READ_RETRY_S:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(READ_RETRY_S):
                        await self._new_data.wait()
            else:
                await self._new_data.wait()

    async def next_alarms(self, limit: int) -> list[Stored]:
        """The alarms to send (`Priority.ALARM`) not handed out yet, at once: none, or a
        database that cannot be read, is an empty list. For an uplink whose read-ahead of
        `next_batch` is full (`alarm_data` says when to ask)."""
        self.alarm_data.clear()
        return self._handed_out(await self._call(self._fetch, limit, Priority.ALARM))

    def _handed_out(self, batch: list[Stored]) -> list[Stored]:
        """`batch`, after noting what its messages kept in memory overtake: a retained one
        marks its topic's rows stored before it (`superseded`), which go without the flag.
        Every fetch for the uplink goes through here: a clearing of the panic read past the
        read-ahead (`next_alarms`) and left unnoted let the raise stored before it go
        retained after it, and the broker kept the panic active."""
        for m in batch:
            if m.id < 0 and m.retain:
                after = self._memory_after.get(m.id, 0)
                if after > self._overtaken.get(m.topic, 0):
                    self._overtaken[m.topic] = after
        return batch

    def _fetch(self, limit: int, upto: Priority = Priority.HEALTH) -> list[Stored]:
        out: list[Stored] = []
        readable = time.monotonic() - self._read_failed_at >= READ_RETRY_S
        boundary = self.lanes.boundary()
        # a begin_session while this runs: the batch is dropped by the ended session's
        # drain, so nothing of it may count as handed out in the new one
        session, mem_session = self.lanes.session, self.memory.session
        for prio in map(int, Priority):
            if len(out) >= limit or prio > upto:
                break
            out.extend(self.memory.take(prio, limit - len(out), mem_session))
            if not readable or self._counts.by_prio[prio] <= 0:
                continue
            try:
                self._fetch_class(prio, boundary, limit, out, session)
            except sqlite3.Error as exc:
                self.read_errors += 1
                self._read_failed_at = time.monotonic()
                readable = False
                log.error("outbox read failed (%s): trying again in %.0f s", exc, READ_RETRY_S)
        return out

    def _fetch_class(
        self, prio: int, boundary: int, limit: int, out: list[Stored], session: int
    ) -> None:
        """Live lane (ids above `boundary`), then backlog, each in id order."""
        db = self._db
        assert db is not None, "outbox not open"
        cols = "id, topic, payload, qos, retain, corr, size, prio"
        for lo, hi in ((boundary, None), (0, boundary)):
            live = hi is None
            for after, upto in self.lanes.gaps(prio, lo, hi):
                bound, args = ("", []) if upto is None else (" AND id <= ?", [upto])
                while True:  # on past rows acknowledged whose delete waits for a commit
                    room = limit - len(out)
                    if room <= 0:
                        return
                    rows = db.execute(
                        f"SELECT {cols} FROM msg WHERE prio = ? AND id > ?{bound} "
                        "ORDER BY id LIMIT ?",
                        [prio, after, *args, room],
                    ).fetchall()
                    acked = self._acked
                    for r in rows:
                        if r[0] in acked:  # the broker has it; its deletion is not committed
                            continue
                        msg = Stored(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], live)
                        self._inflight[msg.id] = msg.size
                        out.append(msg)
                    if len(rows) < room:  # the gap read to its end
                        self.lanes.take(
                            prio, after, upto if upto is not None else self._last_id, session
                        )
                        break
                    self.lanes.take(prio, after, rows[-1][0], session)
                    after = rows[-1][0]

    async def retained(self) -> list[tuple[str, bytes, int]]:
        """The last delivered message of each retained topic, to restore a broker's memory.

        One the broker took since the last commit is not in the file yet: read as the file
        has it, a restore (a reconnect, `republish`) in that gap would put the topic's older
        value back at the broker, a cleared panic as active, with nothing newer to follow."""

        def read() -> list[tuple[str, bytes, int]]:
            assert self._db is not None
            try:
                return self._db.execute("SELECT topic, payload, qos FROM retained").fetchall()
            except sqlite3.Error as exc:
                self.read_errors += 1
                log.error("cannot read the retained topics from the outbox: %s", exc)
                return []

        latest = {topic: (payload, qos) for topic, payload, qos in await self._call(read)}
        latest.update((topic, (m.payload, m.qos)) for topic, m in self._taken.items())
        return [(topic, payload, qos) for topic, (payload, qos) in latest.items()]

    # -- health -----------------------------------------------------------------------

    async def stats(self) -> OutboxHealth:
        # rows the broker acknowledged whose delete waits for a commit (ACK_COMMIT_S) are
        # not waiting any more: left out of every figure
        acked = idsets.as_json(self._acked)

        def oldest() -> int | None:
            assert self._db is not None
            try:
                row = self._db.execute(
                    "SELECT created FROM msg WHERE id NOT IN (SELECT value FROM json_each(?))"
                    " ORDER BY id LIMIT 1",
                    [acked],
                ).fetchone()
            except sqlite3.Error:
                return None
            return None if row is None else int(row[0])

        created = await self._call(oldest)
        now_ms, _ = self.clock.now()
        waiting = [m for m in self._acks if m.id > 0]  # not yet counted out by a commit
        by_prio = dict(self._counts.by_prio)
        for m in waiting:
            by_prio[m.priority] -= 1
        return OutboxHealth(
            depth=self._counts.rows - len(waiting),
            bytes=self._counts.bytes - sum(m.size for m in waiting),
            oldest_age_s=None if created is None else round(max(0.0, (now_ms - created) / 1000), 1),
            in_flight=len(self._inflight),
            by_class={Priority(p).name.lower(): n for p, n in by_prio.items()},
            thin_level=self.thin_level,
            refused=self.refused,
            refused_replies=self.refused_replies,
            thinned=self.thinned,
            dropped=self.dropped + self.memory.dropped,
            write_errors=self.write_errors,
            in_memory=len(self.memory),
            read_errors=self.read_errors,
        )

    def urgent_waiting(self) -> bool:
        """Whether an alarm a person raised (the panic: `edged.topics.urgent`) waits to be
        sent: put and not yet committed, stored, or in memory (the disk refused it), and
        not acknowledged by the broker. From memory only: the uplink asks it after each
        failed attempt, and a disk stalling the outbox's thread must not stall it."""
        if any(urgent(i.pub.priority, i.pub.topic) for i in (*self._pending, *self._in_commit)):
            return True
        # set operations in C, each whole under the GIL: the outbox's thread changes both
        return bool(self._urgent_rows - self._acked) or self.memory.has_urgent()

    def _find_urgent_rows(self, db: sqlite3.Connection) -> None:
        """The rows of alarms a person raised (at open, and after a bulk delete of alarms)."""
        found = db.execute("SELECT id, topic FROM msg WHERE prio = ?", [int(Priority.ALARM)])
        self._urgent_rows = {int(i) for i, topic in found if urgent(Priority.ALARM, str(topic))}

    @property
    def depth(self) -> int:
        """Messages waiting: in the database and, when the disk refused them, in memory
        (not those acknowledged whose delete waits for a commit: ACK_COMMIT_S)."""
        return self._counts.rows - self._acked_waiting + len(self.memory)


def _settle(waiters: "list[asyncio.Future[bool]]", stored: bool) -> None:
    for future in waiters:
        if not future.done():  # one given up on (a timeout) is cancelled
            future.set_result(stored)


def _retrieved(future: "asyncio.Future[PutResult]") -> None:
    """A future nobody awaits (a message stored again): its outcome is read here."""
    if not future.cancelled():
        future.exception()


def _write(db: sqlite3.Connection, change: Callable[[], None], what: str) -> bool:
    """One transaction at open; a disk that refuses it is logged, not fatal."""
    try:
        db.execute("BEGIN IMMEDIATE")
        change()
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if not sqlitefile.is_disk_error(exc):
            raise
        log.error("outbox: %s failed: %s", what, exc)
        return False
    return True


_ROW_COLS = "id, prio, topic, payload, qos, retain, stream, seq, created, size, latest_only, corr"


def _restore_rows(source: Path, db: sqlite3.Connection) -> dict[str, int]:
    """The queued messages a corrupt outbox still gives back, put into the new one with
    their ids (their order) and bytes: a panic queued in a file whose page went bad still
    goes; and the last value of each retained topic (`retained`), which a broker's restore
    reads. Read forward, then backward from the end, each up to the first bad page; best
    effort, a duplicate of one already sent is dropped by dispatch. Returns per stream
    how many came back: the rows the new file took (a damaged file may give a row twice,
    which the new one takes once)."""
    try:
        old = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    restored: dict[str, int] = {}

    def insert(rows: list[tuple[Any, ...]]) -> None:
        marks = ",".join("?" * 12)
        for r in rows:
            cur = db.execute(f"INSERT OR IGNORE INTO msg({_ROW_COLS}) VALUES ({marks})", r)
            if cur.rowcount > 0:
                restored[str(r[6])] = restored.get(str(r[6]), 0) + 1

    def read(order: str, stop: int) -> int:
        """Rows in `order` up to the first bad page (or to id `stop`); the last id read."""
        last, rows = stop, []
        try:
            for r in old.execute(f"SELECT {_ROW_COLS} FROM msg ORDER BY id {order}"):
                if order == "DESC" and r[0] <= stop:
                    break
                rows.append(r)
                last = r[0]
                if len(rows) >= 1000:  # a full outbox is 100 MB: never all in memory
                    insert(rows)
                    rows = []
        except sqlite3.Error as exc:
            log.warning("reading the corrupt outbox %s stopped: %s", source, exc)
        insert(rows)
        return last

    def retained() -> None:
        """Each topic's value as the old file has it (the first read of a topic wins)."""
        try:
            for row in old.execute("SELECT topic, payload, qos FROM retained"):
                db.execute(
                    "INSERT OR IGNORE INTO retained(topic, payload, qos) VALUES (?,?,?)", row
                )
        except sqlite3.Error as exc:
            log.warning(
                "reading the retained topics of the corrupt outbox %s stopped: %s", source, exc
            )

    def restore() -> None:
        read("DESC", read("ASC", 0))
        retained()

    try:
        if not _write(db, restore, "restoring the messages of the corrupt outbox"):
            restored = {}
    except sqlite3.Error as exc:
        log.error("cannot restore the messages of the corrupt outbox %s: %s", source, exc)
        restored = {}
    finally:
        old.close()
    return restored


def _salvage(path: Path) -> dict[str, Any]:
    """What a corrupt outbox still gives back, read-only and best effort: the services'
    state (before the state store existed), the stream counters, and what was queued."""
    out: dict[str, Any] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    queries = {
        "kv": "SELECT key, value FROM kv",
        "streams": "SELECT name, seq FROM streams",
        "queued": "SELECT stream, min(seq), max(seq), count(*) FROM msg GROUP BY stream",
    }
    try:
        for name, sql in queries.items():
            try:
                rows = db.execute(sql).fetchall()
            except sqlite3.Error:
                continue
            if name == "kv":
                out[name] = {str(k): str(v) for k, v in rows}
            elif name == "streams":
                out[name] = {str(k): int(v) for k, v in rows}
            else:
                out[name] = {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    finally:
        db.close()
    return out

"""SQLite (WAL) outbox: durable before sent, deleted only when the broker acknowledged it.

One connection, used from one worker thread, so the event loop never waits on the SD card.
Writes gather for `flush_interval_ms` and commit together (SD cards wear); a caller of
`put` is told its message is durable only after that commit.

Sending order: priority class first (alarm > events > state > trips > samples > health);
within a class, messages written during the current MQTT session (the live lane) go before
those left over from earlier (the backlog lane), each lane in write order. So a live tap
is not stuck behind a day of queued positions; dispatch orders by `seq`.

When the outbox passes its soft cap, samples are thinned by a rule that keeps an even
spread: at thinning level L only samples whose `seq` is a multiple of 2**L are kept, both
those stored and those arriving. Past the hard cap, events are refused with
`OutboxFullError` (counted, and `on_pressure` raises an alarm); alarms still have a reserve.
"""

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.errors import EdgedError, OutboxFullError
from edged.outbox.publication import Publication, Stored
from edged.payloads import Body, OutboxHealth
from edged.release.schemas import open_stores
from edged.topics import Priority

log = logging.getLogger(__name__)
T = TypeVar("T")

_ROW_OVERHEAD = 64  # bytes counted per row on top of topic and payload
_MAX_THIN_LEVEL = 16
_BATCH_MAX = 2000

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
"""


class PutResult(StrEnum):
    STORED = "stored"
    THINNED = "thinned"  # a sample dropped by the thinning rule
    DROPPED = "dropped"  # a sample or health report dropped at the hard cap


@dataclass(slots=True)
class _Pending:
    pub: Publication
    payload: bytes
    seq: int
    created: int
    future: "asyncio.Future[PutResult]"


@dataclass
class _Counts:
    rows: int = 0
    bytes: int = 0
    by_prio: dict[int, int] = field(default_factory=lambda: {int(p): 0 for p in Priority})


def encode(body: dict[str, Any], *, v: int, seq: int, ts: int, clock: str) -> bytes:
    envelope = {"v": v, "seq": seq, "ts": ts, "clock": clock}
    return json.dumps({**envelope, **body}, separators=(",", ":"), ensure_ascii=False).encode()


class Outbox:
    def __init__(
        self,
        config: OutboxConfig,
        clock: Clock,
        *,
        on_pressure: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_pressure = on_pressure
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._seqs: dict[str, int] = {}
        self._pending: list[_Pending] = []
        self._acks: list[Stored] = []
        self._kv: dict[str, str] = {}
        self._wake_writer = asyncio.Event()
        self._new_data = asyncio.Event()
        self._counts = _Counts()
        self._inflight: dict[int, int] = {}  # id -> size
        self._mark = 0
        self._live_cursor: dict[int, int] = {}
        self._back_cursor: dict[int, int] = {}
        self.thin_level = 0
        self.refused = 0
        self.thinned = 0
        self.dropped = 0
        self.write_errors = 0
        self._full = False
        self._pressure_reported = False
        self._kv_dirty = False
        self._streams_dirty: set[str] = set()
        self._last_id = 0
        self.schema_stamps: dict[str, tuple[int, int]] = {}  # edged.release.schemas
        self._closed = False
        self.writer_alive = False
        self.last_commit = time.monotonic()

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        await self._call(self._open)
        self.begin_session()

    def _open(self) -> None:
        path = Path(self.config.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=2.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            self.schema_stamps = open_stores(db, ("outbox", "state"), str(path))
        except (OSError, sqlite3.Error) as exc:
            raise EdgedError(
                f"cannot open the outbox at {path}: {exc}; check that the directory exists, "
                "is writable by edged and the disk is not full"
            ) from exc
        self._db = db
        self._seqs = dict(db.execute("SELECT name, seq FROM streams").fetchall())
        self._kv = dict(db.execute("SELECT key, value FROM kv").fetchall())
        counts = _Counts()
        for prio, n, size in db.execute("SELECT prio, count(*), sum(size) FROM msg GROUP BY prio"):
            counts.by_prio[prio] = n
            counts.rows += n
            counts.bytes += size or 0
        self._counts = counts
        self._last_id = int(db.execute("SELECT coalesce(max(id), 0) FROM msg").fetchone()[0])

    async def close(self) -> None:
        """Commit what is pending and close; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self.flush()
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- writing ----------------------------------------------------------------------

    def put_nowait(self, pub: Publication) -> "asyncio.Future[PutResult]":
        """Stamp the envelope now and queue the write; the future resolves once durable."""
        if self._closed:
            raise EdgedError("the outbox is closed: edged is shutting down")
        payload, seq, ts = self.stamp(pub.stream, pub.body, pub.spec.version)
        future: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(pub, payload, seq, ts, future))
        self._wake_writer.set()
        return future

    def stamp(self, stream: str, body: BaseModel, version: int = 1) -> tuple[bytes, int, int]:
        """Payload bytes with the envelope; the stream's new `seq` is persisted with the next
        commit. Returns (payload, seq, ts)."""
        seq = self._seqs.get(stream, 0) + 1
        self._seqs[stream] = seq
        self._streams_dirty.add(stream)
        ts, source = self.clock.now()
        data = (
            body.to_json_dict()
            if isinstance(body, Body)
            else body.model_dump(mode="json", exclude_none=True)
        )
        return encode(data, v=version, seq=seq, ts=ts, clock=source.value), seq, ts

    async def put(self, pub: Publication) -> PutResult:
        """Store a publication; returns once it is on disk (or says why it was not kept)."""
        return await self.put_nowait(pub)

    def ack(self, msg: Stored) -> None:
        """The broker has the message (PUBACK, or written for QoS 0): delete it soon."""
        if self._inflight.pop(msg.id, None) is None:
            return  # acknowledged twice, or from a session that was reset
        self._acks.append(msg)
        self._wake_writer.set()

    def set_state(self, key: str, value: Any) -> None:
        """Small persistent state for services (odometer, trip...), written with the next batch."""
        self._kv[key] = json.dumps(value)
        self._kv_dirty = True
        self._wake_writer.set()

    def get_state(self, key: str, default: Any = None) -> Any:
        raw = self._kv.get(key)
        return default if raw is None else json.loads(raw)

    async def run_writer(self) -> None:
        """Commit gathered writes and acks; the only task that writes to the database."""
        self.writer_alive = True
        try:
            while True:
                await self._wake_writer.wait()
                if self.config.flush_interval_ms:
                    await asyncio.sleep(self.config.flush_interval_ms / 1000)
                try:
                    # back to back while acks stream in: measured here, making acks wait
                    # an interval doubled live latency during a drain; ack-only commits
                    # run with synchronous=NORMAL, so in WAL mode they do not fsync
                    await self.flush()
                except (sqlite3.Error, OSError, EdgedError):
                    # the batch's callers got the error; keep writing what comes next
                    self.write_errors += 1
                    await asyncio.sleep(1.0)
        finally:
            self.writer_alive = False

    async def flush(self) -> None:
        """Commit everything gathered so far."""
        while self._pending or self._acks or self._kv_dirty or self._streams_dirty:
            await self._commit_gathered()

    async def _commit_gathered(self) -> None:
        """One commit of what is gathered now (puts: at most _BATCH_MAX of them)."""
        if self._pending or self._acks or self._kv_dirty or self._streams_dirty:
            self._wake_writer.clear()
            batch, self._pending = self._pending[:_BATCH_MAX], self._pending[_BATCH_MAX:]
            acks, self._acks = self._acks, []
            kv = dict(self._kv) if self._kv_dirty else None
            self._kv_dirty = False
            streams = {name: self._seqs[name] for name in self._streams_dirty}
            self._streams_dirty.clear()
            try:
                results = await self._call(self._commit, batch, acks, kv, streams)
            except Exception as exc:
                # nothing of this commit happened: acks, state and seqs are tried again
                self._acks[:0] = acks
                self._streams_dirty.update(streams)
                self._kv_dirty = self._kv_dirty or kv is not None
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(
                            EdgedError(f"the outbox could not store the message: {exc}")
                        )
                log.error("outbox commit failed: %s", exc)
                raise
            self.last_commit = time.monotonic()
            for item, result in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
            if any(r is PutResult.STORED for r in results):
                self._new_data.set()
            self._check_pressure()

    def _commit(
        self,
        batch: list[_Pending],
        acks: list[Stored],
        kv: dict[str, str] | None,
        streams: dict[str, int],
    ) -> list[PutResult | BaseException]:
        db = self._db
        assert db is not None, "outbox not open"
        important = any(item.pub.priority <= Priority.TRIP for item in batch)
        db.execute(f"PRAGMA synchronous={'FULL' if important else 'NORMAL'}")
        results: list[PutResult | BaseException] = []
        saved = (
            _Counts(self._counts.rows, self._counts.bytes, dict(self._counts.by_prio)),
            self.thin_level,
            self._last_id,
            self.thinned,
            self.dropped,
            self.refused,
        )
        db.execute("BEGIN IMMEDIATE")
        try:
            if acks:
                self._delete_acked(db, acks)
            for item in batch:
                results.append(self._insert(db, item))
            if streams:
                db.executemany(
                    "INSERT INTO streams(name, seq) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
                    streams.items(),
                )
            if kv is not None:
                db.executemany(
                    "INSERT INTO kv(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    kv.items(),
                )
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
            ) = saved
            raise
        return results

    def _delete_acked(self, db: sqlite3.Connection, acks: list[Stored]) -> None:
        ids = [m.id for m in acks]
        for i in range(0, len(ids), 500):  # one statement per 500 ids, not one per row
            chunk = ids[i : i + 500]
            db.execute(f"DELETE FROM msg WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        for m in acks:
            self._counts.rows -= 1
            self._counts.bytes -= m.size
            self._counts.by_prio[m.priority] -= 1
        retained = {m.topic: m for m in acks if m.retain}
        if retained:
            db.executemany(
                "INSERT INTO retained(topic, payload, qos) VALUES (?, ?, ?) "
                "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos",
                ((m.topic, m.payload, m.qos) for m in retained.values()),
            )
        if (
            self.thin_level
            and self._counts.rows < self.config.max_rows // 2
            and self._counts.bytes < self.config.max_bytes // 2
        ):
            log.info("outbox below half its soft cap: samples no longer thinned")
            self.thin_level = 0

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
        if pub.spec.latest_only:
            self._delete_superseded(db, pub.topic, prio)
        if counts.rows + len(rows) > cfg.max_rows or counts.bytes + size > cfg.max_bytes:
            self._thin(db)
            if prio is Priority.SAMPLE and not self._keeps_sample(item.seq):
                self.thinned += 1
                return PutResult.THINNED
        over_hard = (
            counts.rows + len(rows) > cfg.hard_max_rows or counts.bytes + size > cfg.hard_max_bytes
        )
        if over_hard:
            in_reserve = counts.rows + len(rows) <= cfg.hard_max_rows + cfg.alarm_reserve_rows
            if prio is Priority.ALARM and in_reserve:
                pass
            elif prio >= Priority.SAMPLE:
                self.dropped += 1
                return PutResult.DROPPED
            else:
                self.refused += 1
                self._full = True
                return OutboxFullError(
                    f"outbox full ({counts.rows} rows, {counts.bytes} bytes): {pub.topic} "
                    "refused; the uplink has been down too long or the caps are too small"
                )
        db.executemany(
            "INSERT INTO msg(prio, topic, payload, qos, retain, stream, seq, created, size,"
            " latest_only, corr) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    int(prio),
                    topic,
                    item.payload,
                    pub.qos,
                    int(pub.spec.retain and corr is None),
                    pub.stream,
                    item.seq,
                    item.created,
                    len(topic) + len(item.payload) + _ROW_OVERHEAD,
                    int(pub.spec.latest_only),
                    corr,
                )
                for topic, corr in rows
            ),
        )
        self._last_id = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
        counts.rows += len(rows)
        counts.bytes += size
        counts.by_prio[prio] += len(rows)
        return PutResult.STORED

    def _keeps_sample(self, seq: int) -> bool:
        return seq % (1 << self.thin_level) == 0

    def _not_inflight(self) -> tuple[str, list[int]]:
        ids = list(self._inflight)
        return (f" AND id NOT IN ({','.join('?' * len(ids))})" if ids else ""), ids

    def _delete_where(self, db: sqlite3.Connection, where: str, args: list[Any]) -> int:
        extra, ids = self._not_inflight()
        cond = where + extra
        params = [*args, *ids]
        found = db.execute(
            f"SELECT prio, count(*), coalesce(sum(size), 0) FROM msg WHERE {cond} GROUP BY prio",
            params,
        ).fetchall()
        if not found:
            return 0
        db.execute(f"DELETE FROM msg WHERE {cond}", params)
        n = 0
        for prio, count, size in found:
            self._counts.rows -= count
            self._counts.bytes -= size
            self._counts.by_prio[prio] -= count
            n += count
        return n

    def _delete_superseded(self, db: sqlite3.Connection, topic: str, prio: Priority) -> None:
        self._delete_where(db, "prio = ? AND topic = ? AND latest_only = 1", [int(prio), topic])

    def _thin(self, db: sqlite3.Connection) -> None:
        cfg, counts = self.config, self._counts
        while (
            counts.rows >= cfg.max_rows or counts.bytes >= cfg.max_bytes
        ) and self.thin_level < _MAX_THIN_LEVEL:
            if counts.by_prio[Priority.SAMPLE] == 0:
                break  # nothing to thin: events and state are never thinned
            self.thin_level += 1
            n = self._delete_where(
                db, "prio = ? AND seq % ? != 0", [int(Priority.SAMPLE), 1 << self.thin_level]
            )
            self.thinned += n
            log.warning(
                "outbox over its soft cap: samples thinned to 1 in %d (%d removed)",
                1 << self.thin_level,
                n,
            )
            if counts.by_prio[Priority.SAMPLE] == 0:
                break

    def _check_pressure(self) -> None:
        """Tell the node once when events start being refused, and once when that ends."""
        if not self.on_pressure:
            return
        if self._full and not self._pressure_reported:
            self._pressure_reported = True
            self.on_pressure(True, f"outbox full: {self.refused} message(s) refused")
        elif (
            self._pressure_reported
            and self._counts.rows < self.config.max_rows
            and self._counts.bytes < self.config.max_bytes
        ):
            self._full = self._pressure_reported = False
            self.on_pressure(False, "outbox back under its soft cap")

    # -- reading (the uplink) ---------------------------------------------------------

    def begin_session(self) -> None:
        """A new MQTT session: what is stored now is backlog; unacked sends are retried."""
        self._inflight.clear()
        self._mark = self._last_id
        self._live_cursor = {int(p): self._mark for p in Priority}
        self._back_cursor = {int(p): 0 for p in Priority}
        self._new_data.set()

    async def next_batch(self, limit: int) -> list[Stored]:
        """The next messages to send, in sending order; waits while there are none."""
        while True:
            self._new_data.clear()
            batch = await self._call(self._fetch, limit)
            if batch:
                return batch
            await self._new_data.wait()

    def _fetch(self, limit: int) -> list[Stored]:
        db = self._db
        assert db is not None, "outbox not open"
        out: list[Stored] = []
        cols = "id, topic, payload, qos, retain, corr, size, prio"
        for prio in map(int, Priority):
            if len(out) >= limit:
                break
            if self._counts.by_prio[prio] <= 0:
                continue
            for lane_sql, cursor, args in (
                ("id > ?", self._live_cursor, []),
                ("id > ? AND id <= ?", self._back_cursor, [self._mark]),
            ):
                room = limit - len(out)
                if room <= 0:
                    break
                rows = db.execute(
                    f"SELECT {cols} FROM msg WHERE prio = ? AND {lane_sql} ORDER BY id LIMIT ?",
                    [prio, cursor[prio], *args, room],
                ).fetchall()
                for r in rows:
                    msg = Stored(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7])
                    self._inflight[msg.id] = msg.size
                    out.append(msg)
                if rows:
                    cursor[prio] = rows[-1][0]
        return out

    async def retained(self) -> list[tuple[str, bytes, int]]:
        """The last delivered message of each retained topic, to restore a broker's memory."""

        def read() -> list[tuple[str, bytes, int]]:
            assert self._db is not None
            return self._db.execute("SELECT topic, payload, qos FROM retained").fetchall()

        return await self._call(read)

    # -- health -----------------------------------------------------------------------

    async def stats(self) -> OutboxHealth:
        def oldest() -> int | None:
            assert self._db is not None
            row = self._db.execute("SELECT created FROM msg ORDER BY id LIMIT 1").fetchone()
            return None if row is None else int(row[0])

        created = await self._call(oldest)
        now_ms, _ = self.clock.now()
        return OutboxHealth(
            depth=self._counts.rows,
            bytes=self._counts.bytes,
            oldest_age_s=None if created is None else round(max(0.0, (now_ms - created) / 1000), 1),
            in_flight=len(self._inflight),
            by_class={Priority(p).name.lower(): n for p, n in self._counts.by_prio.items()},
            thin_level=self.thin_level,
            refused=self.refused,
            thinned=self.thinned,
            dropped=self.dropped,
            write_errors=self.write_errors,
        )

    @property
    def depth(self) -> int:
        return self._counts.rows

import asyncio
import dataclasses
import itertools
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.memory import sqlite_memory_used
from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.errors import NotDurableError, OutboxFullError
from edged.outbox import Outbox, Publication, PutResult, Stored, sqlitefile
from edged.outbox.store import ACK_COMMIT_ROWS
from edged.payloads import (
    Alarm,
    DoorEvent,
    Health,
    Journey,
    Occupancy,
    OutboxHealth,
    Position,
    Reply,
)
from edged.topics import (
    ALARM,
    DOOR,
    HEALTH,
    JOURNEY,
    OCCUPANCY,
    POSITION,
    REPLY,
    Priority,
    Topics,
)
from tests.helpers.disk import fill, mounted_tmpfs, rows_on_disk

TOPICS = Topics("rnst/v1", "test", "n1")
ROOT = Path(__file__).resolve().parents[3]


def door(i: int) -> Publication:
    return Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=i % 2 == 0))


def position(i: int) -> Publication:
    body = Position(
        fix_time="2026-11-25T10:00:00Z",
        lat=45.0 + i * 1e-5,
        lon=2.0,
        mode="3D",
        quality=1,
        odometer_m=float(i),
    )
    return Publication.make(TOPICS, POSITION, body)


def health(depth: int) -> Publication:
    ob = OutboxHealth(
        depth=depth,
        bytes=0,
        oldest_age_s=None,
        in_flight=0,
        by_class={},
        thin_level=0,
        refused=0,
        thinned=0,
    )
    body = Health(
        uptime_s=1,
        rss_mb=1,
        cpu_pct=0,
        loop_lag_ms=0,
        clock="ntp",
        connected=False,
        reconnects=0,
        outbox=ob,
        drivers=[],
        errors={},
    )
    return Publication.make(TOPICS, HEALTH, body)


def alarm() -> Publication:
    return Publication.make(TOPICS, ALARM, Alarm(kind="panic", active=True), name="panic")


def config(tmp_path: Path, **caps: int) -> OutboxConfig:
    return OutboxConfig(path=tmp_path / "outbox.sqlite", flush_interval_ms=0, **caps)


async def opened(cfg: OutboxConfig) -> Outbox:
    box = Outbox(cfg, Clock())
    await box.open()
    return box


async def drain(box: Outbox, limit: int = 10_000) -> list[Stored]:
    """Everything the uplink would send now, in order, acknowledged."""
    out: list[Stored] = []
    while box.depth - len(out) > 0:
        batch = await asyncio.wait_for(box.next_batch(limit), 2)
        out.extend(batch)
    for m in out:
        box.ack(m)
    await box.flush()
    return out


def seqs(msgs: list[Stored]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in msgs]


async def test_put_returns_only_once_the_row_is_on_disk(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    result = await box.put(door(1))
    rows = rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg")
    assert result is PutResult.STORED
    assert rows == [(1,)]
    writer.cancel()
    await box.close()


async def test_every_payload_carries_the_envelope(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    box.put_nowait(door(1))
    await box.flush()
    (msg,) = await drain(box)
    payload = json.loads(msg.payload)
    assert set(payload) >= {"v", "seq", "ts", "clock", "door", "open"}
    assert payload["clock"] in {"ntp", "gps", "unsynced"}
    assert payload["v"] == 1 and payload["seq"] == 1
    await box.close()


async def test_seq_continues_after_reopening(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    box = await opened(cfg)
    for i in range(3):
        box.put_nowait(door(i))
    await box.close()
    box = await opened(cfg)
    box.put_nowait(door(9))
    await box.flush()
    assert sorted(seqs(await drain(box))) == [1, 2, 3, 4]
    await box.close()


async def test_higher_priority_class_is_sent_first(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    box.put_nowait(position(1))
    box.put_nowait(health(0))
    box.put_nowait(door(1))
    box.put_nowait(alarm())
    await box.flush()
    sent = await drain(box)
    assert [m.priority for m in sent] == [
        Priority.ALARM,
        Priority.EVENT,
        Priority.SAMPLE,
        Priority.HEALTH,
    ]
    await box.close()


async def test_recent_messages_go_before_older_ones_of_their_class(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, live_window_s=0.3))
    for i in range(5):
        box.put_nowait(door(i))
    await box.flush()
    await asyncio.sleep(0.4)  # the five are older than the live window now
    box.put_nowait(door(99))
    await box.flush()
    assert seqs(await drain(box)) == [6, 1, 2, 3, 4, 5]
    await box.close()


async def test_a_new_message_stays_live_across_a_reconnect(tmp_path: Path) -> None:
    """A flapping link: the session that saw the message written is gone before it was
    sent; the message is still recent, so it still goes before the backlog."""
    box = await opened(config(tmp_path, live_window_s=0.3))
    for i in range(5):
        box.put_nowait(door(i))
    await box.flush()
    await asyncio.sleep(0.4)  # the five are a backlog now
    box.begin_session()
    first = await box.next_batch(2)  # the link drops after two of the backlog
    assert seqs(first) == [1, 2]
    box.put_nowait(door(99))
    await box.flush()
    box.begin_session()  # reconnected
    assert seqs(await drain(box))[0] == 6
    await box.close()


async def test_a_message_ageing_out_of_the_live_lane_is_not_sent_twice(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, live_window_s=0.2))
    for i in range(6):
        box.put_nowait(door(i))
    await box.flush()
    first = await box.next_batch(2)  # taken from the live lane
    await asyncio.sleep(0.3)  # now all six are backlog
    for m in first:
        box.ack(m)
    await box.flush()
    rest = await drain(box)
    assert seqs(first) + seqs(rest) == [1, 2, 3, 4, 5, 6]
    await box.close()


async def test_offline_for_days_the_outbox_remembers_only_the_live_windows_commits(
    tmp_path: Path,
) -> None:
    """No uplink reads while the node is offline: each commit's (time, id) must still
    leave the live lane's memory once older than the window, not pile up for days."""
    box = await opened(config(tmp_path, live_window_s=30))
    now = [0.0]
    box.lanes.monotonic = lambda: now[0]
    for i in range(1_000):  # a commit a second, for 1,000 s
        now[0] += 1.0
        box.put_nowait(position(i))
        await box.flush()
    assert len(box.lanes._commits) <= 31
    await box.close()


async def test_unacknowledged_messages_are_sent_again_in_the_next_session(
    tmp_path: Path,
) -> None:
    box = await opened(config(tmp_path))
    for i in range(3):
        box.put_nowait(door(i))
    await box.flush()
    first = await box.next_batch(10)
    box.ack(first[0])
    await box.flush()
    box.begin_session()  # connection lost before the other two PUBACKs
    again = await drain(box)
    assert seqs(again) == [2, 3]
    await box.close()


async def test_retained_state_keeps_only_its_latest_unsent_value(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    for depth in range(5):
        box.put_nowait(health(depth))
    await box.flush()
    sent = await drain(box)
    assert len(sent) == 1
    assert json.loads(sent[0].payload)["outbox"]["depth"] == 4
    await box.close()


async def test_acknowledged_retained_message_is_kept_for_republishing(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    box.put_nowait(health(3))
    await box.flush()
    await drain(box)
    ((topic, payload, _qos),) = await box.retained()
    assert topic == TOPICS.base + "/health"
    assert json.loads(payload)["outbox"]["depth"] == 3
    await box.close()


def alarm_cleared() -> Publication:
    return Publication.make(TOPICS, ALARM, Alarm(kind="panic", active=False), name="panic")


async def raised_then_cleared(box: Outbox) -> tuple[Stored, Stored]:
    """A panic raised then cleared, both stored and handed out to the uplink."""
    box.put_nowait(alarm())
    box.put_nowait(alarm_cleared())
    await box.flush()
    raised, cleared = await box.next_batch(10)
    return raised, cleared


async def test_a_retained_row_older_than_one_the_broker_took_is_superseded(
    tmp_path: Path,
) -> None:
    """A panic raised, refused by the broker, then cleared: once the clear is taken the raise
    is superseded (sent retained, the broker would keep `active: true` as the alarm's value),
    and the copy kept to restore a broker's memory stays the clear once the raise is sent
    as the sender sends it, without the flag."""
    box = await opened(config(tmp_path))
    raised, cleared = await raised_then_cleared(box)
    assert json.loads(raised.payload)["active"] is True
    assert not box.superseded(raised)  # nothing newer taken yet: it goes retained
    box.ack(cleared)
    assert box.superseded(raised) and not box.superseded(cleared)
    box.ack(dataclasses.replace(raised, retain=False))
    await box.flush()
    ((topic, payload, _qos),) = await box.retained()
    assert topic == TOPICS.base + "/alarm/panic" and json.loads(payload)["active"] is False
    assert box.depth == 0
    await box.close()


async def test_an_older_retained_row_taken_late_does_not_replace_the_kept_copy(
    tmp_path: Path,
) -> None:
    box = await opened(config(tmp_path))
    raised, cleared = await raised_then_cleared(box)
    box.ack(cleared)
    await box.flush()
    box.ack(raised)  # e.g. a PUBACK of a resend that crossed the clear on the link
    await box.flush()
    ((_topic, payload, _qos),) = await box.retained()
    assert json.loads(payload)["active"] is False
    await box.close()


async def test_a_retained_value_taken_but_not_yet_committed_is_the_one_restored(
    tmp_path: Path,
) -> None:
    """The clear of a panic is taken (PUBACK) and its commit is not done yet (up to
    `flush_interval_ms`, longer on a slow SD card) when a restore runs (a reconnect to a
    broker that lost its store, `republish`): the file still holds the raise, and restoring
    it put `active: true` back at the broker, with no newer message to follow."""
    box = await opened(config(tmp_path))
    raised, cleared = await raised_then_cleared(box)
    box.ack(raised)
    await box.flush()
    box.ack(cleared)  # taken; the commit that records it has not run
    ((_topic, payload, _qos),) = await box.retained()
    assert json.loads(payload)["active"] is False
    await box.flush()
    ((_topic, payload, _qos),) = await box.retained()
    assert json.loads(payload)["active"] is False
    await box.close()


async def test_a_superseded_row_is_still_known_as_such_after_a_restart(tmp_path: Path) -> None:
    """The refused raise is still in the file when the node restarts; the clear was taken
    and deleted before: the next start must not send the raise as the alarm's value."""
    box = await opened(config(tmp_path))
    _raised, cleared = await raised_then_cleared(box)
    box.ack(cleared)
    await box.flush()
    await box.close()
    again = await opened(config(tmp_path))
    (left,) = await again.next_batch(10)
    assert json.loads(left.payload)["active"] is True and again.superseded(left)
    await again.close()


async def test_a_new_outbox_file_starts_with_no_retained_row_superseded(tmp_path: Path) -> None:
    """The ids noted are the old file's: in a new one (the old moved aside as corrupt, or
    deleted) row ids start again from 1, and a new raise must still go retained."""
    box = await opened(config(tmp_path))
    for _ in range(3):
        box.put_nowait(alarm())
    await box.flush()
    for m in await box.next_batch(10):
        box.ack(m)
    await box.flush()
    await box.close()
    for file in sqlitefile.companions(tmp_path / "outbox.sqlite"):
        file.unlink(missing_ok=True)
    again = await opened(config(tmp_path))  # the state store is kept
    again.put_nowait(alarm())
    await again.flush()
    # beside it, copies the journal gives back (at least once: their old epoch and seq)
    (fresh,) = [
        m for m in await again.next_batch(10) if json.loads(m.payload)["epoch"] == again.epoch
    ]
    assert not again.superseded(fresh)
    await again.close()


async def test_samples_are_thinned_to_an_even_spread_over_the_soft_cap(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=100, hard_max_rows=1000))
    for i in range(400):
        box.put_nowait(position(i))
    await box.flush()
    kept = seqs(await drain(box))
    assert len(kept) <= 100
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    assert len(gaps) == 1, f"uneven spread: gaps {sorted(gaps)}"
    assert kept[-1] >= 390, "the newest samples must survive"
    assert box.thinned == 400 - len(kept)
    await box.close()


async def test_events_are_never_thinned(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=100, hard_max_rows=1000))
    for i in range(300):
        box.put_nowait(position(i))
        box.put_nowait(door(i))
    await box.flush()
    sent = await drain(box)
    doors = [m for m in sent if m.priority == Priority.EVENT]
    assert seqs(doors) == list(range(1, 301))
    await box.close()


async def test_events_past_the_hard_cap_are_refused_and_counted(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=10, hard_max_rows=20))
    futures = [box.put_nowait(door(i)) for i in range(25)]
    await box.flush()
    results = await asyncio.gather(*futures, return_exceptions=True)
    refused = [r for r in results if isinstance(r, OutboxFullError)]
    assert len(refused) == 5
    assert box.refused == 5
    assert "refused" in str(refused[0])
    assert box.depth == 20
    await box.close()


async def test_refusal_raises_the_pressure_alarm_once_and_clears_it(tmp_path: Path) -> None:
    calls: list[tuple[bool, str]] = []
    box = Outbox(
        config(tmp_path, max_rows=10, hard_max_rows=20),
        Clock(),
        on_pressure=lambda active, why, details: calls.append((active, why)),
    )
    await box.open()
    for i in range(30):
        box.put_nowait(door(i)).add_done_callback(lambda f: f.exception())
    await box.flush()
    assert [c[0] for c in calls] == [True]
    await drain(box)
    assert [c[0] for c in calls] == [True, False]
    await box.close()


async def test_the_cleared_cap_alarm_counts_every_refusal_of_the_episode(tmp_path: Path) -> None:
    calls: list[tuple[bool, str, dict[str, object]]] = []
    box = Outbox(
        config(tmp_path, max_rows=10, hard_max_rows=20),
        Clock(),
        on_pressure=lambda active, why, details: calls.append((active, why, details)),
    )
    await box.open()
    box.put_nowait(door(0)).add_done_callback(lambda f: f.exception())
    for i in range(21):  # one refused in the first commit...
        box.put_nowait(door(i)).add_done_callback(lambda f: f.exception())
    await box.flush()
    for i in range(250):  # ...and 250 more in later ones
        box.put_nowait(door(i)).add_done_callback(lambda f: f.exception())
        if i % 50 == 0:
            await box.flush()
    await box.flush()
    await drain(box)
    (raised, _, first), (cleared, why, last) = calls
    assert raised and not cleared
    assert first["refused"] == 2
    assert last["refused"] == box.refused == 252
    assert "252 event(s) refused" in why
    await box.close()


async def test_replies_refused_during_a_full_episode_are_not_counted_as_events(
    tmp_path: Path,
) -> None:
    """`alarm/outbox_full` tells dispatch how many events were lost: replies a commander
    made the node refuse meanwhile (at the soft cap) are not events, and not in it."""
    calls: list[tuple[bool, str, dict[str, object]]] = []
    box = Outbox(
        config(tmp_path, max_rows=10, hard_max_rows=20),
        Clock(),
        on_pressure=lambda active, why, details: calls.append((active, why, details)),
    )
    await box.open()
    for i in range(23):  # 3 doors refused at the hard cap
        box.put_nowait(door(i)).add_done_callback(lambda f: f.exception())
    await box.flush()
    replies = [box.put_nowait(ping_reply(i)) for i in range(5)]
    await box.flush()
    assert all(isinstance(r.exception(), OutboxFullError) for r in replies)
    await drain(box)
    (raised, _, first), (cleared, why, last) = calls
    assert raised and not cleared
    assert (first["refused"], last["refused"]) == (3, 3), (first, last)
    assert "3 event(s) refused" in why
    await box.close()


async def test_alarms_use_the_reserve_past_the_hard_cap(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=10, hard_max_rows=20, alarm_reserve_rows=5))
    for i in range(20):
        box.put_nowait(door(i))
    await box.flush()
    stored = box.put_nowait(alarm())
    await box.flush()
    assert await stored is PutResult.STORED
    await box.close()


async def test_samples_past_the_hard_cap_are_dropped_not_errors(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=10, hard_max_rows=20))
    for i in range(20):
        box.put_nowait(door(i))
    await box.flush()
    sample = box.put_nowait(position(1))
    await box.flush()
    assert await sample in {PutResult.DROPPED, PutResult.THINNED}
    await box.close()


def occupancy(status: str) -> Publication:
    body = Occupancy(count=3, capacity=None, percent=None, status=status, entries=3, exits=0,
                     reset_at=0)  # fmt: skip
    return Publication.make(TOPICS, OCCUPANCY, body)


async def test_a_latest_only_value_refused_at_the_hard_cap_leaves_the_one_before(
    tmp_path: Path,
) -> None:
    """A latest-only message (occupancy, faults, journey) replaced its unsent predecessor
    before the hard cap was checked: refused there, it left the topic with neither, and
    dispatch got no occupancy at all after the outage. Now the predecessor leaves only when
    the new value is taken."""
    box = await opened(config(tmp_path, max_bytes=262_144, hard_max_bytes=300_000,
                              wal_max_bytes=8_192))  # fmt: skip
    box.put_nowait(occupancy("EMPTY"))
    i = 0
    while True:  # events until the hard cap refuses one
        i += 1
        event = box.put_nowait(door(i))
        await box.flush()
        if isinstance(event.exception() if event.done() else None, OutboxFullError):
            break
        assert i < 5_000
    bigger = box.put_nowait(occupancy("MANY_SEATS_AVAILABLE"))  # a few bytes more: refused
    await box.flush()
    with pytest.raises(OutboxFullError):
        await bigger
    statuses = [json.loads(m.payload)["status"] for m in await drain(box) if "occupancy" in m.topic]
    assert statuses == ["EMPTY"]
    await box.close()


async def test_byte_cap_triggers_thinning_like_the_row_cap(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_bytes=300_000, hard_max_bytes=3_000_000))
    for i in range(3000):
        box.put_nowait(position(i))
    await box.flush()
    stats = await box.stats()
    assert stats.bytes <= 300_000
    assert stats.thin_level >= 1
    await box.close()


async def test_thinning_stops_once_the_backlog_has_drained(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=100, hard_max_rows=1000))
    for i in range(300):
        box.put_nowait(position(i))
    await box.flush()
    assert box.thin_level > 0
    await drain(box)
    assert box.thin_level == 0
    await box.close()


async def test_state_survives_reopening(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    box = await opened(cfg)
    box.set_state("position.odometer_m", 1234.5)
    await box.close()
    box = await opened(cfg)
    assert box.get_state("position.odometer_m") == 1234.5
    await box.close()


async def test_unwritable_path_gives_an_actionable_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    box = Outbox(OutboxConfig(path=blocker / "sub" / "outbox.sqlite"), Clock())
    with pytest.raises(Exception, match="writable"):
        await box.open()


async def test_a_failed_commit_fails_its_callers_and_the_writer_keeps_going(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await opened(config(disk))
        writer = asyncio.create_task(box.run_writer())
        await box.put(door(1))
        filler = fill(disk)  # the disk refuses the next commit
        with pytest.raises(NotDurableError, match="could not store"):
            await asyncio.wait_for(box.put(door(2)), 10)
        filler.unlink()
        await asyncio.sleep(1.2)  # the writer backs off after an error, then carries on
        assert await asyncio.wait_for(box.put(door(3)), 5) is PutResult.STORED
        assert box.write_errors >= 1
        assert box.depth == 3, "the refused message is kept in memory, to be sent"
        writer.cancel()
        await box.close()


async def test_samples_the_disk_refused_and_a_newer_one_replaced_in_memory_count_as_dropped(
    tmp_path: Path,
) -> None:
    """Memory keeps only the newest sample of a stream: the ones it replaces are a gap in
    `seq` that `health.outbox.dropped` must account for (docs/topics.md, a gap in seq)."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await opened(config(disk))
        fill(disk)
        refused = [box.put_nowait(position(i)) for i in range(5)]
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await box.flush()
        await asyncio.gather(*refused, return_exceptions=True)
        sent = seqs(await box.next_batch(10))
        stats = await box.stats()
        await box.close()
    assert sent == [5]
    assert stats.dropped == 4, "seqs 1-4 are nowhere: each one a sample dropped"


async def test_events_past_what_memory_holds_push_the_oldest_out_and_count_as_dropped(
    tmp_path: Path,
) -> None:
    """docs/topics.md: on a disk that refuses writes, memory holds 2,000 messages at most."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await opened(config(disk))
        fill(disk)
        refused = [box.put_nowait(door(i)) for i in range(2005)]
        for _ in range(2):  # a commit takes 2,000 at most
            with pytest.raises(sqlite3.OperationalError, match="full"):
                await box.flush()
        await asyncio.gather(*refused, return_exceptions=True)
        sent = seqs(await box.next_batch(3000))
        stats = await box.stats()
        await box.close()
    assert sent == list(range(6, 2006))
    assert stats.dropped == 5 and stats.in_memory == 2000


async def test_a_fetch_overtaken_by_a_new_session_does_not_hide_its_rows(tmp_path: Path) -> None:
    """The uplink's old session was reading when the link dropped and a new session began:
    what that read handed out belongs to no session, and goes out in the new one."""
    box = await opened(config(tmp_path))
    for i in range(3):
        box.put_nowait(door(i))
    await box.flush()
    session = box.lanes.session
    box.begin_session()  # the link dropped and came back while the read below ran
    lost: list[Stored] = []
    box._fetch_class(int(Priority.EVENT), box.lanes.boundary(), 10, lost, session)
    assert seqs(lost) == [1, 2, 3]
    assert seqs(await box.next_batch(10)) == [1, 2, 3]
    await box.close()


async def test_sqlite_memory_stays_flat_whatever_the_number_of_acks_per_commit(
    tmp_path: Path,
) -> None:
    # a statement whose text grew with the acks of a commit was cached once per count:
    # ~5 MB of SQLite's memory over a 100,000-message drain
    sizes = range(1, 131)
    cfg = config(tmp_path)
    box = await opened(cfg)
    for i in range(sum(sizes)):
        box.put_nowait(door(i))
    await box.flush()
    await box.close()
    box = await opened(cfg)  # quick_check has read the whole file through the page cache
    before = sqlite_memory_used()
    sent = 0
    for size in sizes:
        batch = await box.next_batch(size)
        for msg in batch:
            box.ack(msg)
        await box.flush()
        sent += len(batch)
    grown = sqlite_memory_used() - before
    assert sent == sum(sizes) and box.depth == 0
    assert grown < 256 * 1024, f"SQLite grew by {grown / 1e6:.2f} MB over the drain"
    await box.close()


async def test_a_superseded_retained_message_in_flight_stays_until_its_puback(
    tmp_path: Path,
) -> None:
    box = await opened(config(tmp_path))
    box.put_nowait(health(1))
    await box.flush()
    (in_flight,) = await box.next_batch(10)
    for depth in (2, 3):  # each supersedes the unsent one before it, not the one in flight
        box.put_nowait(health(depth))
    await box.flush()
    rows = rows_on_disk(tmp_path / "outbox.sqlite", "SELECT id FROM msg ORDER BY id")
    (queued,) = await box.next_batch(10)
    assert [r[0] for r in rows] == [in_flight.id, queued.id]
    assert json.loads(queued.payload)["outbox"]["depth"] == 3
    await box.close()


async def test_samples_in_flight_are_not_thinned(tmp_path: Path) -> None:
    box = await opened(config(tmp_path, max_rows=100, hard_max_rows=1000))
    for i in range(60):
        box.put_nowait(position(i))
    await box.flush()
    in_flight = await box.next_batch(60)
    for i in range(60, 200):  # past the soft cap: samples thinned, those in flight kept
        box.put_nowait(position(i))
    await box.flush()
    ids = {r[0] for r in rows_on_disk(tmp_path / "outbox.sqlite", "SELECT id FROM msg")}
    assert box.thin_level > 0
    assert {m.id for m in in_flight} <= ids
    assert len(ids) < 200
    await box.close()


async def test_sqlite_memory_stays_flat_whatever_the_number_of_rows_in_flight(
    tmp_path: Path,
) -> None:
    # the rows in flight are left out of a superseding delete: one statement text for any
    # number of them (it was one per count, each cached)
    box = await opened(config(tmp_path))
    for i in range(260):  # up to 260 in flight: the uplink's window and read-ahead hold 288
        box.put_nowait(door(i))
    await box.flush()
    box.put_nowait(health(0))
    await box.flush()
    before = sqlite_memory_used()
    for depth in range(1, 131):
        await box.next_batch(2)  # two more rows in flight each time
        box.put_nowait(health(depth))
        await box.flush()
    grown = sqlite_memory_used() - before
    assert grown < 256 * 1024, f"SQLite grew by {grown / 1e6:.2f} MB"
    await box.close()


async def test_the_outbox_and_the_state_store_both_get_the_bounded_page_cache(
    tmp_path: Path,
) -> None:
    box = await opened(config(tmp_path))
    try:
        for db in (box._db, box.state.db):
            assert db is not None
            assert db.execute("PRAGMA cache_size").fetchone()[0] == -sqlitefile.CACHE_KIB
    finally:
        await box.close()


async def test_a_state_change_writes_only_the_key_that_changed(tmp_path: Path) -> None:
    """The access lists (megabytes) are not written again at each trip or count change."""
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    lists = {"cards": {f"ref-{i:05d}": {"profile": "resident"} for i in range(2000)}}
    box.set_state("access.lists", lists)
    await box.put(door(1))
    written: list[str] = []
    assert box.state.db is not None
    box.state.db.set_trace_callback(written.append)
    box.set_state("trips.open", {"trip_id": "t1"})
    await box.put(door(2))
    box.state.db.set_trace_callback(None)
    writer.cancel()
    await box.close()
    kv_writes = [sql for sql in written if "INTO kv" in sql]
    assert kv_writes and all("ref-00001" not in sql for sql in kv_writes)
    assert any("t1" in sql for sql in kv_writes)
    box = await opened(config(tmp_path))
    assert box.get_state("access.lists") == lists and box.get_state("trips.open") == {
        "trip_id": "t1"
    }
    await box.close()


async def test_a_state_change_the_disk_refused_is_written_with_a_later_commit(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await opened(config(disk))
        writer = asyncio.create_task(box.run_writer())
        await box.put(door(1))
        filler = fill(disk)
        box.set_state("position.odometer_m", 42.0)
        with pytest.raises(NotDurableError):
            await asyncio.wait_for(box.put(door(2)), 10)
        filler.unlink()
        await asyncio.sleep(1.2)  # the writer's back-off
        await asyncio.wait_for(box.put(door(3)), 5)
        writer.cancel()
        await box.close()
        box = await opened(config(disk))
        assert box.get_state("position.odometer_m") == 42.0
        await box.close()


def diag_reply(i: int) -> Publication:
    """A reply as big as `diag.dump`'s (its last 100 log lines), with a response copy:
    ~60 KB of outbox for a command of 200 bytes."""
    body = Reply(id=f"c{i}", ok=True, result={"log": ["x" * 300] * 100})
    return Publication.make(TOPICS, REPLY, body, name="diag.dump",
                            response_topic="tools/ops/r1", correlation=b"c")  # fmt: skip


def ping_reply(i: int) -> Publication:
    return Publication.make(TOPICS, REPLY, Reply(id=f"p{i}", ok=True), name="ping")


def journey(run: str) -> Publication:
    return Publication.make(TOPICS, JOURNEY, Journey(mode="school", assigned=True, route_id=run))


async def test_a_flood_of_command_replies_leaves_the_node_room_for_taps_and_journeys(
    tmp_path: Path,
) -> None:
    """A commander (a looping tool, a stolen ops credential) sends `diag.dump` faster than a
    cellular uplink takes its replies: the replies stop at the soft cap, and what the
    node itself says (a tap, a door, the journey, the panic) still finds room below the hard
    cap."""
    box = await opened(config(tmp_path, max_bytes=1 << 20, hard_max_bytes=2 << 20,
                              wal_max_bytes=8_192))  # fmt: skip
    box.put_nowait(journey("r1"))
    flood = [box.put_nowait(diag_reply(i)) for i in range(200)]  # 12 MB asked
    flood += [box.put_nowait(ping_reply(i)) for i in range(10_000)]  # and every byte left
    await box.flush()
    outcomes = await asyncio.gather(*flood, return_exceptions=True)
    assert isinstance(outcomes[-1], OutboxFullError), "the flood was stopped"
    own = [box.put_nowait(door(1)), box.put_nowait(journey("r2")), box.put_nowait(alarm())]
    await box.flush()
    assert await asyncio.gather(*own) == [PutResult.STORED] * 3
    await box.close()


async def test_an_acknowledgement_waits_for_the_next_puts_commit_not_one_of_its_own(
    tmp_path: Path,
) -> None:
    """SD wear: each commit writes whole pages to the WAL; a delete of its own per message
    doubled what a steady stream of positions wrote."""
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    await box.put(position(1))
    (sent,) = await box.next_batch(10)
    commits: list[str] = []
    assert box._db is not None
    box._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    box.ack(sent)
    await asyncio.sleep(0.3)
    assert commits == [] and box.depth == 0
    await box.put(position(2))
    box._db.set_trace_callback(None)
    assert commits == ["COMMIT"]
    ids = rows_on_disk(tmp_path / "outbox.sqlite", "SELECT seq FROM msg")
    assert ids == [(2,)], "the delete went with the put's commit"
    writer.cancel()
    await box.close()


async def test_an_acknowledgement_alone_is_committed_within_its_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edged.outbox.store.ACK_COMMIT_S", 0.2)
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    await box.put(door(1))
    (sent,) = await box.next_batch(10)
    box.ack(sent)
    await asyncio.sleep(0.6)
    assert rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg") == [(0,)]
    writer.cancel()
    await box.close()


def counting_commits(box: Outbox) -> list[str]:
    commits: list[str] = []
    assert box._db is not None
    box._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return commits


async def test_offline_samples_gather_into_the_next_events_commit(tmp_path: Path) -> None:
    """SD wear: nobody can take a sample while the link is down; a commit each costs pages."""
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    box.linked = False
    commits = counting_commits(box)
    for i in range(5):
        box.put_nowait(position(i))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert commits == []
    await box.put(door(1))
    assert commits == ["COMMIT"]
    assert rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg") == [(6,)]
    writer.cancel()
    await box.close()


async def test_samples_gathered_offline_are_committed_when_the_link_is_back(
    tmp_path: Path,
) -> None:
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    box.set_linked(False)
    stored = box.put_nowait(position(1))
    await asyncio.sleep(0.2)
    assert not stored.done()
    box.set_linked(True)
    assert await asyncio.wait_for(stored, 1) is PutResult.STORED
    writer.cancel()
    await box.close()


async def test_samples_gathered_offline_are_committed_within_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edged.outbox.store.OFFLINE_GATHER_S", 0.3)
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    box.set_linked(False)
    assert await asyncio.wait_for(box.put(position(1)), 2) is PutResult.STORED
    writer.cancel()
    await box.close()


async def test_samples_are_committed_at_once_while_the_link_is_up(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    assert await asyncio.wait_for(box.put(position(1)), 0.5) is PutResult.STORED
    writer.cancel()
    await box.close()


async def test_online_samples_gather_for_their_share_of_batch_s_into_one_commit(
    tmp_path: Path,
) -> None:
    """With `[broker] batch_s` the drain holds a live sample for company anyway: the outbox
    takes its share of that wait, and one commit stores what gathered (SD wear)."""
    box = await opened(config(tmp_path))
    box.sample_gather_s = 0.6
    writer = asyncio.create_task(box.run_writer())
    commits = counting_commits(box)
    first = box.put_nowait(position(0))
    for i in range(1, 4):
        await asyncio.sleep(0.05)
        box.put_nowait(position(i))
    await asyncio.sleep(0.2)
    assert commits == [] and not first.done()
    await asyncio.wait_for(first, 1)
    assert commits == ["COMMIT"]
    assert rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg") == [(4,)]
    writer.cancel()
    await box.close()


async def test_an_event_commits_the_samples_gathered_online_at_once(tmp_path: Path) -> None:
    box = await opened(config(tmp_path))
    box.sample_gather_s = 5.0
    writer = asyncio.create_task(box.run_writer())
    sample = box.put_nowait(position(0))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(box.put(door(1)), 1)
    assert sample.done()
    writer.cancel()
    await box.close()


async def test_an_acknowledgements_bookkeeping_alone_does_not_sync_an_events_state_commit(
    tmp_path: Path,
) -> None:
    """SD wear: the retained ids an acknowledgement notes ride with the next commit; an
    event's commit that carries only them need not sync the state store too."""
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    await box.put(health(1))
    (sent,) = await box.next_batch(10)
    box.ack(sent)
    modes: list[str] = []
    assert box.state.db is not None
    box.state.db.set_trace_callback(lambda sql: modes.append(sql) if "synchronous" in sql else None)
    await box.put(door(1))
    box.state.db.set_trace_callback(None)
    assert modes == ["PRAGMA synchronous=NORMAL"]
    box.set_state("occupancy", {"count": 1})
    box.state.db.set_trace_callback(lambda sql: modes.append(sql) if "synchronous" in sql else None)
    await box.put(door(2))
    box.state.db.set_trace_callback(None)
    assert modes[-1] == "PRAGMA synchronous=FULL", "an event's own state is still synced"
    writer.cancel()
    await box.close()


async def test_health_of_an_outbox_whose_rows_are_all_acknowledged_says_it_is_empty(
    tmp_path: Path,
) -> None:
    """The delete of an acknowledged row waits for a later commit (ACK_COMMIT_S): `health`
    must not show it meanwhile as waiting (bytes, classes, the age of the oldest)."""
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    await box.put(door(1))
    await box.put(position(2))
    sent = await box.next_batch(10)
    for m in sent:
        box.ack(m)
    stats = await box.stats()
    assert rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg") == [(2,)]
    assert (stats.depth, stats.bytes, stats.oldest_age_s) == (0, 0, None)
    assert set(stats.by_class.values()) <= {0}
    writer.cancel()
    await box.close()


async def test_an_acknowledgement_is_committed_within_its_wait_after_the_link_went_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/topics.md: a restart sends again what was acknowledged in the last ACK_COMMIT_S;
    the offline gathering of samples (OFFLINE_GATHER_S) must not hold the delete longer."""
    monkeypatch.setattr("edged.outbox.store.ACK_COMMIT_S", 0.2)
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    await box.put(door(1))
    (sent,) = await box.next_batch(10)
    box.ack(sent)
    box.set_linked(False)
    await asyncio.sleep(1.0)
    assert rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg") == [(0,)]
    writer.cancel()
    await box.close()


async def test_a_superseded_row_is_still_known_after_a_power_cut_kept_the_events_commit(
    tmp_path: Path,
) -> None:
    """The clear's acknowledgement is committed with the next event's commit: the outbox
    syncs it (the clear's row deleted for good), the state store does not (ACK_STATE). A
    power cut that loses the state store's commit (here: its files as they were before)
    must not make the next start send the refused raise as the alarm's value."""
    cfg = config(tmp_path)
    box = await opened(cfg)
    _raised, cleared = await raised_then_cleared(box)
    await box.flush()
    before = {p.name: p.read_bytes() for p in tmp_path.glob(cfg.state_file.name + "*")}
    box.ack(cleared)
    box.put_nowait(door(1))  # an important commit: the outbox's side synced
    await box.flush()
    await box.close()
    for p in tmp_path.glob(cfg.state_file.name + "*"):
        p.unlink()
    for name, data in before.items():  # the state store's unsynced commit lost
        (tmp_path / name).write_bytes(data)
    again = await opened(cfg)
    left = [m for m in await again.next_batch(10) if m.topic.endswith("/alarm/panic")]
    assert [json.loads(m.payload)["active"] for m in left] == [True]
    assert again.superseded(left[0])
    await again.close()


async def test_an_acknowledgement_a_failed_commit_gave_back_is_committed_without_another_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk refused the commit that carried the delete: once it takes writes again, the
    delete is committed within ACK_COMMIT_S (and what memory kept is stored), even when
    nothing else is put."""
    monkeypatch.setattr("edged.outbox.store.ACK_COMMIT_S", 0.2)
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await opened(config(disk))
        writer = asyncio.create_task(box.run_writer())
        await box.put(door(1))
        (sent,) = await box.next_batch(10)
        box.ack(sent)
        filler = fill(disk)  # the disk refuses the next commit, the delete with it
        with pytest.raises(NotDurableError, match="could not store"):
            await asyncio.wait_for(box.put(door(2)), 10)
        filler.unlink()
        await asyncio.sleep(2.5)  # the writer's back-off after an error, then the wait
        seqs_on_disk = rows_on_disk(disk / "outbox.sqlite", "SELECT seq FROM msg")
        assert seqs_on_disk == [(2,)], "the delete committed, the refused door stored"
        writer.cancel()
        await box.close()


async def test_a_put_whose_commit_is_under_way_still_counts_as_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Uplink.wait_idle` (a stop's drain) waits while `depth` or `uncommitted`: a sample the
    stop's hurry sent to a slow card's commit must not look sent meanwhile."""
    box = await opened(config(tmp_path))
    slow = box.marks.write

    def slow_card(seqs: dict[str, int]) -> None:
        time.sleep(0.3)  # a slow card: the fault cannot be made on a tmpfs
        slow(seqs)

    monkeypatch.setattr(box.marks, "write", slow_card)
    writer = asyncio.create_task(box.run_writer())
    stored = box.put_nowait(position(1))
    seen: list[int] = []
    while not stored.done():
        seen.append(box.depth + box.uncommitted)
        await asyncio.sleep(0.01)
    assert seen and min(seen) > 0
    writer.cancel()
    await box.close()


def gather_child(tmp_path: Path, scenario: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.gather_child", str(tmp_path / "outbox.sqlite"),
         scenario],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_the_link_coming_back_with_nothing_to_commit_leaves_the_loop_turning(
    tmp_path: Path,
) -> None:
    """`set_linked(True)` (and a stop's `hurry`) wake the writer: with nothing gathered it
    must go back to sleep, not loop on a wake nobody clears (flush_interval_ms = 0: the
    event loop froze for good, no tap, no health, no watchdog beat)."""
    child = gather_child(tmp_path, "relink")
    try:
        out, _ = child.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
    assert out.split() == ["turned"]


async def test_a_thousand_acknowledgements_are_committed_while_samples_gather(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ACK_COMMIT_ROWS: a fast drain commits its deletes every thousand acknowledgements (a
    restart sends those again), even while a live sample gathers for its share of
    `batch_s`: it must not hold them for its whole wait."""
    monkeypatch.setattr("edged.outbox.store.ACK_COMMIT_S", 30.0)
    box = await opened(config(tmp_path))
    box.sample_gather_s = 10.0
    writer = asyncio.create_task(box.run_writer())
    for i in range(ACK_COMMIT_ROWS):
        box.put_nowait(door(i))
    await box.flush()
    sent = await box.next_batch(ACK_COMMIT_ROWS)
    sample = box.put_nowait(position(1))  # gathers online
    await asyncio.sleep(0.1)
    for m in sent:
        box.ack(m)
    await asyncio.sleep(1.0)
    doors = rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg WHERE prio = 1")
    assert doors == [(0,)], "the deletes committed"
    assert sample.done()
    writer.cancel()
    await box.close()


async def test_a_new_session_reads_past_rows_acknowledged_whose_delete_waits(
    tmp_path: Path,
) -> None:
    """The link drops mid-drain and comes back within ACK_COMMIT_S: the rows the broker
    acknowledged before are still in the file (their delete waits for a commit) and are
    never handed out again; the new session's first read must hand out the unsent rows
    behind them, not nothing (the drain then waited for the next put's commit, and for as
    many more as it took to read past them a batch at a time)."""
    box = await opened(config(tmp_path))
    for i in range(400):
        box.put_nowait(door(i))
    await box.flush()
    box.begin_session()
    for m in await box.next_batch(300):
        box.ack(m)
    box.begin_session()  # the link back: nothing committed meanwhile
    batch = await asyncio.wait_for(box.next_batch(100), 2)
    assert seqs(batch) == list(range(301, 401))
    await box.close()


async def test_a_thousand_acknowledgements_during_a_commit_are_committed_after_it_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ACK_COMMIT_ROWS acknowledgements that come in while a commit is under way (a slow
    card) are not in it: the next commit takes them at once, not after the 10 s a gathering
    offline waits (the count must outlive the commit it came during)."""
    monkeypatch.setattr("edged.outbox.store.ACK_COMMIT_S", 30.0)
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    for i in range(ACK_COMMIT_ROWS):
        box.put_nowait(door(i))
    await box.flush()
    sent = await box.next_batch(ACK_COMMIT_ROWS)
    slow = box.marks.write

    def slow_card(seqs: dict[str, int]) -> None:
        time.sleep(0.3)  # a slow card: the fault cannot be made on a tmpfs
        slow(seqs)

    monkeypatch.setattr(box.marks, "write", slow_card)
    box.set_linked(False)
    stored = box.put_nowait(door(ACK_COMMIT_ROWS))
    await asyncio.sleep(0.1)  # its commit is under way
    assert box.uncommitted == 1
    for m in sent:
        box.ack(m)
    await stored
    await asyncio.sleep(1.0)
    doors = rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM msg WHERE prio = 1")
    assert doors == [(1,)], "the deletes committed"
    writer.cancel()
    await box.close()


async def test_a_new_session_hands_out_each_row_not_acknowledged_once_in_order(
    tmp_path: Path,
) -> None:
    """The rows the broker acknowledged before the link dropped (their delete waits for a
    commit) are scattered among those it did not: a new session's small reads skip the
    first, hand out each of the others once, in order, and none beyond a read's size."""
    box = await opened(config(tmp_path))
    for i in range(400):
        box.put_nowait(door(i))
    await box.flush()
    box.begin_session()
    for m in await box.next_batch(300):
        if json.loads(m.payload)["seq"] % 3:  # two in three acknowledged
            box.ack(m)
    box.begin_session()
    got: list[Stored] = []
    while True:
        try:
            batch = await asyncio.wait_for(box.next_batch(7), 0.5)
        except TimeoutError:
            break
        assert len(batch) <= 7
        got += batch
    expected = [s for s in range(1, 301) if s % 3 == 0] + list(range(301, 401))
    assert seqs(got) == expected
    await box.close()


async def test_state_set_offline_survives_a_kill_while_samples_gather(tmp_path: Path) -> None:
    """A panic button let go, the mode, the last trusted time: state a service sets is
    committed within flush_interval_ms, samples gathering or not (a kill -9 a moment later
    keeps it)."""
    child = gather_child(tmp_path, "state")
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "set"
    finally:
        child.kill()
        child.wait(10)
    box = await opened(config(tmp_path))
    assert box.get_state("panic.held") == {"alarm_id": "a1"}
    await box.close()


async def test_state_that_may_wait_gathers_with_samples_offline(tmp_path: Path) -> None:
    """The odometer and an open trip's progress, set often and cheap to lose, wait with the
    samples (SD wear); state set without `may_wait` ends the gathering."""
    box = await opened(config(tmp_path))
    writer = asyncio.create_task(box.run_writer())
    box.set_linked(False)
    commits = counting_commits(box)
    for i in range(3):
        box.put_nowait(position(i))
        box.set_state("position.odometer_m", float(i), may_wait=True)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert commits == []
    box.set_state("panic.held", None)
    await asyncio.sleep(0.2)
    assert commits == ["COMMIT"]
    writer.cancel()
    await box.close()


async def test_a_panic_waits_until_the_broker_took_it_even_across_a_restart(
    tmp_path: Path,
) -> None:
    """What cuts the uplink's reconnect backoff short (`urgent_waiting`): a panic put,
    stored, or left by the run before, until acknowledged; never the node's own alarms."""
    box = await opened(config(tmp_path))
    own = Alarm(kind="outbox_full", active=True, reason="outbox at its hard cap")
    box.put_nowait(Publication.make(TOPICS, ALARM, own, name="outbox_full"))
    await box.flush()
    assert not box.urgent_waiting(), "the node's own alarm"
    box.put_nowait(alarm())
    assert box.urgent_waiting(), "put, not yet committed"
    await box.flush()
    assert box.urgent_waiting(), "stored"
    await box.close()
    box = await opened(config(tmp_path))
    try:
        assert box.urgent_waiting(), "stored by the run before"
        await drain(box)
        assert not box.urgent_waiting(), "the broker took it"
    finally:
        await box.close()

"""An outbox that is lost, corrupt, rolled back or emptied never stops the node, never
reuses an (epoch, seq), and says what was lost; the state store keeps the services' state."""

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import stat
import zlib
from pathlib import Path

import pytest

from core.errors import EdgedError
from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.errors import NotDurableError
from edged.outbox import Outbox, Publication, Stored, sqlitefile
from edged.outbox.journal import HEAD, MAGIC
from edged.payloads import Alarm
from edged.topics import ALARM, TAP
from tests.edged.outbox.test_store import (
    TOPICS,
    alarm,
    alarm_cleared,
    door,
    drain,
    position,
    seqs,
)
from tests.helpers.burst_node import tap_event
from tests.helpers.disk import fill, mounted_tmpfs, rows_on_disk


def cfg(tmp_path: Path, **extra: object) -> OutboxConfig:
    return OutboxConfig(path=tmp_path / "outbox.sqlite", flush_interval_ms=0, **extra)


async def started(config: OutboxConfig) -> Outbox:
    box = Outbox(config, Clock())
    await box.open()
    return box


async def with_history(config: OutboxConfig, doors: int = 5) -> list[dict[str, object]]:
    """A node that ran: some doors sent, two queued, state kept; closed cleanly."""
    box = await started(config)
    for i in range(doors):
        box.put_nowait(door(i))
    box.set_state("access.lists", {"version": 7})
    await box.flush()
    sent = await box.next_batch(doors - 2)
    for m in sent:
        box.ack(m)
    await box.close()
    return [json.loads(m.payload) for m in sent]


def tap(i: int) -> Publication:
    return Publication.make(TOPICS, TAP, tap_event(i))


async def refused_by_full_disk(box: Outbox, disk: Path, pub: Publication) -> Path:
    """`pub` put with the disk full: its commit fails and it waits in memory, its caller
    told so. The file filling the disk is returned: removed, space is back."""
    filler = fill(disk)
    refused = box.put_nowait(pub)
    with pytest.raises(sqlite3.OperationalError):
        await box.flush()
    with pytest.raises(NotDurableError, match="kept in memory"):
        await refused
    return filler


async def sent_after_restart(box: Outbox, config: OutboxConfig) -> list[Stored]:
    """`box` closed (the ignition off, the link still down) and opened again: what it
    sends then."""
    await box.close()
    box = await started(config)
    sent = await drain(box)
    await box.close()
    return sent


def causes(box: Outbox) -> list[str]:
    return [loss.cause for loss in box.losses]


# -- the epoch ------------------------------------------------------------------------


async def test_every_payload_carries_an_epoch_new_at_every_start(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    first = await with_history(config)
    box = await started(config)
    box.put_nowait(door(9))
    await box.flush()
    later = [json.loads(m.payload) for m in await drain(box)]
    await box.close()
    assert len({m["epoch"] for m in first}) == 1
    assert len(first[0]["epoch"]) == 16
    newest = max(later, key=lambda m: m["seq"])
    assert newest["epoch"] != first[0]["epoch"]
    assert newest["seq"] == 6, "seq keeps counting across a restart"


# -- the state store ------------------------------------------------------------------


async def test_state_lives_apart_from_the_outbox(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    await with_history(config)
    for f in tmp_path.glob("outbox.sqlite*"):
        f.unlink()
    box = await started(config)
    assert box.get_state("access.lists") == {"version": 7}
    assert config.state_file == tmp_path / "state.sqlite"
    await box.close()


async def test_state_kept_in_an_old_outbox_moves_to_the_state_store(tmp_path: Path) -> None:
    """Before the state store, state and seq counters lived in the outbox's tables."""
    old = sqlite3.connect(tmp_path / "outbox.sqlite")
    old.executescript(
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE streams (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
        "INSERT INTO kv VALUES ('access.lists', '{\"version\": 3}');"
        "INSERT INTO streams VALUES ('events/door', 41);"
    )
    old.commit()
    old.close()
    box = await started(cfg(tmp_path))
    assert box.get_state("access.lists") == {"version": 3}
    box.put_nowait(door(1))
    await box.flush()
    assert seqs(await drain(box)) == [42]
    await box.close()
    assert rows_on_disk(tmp_path / "state.sqlite", "SELECT value FROM kv") == [('{"version": 3}',)]
    assert rows_on_disk(tmp_path / "outbox.sqlite", "SELECT count(*) FROM kv") == [(0,)]
    box = await started(cfg(tmp_path))
    assert box.losses == [], "the move is not a loss"
    await box.close()


async def test_a_lost_state_store_is_reported(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    await with_history(config)
    (tmp_path / "state.sqlite").unlink()
    box = await started(config)
    assert causes(box) == ["state_missing"]
    assert box.get_state("access.lists") is None
    await box.close()


async def test_a_corrupt_state_store_is_moved_aside_and_the_node_starts(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    await with_history(config)
    (tmp_path / "state.sqlite").write_bytes(b"not a database at all" * 100)
    box = await started(config)
    assert causes(box) == ["state_corrupt"]
    aside = box.losses[0].moved_to
    assert aside is not None and Path(aside).exists()
    box.put_nowait(door(1))
    await box.flush()
    assert max(seqs(await drain(box))) == 6, "the outbox's counters still count on"
    await box.close()


# -- a corrupt outbox -------------------------------------------------------------------


async def test_a_card_corrupting_the_outbox_at_each_start_keeps_a_few_copies_aside(
    tmp_path: Path,
) -> None:
    """A failing card corrupts the outbox at each boot: each corrupt copy was kept for ever
    (up to the hard cap, 128 MiB, each), until the card was full and stayed full."""
    config = cfg(tmp_path)
    moved: list[Path] = []
    for start in range(sqlitefile.KEEP_ASIDE + 3):
        box = await started(config)
        if start:
            assert causes(box) == ["corrupt"]
            moved.append(Path(box.losses[0].moved_to or ""))
        for i in range(50):
            box.put_nowait(door(i))
        await box.close()
        db = tmp_path / "outbox.sqlite"
        db.write_bytes(os.urandom(db.stat().st_size))
    aside = sorted(
        f.name for f in tmp_path.glob("outbox.sqlite.corrupt-*") if not f.name.endswith("-wal")
    )
    assert len(aside) == sqlitefile.KEEP_ASIDE, aside
    assert sorted(m.name for m in moved[-sqlitefile.KEEP_ASIDE :]) == aside, "the newest"
    companions = [f for f in tmp_path.glob("outbox.sqlite.corrupt-*") if f.name.endswith("-wal")]
    assert len(companions) <= sqlitefile.KEEP_ASIDE, "an older copy's WAL goes with it"


def garble(path: Path, page: int) -> None:
    """Overwrite the b-tree header of one page with noise."""
    with path.open("r+b") as f:
        f.seek(page * 4096)
        f.write(b"\xa5" * 64)


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "garbled page"],
)
async def test_a_corrupt_outbox_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, damage: str
) -> None:
    config = cfg(tmp_path)
    box = await started(config)
    for i in range(400):  # several pages of messages
        box.put_nowait(door(i))
    box.set_state("access.lists", {"version": 7})
    await box.close()
    db = tmp_path / "outbox.sqlite"
    size = db.stat().st_size
    if damage == "garbage":
        db.write_bytes(os.urandom(size))
    elif damage == "truncated":
        os.truncate(db, size // 2 - 1000)
    else:
        garble(db, 3)
    box = await started(config)
    assert causes(box) == ["corrupt"]
    aside = Path(box.losses[0].moved_to or "")
    assert aside.exists() and aside.name.startswith("outbox.sqlite.corrupt-")
    assert box.get_state("access.lists") == {"version": 7}, "the lists survive"
    box.put_nowait(door(1))
    await box.flush()
    sent = seqs(await drain(box))  # and what the damaged file still gave back
    assert sent[0] == 401, "seq goes on above everything written before"
    assert all(s <= 400 for s in sent[1:])
    await box.close()
    box = await started(config)
    assert box.losses == [], "the new outbox is sound"
    await box.close()


def another_databases_wal(beside: Path) -> None:
    """A `-wal` from another database at `beside`'s name (a file copied back without its
    own WAL over a stale one, a card's files mixed up): SQLite cannot tell and applies it."""
    other = beside.with_name("other.sqlite")
    db = sqlite3.connect(other, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (a)")
    shutil.copyfile(other.with_name("other.sqlite-wal"), beside.with_name(beside.name + "-wal"))
    db.close()


@pytest.mark.parametrize("store", ["outbox.sqlite", "state.sqlite"])
async def test_another_databases_wal_is_set_aside_and_the_file_read_without_it(
    tmp_path: Path, store: str
) -> None:
    config = cfg(tmp_path)
    await with_history(config)  # two doors queued, the lists kept
    another_databases_wal(tmp_path / store)
    box = await started(config)
    depth, lists = box.depth, box.get_state("access.lists")
    await box.close()
    assert (depth, lists) == (2, {"version": 7}), "the file's content is what opens"
    assert box.losses == []
    assert [f.name.split(".foreign-")[0] for f in tmp_path.glob("*.foreign-*")] == [
        store + "-wal"
    ], "the other WAL is kept aside"


async def test_a_directory_in_the_outbox_s_place_is_reported_with_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory where the outbox was (a restore gone wrong, a mistyped `mkdir`): the
    node runs with an outbox in memory, and says the queued messages are gone and how to
    get a file back, not that the disk refuses writes."""
    config = cfg(tmp_path)
    await with_history(config)
    for f in tmp_path.glob("outbox.sqlite*"):
        if not f.name.endswith(("-taps", "-marks")):
            f.unlink()
    (tmp_path / "outbox.sqlite").mkdir()
    box = await started(config)
    future = box.put_nowait(alarm())
    await box.flush()
    batch = await box.next_batch(10)
    await box.close()
    assert isinstance(future.exception(), NotDurableError)
    assert [m.topic for m in batch] == [TOPICS.base + "/alarm/panic"], "the panic still goes"
    assert causes(box) == ["missing"]
    assert "is a directory" in box.losses[0].reason
    assert "remove" in caplog.text and "restart edged" in caplog.text


async def test_the_messages_a_corrupt_outbox_still_gives_back_are_sent(tmp_path: Path) -> None:
    """A page of the outbox went bad (an index's: quick_check fails) while a panic and
    door events were queued in it, unsent after a day without network: the file is moved
    aside, and what can still be read from it goes into the new one: the panic arrives."""
    config = cfg(tmp_path)
    box = await started(config)
    box.put_nowait(alarm())
    for i in range(400):
        box.put_nowait(door(i))
    await box.close()
    db = sqlite3.connect(tmp_path / "outbox.sqlite")
    (index_root,) = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'msg_prio_id'"
    ).fetchone()
    db.close()
    garble(tmp_path / "outbox.sqlite", index_root - 1)
    box = await started(config)
    sent = await drain(box)
    await box.close()
    assert causes(box) == ["corrupt"]
    assert "401 of 401" in box.losses[0].reason, box.losses[0].reason
    assert box.losses[0].gaps == {}, "nothing was lost"
    assert sent[0].topic == TOPICS.base + "/alarm/panic"
    doors = {json.loads(m.payload)["seq"] for m in sent if m.topic.endswith("/events/door")}
    assert doors == set(range(1, 401))


async def test_a_corrupt_outbox_s_retained_values_are_restored(tmp_path: Path) -> None:
    """The panic was raised and its clearing sent (the broker retains the clearing), then a
    page of the outbox went bad: the new file still knows each retained topic's value, so a
    broker that lost its store is given the clearing back, not nothing."""
    config = cfg(tmp_path)
    box = await started(config)
    box.put_nowait(alarm())
    box.put_nowait(alarm_cleared())
    await box.flush()
    await drain(box)
    for i in range(400):
        box.put_nowait(door(i))
    await box.close()
    garble_index(tmp_path / "outbox.sqlite")
    box = await started(config)
    restored = [(t, json.loads(p)["active"]) for t, p, _ in await box.retained()]
    await box.close()
    assert causes(box) == ["corrupt"]
    assert restored == [(TOPICS.base + "/alarm/panic", False)], restored


def garble_index(path: Path) -> None:
    """The root page of the outbox's index garbled: quick_check fails, the table reads."""
    db = sqlite3.connect(path)
    (index_root,) = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'msg_prio_id'"
    ).fetchone()
    db.close()
    garble(path, index_root - 1)


def leaf_read_twice(path: Path) -> int:
    """The outbox's `msg` table with its second leaf's pointer aimed at its first leaf (a
    stray write in the root page): a scan gives the first leaf's rows twice and never the
    second's. Returns how many rows the second leaf held."""
    db = sqlite3.connect(path)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'msg'").fetchone()
    db.close()
    data = bytearray(path.read_bytes())
    at = (root - 1) * 4096
    assert data[at] == 0x05, "the root is an interior page"
    cells = [int.from_bytes(data[at + 12 + 2 * i : at + 14 + 2 * i], "big") for i in range(2)]
    first, second = (at + c for c in cells)
    child = data[first : first + 4]
    leaf = (int.from_bytes(data[second : second + 4], "big") - 1) * 4096
    held = int.from_bytes(data[leaf + 3 : leaf + 5], "big")
    data[second : second + 4] = child
    path.write_bytes(bytes(data))
    return held


async def test_a_restore_counts_only_the_messages_really_restored(tmp_path: Path) -> None:
    """A corrupt outbox that gives some rows twice and others never: the report counts the
    rows the new file took, so the lost ones show as a gap, not as all restored."""
    config = cfg(tmp_path)
    box = await started(config)
    for i in range(400):
        box.put_nowait(door(i))
    await box.close()
    lost = leaf_read_twice(tmp_path / "outbox.sqlite")
    box = await started(config)
    sent = await drain(box)
    await box.close()
    assert causes(box) == ["corrupt"]
    assert len(sent) == 400 - lost
    assert f"{400 - lost} of " in box.losses[0].reason, box.losses[0].reason
    assert box.losses[0].gaps, "the lost doors are a gap"


async def test_an_emptied_outbox_is_reported_and_its_seqs_are_not_reused(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    first = await with_history(config)
    os.truncate(tmp_path / "outbox.sqlite", 0)
    box = await started(config)
    assert causes(box) == ["missing"]
    box.put_nowait(door(1))
    await box.flush()
    (again,) = [json.loads(m.payload) for m in await drain(box)]
    await box.close()
    assert again["seq"] == 6 and all(m["seq"] < 6 for m in first)


async def test_a_lost_wal_is_a_reported_gap_not_a_reused_seq(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    box = await started(config)
    for i in range(3):
        box.put_nowait(door(i))
    await box.close()  # checkpointed into the database file
    box = await started(config)
    for i in range(3, 8):
        box.put_nowait(door(i))
    await box.flush()
    # the process dies: its WAL holds doors 4..8, then the WAL file is lost
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    shutil.copyfile(tmp_path / "outbox.sqlite", snapshot / "outbox.sqlite")
    shutil.copyfile(tmp_path / "state.sqlite", snapshot / "state.sqlite")
    shutil.copyfile(tmp_path / "state.sqlite-wal", snapshot / "state.sqlite-wal")
    await box.close()
    box = await started(cfg(snapshot))
    assert causes(box) == ["rolled_back"]
    assert box.losses[0].gaps == {"events/door": [4, 8]}
    box.put_nowait(door(9))
    await box.flush()
    assert sorted(seqs(await drain(box))) == [1, 2, 3, 9]
    await box.close()


# -- files ---------------------------------------------------------------------------


async def test_the_files_are_private_to_their_owner(tmp_path: Path) -> None:
    old = os.umask(0o022)  # as a shell outside systemd has it
    try:
        box = await started(cfg(tmp_path / "lib"))
        box.put_nowait(tap(1))
        await box.flush()
        files = sorted((tmp_path / "lib").iterdir())
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        await box.close()
    finally:
        os.umask(old)
    assert {"outbox.sqlite", "outbox.sqlite-wal", "state.sqlite", "outbox.sqlite-taps"} <= set(
        modes
    )
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE((tmp_path / "lib").stat().st_mode) == 0o700


async def test_an_existing_outbox_readable_by_others_is_made_private(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    await with_history(config)
    os.chmod(tmp_path / "outbox.sqlite", 0o644)
    box = await started(config)
    await box.close()
    assert stat.S_IMODE((tmp_path / "outbox.sqlite").stat().st_mode) == 0o600


async def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    box = await started(cfg(tmp_path))
    with pytest.raises(EdgedError, match="already running"):
        await started(cfg(tmp_path))
    await box.close()


# -- the tap journal ---------------------------------------------------------------------


async def test_a_tap_not_yet_committed_when_the_process_dies_is_recovered(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    box = await started(config)
    box.put_nowait(tap(1))
    await box.flush()
    pending = box.put_nowait(tap(2))  # the door opened; the batch is not committed yet
    # the process dies here: nothing more reaches SQLite (its files are closed unflushed)
    assert box._db is not None
    box._db.close()
    box.state.close()
    box.journal.close()
    pending.cancel()
    box = await started(config)
    stored = [json.loads(m.payload) for m in await drain(box)]
    await box.close()
    assert [m["card_ref"][-1] for m in stored] == ["1", "2"]
    assert stored[1]["seq"] == 2


def dies(box: Outbox) -> None:
    """The process dies: nothing more reaches SQLite (its files are closed unflushed)."""
    assert box._db is not None
    box._db.close()
    box.state.close()
    box.journal.close()


async def test_an_alarm_not_yet_committed_when_the_process_dies_comes_back_with_its_state(
    tmp_path: Path,
) -> None:
    """The panic service's memory of its alarm goes in the alarm's journal record: after
    the restart the alarm is sent and the service still knows it (light, `alarm.ack`)."""
    config = cfg(tmp_path)
    box = await started(config)
    pending = box.put_nowait(alarm(), state={"panic.active": {"alarm_id": "a1"}})
    dies(box)
    pending.cancel()
    box = await started(config)
    stored = [json.loads(m.payload) for m in await drain(box)]
    assert box.get_state("panic.active") == {"alarm_id": "a1"}
    await box.close()
    assert [(m["kind"], m["active"]) for m in stored] == [("panic", True)]
    box = await started(config)  # written to the state store, not only applied
    assert box.get_state("panic.active") == {"alarm_id": "a1"}
    await box.close()


def read_as_the_release_before(data: bytes) -> list[list[object]]:
    """The journal as the release before journaled state reads it (375ad52's
    `edged.outbox.journal.read`): records by their magic and checksum, each body unpacked
    as exactly nine fields; any other record is skipped. A rollback starts that release."""
    out: list[list[object]] = []
    at = data.find(MAGIC)
    while at >= 0:
        nxt = at + 1
        if at + HEAD.size <= len(data):
            _, length, crc, _rn = HEAD.unpack_from(data, at)
            end = at + HEAD.size + length
            body = data[at + HEAD.size : end]
            if end <= len(data) and zlib.crc32(body) == crc:
                with contextlib.suppress(ValueError, TypeError):
                    t, st, sq, p, q, r, lo, c, b = json.loads(body)
                    out.append([t, st, sq, p, q, r, lo, c, b])
                    nxt = end
        at = data.find(MAGIC, nxt)
    return out


async def test_an_alarm_journaled_with_its_state_is_read_by_the_release_before(
    tmp_path: Path,
) -> None:
    """A release on trial that dies right after a panic press (a crash, `kill -9`, the
    watchdog) is rolled back at once: the release before reads the journal and must find
    the alarm there, as it finds a tap, or the press is lost."""
    config = cfg(tmp_path)
    box = await started(config)
    pending = box.put_nowait(alarm(), state={"panic.active": {"alarm_id": "a1"}})
    data = box.journal.path.read_bytes()
    dies(box)
    pending.cancel()
    found = read_as_the_release_before(data)
    assert [(t, json.loads(str(b))["active"]) for t, *_, b in found] == [
        ("rnst/v1/test/n1/alarm/panic", True)
    ]


async def test_journaled_state_older_than_the_state_stores_is_not_applied_again(
    tmp_path: Path,
) -> None:
    """A full outbox disk keeps the alarm's record unfolded while the state store (on
    another disk here) goes on: a later change there (the alarm acknowledged) is not
    undone at the next start by the record's older state."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = OutboxConfig(
            path=disk / "outbox.sqlite", state_path=tmp_path / "state.sqlite", flush_interval_ms=0
        )
        box = await started(config)
        filler = fill(disk)
        pending = box.put_nowait(alarm(), state={"panic.active": {"alarm_id": "a1"}})
        with contextlib.suppress(sqlite3.OperationalError):  # the outbox's disk is full
            await box.flush()
        with pytest.raises(NotDurableError):
            await pending
        assert box.state.meta("journal_state_rn") is not None, "the state store took it"
        box.set_state("panic.active", None)
        with contextlib.suppress(sqlite3.OperationalError):
            await box.flush()
        dies(box)
        filler.unlink()
        box = await started(config)
        stored = [json.loads(m.payload) for m in await drain(box)]
        assert box.get_state("panic.active") is None
        await box.close()
    assert [(m["kind"], m["active"]) for m in stored] == [("panic", True)], "the message is kept"


async def test_journal_records_already_in_the_outbox_are_not_added_twice(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    box = await started(config)
    for i in range(5):
        box.put_nowait(tap(i))
    await box.close()
    box = await started(config)
    assert box.depth == 5
    await box.close()


async def test_a_garbled_journal_record_is_skipped(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    box = await started(config)
    box.put_nowait(tap(1))
    box.put_nowait(tap(2))
    assert box._db is not None
    box._db.close()
    box.state.close()
    box.journal.close()
    journal = tmp_path / "outbox.sqlite-taps"
    data = bytearray(journal.read_bytes())
    data[40] ^= 0xFF  # inside the first record's body: its checksum no longer matches
    journal.write_bytes(bytes(data))
    box = await started(config)
    stored = [json.loads(m.payload)["card_ref"][-1] for m in await drain(box)]
    await box.close()
    assert stored == ["2"]


async def test_wal_stays_near_its_bound(tmp_path: Path) -> None:
    config = cfg(tmp_path, max_bytes=400_000, hard_max_bytes=800_000)
    box = await started(config)
    wal = tmp_path / "outbox.sqlite-wal"
    biggest = 0
    for i in range(600):
        box.put_nowait(door(i))
        await box.flush()
        if i % 3 == 0:
            for m in await box.next_batch(10):
                box.ack(m)
        biggest = max(biggest, wal.stat().st_size)
    await box.close()
    assert config.wal_bytes == 100_000
    assert biggest <= config.wal_bytes + 3 * 4096 + 4096, biggest


async def test_the_caps_count_the_wal(tmp_path: Path) -> None:
    config = cfg(tmp_path, max_rows=100_000, max_bytes=300_000, hard_max_bytes=400_000)
    box = await started(config)
    futures = [box.put_nowait(door(i)) for i in range(4000)]
    await box.flush()
    await asyncio.gather(*futures, return_exceptions=True)
    stats = await box.stats()
    await box.close()
    assert stats.refused > 0
    assert stats.bytes + config.wal_bytes <= config.hard_max_bytes


async def test_the_files_stay_under_the_hard_cap_after_samples_were_thinned(
    tmp_path: Path,
) -> None:
    """A long outage: samples pass the soft cap and are thinned, then events fill up to the
    hard cap. Thinning leaves room in pages that appended rows never fill again; counted
    by the rows alone, the files grew to 998 KB under an 800 KB hard cap."""
    config = cfg(
        tmp_path, max_rows=10**6, hard_max_rows=10**6, max_bytes=400_000, hard_max_bytes=800_000
    )
    box = await started(config)
    files = [tmp_path / "outbox.sqlite", tmp_path / "outbox.sqlite-wal"]
    biggest = 0
    futures = []
    for i in range(1, 30_001):
        futures.append(box.put_nowait(position(i) if i <= 10_000 else door(i)))
        if i % 50 == 0:
            with contextlib.suppress(EdgedError):
                await box.flush()
            biggest = max(biggest, sum(f.stat().st_size for f in files if f.exists()))
    await asyncio.gather(*futures, return_exceptions=True)  # those refused: OutboxFullError
    stats = await box.stats()
    await box.close()
    assert stats.thinned > 0 and stats.refused > 0, "both caps were reached"
    # the WAL passes its bound by a commit's pages before its checkpoint
    assert biggest <= config.hard_max_bytes + 4 * 4096, biggest


# -- a full disk -------------------------------------------------------------------------


async def test_an_existing_outbox_opens_on_a_full_disk_and_sends_from_memory(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        await with_history(config)
        fill(disk)
        box = await started(config)
        assert box.durable and box.depth == 2 and box.get_state("access.lists") == {"version": 7}
        refused = box.put_nowait(door(9))
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await box.flush()
        with pytest.raises(NotDurableError, match="could not store"):
            await refused
        sent = seqs(await box.next_batch(10))
        await box.close()
    assert sorted(sent) == [4, 5, 6], "the refused message goes out from memory"


async def test_a_new_outbox_on_a_full_disk_runs_in_memory(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk)
        box = await started(cfg(disk))
        assert not box.durable and not box.state.durable
        box.set_state("x", 1)
        future = box.put_nowait(door(1))
        await box.flush()
        with pytest.raises(NotDurableError, match="in memory"):
            await future
        assert seqs(await box.next_batch(10)) == [1]
        await box.close()


async def test_seq_does_not_go_back_after_a_restart_on_a_full_disk(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        await with_history(config)  # doors 1..5
        fill(disk)
        box = await started(config)
        # 6, 7, 8: the disk refuses them, they go out from memory
        refused = [box.put_nowait(door(i)) for i in range(3)]
        with pytest.raises(sqlite3.OperationalError):
            await box.flush()
        await box.close()
        box = await started(config)  # restarted, the disk still full
        refused.append(box.put_nowait(door(9)))
        with pytest.raises(sqlite3.OperationalError):
            await box.flush()
        sent = seqs(await box.next_batch(10))
        await box.close()
        await asyncio.gather(*refused, return_exceptions=True)  # NotDurableError, each
    assert sorted(sent) == [4, 5, 9], "the queued two, then 9: not 6 again"


async def test_a_torn_write_of_the_counters_falls_back_to_the_other_slot(tmp_path: Path) -> None:
    config = cfg(tmp_path)
    box = await started(config)
    for i in range(3):
        box.put_nowait(door(i))
        await box.flush()  # one marks write per batch: generations 1, 2, 3
    await box.close()
    marks = tmp_path / "outbox.sqlite-marks"
    generation = box.marks.generation
    with marks.open("r+b") as f:  # the newest slot half written
        f.seek((generation % 2) * 16 * 1024 + 20)
        f.write(b"\xff" * 8)
    for f in tmp_path.glob("outbox.sqlite"):
        f.unlink()  # only the marks file can tell where seq was
    for f in tmp_path.glob("state.sqlite*"):
        f.unlink()
    box = await started(config)
    box.put_nowait(door(9))
    await box.flush()
    (msg,) = await drain(box)
    await box.close()
    assert json.loads(msg.payload)["seq"] == 3, "the older slot said 2"


async def test_an_idle_outbox_does_not_fill_a_small_disk_with_its_wal(tmp_path: Path) -> None:
    """Seen: on a 2 MiB state dir, with nothing queued, the WAL grew to its default 4 MB
    and filled the disk in 2.7 s. Bounded and counted in the caps, it cannot."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        config = cfg(disk, max_bytes=1 << 20, hard_max_bytes=3 << 19)
        box = await started(config)
        for i in range(3000):  # sent and acknowledged at once: nothing stays queued
            box.put_nowait(door(i))
            box.set_state("position.odometer_m", i)
            await box.flush()
            for m in await box.next_batch(10):
                box.ack(m)
        await box.flush()
        on_disk = sum(f.stat().st_size for f in disk.iterdir())
        await box.close()
    assert box.write_errors == 0
    assert on_disk < 2 << 20


async def test_a_page_going_bad_while_running_does_not_stop_sending(tmp_path: Path) -> None:
    """The outbox passed its check at start; then a page of the file goes bad. Reads of the
    database fail (counted), what is in memory still goes, and next_batch does not raise."""
    config = cfg(tmp_path)
    box = await started(config)
    for i in range(600):
        box.put_nowait(door(i))
    await box.close()
    box = await started(config)
    assert box._db is not None
    box._db.execute("PRAGMA cache_size=1")  # read pages from the file, not from memory
    with (tmp_path / "outbox.sqlite").open("r+b") as f:
        for page in range(2, 12):
            f.seek(page * 4096)
            f.write(os.urandom(64))
    box.memory.add(
        Stored(0, TOPICS.base + "/alarm/panic", b'{"seq":1}', 1, True, None, 80, 0),
        latest_only=False,
    )
    batch = await asyncio.wait_for(box.next_batch(50), 5)
    assert [m.topic for m in batch] == [TOPICS.base + "/alarm/panic"]
    assert box.read_errors >= 1
    assert (await box.stats()).read_errors >= 1
    await box.close()


async def test_an_alarm_the_full_disk_refused_comes_back_after_a_restart_once_space_returned(
    tmp_path: Path,
) -> None:
    """The panic pressed on a full disk waits in memory and in the journal; space comes
    back, a tap commits; the ignition goes off before the link is back. The alarm must come
    back from the journal at the next start, though a later journal record was committed."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box = await started(config)
        filler = await refused_by_full_disk(box, disk, alarm())
        filler.unlink()
        committed = box.put_nowait(tap(1))
        await box.flush()
        await committed  # the disk takes writes again
        # no link meanwhile: the alarm never left memory
        topics = [m.topic for m in await sent_after_restart(box, config)]
    assert TOPICS.base + "/alarm/panic" in topics, topics


async def test_messages_kept_in_memory_are_stored_once_the_disk_takes_writes_again(
    tmp_path: Path,
) -> None:
    """A door event the full disk refused waits in memory; space comes back and the next
    commit succeeds: the event is written to the outbox then, so a restart before the link
    is back does not lose it."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box = await started(config)
        filler = await refused_by_full_disk(box, disk, door(1))
        filler.unlink()
        box.put_nowait(door(2))
        await box.flush()
        # no link meanwhile: door 1 never left memory
        sent = seqs(await sent_after_restart(box, config))
    assert sorted(sent) == [1, 2], sent


async def test_a_message_stored_again_from_memory_is_sent_once(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await started(cfg(disk))
        filler = await refused_by_full_disk(box, disk, door(1))
        filler.unlink()
        box.put_nowait(door(2))
        await box.flush()
        sent = seqs(await drain(box))
        stats = await box.stats()
        await box.close()
    assert sorted(sent) == [1, 2]
    assert stats.in_memory == 0 and stats.depth == 0


async def restarted_full_with_a_journaled_alarm(
    config: OutboxConfig, disk: Path
) -> tuple[Outbox, Path]:
    """A panic in the journal only (the process died before its commit), and the outbox
    started again on a full disk: the alarm waits in memory. Returns the outbox and the
    file filling the disk (removed, space is back)."""
    box = await started(config)
    box.put_nowait(alarm()).cancel()  # journaled; the process dies before the commit
    dies(box)
    filler = fill(disk)
    return await started(config), filler


async def test_an_alarm_recovered_from_the_journal_on_a_full_disk_survives_the_next_restart(
    tmp_path: Path,
) -> None:
    """The process died with a panic in the journal only; it starts again on a full disk,
    so the alarm waits in memory. Space comes back and a tap is committed; the ignition
    goes off before the link is back: the next start still has the alarm."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box, filler = await restarted_full_with_a_journaled_alarm(config, disk)
        assert [m.topic for m in box.memory.take(0, 10, box.memory.session)] == [
            TOPICS.base + "/alarm/panic"
        ]
        box.begin_session()  # the link dropped before that went anywhere
        filler.unlink()
        box.put_nowait(tap(1))
        await box.flush()
        topics = [m.topic for m in await sent_after_restart(box, config)]
    assert TOPICS.base + "/alarm/panic" in topics, topics


async def test_a_retained_message_stored_again_never_overtakes_a_newer_one_of_its_topic(
    tmp_path: Path,
) -> None:
    """The panic raised on a full disk waits in memory; space comes back with its clearing,
    committed first. Stored after the clearing, the raise must not become the topic's
    retained value again (a cleared panic shown active): it goes without the retain flag."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await started(cfg(disk))
        filler = await refused_by_full_disk(box, disk, alarm())
        filler.unlink()
        box.put_nowait(alarm_cleared())
        await box.flush()
        sent = await drain(box)
        await box.close()
    retained = [json.loads(m.payload)["active"] for m in sent if m.retain]
    assert retained[-1] is False, retained
    assert sorted(json.loads(m.payload)["seq"] for m in sent) == [1, 2], "both still go"


async def test_a_journaled_alarm_stored_late_never_overtakes_its_clearing(
    tmp_path: Path,
) -> None:
    """As above, for a panic the journal gave back at a start on a full disk."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box, filler = await restarted_full_with_a_journaled_alarm(cfg(disk), disk)
        filler.unlink()
        box.put_nowait(alarm_cleared())
        await box.flush()
        sent = await drain(box)
        await box.close()
    retained = [json.loads(m.payload)["active"] for m in sent if m.retain]
    assert retained[-1] is False, retained


async def test_a_retained_message_stored_before_one_kept_in_memory_is_superseded_by_it(
    tmp_path: Path,
) -> None:
    """The panic is stored, unsent (the link down); the disk fills and its clearing waits
    in memory. The link comes back: memory goes first within a class, so the clearing
    leaves before the raise; the raise must then go without the retain flag, or the
    broker keeps a cleared panic as active."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await started(cfg(disk))
        box.put_nowait(alarm())
        await box.flush()
        await refused_by_full_disk(box, disk, alarm_cleared())
        batch = await box.next_batch(10)
        flags = [(json.loads(m.payload)["active"], box.superseded(m)) for m in batch]
        for m in batch:  # the broker took both
            box.ack(m)
        restored = [json.loads(p)["active"] for _, p, _ in await box.retained()]
        await box.close()
    assert flags == [(False, False), (True, True)], flags
    assert restored == [False], "a broker that lost its store gets the clearing back"


async def test_a_retained_alarm_read_past_the_read_ahead_from_memory_supersedes_older_rows(
    tmp_path: Path,
) -> None:
    """The same, the clearing read by `next_alarms` (the uplink's read-ahead full of a
    backlog): that read must mark the raise stored before it as overtaken as `next_batch`
    does, or the raise goes retained after the clearing and the broker keeps the panic
    active."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        box = await started(cfg(disk))
        box.put_nowait(alarm())
        await box.flush()
        cleared = Alarm(kind="panic", active=False, reason="acknowledged")
        await refused_by_full_disk(
            box, disk, Publication.make(TOPICS, ALARM, cleared, name="panic")
        )
        batch = await box.next_alarms(10)
        flags = [(json.loads(m.payload)["active"], box.superseded(m)) for m in batch]
        await box.close()
    assert flags == [(False, False), (True, True)], flags


async def test_an_alarm_sent_from_memory_is_not_sent_again_after_a_restart(
    tmp_path: Path,
) -> None:
    """The panic pressed on a full disk goes out from memory and the broker takes it;
    space comes back and a tap commits. The journal's mark must pass the panic's record:
    a restart sending it again would be a duplicate the broker had acknowledged (and, for
    a journal that filled meanwhile, a raise over its clearing)."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box = await started(config)
        filler = await refused_by_full_disk(box, disk, alarm())
        sent = await box.next_batch(10)
        assert [m.topic for m in sent] == [TOPICS.base + "/alarm/panic"]
        box.ack(sent[0])
        filler.unlink()
        committed = box.put_nowait(tap(1))
        await box.flush()
        await committed
        topics = [m.topic for m in await sent_after_restart(box, config)]
    assert TOPICS.base + "/alarm/panic" not in topics, topics


async def test_a_retained_message_overtaken_from_memory_stays_overtaken_after_a_restart(
    tmp_path: Path,
) -> None:
    """The panic is stored, unsent; the disk fills and its clearing waits in memory. The
    link takes the clearing only, then drops; space comes back and the node restarts: the
    raise, still queued, must go without the retain flag, or the broker keeps a cleared
    panic as active."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box = await started(config)
        box.put_nowait(alarm())
        await box.flush()
        filler = await refused_by_full_disk(box, disk, alarm_cleared())
        taken = await box.next_batch(1)
        assert [json.loads(m.payload)["active"] for m in taken] == [False]
        box.ack(taken[0])
        filler.unlink()
        await box.flush()
        await box.close()
        box = await started(config)
        batch = await box.next_batch(10)
        flags = [(json.loads(m.payload)["active"], box.superseded(m)) for m in batch]
        await box.close()
    assert flags == [(True, True)], flags


async def test_a_retained_message_the_broker_took_from_memory_is_restored_after_a_restart(
    tmp_path: Path,
) -> None:
    """The panic is sent and taken; its clearing, refused by a full disk, goes out from
    memory and the broker takes it; space comes back and the node restarts. A broker that
    lost its store then gets the clearing back, not the raise."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box = await started(config)
        box.put_nowait(alarm())
        await box.flush()
        assert [json.loads(m.payload)["active"] for m in await drain(box)] == [True]
        filler = await refused_by_full_disk(box, disk, alarm_cleared())
        taken = await box.next_batch(10)
        box.ack(taken[0])
        filler.unlink()
        await box.flush()
        await box.close()
        box = await started(config)
        restored = [json.loads(p)["active"] for _, p, _ in await box.retained()]
        await box.close()
    assert restored == [False], restored


async def test_taps_that_filled_the_journal_on_a_full_disk_leave_room_for_the_panic(
    tmp_path: Path,
) -> None:
    """A service day of taps on a full card with the link down: no commit succeeds, so no
    journal record is folded, and the taps filled the journal (256 KiB, ~600 taps). The
    panic pressed then found no room: only in memory, a power cut lost it (and the panic
    service's memory of it). Taps now stop short of the journal's end: room for alarms."""
    details = {
        "alarm_id": "1796646210475-a1b2c3",
        "raised_at": 1796646210475,
        "presses": 1,
        "lat": 46.1712345,
        "lon": 1.8712345,
        "fix_time": "2026-12-07T12:19:41.123000+00:00",
        "speed": 0.0,
    }
    panic = Alarm(kind="panic", active=True, reason="panic button pressed", details=details)
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        box = await started(config)
        filler = fill(disk)
        n = 0
        taps = []
        while box.journal.full < 20 and n < 3000:  # the taps go on once it refuses them
            taps.append(box.put_nowait(tap(n)))
            n += 1
            if n % 100 == 0:
                with contextlib.suppress(sqlite3.OperationalError, NotDurableError):
                    await box.flush()
        assert box.journal.full, "the taps never filled the journal"
        raised = box.put_nowait(
            Publication.make(TOPICS, ALARM, panic, name="panic"),
            state={"panic.active": details, "panic.raised_trusted": True},
        )
        with contextlib.suppress(sqlite3.OperationalError):
            await box.flush()
        with pytest.raises(NotDurableError):
            await raised  # in memory only: the disk refuses it
        await asyncio.gather(*taps, return_exceptions=True)  # in memory only, as the panic
        dies(box)  # the power cut, before the disk or the link is back
        filler.unlink()
        box = await started(config)
        topics = [m.topic for m in await drain(box)]
        kept = box.get_state("panic.active")
        await box.close()
    assert TOPICS.base + "/alarm/panic" in topics, f"{n} taps, then the panic: lost"
    assert kept == details, "the panic service forgot its alarm"

"""On-disk schemas: stamped, migrated forward, and read back by the release before."""

import json
import sqlite3
from pathlib import Path

import pytest

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.outbox import Outbox, Publication
from edged.payloads import DoorEvent
from edged.release import schemas
from edged.release.schemas import SCHEMAS, Schema, SchemaError, open_stores, read_stamps
from edged.topics import DOOR, Topics

TOPICS = Topics("rnst/v1", "test", "n1")


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_file_from_before_the_stamps_is_stamped_with_this_releases_format(tmp_path: Path) -> None:
    conn = db(tmp_path / "f.sqlite")
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    stamps = open_stores(conn, ["outbox", "state"], "f")
    assert stamps == {"outbox": (1, 1), "state": (1, 1)}


def test_a_newer_format_this_release_reads_keeps_its_stamp(tmp_path: Path) -> None:
    conn = db(tmp_path / "f.sqlite")
    open_stores(conn, ["outbox"], "f")
    conn.execute("UPDATE edged_schema SET version = 3, compat = 1 WHERE store = 'outbox'")
    assert open_stores(conn, ["outbox"], "f") == {"outbox": (3, 1)}


def test_a_format_this_release_cannot_read_is_refused_with_what_to_do(tmp_path: Path) -> None:
    conn = db(tmp_path / "f.sqlite")
    open_stores(conn, ["state"], "f")
    conn.execute("UPDATE edged_schema SET version = 4, compat = 2 WHERE store = 'state'")
    with pytest.raises(SchemaError, match="state data is format 4"):
        open_stores(conn, ["state"], "f")


def test_migrations_run_in_order_with_the_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int] = []
    monkeypatch.setitem(SCHEMAS, "outbox", Schema("outbox", 3, 1, 0))
    monkeypatch.setattr(
        schemas,
        "MIGRATIONS",
        {("outbox", 1): lambda c: ran.append(1), ("outbox", 2): lambda c: ran.append(2)},
    )
    conn = db(tmp_path / "f.sqlite")
    assert open_stores(conn, ["outbox"], "f") == {"outbox": (3, 1)}
    assert ran == [1, 2]
    assert open_stores(conn, ["outbox"], "f") == {"outbox": (3, 1)} and ran == [1, 2]


def test_a_failing_migration_leaves_the_old_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SCHEMAS, "outbox", Schema("outbox", 2, 1, 0))

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("disk said no")

    monkeypatch.setattr(schemas, "MIGRATIONS", {("outbox", 1): broken})
    conn = db(tmp_path / "f.sqlite")
    monkeypatch.setitem(SCHEMAS, "outbox", Schema("outbox", 1, 1, 0))
    open_stores(conn, ["outbox"], "f")
    monkeypatch.setitem(SCHEMAS, "outbox", Schema("outbox", 2, 1, 0))
    with pytest.raises(RuntimeError):
        open_stores(conn, ["outbox"], "f")
    assert read_stamps(str(tmp_path / "f.sqlite"), ["outbox"]) == {"outbox": (1, 1)}
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'").fetchone() == (0,)


async def box(path: Path) -> Outbox:
    b = Outbox(OutboxConfig(path=path, flush_interval_ms=0), Clock())
    await b.open()
    return b


async def test_the_outbox_round_trips_between_a_release_and_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.1 writes; 0.2 adds a column (format 2, still readable by 1) and writes; back on 0.1
    every message, counter and state value is there; 0.2 again reads what 0.1 wrote."""
    path = tmp_path / "outbox.sqlite"
    old = await box(path)
    for i in range(3):
        old.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door=f"old{i}", open=True)))
    old.set_state("access.lists", {"version": 7})
    await old.close()

    with monkeypatch.context() as m:
        m.setitem(SCHEMAS, "outbox", Schema("outbox", 2, 1, 0))
        m.setattr(
            schemas,
            "MIGRATIONS",
            {("outbox", 1): lambda c: c.execute("ALTER TABLE msg ADD COLUMN note TEXT")},
        )
        new = await box(path)
        assert new.schema_stamps["outbox"] == (2, 1)
        new.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door="new", open=True)))
        new.set_state("odometer", 1234.5)
        await new.close()

    back = await box(path)  # the rollback: format 1 code on a format 2 file
    assert back.schema_stamps["outbox"] == (2, 1)
    batch = await back.next_batch(100)
    doors = [json.loads(msg.payload) for msg in batch]
    assert [d["door"] for d in doors] == ["old0", "old1", "old2", "new"]
    assert [d["seq"] for d in doors] == [1, 2, 3, 4]
    assert back.get_state("access.lists") == {"version": 7} and back.get_state("odometer") == 1234.5
    back.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door="back", open=True)))
    await back.close()

    with monkeypatch.context() as m:
        m.setitem(SCHEMAS, "outbox", Schema("outbox", 2, 1, 0))
        again = await box(path)
        batch = await again.next_batch(100)
        assert [json.loads(x.payload)["seq"] for x in batch] == [1, 2, 3, 4, 5]
        await again.close()


def test_a_file_held_by_a_running_node_is_not_taken_for_one_without_stamps(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("PRAGMA journal_mode=WAL")
    open_stores(holder, ["outbox"], "f")
    assert read_stamps(str(path), ["outbox"]) == {}
    holder.close()
    assert read_stamps(str(path), ["outbox"]) == {"outbox": (1, 1)}

"""A config that moves the state store (`[outbox] state_path`, `path`) carries it along
(edged/outbox/moves.py): the spent command ids and the access lists' version still bar
a replay at the new place. In-process nodes, no broker: commands handed to the router."""

import asyncio
import contextlib
import errno
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.errors import EdgedError
from edged.commands.router import IncomingCommand, Outcome
from edged.config import load_config
from edged.node import Node
from edged.outbox import Publication, moves
from edged.payloads import Alarm
from edged.security.signing import public_key_text, sign
from edged.topics import ALARM
from tests.edged.access.support import PUBLIC, full_lists, secret_file, signed
from tests.helpers.disk import fifo_let_go_after

OPS = Ed25519PrivateKey.generate()
BASE = "rnst/v1/creuse/bus-1/cmd"


def write(tmp: Path, outbox: str) -> Path:
    """A shuttle's config with the access service and an ops key; `outbox`: its [outbox]."""
    cfg = tmp / "edged.toml"
    cfg.write_text(
        '[node]\nfleet = "creuse"\nid = "bus-1"\nprofile = "shuttle"\n'
        '[broker]\nhost = "127.0.0.1"\nport = 9\n'
        f"[outbox]\n{outbox}\n"
        "[clock]\ntrust_system_clock = true\n"
        '[security]\nsigned_commands = ["restart"]\n'
        '[[security.keys]]\nid = "ops"\n'
        f'public_key = "{public_key_text(OPS.public_key())}"\nscopes = ["config"]\n'
        "[services.access]\nenabled = true\n"
        f'secret_file = "{secret_file(tmp)}"\nlists_public_key = "{PUBLIC}"\n'
    )
    return cfg


@asynccontextmanager
async def running(cfg: Path) -> AsyncIterator[Node]:
    node = Node(load_config(cfg), config_path=cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    await asyncio.wait_for(node.ready.wait(), 5)
    try:
        yield node
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def send(node: Node, name: str, payload: dict[str, Any]) -> Outcome:
    topic = f"{BASE}/{name.replace('.', '/')}"
    cmd = IncomingCommand(name=name, payload=json.dumps(payload).encode(), topic=topic)
    return await node.router.handle(cmd)


def signed_restart() -> dict[str, Any]:
    ts = int(time.time() * 1000)
    return {"id": "r1", "ts": ts, "args": {}, "sig": sign(OPS, f"{BASE}/restart", "r1", ts, {})}


async def test_a_signed_command_taken_before_the_state_path_moved_does_not_run_again(
    tmp_path: Path,
) -> None:
    """A peer that recorded a signed `restart` (or `door.unlock`) plays it again once the
    node runs at the new place: it must not run."""
    command = signed_restart()
    async with running(write(tmp_path, f'state_path = "{tmp_path / "a" / "state.sqlite"}"')) as n:
        assert (await send(n, "restart", command)).reply.ok
    async with running(write(tmp_path, f'state_path = "{tmp_path / "b" / "state.sqlite"}"')) as n:
        out = await send(n, "restart", command)
        assert not n.restart_requested, f"the replay ran again: {out.reply}"


async def test_an_old_signed_list_is_refused_after_the_outbox_path_moved(tmp_path: Path) -> None:
    """The state store named after the outbox (no state_path) moves with it: a list older
    than the one in force, sent again under a new id, is still `stale_version`."""
    old, new = signed(full_lists(version=1)), signed(full_lists(version=2))
    async with running(write(tmp_path, f'path = "{tmp_path / "a" / "outbox.sqlite"}"')) as n:
        assert (await send(n, "access.update", {"id": "l1", "args": old})).reply.ok
        assert (await send(n, "access.update", {"id": "l2", "args": new})).reply.ok
    async with running(write(tmp_path, f'path = "{tmp_path / "b" / "outbox.sqlite"}"')) as n:
        out = await send(n, "access.update", {"id": "l3", "args": old})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply


async def test_the_state_store_is_carried_to_the_new_place_and_the_old_one_removed(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (await send(n, "access.update", {"id": "l1", "args": signed(full_lists())})).reply.ok
    async with running(write(tmp_path, f'state_path = "{b}"')) as n:
        assert "state.not_moved" not in n.counters.snapshot()
    assert b.stat().st_size > 0 and not a.exists()
    assert moves.last_store(moves.note_of(tmp_path / "edged.toml")) == b


async def test_a_state_store_that_cannot_be_carried_is_kept_where_it_was(tmp_path: Path) -> None:
    """The new place refuses the copy (a file where its directory should be): the node keeps
    the old store, protection and all, rather than start on an empty one."""
    a = tmp_path / "a" / "state.sqlite"
    (tmp_path / "blocked").write_text("not a directory")
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l1", "args": signed(full_lists(2))})
        ).reply.ok
    moved = f'state_path = "{tmp_path / "blocked" / "state.sqlite"}"'
    async with running(write(tmp_path, moved)) as n:
        assert n.outbox.state.path == a
        assert n.counters.snapshot().get("state.not_moved") == 1  # health.errors
        out = await send(n, "access.update", {"id": "l2", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version"


async def test_a_file_of_another_kind_at_the_new_place_is_left_alone(tmp_path: Path) -> None:
    """A technician's slip names the config file as the state store: it is not set aside
    (the node would have no config to start from); the node keeps its store."""
    a = tmp_path / "a" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    cfg = write(tmp_path, f'state_path = "{tmp_path / "edged.toml"}"')
    text = cfg.read_text()
    async with running(cfg) as n:
        assert n.outbox.state.path == a
    assert cfg.read_text() == text


async def test_a_move_undone_carries_the_store_back(tmp_path: Path) -> None:
    """A config.set's probation rolled back (or a technician's edit undone) names the old
    place again: the store comes back with what the node took meanwhile."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    async with running(write(tmp_path, f'state_path = "{b}"')) as n:
        assert (await send(n, "restart", signed_restart())).reply.ok
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert n.outbox.state.path == a and not b.exists()
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
        assert out.reply.error is not None and out.reply.error.code == "stale_version"


async def test_a_moved_outbox_says_its_old_messages_are_not_sent_from_it(tmp_path: Path) -> None:
    """The outbox is not carried: the new one starts below the carried `seq` marks, and
    the node says so (docs/security.md: move it on the device to keep its messages)."""
    async with running(write(tmp_path, f'path = "{tmp_path / "a" / "outbox.sqlite"}"')) as n:
        await n.publish_health(full=True)
    async with running(write(tmp_path, f'path = "{tmp_path / "b" / "outbox.sqlite"}"')) as n:
        assert [loss.cause for loss in n.outbox.losses] == ["missing"]


async def test_an_outbox_left_by_a_move_is_noted_with_its_unsent_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A `config.set` moving `[outbox] path` (or its rollback, back to the old place) leaves
    the messages queued offline in the file taken out: a panic alarm raised during a failed
    probation was never sent, and nothing said where it was. The node now names that file,
    with its unsent messages, at each start, and the note beside the config keeps it for
    `edged doctor`."""
    a, b = tmp_path / "a" / "outbox.sqlite", tmp_path / "b" / "outbox.sqlite"
    async with running(write(tmp_path, f'path = "{a}"')) as n:
        panic = Publication.make(n.topics, ALARM, Alarm(kind="panic", active=True), name="panic")
        await n.outbox.put(panic)
    caplog.clear()
    async with running(write(tmp_path, f'path = "{b}"')):
        pass
    told = [r.getMessage() for r in caplog.records if r.name == moves.__name__]
    assert any(f"message(s) unsent stay in {a}" in m and ": 0 " not in m for m in told), told
    assert moves.outboxes_left(moves.outbox_note_of(tmp_path / "edged.toml"), b) == [a]


async def test_a_fifo_at_the_new_place_is_left_alone_without_waiting_on_it(
    tmp_path: Path,
) -> None:
    """Read to tell a store from another file, a FIFO waits for a writer: the node's start
    stood still (until the watchdog), then put the store in its place."""
    a, fifo = tmp_path / "a" / "state.sqlite", tmp_path / "pipe"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    with fifo_let_go_after(fifo, 1.5):
        async with running(write(tmp_path, f'state_path = "{fifo}"')) as n:
            assert n.outbox.state.path == a
        assert stat.S_ISFIFO(fifo.stat().st_mode)


async def test_a_store_carried_whose_place_cannot_be_noted_is_not_carried_again_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note cannot be written (a full disk, `EIO`) after the store was carried: had the
    node run on the copy, the next start would carry the old store over it again, and the
    commands spent meanwhile would run again. It runs on the store the note names."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    cfg = write(tmp_path, f'state_path = "{b}"')
    with monkeypatch.context() as patch:
        patch.setattr(moves, "replace_atomically", refused)
        async with running(cfg) as n:
            assert (await send(n, "restart", signed_restart())).reply.ok
    async with running(cfg) as n:
        out = await send(n, "restart", signed_restart())
        assert not n.restart_requested, f"the replay ran again: {out.reply}"


async def test_a_move_logs_no_error_for_the_companions_the_old_store_did_not_have(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store closed cleanly has no `-wal`, `-shm` or `-journal`: each was logged an ERROR
    `cannot remove` at every move, an alarm for ops over nothing."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    caplog.clear()
    async with running(write(tmp_path, f'state_path = "{b}"')):
        pass
    assert not a.exists()
    assert not [
        r.getMessage()
        for r in caplog.records
        if r.name == moves.__name__ and r.levelno >= logging.ERROR
    ]


async def test_an_outbox_moved_onto_the_old_state_stores_place_is_not_removed(
    tmp_path: Path,
) -> None:
    """The state store carried away, its old file became the outbox: removed as the store
    left behind, the outbox ran on a file gone from the disk, its messages lost at the
    next start."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    async with running(write(tmp_path, f'path = "{a}"\nstate_path = "{b}"')) as n:
        await n.publish_health(full=True)
        assert a.exists()


async def test_the_note_naming_the_copy_is_synced_with_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note's rename on the disk before the node runs on the copy: lost in a power cut
    (the config on another file system than the store, whose syncs do not carry it), the
    next start would carry the old store over the copy, the commands spent since with it."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    synced: set[int] = set()
    fsync = os.fsync

    def recording(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced.add(st.st_ino)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    async with running(write(tmp_path, f'state_path = "{b}"')) as n:
        assert n.outbox.state.path == b
    assert tmp_path.stat().st_ino in synced


@pytest.mark.parametrize("spelling", ["x/../a/state.sqlite", "link/state.sqlite"])
async def test_the_store_named_again_by_another_spelling_is_not_removed(
    tmp_path: Path, spelling: str
) -> None:
    """A config naming the running store by another path (`x/..`, a linked directory) moves
    nothing: the store the node runs on is neither set aside nor removed as the one left."""
    a = tmp_path / "a" / "state.sqlite"
    (tmp_path / "x").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    lists = signed(full_lists(2))
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (await send(n, "access.update", {"id": "l1", "args": lists})).reply.ok
    async with running(write(tmp_path, f'state_path = "{tmp_path / spelling}"')):
        pass
    async with running(write(tmp_path, f'state_path = "{tmp_path / spelling}"')) as n:
        out = await send(n, "access.update", {"id": "l2", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply
    assert sorted(p.name for p in a.parent.iterdir()) == ["state.sqlite"]


async def test_an_outbox_left_by_an_earlier_move_is_still_named_after_a_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Moved twice (a `config.set`, then another, or its rollback somewhere else): the panic
    queued in the first outbox is still named, not forgotten for the second one left."""
    a, b, c = (tmp_path / d / "outbox.sqlite" for d in "abc")
    async with running(write(tmp_path, f'path = "{a}"')) as n:
        panic = Publication.make(n.topics, ALARM, Alarm(kind="panic", active=True), name="panic")
        await n.outbox.put(panic)
    for place in (b, c):
        caplog.clear()
        async with running(write(tmp_path, f'path = "{place}"')):
            pass
    told = [r.getMessage() for r in caplog.records if r.name == moves.__name__]
    assert any(f"message(s) unsent stay in {a}" in m for m in told), told
    assert a in moves.outboxes_left(moves.outbox_note_of(tmp_path / "edged.toml"), c)


def _outbox_with(path: Path, messages: int) -> sqlite3.Connection:
    """An outbox-shaped file held as the node holds its own (exclusive, WAL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE msg(id INTEGER PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO msg(body) VALUES (?)", [(b"x",)] * messages)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def test_a_left_outbox_another_process_holds_is_counted_without_waiting(tmp_path: Path) -> None:
    """Counted at each start: a file held open elsewhere (a second edged, a tool) had the
    start wait SQLite's 5 s busy timeout for each outbox left, the watchdog running."""
    left = tmp_path / "a" / "outbox.sqlite"
    db = _outbox_with(left, 3)
    try:
        began = time.monotonic()
        assert moves.unsent(left) == 3
        assert time.monotonic() - began < 1
    finally:
        db.close()


def test_counting_a_left_outbox_leaves_no_file_beside_it(tmp_path: Path) -> None:
    left = tmp_path / "a" / "outbox.sqlite"
    _outbox_with(left, 2).close()
    before = sorted(p.name for p in left.parent.iterdir())
    assert moves.unsent(left) == 2
    assert sorted(p.name for p in left.parent.iterdir()) == before


async def test_a_state_store_moved_onto_the_outbox_left_keeps_its_messages_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config naming the outbox it moves away from as the new state store: the old
    outbox, a panic queued in it, was set aside under a `.replaced-…` name for the store
    to take its place, the messages named nowhere; the node keeps its store instead."""
    a, b = tmp_path / "a" / "outbox.sqlite", tmp_path / "b" / "outbox.sqlite"
    async with running(write(tmp_path, f'path = "{a}"')) as n:
        panic = Publication.make(n.topics, ALARM, Alarm(kind="panic", active=True), name="panic")
        await n.outbox.put(panic)
        store = n.outbox.state.path
    queued = moves.unsent(a)
    caplog.clear()
    async with running(write(tmp_path, f'path = "{b}"\nstate_path = "{a}"')) as n:
        assert n.outbox.state.path == store
    assert isinstance(queued, int) and queued >= 1 and moves.unsent(a) == queued
    told = [r.getMessage() for r in caplog.records if r.name == moves.__name__]
    assert any(f"{queued} message(s) unsent stay in {a}" in m for m in told), told


async def test_a_second_edged_started_mid_move_loses_no_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two starts with one config (by hand as the unit restarts): the second read the note
    mid-move and removed the copy the first was renaming in place as one a killed move
    left; the stores each then ran on were not the note's, and an older list was taken."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    cfg = write(tmp_path, f'state_path = "{b}"')
    paused, go, replace = threading.Event(), threading.Event(), os.replace
    first = [True]

    def renaming(src: Any, dst: Any) -> None:
        if str(src).endswith(".carried") and first[0]:
            first[0] = False
            paused.set()
            go.wait(5)
        replace(src, dst)

    monkeypatch.setattr(moves.os, "replace", renaming)
    stops = [asyncio.Event(), asyncio.Event()]
    nodes = [Node(load_config(cfg), config_path=cfg) for _ in stops]
    one = asyncio.create_task(nodes[0].run(stops[0]))
    assert await asyncio.to_thread(paused.wait, 5)
    two = asyncio.create_task(nodes[1].run(stops[1]))
    await asyncio.sleep(0.3)
    go.set()
    for node, stop in zip(nodes, stops, strict=True):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(node.ready.wait(), 3)
        stop.set()
    await asyncio.gather(one, two, return_exceptions=True)
    monkeypatch.undo()
    async with running(cfg) as n:
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply


@pytest.mark.parametrize("first", ["relative/state.sqlite", "", "{tmp}/gone/state.sqlite"])
def test_a_note_naming_no_store_in_use_removes_none_it_names_left(
    tmp_path: Path, first: str
) -> None:
    """A note whose first line names no store there (unreadable, or a disk not mounted):
    the store its second line names as the move's leftover may be the only one holding the
    spent ids (the one the config names, even): kept."""
    store = tmp_path / "state.sqlite"
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("CREATE TABLE kv (key, value)")
    note = moves.note_of(tmp_path / "edged.toml")
    note.write_text(f"{first.format(tmp=tmp_path)}\n{store}\n")
    assert moves.follow(note, store, tmp_path / "outbox.sqlite") == store
    assert store.stat().st_size > 0


async def test_a_note_naming_a_file_of_another_kind_leaves_it_in_place(tmp_path: Path) -> None:
    """The note names a key (ops put one where the store was): the node opened it as its
    state store, found no database and set it aside as a corrupt store, gone from its
    place; it is left alone, and the store the config names is opened."""
    a = tmp_path / "a" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    key = tmp_path / "ops.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n")
    moves.note_of(tmp_path / "edged.toml").write_text(f"{key}\n")
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert n.outbox.state.path == a
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY")


def test_a_leftover_that_became_an_outbox_since_is_not_removed(tmp_path: Path) -> None:
    """The old store's file made the outbox (a technician's config), the store carried
    away, and the note still naming that file as the move's leftover (the state store
    opened in memory, its disk read-only: the note not settled); the outbox moved back
    since: the file, an outbox with its messages unsent, was removed as the leftover."""
    left, store = tmp_path / "s" / "state.sqlite", tmp_path / "n" / "state.sqlite"
    for path, table in ((left, "msg"), (store, "kv")):
        path.parent.mkdir()
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(f"CREATE TABLE {table} (a, b)")
            db.execute(f"INSERT INTO {table} VALUES (1, 'an alarm raised offline')")
    note = moves.note_of(tmp_path / "edged.toml")
    note.write_text(f"{store}\n{left}\n")
    moves.follow(note, store, tmp_path / "o1" / "outbox.sqlite")
    assert moves.unsent(left) == 1


def test_a_note_with_a_nul_byte_in_a_line_does_not_stop_the_start(tmp_path: Path) -> None:
    """A note's line holding a NUL (a damaged sector, a hand's slip) raised ValueError from
    the path's checks, and the node could not start; the line is read as unreadable."""
    store = tmp_path / "state.sqlite"
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("CREATE TABLE kv (key, value)")
    note = moves.note_of(tmp_path / "edged.toml")
    note.write_text(f"{store}\n/var/lib/edged/st\x00te.sqlite\n")
    assert moves.follow(note, store, tmp_path / "outbox.sqlite") == store
    assert store.stat().st_size > 0


def _flip(path: Path) -> None:
    """A failing card: the pages past the first read back as noise (bit flips)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(max(0, size - 4096)))


async def test_a_copy_that_reads_back_corrupt_leaves_the_node_on_the_old_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The card garbles the copy as it is written: the node goes on with the old store,
    intact (a list older than the one taken still refused), and says so; the old store
    was removed once the copy was named, the copy set aside as corrupt when opened."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    fsync = os.fsync

    def garbling(fd: int) -> None:
        fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".carried"):
            _flip(Path(os.readlink(f"/proc/self/fd/{fd}")))

    monkeypatch.setattr(moves.os, "fsync", garbling)
    async with running(write(tmp_path, f'state_path = "{b}"')) as n:
        assert n.outbox.state.path == a
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
        assert n.counters.snapshot().get("state.not_moved") == 1  # health.errors: ops sees it
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply
    assert a.exists() and moves.last_store(moves.note_of(tmp_path / "edged.toml")) == a
    assert any("read back" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


async def test_a_carried_store_found_corrupt_when_opened_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy was sound when carried, and garbled by the card before the store opened it
    (set aside as corrupt, the node on what could be read back): the store it was carried
    from, intact, is not removed as the move's leftover."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    kept = a.read_bytes()
    follow = moves.follow

    def garbled(note: Path, configured: Path, outbox: Path) -> Path:
        used = follow(note, configured, outbox)
        _flip(used)
        return used

    monkeypatch.setattr(moves, "follow", garbled)
    async with running(write(tmp_path, f'state_path = "{b}"')) as n:
        assert any(loss.cause == "state_corrupt" for loss in n.outbox.state.losses)
    assert a.read_bytes() == kept


async def test_the_advice_for_a_carried_store_found_corrupt_brings_the_old_one_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The copy found corrupt as it opened, the node on an empty store: the log said to put
    the old store back "(or name it in the config)"; named there, the node carried the empty
    store over it (set aside as replaced) and took an older signed list. The advice given
    now, followed as written, has the node on the old store again."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    follow = moves.follow

    def garbled(note: Path, configured: Path, outbox: Path) -> Path:
        used = follow(note, configured, outbox)
        _flip(used)
        return used

    monkeypatch.setattr(moves, "follow", garbled)
    cfg = write(tmp_path, f'state_path = "{b}"')
    async with running(cfg):
        pass
    monkeypatch.undo()
    said = " ".join(r.getMessage() for r in caplog.records if "fails its check" in r.getMessage())
    assert f"remove {b} and {b}-wal, and copy it to {b}" in said, said
    for file in (b, b.with_name(b.name + "-wal")):
        file.unlink(missing_ok=True)
    b.write_bytes(a.read_bytes())
    async with running(cfg) as n:
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply


async def test_a_config_with_the_two_stores_swapped_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    """`[outbox] path` naming the state store the node ran on and `state_path` its outbox:
    nothing is lost (the store is not carried onto an outbox), but the node opened one
    file for both and restarted for ever on "database is locked", which named neither
    the swap nor what to do."""
    o, s = tmp_path / "d" / "outbox.sqlite", tmp_path / "d" / "state.sqlite"
    async with running(write(tmp_path, f'path = "{o}"\nstate_path = "{s}"')) as n:
        assert (await send(n, "access.update", {"id": "l1", "args": signed(full_lists())})).reply.ok
    held = {f: f.read_bytes() for f in (o, s)}
    cfg = write(tmp_path, f'path = "{s}"\nstate_path = "{o}"')
    node = Node(load_config(cfg), config_path=cfg)
    with pytest.raises(EdgedError) as refused:
        await asyncio.wait_for(node.run(asyncio.Event()), 5)
    said = str(refused.value)
    assert str(s) in said and str(o) in said and "swapped" in said, said
    assert {f: f.read_bytes() for f in (o, s)} == held


async def test_a_start_removes_what_writes_of_the_config_files_killed_midway_left(
    tmp_path: Path,
) -> None:
    """A node killed while it wrote its notes or a config (a `config.set`, a rollback)
    left `.edged.toml.NAME.<hex>` beside the config at each kill; the next start removes
    those (old, ours), and nothing else there."""
    cfg = write(tmp_path, f'state_path = "{tmp_path / "a" / "state.sqlite"}"')
    then = time.time() - 3600
    left = [tmp_path / f".edged.toml.{s}0123456789abcdef" for s in ("", "previous.", "outbox.")]
    kept = [tmp_path / ".edged.toml.swp", tmp_path / ".edged.toml.notes"]
    for f in (*left, *kept):
        f.write_text("x")
        os.utime(f, (then, then))
    async with running(cfg):
        pass
    assert not any(f.exists() for f in left) and all(f.exists() for f in kept)


async def test_a_second_edged_with_an_edited_config_does_not_carry_the_store_one_runs_on(
    tmp_path: Path,
) -> None:
    """A technician edits `state_path` and starts edged by hand while the unit runs: the
    second start copied the store the first ran on, noted the copy, and failed on the held
    outbox; the first went on spending ids and taking lists into the old store, and its
    next start removed that one as the move's leftover, running on the stale copy."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    o = f'path = "{tmp_path / "outbox.sqlite"}"\n'
    cfg = write(tmp_path, f'{o}state_path = "{a}"')
    async with running(cfg) as first:
        write(tmp_path, f'{o}state_path = "{b}"')
        argv = [sys.executable, "-P", "-m", "edged", "run", "-c", str(cfg)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
        second = await asyncio.to_thread(
            subprocess.run, argv, env=env, capture_output=True, text=True, timeout=20
        )
        assert second.returncode != 0 and "held by another" in second.stderr, second.stderr[-2000:]
        lists = {"id": "l2", "args": signed(full_lists(2))}
        assert (await send(first, "access.update", lists)).reply.ok
    assert not b.exists() and moves.last_store(moves.note_of(cfg)) == a
    async with running(cfg) as n:
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply

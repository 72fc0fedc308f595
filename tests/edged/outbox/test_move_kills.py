"""A node killed (SIGKILL, a real child process) at each step of a state store move, then
started again, with the move's config or the previous one (a `config.set` rolled back):
nothing it acknowledged is lost (an access list older than the one taken is still
refused) and no copy of the store is left on the card (each is the store's size, and a
fleet pushing configs for months would fill an SD card with them)."""

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edged.outbox import moves
from tests.edged.access.support import full_lists, signed
from tests.edged.outbox.test_moves import _flip, running, send, write
from tests.helpers.disk import ext4_error, mounted_tmpfs, read_only, sd_card

ROOT = Path(__file__).resolve().parents[3]


async def killed_at(cfg: Path, step: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.helpers.move_child", str(cfg), step, cwd=ROOT
    )
    assert await asyncio.wait_for(proc.wait(), 20) == -9, f"the node did not die at {step}"


def fixed(card: Path) -> None:
    """The card `ext4_error` left read-only, checked and mounted again (fsck, a reboot)."""
    image = card.with_name(card.name + ".img")
    subprocess.run(["umount", "-l", str(card)], check=True, capture_output=True)
    subprocess.run(["fsck.ext4", "-y", str(image)], check=False, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(card)], check=True)


def mount(*args: str) -> None:
    """`mount ARGS`, or `umount PATH` for `-u PATH`."""
    argv = ["umount", *args[1:]] if args[0] == "-u" else ["mount", *args]
    subprocess.run(argv, check=True, capture_output=True)


def files(*dirs: Path) -> list[str]:
    return sorted(str(f.relative_to(f.parents[1])) for d in dirs for f in d.iterdir())


@pytest.mark.parametrize(
    ("step", "again"),
    [("copying", "a"), ("copied", "a"), ("renamed", "b"), ("renamed", "a"), ("noted", "a")],
)
async def test_a_node_killed_mid_move_keeps_its_store_and_leaves_no_copy(
    tmp_path: Path, step: str, again: str
) -> None:
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    await killed_at(write(tmp_path, f'state_path = "{b}"'), step)
    live = {"a": a, "b": b}[again]
    async with running(write(tmp_path, f'state_path = "{live}"')) as n:
        assert n.outbox.state.path == live
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
        assert out.reply.error is not None and out.reply.error.code == "stale_version"
    assert files(a.parent, b.parent) == [f"{again}/state.sqlite"]
    assert moves.last_store(moves.note_of(tmp_path / "edged.toml")) == live


async def test_the_store_a_move_left_is_kept_while_the_one_carried_to_is_not_there(
    tmp_path: Path,
) -> None:
    """Killed once the note named the copy (the old store still to remove), then started
    with the new place's disk not mounted and the old path back (a rollback): the old store,
    the only one there, was removed as the copy's leftover, and the node ran on an empty
    store (a list older than the one taken accepted again)."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    await killed_at(write(tmp_path, f'state_path = "{b}"'), "noted")
    b.parent.rename(tmp_path / "b-unmounted")
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply


async def test_a_copy_found_garbled_at_the_next_start_gives_way_to_the_store_it_came_from(
    tmp_path: Path,
) -> None:
    """Killed once the note named the copy, the card garbling the copy meanwhile (a dying
    SD card): the next start removed the old store, the only intact one, as the move's
    leftover (the copy's header was right), and ran on what could be read of the copy.
    Now the old store is taken again and carried anew; the garbled copy is set aside."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    cfg = write(tmp_path, f'state_path = "{b}"')
    await killed_at(cfg, "noted")
    _flip(b)
    async with running(cfg) as n:
        assert not n.outbox.state.losses, n.outbox.state.losses
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply
    aside = [p for p in b.parent.iterdir() if p.name.startswith("state.sqlite.corrupt-")]
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm", "-journal"))], aside


async def test_a_copy_its_card_refused_to_remove_is_removed_once_the_card_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new place's card remounted read-only by an ext4 error as the copy was renamed (a
    real ext4 on a loop device): the node kept its store (nothing lost), but the copy could
    not be removed and the note forgot it; once the card was fixed and the config back
    (a rollback), it stayed on the card for good, a store's size at each such fault."""
    a = tmp_path / "a" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')):
        pass
    with sd_card(tmp_path / "card") as card:
        replace = os.replace

        def replacing(src: Any, dst: Any) -> None:
            if str(src).endswith(".carried"):
                ext4_error(card)
            replace(src, dst)

        with monkeypatch.context() as m:
            m.setattr(moves.os, "replace", replacing)
            async with running(write(tmp_path, f'state_path = "{card / "state.sqlite"}"')) as n:
                assert n.outbox.state.path == a
        fixed(card)
        assert (card / ".state.sqlite.carried").exists()
        async with running(write(tmp_path, f'state_path = "{a}"')):
            pass
        assert sorted(p.name for p in card.iterdir()) == ["lost+found"]


async def test_the_old_store_its_disk_would_not_let_go_of_is_removed_once_it_can_be(
    tmp_path: Path,
) -> None:
    """The old store's disk read-only as the move ended (a real tmpfs remounted ro): the
    store was carried, the old one could not be removed, and the note forgot it, so it
    stayed on that disk for good, with the spent ids and lists of the day of the move."""
    with mounted_tmpfs(tmp_path / "old", "8m") as disk:
        a, b = disk / "state.sqlite", tmp_path / "b" / "state.sqlite"
        async with running(write(tmp_path, f'state_path = "{a}"')) as n:
            assert (
                await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
            ).reply.ok
        cfg = write(tmp_path, f'state_path = "{b}"')
        with read_only(disk):
            async with running(cfg) as n:
                assert n.outbox.state.path == b
        assert a.exists()
        async with running(cfg) as n:
            out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
        assert out.reply.error is not None and out.reply.error.code == "stale_version"
        assert list(disk.iterdir()) == []


async def test_a_store_the_node_ran_on_is_not_traded_for_the_old_one_on_a_failed_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old store's disk read-only as the move ended, so it stays named to go; the node
    ran on the new one and took a newer signed list. At the next start the look at the
    store failed once (a slow or failing card's EIO): the node took the old store back as
    if it had never run on the new one, set the new one aside as corrupt, and enforced the
    list of the day of the move again (the cards revoked since let in)."""
    with mounted_tmpfs(tmp_path / "old", "8m") as disk:
        a, b = disk / "state.sqlite", tmp_path / "b" / "state.sqlite"
        async with running(write(tmp_path, f'state_path = "{a}"')) as n:
            assert (
                await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
            ).reply.ok
        cfg = write(tmp_path, f'state_path = "{b}"')
        with read_only(disk):
            async with running(cfg) as n:
                assert n.outbox.state.path == b
                assert (
                    await send(n, "access.update", {"id": "l3", "args": signed(full_lists(3))})
                ).reply.ok
            sound = moves._sound
            monkeypatch.setattr(moves, "_sound", lambda p: p != b and sound(p))
            async with running(cfg) as n:
                assert n.outbox.state.path == b
                out = await send(n, "access.update", {"id": "l4", "args": signed(full_lists(2))})
        assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply
        assert not [p for p in b.parent.iterdir() if ".corrupt-" in p.name]


async def test_a_read_only_disk_logs_only_the_files_of_a_store_that_are_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The old store's disk read-only as the move ended: each start said "cannot remove"
    for eight files, seven of them not there (its `-wal` once closed, `-shm`, `-journal`,
    the copy's four), sending whoever read the log after files that did not exist."""
    with mounted_tmpfs(tmp_path / "old", "8m") as disk:
        a, b = disk / "state.sqlite", tmp_path / "b" / "state.sqlite"
        async with running(write(tmp_path, f'state_path = "{a}"')):
            pass
        with read_only(disk):
            there = set(disk.iterdir())
            async with running(write(tmp_path, f'state_path = "{b}"')):
                pass
    named = {
        Path(r.getMessage().split()[2].rstrip(","))
        for r in caplog.records
        if r.getMessage().startswith("cannot remove ")
    }
    assert named and named <= there, (named, there)


async def test_a_copy_garbled_from_its_first_page_gives_way_to_the_store_it_came_from(
    tmp_path: Path,
) -> None:
    """Killed once the note named the copy, the card garbling the copy's first page too (its
    header: any page of a dying card is hit alike): the copy passed for no store at all, the
    node opened it, set it aside as corrupt and ran on an empty state store, a list older
    than the one it had taken accepted, though the store it came from lay intact beside."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    cfg = write(tmp_path, f'state_path = "{b}"')
    await killed_at(cfg, "noted")
    b.write_bytes(os.urandom(b.stat().st_size))
    async with running(cfg) as n:
        assert not n.outbox.state.losses, n.outbox.state.losses
        out = await send(n, "access.update", {"id": "l1", "args": signed(full_lists(1))})
    assert out.reply.error is not None and out.reply.error.code == "stale_version", out.reply


async def test_a_disk_swapped_since_the_old_store_was_left_keeps_the_file_now_there(
    tmp_path: Path,
) -> None:
    """The old store's disk read-only as the move ended, so the old store stayed named to
    go; that disk was replaced since (another vehicle's stick, a card formatted anew), a
    SQLite file at the same name on it: the next start removed it as the move's leftover,
    though nothing said it was the node's."""
    old = tmp_path / "old"
    b = tmp_path / "b" / "state.sqlite"
    with mounted_tmpfs(old, "8m") as disk:
        async with running(write(tmp_path, f'state_path = "{disk / "state.sqlite"}"')):
            pass
        cfg = write(tmp_path, f'state_path = "{b}"')
        with read_only(disk):
            async with running(cfg) as n:
                assert n.outbox.state.path == b
    with mounted_tmpfs(old, "8m") as disk:
        theirs = disk / "state.sqlite"
        with sqlite3.connect(theirs) as c:
            c.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            c.execute("INSERT INTO kv VALUES ('bus-7', 'its own')")
        c.close()
        async with running(cfg) as n:
            assert n.outbox.state.path == b
        assert theirs.exists()


async def test_a_file_put_where_the_left_store_was_already_gone_is_kept(tmp_path: Path) -> None:
    """The old store's file went as the move ended but a companion of it would not (a
    failing card, here a mount over its `-journal`: EBUSY), so the store stayed named to
    go, with no identity, its file gone; that disk was swapped since, a SQLite file of
    another at the name: the next start removed it, though the note never saw a file there."""
    old = tmp_path / "old"
    b = tmp_path / "b" / "state.sqlite"
    with mounted_tmpfs(old, "8m") as disk:
        async with running(write(tmp_path, f'state_path = "{disk / "state.sqlite"}"')):
            pass
        stuck, over = disk / "state.sqlite-journal", tmp_path / "over"
        stuck.touch()
        over.touch()
        mount("--bind", str(over), str(stuck))
        try:
            cfg = write(tmp_path, f'state_path = "{b}"')
            async with running(cfg) as n:
                assert n.outbox.state.path == b
            assert not (disk / "state.sqlite").exists()
        finally:
            mount("-u", str(stuck))
    with mounted_tmpfs(old, "8m") as disk:
        theirs = disk / "state.sqlite"
        with sqlite3.connect(theirs) as c:
            c.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        c.close()
        async with running(cfg) as n:
            assert n.outbox.state.path == b
        assert theirs.exists()

"""A node killed (SIGKILL, a real child process) at each step of a state store move, then
started again, with the move's config or the previous one (a `config.set` rolled back):
nothing it acknowledged is lost (an access list older than the one taken is still
refused) and no copy of the store is left on the card (each is the store's size, and a
fleet pushing configs for months would fill an SD card with them)."""

import asyncio
import sys
from pathlib import Path

import pytest

from edged.outbox import moves
from tests.edged.access.support import full_lists, signed
from tests.edged.outbox.test_moves import _flip, running, send, write

ROOT = Path(__file__).resolve().parents[3]


async def killed_at(cfg: Path, step: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.helpers.move_child", str(cfg), step, cwd=ROOT
    )
    assert await asyncio.wait_for(proc.wait(), 20) == -9, f"the node did not die at {step}"


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


async def test_the_store_a_move_left_is_kept_when_its_copy_is_found_garbled_at_the_next_start(
    tmp_path: Path,
) -> None:
    """Killed once the note named the copy, the card garbling the copy meanwhile (a dying
    SD card): the next start removed the old store, the only intact one, as the move's
    leftover, because the copy's header was right."""
    a, b = tmp_path / "a" / "state.sqlite", tmp_path / "b" / "state.sqlite"
    async with running(write(tmp_path, f'state_path = "{a}"')) as n:
        assert (
            await send(n, "access.update", {"id": "l2", "args": signed(full_lists(2))})
        ).reply.ok
    cfg = write(tmp_path, f'state_path = "{b}"')
    await killed_at(cfg, "noted")
    kept = a.read_bytes()
    _flip(b)
    async with running(cfg):
        pass
    assert a.read_bytes() == kept

"""An SD card the kernel remounted read-only (an ext4 error): every write refused, every
read still works. The node starts on it with what its files hold — the access lists and
the services' state, the messages queued, the taps in the journal, the seq counters —
kept in memory, and says the disk refuses writes. Real parts: a tmpfs remounted `ro`."""

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from edged.errors import NotDurableError
from edged.outbox import Outbox
from edged.outbox.sqlitefile import copy_database
from tests.edged.outbox.test_recovery import cfg, started, tap, with_history
from tests.edged.outbox.test_store import alarm, door, drain, seqs
from tests.helpers.disk import ext4_error, fill, mounted_tmpfs, read_only, sd_card


def snapshot(box: Outbox, src: Path, dst: Path) -> None:
    """The node's files as a `kill -9` leaves them (WALs not checkpointed, the journal's
    page written), copied while `box` still runs."""
    for name in ("outbox.sqlite", "state.sqlite"):
        copy_database(src / name, dst / name)
    for name in ("outbox.sqlite-taps", "outbox.sqlite-marks"):
        shutil.copyfile(src / name, dst / name)


async def test_a_restart_on_a_read_only_disk_keeps_what_the_files_hold(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        config = cfg(disk)
        await with_history(config)  # doors 1..5, 4 and 5 queued, the lists at version 7
        with read_only(disk):
            box = await started(config)
            assert not box.durable and not box.state.durable
            assert box.get_state("access.lists") == {"version": 7}, "doors still open"
            refused = box.put_nowait(door(9))
            await box.flush()
            with pytest.raises(NotDurableError):
                await refused
            sent = seqs(await drain(box))
            await box.close()
    assert sorted(sent) == [4, 5, 6], "the queued ones go out, the new one counts on"


async def test_a_kill_9_then_a_read_only_disk_loses_no_state_and_no_tap(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    box = await started(cfg(live))
    box.put_nowait(tap(1))
    box.set_state("access.lists", {"version": 8})
    await box.flush()
    box.put_nowait(tap(2))  # in the journal only: the door opened, no commit yet
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        snapshot(box, live, disk)
        box._new_data.set()
        await box.close()
        with read_only(disk):
            again = await started(cfg(disk))
            assert again.get_state("access.lists") == {"version": 8}
            stored = [json.loads(m.payload) for m in await drain(again)]
            refused = again.put_nowait(tap(3))
            await again.flush()
            with pytest.raises(NotDurableError, match="in memory"):
                await refused
            later = seqs(await drain(again))
            await again.close()
    assert [m["card_ref"][-1] for m in stored] == ["1", "2"], "both taps, from memory"
    assert later == [3], "seq counts on above the taps the files held"


async def test_a_corrupt_state_store_on_a_read_only_disk_does_not_stop_the_node(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        config = cfg(disk)
        await with_history(config)
        (disk / "state.sqlite").write_bytes(b"not a database at all" * 100)
        with read_only(disk):
            box = await started(config)
            assert [loss.cause for loss in box.losses] == ["state_corrupt"]
            assert not box.state.durable
            box.set_state("x", 1)
            await box.flush()
            await box.close()
        assert (disk / "state.sqlite").read_bytes().startswith(b"not a database"), "kept"


async def test_a_corrupt_outbox_on_a_read_only_disk_does_not_stop_the_node(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        config = cfg(disk)
        await with_history(config)
        (disk / "outbox.sqlite").write_bytes(b"not a database at all" * 100)
        with read_only(disk):
            box = await started(config)
            assert [loss.cause for loss in box.losses] == ["corrupt"]
            assert not box.durable
            assert box.get_state("access.lists") == {"version": 7}
            refused = box.put_nowait(door(1))
            await box.flush()
            with pytest.raises(NotDurableError, match="in memory"):
                await refused
            assert seqs(await drain(box)) == [6]
            await box.close()


async def test_seq_does_not_go_back_after_a_full_disk_then_a_read_only_one(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        config = cfg(disk)
        await with_history(config)  # doors 1..5
        filler = fill(disk)
        box = await started(config)
        # 6, 7, 8: refused by the disk, counted in the marks file only
        refused = [box.put_nowait(door(i)) for i in range(3)]
        with pytest.raises(sqlite3.OperationalError):
            await box.flush()
        await box.close()
        filler.unlink()
        with read_only(disk):
            box = await started(config)
            refused.append(box.put_nowait(door(9)))
            await box.flush()
            sent = seqs(await drain(box))
            await box.close()
        told = await asyncio.gather(*refused, return_exceptions=True)
    assert sorted(sent) == [4, 5, 9], "not 6 again"
    assert all(isinstance(t, NotDurableError) for t in told), told


async def test_a_state_store_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    """A directory in its place (or a file the card fails to read): the node runs, with
    the access lists lost, and `alarm/outbox_lost` says so, not only a log line."""
    config = cfg(tmp_path)
    await with_history(config)
    (tmp_path / "state.sqlite").unlink()
    (tmp_path / "state.sqlite").mkdir()
    box = await started(config)
    assert [loss.cause for loss in box.losses] == ["state_missing"]
    assert "cannot be read" in box.losses[0].reason
    await box.close()


async def test_a_card_the_kernel_remounts_read_only_while_running_still_sends_the_panic(
    tmp_path: Path,
) -> None:
    """An ext4 error under the running node: the kernel remounts the card read-only, files
    open for writing included. The panic's commit is refused and it goes out from memory
    (the link holding); the outbox closes without an error."""
    with sd_card(tmp_path / "sd") as card:
        box = await started(cfg(card))
        box.put_nowait(door(1))
        await box.flush()
        ext4_error(card)
        refused = box.put_nowait(alarm())
        with pytest.raises(sqlite3.OperationalError):
            await box.flush()
        with pytest.raises(NotDurableError):
            await refused
        first = await box.next_batch(1)
        await box.close()
    assert first[0].topic.endswith("/alarm/panic")

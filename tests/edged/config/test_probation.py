"""A config on probation (edged/config/probation.py): the previous file must be there to roll
back to, whenever the power is cut."""

import asyncio
import errno
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.counters import Counters
from edged.commands.admin import probation_watch
from edged.config import probation as probation_module
from edged.config.probation import Probation

ROOT = Path(__file__).resolve().parents[3]


def test_the_previous_config_is_on_the_disk_before_the_probation_begins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut once the marker and the new file are on the disk must find `.previous`
    whole: a file written without fsync(2) can come back empty after a crash (ext4's delayed
    allocation: `auto_da_alloc`, Linux commit afd4672dc761, covers only a file renamed over
    another or truncated, and commit 0eab928221ba leaves out a new file opened O_TRUNC, which
    `.previous` is at the first config.set). An empty `.previous`
    rolled back is a config that does not load: exit 78, and systemd no longer restarts edged.
    The power cut itself cannot be made here: what reaches the disk is seen at each fsync."""
    config = tmp_path / "edged.toml"
    config.write_text('[node]\nfleet = "f"\nid = "n"\nprofile = "shuttle"\n')
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        synced.append(name)

    monkeypatch.setattr(os, "fsync", fsync)
    probation = Probation(config)
    probation.begin('[node]\nfleet = "f"\nid = "n2"\nprofile = "shuttle"\n')
    previous = [i for i, n in enumerate(synced) if n.startswith(".edged.toml.previous.")]
    marker = [i for i, n in enumerate(synced) if n.startswith(".edged.toml.pending.")]
    assert previous and marker and previous[0] < marker[0], synced
    assert probation.previous.read_text() == config.read_text().replace("n2", "n")


def test_the_previous_config_keeps_the_mode_of_the_running_one(tmp_path: Path) -> None:
    """install.sh lays /etc/edged/edged.toml out 0640 (root, group edged)."""
    config = tmp_path / "edged.toml"
    config.write_text('[node]\nfleet = "f"\nid = "n"\nprofile = "shuttle"\n')
    config.chmod(0o640)
    probation = Probation(config)
    probation.begin('[node]\nfleet = "f"\nid = "n2"\nprofile = "shuttle"\n')
    assert probation.previous.stat().st_mode & 0o777 == 0o640


def _on_probation(tmp_path: Path) -> Probation:
    config = tmp_path / "edged.toml"
    config.write_text('[node]\nfleet = "f"\nid = "n"\nprofile = "shuttle"\n')
    probation = Probation(config)
    probation.begin('[node]\nfleet = "f"\nid = "n2"\nprofile = "shuttle"\n')
    return probation


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_the_time_on_probation_counts_from_its_beginning_not_from_each_start(
    tmp_path: Path,
) -> None:
    """A node restarted by systemd (a crash, the watchdog) keeps the time it already had."""
    probation = _on_probation(tmp_path)
    assert 119 < probation.remaining_s(120) <= 120
    since = time.clock_gettime(time.CLOCK_BOOTTIME) - 100
    doc = {"on_probation": True, "boot_id": _boot_id(), "since_boottime_s": since}
    probation.marker.write_text(json.dumps(doc))
    assert 19 < Probation(probation.path).remaining_s(120) <= 20
    assert Probation(probation.path).remaining_s(90) == 0


def test_a_probation_from_another_boot_starts_its_count_again(tmp_path: Path) -> None:
    """After a power cut the node cannot tell how long it was off: the full time again."""
    probation = _on_probation(tmp_path)
    doc = {"on_probation": True, "boot_id": "another-boot", "since_boottime_s": 1.0}
    probation.marker.write_text(json.dumps(doc))
    assert 119 < probation.remaining_s(120) <= 120
    assert json.loads(probation.marker.read_text())["boot_id"] == _boot_id()


def test_an_older_releases_marker_is_still_a_probation_counted_from_now(tmp_path: Path) -> None:
    probation = _on_probation(tmp_path)
    probation.marker.write_text("the config beside this file is on probation\n")
    assert probation.active
    assert 119 < probation.remaining_s(120) <= 120
    assert probation.active and json.loads(probation.marker.read_text())["on_probation"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda since: json.dumps(
                {"on_probation": True, "boot_id": _boot_id(), "since_boottime_s": since}
            ).encode(),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.integers(min_value=-(10**30), max_value=10**30),
                st.booleans(),
                st.text(max_size=5),
                st.none(),
            ),
        ),
    )
)
def test_a_damaged_or_hostile_marker_never_gives_more_time_nor_fails(
    tmp_path: Path, text: bytes
) -> None:
    """Whatever the marker holds (a torn write, a value from the future, NaN), the node
    decides: at most the configured time is left, never an error."""
    probation = _on_probation(tmp_path)
    probation.marker.write_bytes(text)
    left = probation.remaining_s(60)
    assert 0 <= left <= 60


def test_the_new_config_and_the_rolled_back_one_keep_the_running_files_mode(
    tmp_path: Path,
) -> None:
    """The unit runs with UMask=0077: a file written fresh would be 0600 and the group
    `edged` (ops' tools, `edged check-config`) could no longer read the config."""
    old_umask = os.umask(0o077)
    try:
        config = tmp_path / "edged.toml"
        config.write_text('[node]\nfleet = "f"\nid = "n"\nprofile = "shuttle"\n')
        config.chmod(0o640)
        probation = Probation(config)
        probation.begin('[node]\nfleet = "f"\nid = "n2"\nprofile = "shuttle"\n')
        assert config.stat().st_mode & 0o777 == 0o640
        probation.rollback()
        assert config.stat().st_mode & 0o777 == 0o640
        assert '"n"' in config.read_text()
    finally:
        os.umask(old_umask)


def test_a_rollback_puts_the_previous_config_back_when_the_file_is_gone(tmp_path: Path) -> None:
    """`edged run` rolls back a config on probation that does not load, a missing file
    included (deleted by hand): the rollback must not need the file it replaces."""
    probation = _on_probation(tmp_path)
    probation.previous.chmod(0o640)
    probation.path.unlink()
    probation.rollback()
    assert '"n"' in probation.path.read_text()
    assert probation.path.stat().st_mode & 0o777 == 0o640
    assert not probation.active


def test_a_stop_on_purpose_keeps_the_time_run_and_not_the_time_stopped(tmp_path: Path) -> None:
    probation = _on_probation(tmp_path)
    since = time.clock_gettime(time.CLOCK_BOOTTIME) - 50
    doc = {"on_probation": True, "boot_id": _boot_id(), "since_boottime_s": since}
    probation.marker.write_text(json.dumps(doc))
    probation.pause()  # SIGTERM after 50 s on probation
    assert 49 < json.loads(probation.marker.read_text())["paused_after_s"] < 52
    # however long it stayed stopped, the next start has what was left
    assert 67 < Probation(probation.path).remaining_s(120) <= 71
    assert 67 < Probation(probation.path).remaining_s(120) <= 71  # and the start after


async def test_a_second_config_set_during_a_probation_is_not_committed_by_the_first_watch(
    tmp_path: Path,
) -> None:
    """Dispatch pushes A, then B while the node restarts with A: the broker hands B over as
    the node connects, and its config.set may run before A's watch next looks (it looks
    every 0.2 s). That watch then saw the node connected and removed B's marker as A's: B
    ran with no probation, and a B that cannot reach the broker was kept for good."""
    probation = _on_probation(tmp_path)  # A on probation
    life = SimpleNamespace(
        config_path=probation.path,
        hears_commands=False,
        counters=Counters(),
        config=SimpleNamespace(remote=SimpleNamespace(rollback_after_s=5.0)),
        restarts=[],
    )
    life.request_restart = lambda *, after_reply: life.restarts.append(after_reply)
    watch = asyncio.create_task(probation_watch(life))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the watch has looked: not connected yet
    life.hears_commands = True
    Probation(probation.path).begin('[node]\nfleet = "f"\nid = "b"\nprofile = "shuttle"\n')
    await asyncio.wait_for(watch, 1)
    assert probation.active, "B's probation was taken for A's and committed"
    assert 'id = "n2"' in probation.previous.read_text()  # A, which reached the broker
    assert life.restarts == []


def test_a_rollback_keeps_the_config_it_takes_out_even_when_done_twice(tmp_path: Path) -> None:
    """A technician who edits the file on the device during a probation (the pushed config
    fixed by hand, another driver option) lost the edit at the rollback: `.previous` was
    written over it and nothing kept it. A power cut after the file is put back and before
    the marker is removed rolls back again at the next start: the file taken out the first
    time must stay, not be replaced by `.previous` itself."""
    probation = _on_probation(tmp_path)
    edited = probation.path.read_text() + "# edited on the bus\n"
    probation.path.write_text(edited)
    probation.rollback()
    assert probation.rolled_back.read_text() == edited
    assert '"n"' in probation.path.read_text()
    probation.marker.write_text("on probation\n")  # the unlink lost to the power cut
    probation.rollback()
    assert probation.rolled_back.read_text() == edited


@pytest.mark.parametrize(
    "cause", ["no-room-for-both", "rolled-back-unwritable", "taken-out-unreadable"]
)
def test_a_rollback_is_not_held_up_by_the_copy_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:
    """`.rolled-back` is a courtesy, the rollback is the point: a card with room for one
    more config file (the rollback's own temporary file, enough before `.rolled-back`) had
    that room taken by the copy and the rollback failed `ENOSPC`; a `.rolled-back` that
    cannot be written (a directory in its place), or a pushed file the card no longer reads
    (`EIO`: the probation's own case, a config that does not load), failed it too. Either way the pushed
    config stayed, and every start after (`edged run`, its time over) failed the same
    rollback again: a node off the broker for good."""
    probation = _on_probation(tmp_path)
    probation.path.write_text(probation.path.read_text() + "# pushed, padded\n" * 8)
    pushed = probation.path.read_bytes()
    if cause == "rolled-back-unwritable":
        probation.rolled_back.mkdir()
    elif cause == "taken-out-unreadable":
        real_read = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == probation.path:
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))
            return real_read(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    else:
        real = probation_module.replace_atomically

        def used() -> int:
            return sum(p.stat().st_size for p in tmp_path.iterdir() if p.is_file())

        room = used() + max(len(pushed), probation.previous.stat().st_size) + 8

        def on_a_full_card(path: Path, data: str | bytes, **kwargs: Any) -> None:
            if used() + len(data) > room:  # the temporary file beside `path`
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real(path, data, **kwargs)

        monkeypatch.setattr(probation_module, "replace_atomically", on_a_full_card)
    probation.rollback()
    back = probation.path.read_text()
    assert '"n"' in back and "pushed" not in back
    assert not probation.active


KILLED_ROLLBACK = """
import os, signal, sys
from pathlib import Path
from edged.config import probation
step, write = int(sys.argv[2]), probation.replace_atomically
calls = []
def dying(path, *args, **kwargs):
    calls.append(path)
    if len(calls) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, *args, **kwargs)
probation.replace_atomically = dying
unlink = Path.unlink
def dying_unlink(self, *args, **kwargs):
    if step == 3 and self.name.endswith(".pending"):
        os.kill(os.getpid(), signal.SIGKILL)
    unlink(self, *args, **kwargs)
Path.unlink = dying_unlink
probation.Probation(Path(sys.argv[1])).rollback()
"""


@pytest.mark.parametrize("step", [1, 2, 3], ids=["keeping-the-copy", "writing-back", "unmarking"])
async def test_a_rollback_killed_at_any_step_ends_on_the_previous_config(
    tmp_path: Path, step: int
) -> None:
    """SIGKILL (a real child) as the rollback keeps `.rolled-back`, puts `.previous` back or
    takes the marker off: the next start rolls back again and ends on the previous config,
    the pushed one kept, and nothing else left beside them on the card."""
    p = _on_probation(tmp_path)
    previous, pushed = p.previous.read_bytes(), p.path.read_bytes()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_ROLLBACK, str(p.path), str(step), cwd=ROOT
    )
    assert await asyncio.wait_for(child.wait(), 10) == -9
    if p.active:  # the next start: its time over, the watch rolls back
        p.rollback()
    assert p.path.read_bytes() == previous and p.rolled_back.read_bytes() == pushed
    assert not p.active
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        [p.path.name, p.previous.name, p.rolled_back.name]
    )

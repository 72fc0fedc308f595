"""A config on probation (edged/config/probation.py): the previous file must be there to roll
back to, whenever the power is cut."""

import os
from pathlib import Path

import pytest

from edged.config.probation import Probation


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

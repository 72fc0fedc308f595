"""core.files: a file replaced whole, never half, never through something planted."""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import core.files
from core.files import replace_atomically


def test_the_new_content_replaces_the_old_and_nothing_else_is_left(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    replace_atomically(target, "new")
    replace_atomically(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_the_mode_is_what_open_gives_under_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        replace_atomically(tmp_path / "cache", "x")
        (tmp_path / "opened").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o600
    assert (tmp_path / "cache").stat().st_mode == (tmp_path / "opened").stat().st_mode


def test_an_exact_mode_is_set_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        replace_atomically(tmp_path / "secret", "psk", mode=0o600)
        replace_atomically(tmp_path / "public", "ssid", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644


def test_a_file_given_a_mode_is_never_wider_than_its_owners_before_it_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A descriptor opened on the temporary while it was wider would read the secret later."""
    seen: list[int] = []
    real = os.fchmod

    def noted(fd: int, mode: int) -> None:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real(fd, mode)

    monkeypatch.setattr(core.files.os, "fchmod", noted)
    old = os.umask(0)
    try:
        replace_atomically(tmp_path / "psk", "secret", mode=0o640)
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert stat.S_IMODE((tmp_path / "psk").stat().st_mode) == 0o640


def test_a_link_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me")
    target = tmp_path / "state" / "record.json"
    target.parent.mkdir()
    target.symlink_to(elsewhere)
    for pid_name in (f".record.json.{os.getpid()}", ".record.json.tmp", "record.json.tmp"):
        (target.parent / pid_name).symlink_to(elsewhere)  # names earlier writers used
    replace_atomically(target, "new", sync=True)
    assert elsewhere.read_text() == "keep me"
    assert not target.is_symlink() and target.read_text() == "new"


def test_a_failed_write_raises_and_leaves_neither_the_new_file_nor_a_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        replace_atomically(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_directory_that_is_not_there_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        replace_atomically(tmp_path / "missing" / "record.json", "x")
    assert list(tmp_path.iterdir()) == []


def _killed_writing(target: Path) -> Path:
    """A real child process SIGKILLed inside `replace_atomically`, its data written and not
    yet renamed: the temporary file it leaves, returned."""
    code = (
        "import os, signal, sys\n"
        "import core.files as f\n"
        "f.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "f.replace_atomically(__import__('pathlib').Path(sys.argv[1]), 'half', sync=True)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=root, check=False)
    assert done.returncode == -9
    (left,) = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    return left


def _aged(path: Path, seconds: float = core.files.LEFT_AFTER_S + 60) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def test_a_write_killed_midway_leaves_a_file_the_next_write_removes(tmp_path: Path) -> None:
    """Killed between its write and its rename (the OOM killer, the watchdog): the temporary
    file stayed for ever, a few KB beside the config or a cache at each kill."""
    target = tmp_path / "record.json"
    target.write_text("old")
    left = _aged(_killed_writing(target))
    replace_atomically(target, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"], left


def test_a_temporary_file_of_a_write_in_progress_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    left = _killed_writing(target)  # just written: another process's write, for all we know
    replace_atomically(target, "new")
    assert left.exists()


def test_only_files_provably_left_by_a_write_are_removed(tmp_path: Path) -> None:
    """Names alike but not ours (an editor's swap file, another name's, another user's, a
    link, a directory) stay, however old."""
    hexa = "0123456789abcdef"
    kept = [
        tmp_path / ".record.json.swp",
        tmp_path / f".record.json.{hexa}0",
        tmp_path / f"record.json.{hexa}",
        tmp_path / f".other.json.{hexa}",
        tmp_path / f".record.json.{hexa.upper()}",
    ]
    for p in kept:
        p.write_text("user's")
    foreign = tmp_path / f".record.json.{hexa[::-1]}"
    foreign.write_text("another user's")
    if os.geteuid() == 0:
        os.chown(foreign, 65534, 65534)
        kept.append(foreign)
    link = tmp_path / f".record.json.{'1' * 16}"
    link.symlink_to(tmp_path / ".record.json.swp")
    folder = tmp_path / f".record.json.{'2' * 16}"
    folder.mkdir()
    kept += [link, folder]
    for p in kept:
        _aged(p)
    replace_atomically(tmp_path / "record.json", "new")
    assert all(os.path.lexists(p) for p in kept)


def test_a_write_in_progress_is_kept_when_the_clock_jumped_since_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pi without a clock boots in the past, and NTP moves it forward by years as a write
    waits on a slow card's fsync: its temporary file looked an hour old to a cleaner of
    another process, which removed it, and the write failed. Its writer's lock keeps it."""
    import threading

    target = tmp_path / "record.json"
    target.write_text("old")
    started, go = threading.Event(), threading.Event()
    fsync = os.fsync

    def slow_card(fd: int) -> None:
        started.set()
        go.wait(5)
        fsync(fd)

    monkeypatch.setattr(core.files.os, "fsync", slow_card)
    failed: list[BaseException] = []

    def writing() -> None:
        try:
            replace_atomically(target, "new", sync=True)
        except BaseException as exc:
            failed.append(exc)

    writer = threading.Thread(target=writing)
    writer.start()
    try:
        assert started.wait(5)
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".record.json.")]
        _aged(tmp, 3600)  # what the jump makes of its time
        code = "import sys, pathlib, core.files as f; f.clear_left(pathlib.Path(sys.argv[1]), 'record\\\\.json')"
        root = Path(__file__).resolve().parents[2]
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=root, check=True)
    finally:
        go.set()
        writer.join(5)
    assert not failed, failed
    assert target.read_text() == "new"

"""core.files: a file replaced whole, never half, never through something planted."""

import os
import stat
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

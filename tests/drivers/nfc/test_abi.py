"""drivers.nfc.abi: the target structures against libnfc's header, a C compiler and libnfc.

Both widths of size_t are checked against the header on every machine (4: armhf, 8: arm64
and x86-64); the compiler and libnfc itself can only speak for the machine the tests run on.
"""

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, DriverError
from drivers.nfc import abi, libnfc
from drivers.nfc.libnfc import LibnfcOptions, LibnfcReader
from hil.nfc.emulator import Pn532Emulator
from tests.drivers.nfc import header
from tests.helpers.drivers import Recorder

WIDTHS = {4: ctypes.c_uint32, 8: ctypes.c_uint64}
NATIVE_WIDTH = ctypes.sizeof(ctypes.c_size_t)
OTHER = abi.layout(WIDTHS[12 - NATIVE_WIDTH])


def offsets(struct: type[ctypes.Structure] | type[ctypes.Union]) -> dict[str, tuple[int, int]]:
    return {
        name: (getattr(struct, name).offset, getattr(struct, name).size)
        for name, _ in struct._fields_
    }


@pytest.fixture(scope="module")
def text() -> str:
    if not header.HEADER.exists():
        pytest.fail(f"{header.HEADER} is missing: install libnfc-dev (./dev test does)")
    return header.HEADER.read_text()


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_iso14443a_info_has_the_headers_fields_at_its_offsets(text: str, width: int) -> None:
    c = header.layouts(width, text)["nfc_iso14443a_info"]
    ours = abi.layout(WIDTHS[width]).Iso14443aInfo
    assert offsets(ours) == {f.name: (f.offset, f.size) for f in c.fields.values()}
    assert ctypes.sizeof(ours) == c.size


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_the_target_info_union_has_the_headers_size_its_largest_member_nai(
    text: str, width: int
) -> None:
    c = header.layouts(width, text)["nfc_target_info"]
    largest = max(c.fields.values(), key=lambda f: f.size)
    assert largest.name == "nai"
    assert ctypes.sizeof(abi.layout(WIDTHS[width]).TargetInfo) == c.size


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_nfc_target_and_its_modulation_are_laid_out_as_the_header(text: str, width: int) -> None:
    c = header.layouts(width, text)
    lay = abi.layout(WIDTHS[width])
    assert offsets(lay.Target) == {
        f.name: (f.offset, f.size) for f in c["nfc_target"].fields.values()
    }
    assert ctypes.sizeof(lay.Target) == c["nfc_target"].size
    assert offsets(lay.Modulation) == {
        f.name: (f.offset, f.size) for f in c["nfc_modulation"].fields.values()
    }


def test_the_two_widths_differ_where_the_issue_saw_garbage(text: str) -> None:
    """pynfc's 64-bit szUidLen read on a 32-bit libnfc spans the length and 4 UID bytes."""
    narrow, wide = header.layouts(4, text), header.layouts(8, text)
    assert narrow["nfc_iso14443a_info"].fields["abtUid"].offset == 3 + 4
    assert wide["nfc_iso14443a_info"].fields["abtUid"].offset == 3 + 8
    assert narrow["nfc_target"].size != wide["nfc_target"].size


def test_a_header_without_its_pack_pragma_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(ValueError, match="not packed"):
        header.layouts(8, text.replace("pragma pack(1)", "pragma once"))


def test_the_driver_buffer_holds_a_whole_target() -> None:
    assert ctypes.sizeof(abi.NATIVE.Target) <= libnfc.TARGET_BUFFER


def test_a_c_compiler_lays_the_target_out_as_the_native_layout(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here: the header tests above still cover both widths")
    program = tmp_path / "layout.c"
    program.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <nfc/nfc-types.h>\n"
        'int main(void) { printf("%zu %zu %zu %zu %zu %zu %zu\\n", sizeof(size_t),\n'
        "  offsetof(nfc_iso14443a_info, szUidLen), offsetof(nfc_iso14443a_info, abtUid),\n"
        "  offsetof(nfc_iso14443a_info, szAtsLen), offsetof(nfc_iso14443a_info, abtAts),\n"
        "  offsetof(nfc_target, nm), sizeof(nfc_target)); return 0; }\n"
    )
    subprocess.run([cc, "-o", tmp_path / "layout", program], check=True)
    out = subprocess.run([tmp_path / "layout"], capture_output=True, text=True, check=True).stdout
    nai, target = abi.NATIVE.Iso14443aInfo, abi.NATIVE.Target
    assert [int(n) for n in out.split()] == [
        ctypes.sizeof(ctypes.c_size_t),
        nai.szUidLen.offset,
        nai.abtUid.offset,
        nai.szAtsLen.offset,
        nai.abtAts.offset,
        target.nm.offset,
        ctypes.sizeof(target),
    ]


# -- libnfc itself ------------------------------------------------------------------------


def test_libnfc_reads_a_target_in_the_native_layout_as_written() -> None:
    abi.check(abi.NATIVE)


def test_libnfc_prints_back_every_probe_field_for_the_native_layout() -> None:
    """The check compares what it parsed; this shows the parse finds every field at all."""
    run = subprocess.run(
        [abi.sys.executable, "-c", abi._CHILD, abi.probe_target(abi.NATIVE).hex()],
        capture_output=True,
        text=True,
        check=True,
    )
    printed, _, library = run.stdout.partition(abi.LIBRARY_MARK)
    assert abi.parse(printed) == abi.PROBE
    assert Path(library).name.startswith("libnfc.so") and Path(library).is_file()


def test_the_check_runs_apart_from_the_daemons_directory_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `ctypes.py` where the daemon runs, or on a PYTHONPATH it was given, is not what the
    child imports: the check would fail on it (or run someone else's code)."""
    (tmp_path / "ctypes.py").write_text("raise SystemExit('not the standard ctypes')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    abi.check(abi.NATIVE)


def test_the_other_abis_layout_is_refused_naming_its_size_t() -> None:
    """On armhf this is pynfc's 64-bit layout, the one that dropped every card."""
    with pytest.raises(ConfigError, match=rf"size_t of {ctypes.sizeof(OTHER.size_t)} bytes") as e:
        abi.check(OTHER)
    assert "will not read cards it would misread" in str(e.value)


def test_a_libnfc_crashing_on_the_probe_is_refused_and_this_process_lives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A length libnfc believes runs it off its buffer: the child dies, not the node."""
    good = abi.probe_target

    def huge_uid_length(lay: abi.Layout) -> bytes:
        target = lay.Target.from_buffer_copy(good(lay))
        target.nti.nai.szUidLen = 1 << (8 * ctypes.sizeof(lay.size_t) - 2)
        return bytes(target)

    monkeypatch.setattr(abi, "probe_target", huge_uid_length)
    with pytest.raises(ConfigError, match=r"libnfc crashed \(signal \d+\)"):
        abi.check(abi.NATIVE)


@pytest.mark.parametrize("name", ["KILL", "TERM"])
def test_a_check_whose_child_is_killed_from_outside_is_tried_again_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The OOM killer's SIGKILL (a Pi Zero short of memory at boot) or a stray SIGTERM says
    nothing of libnfc's layout: a refusal (ConfigError) left the node without its reader
    until the next restart. The child here is a real process killed by that signal."""
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nkill -{name} $$\n")
    python.chmod(0o755)
    monkeypatch.setattr(abi.sys, "executable", str(python))
    number = int(getattr(signal, f"SIG{name}"))
    with pytest.raises(DriverError, match=rf"killed by signal {number} from outside.*tried again"):
        abi.check(abi.NATIVE)


def test_a_check_that_cannot_start_for_want_of_memory_is_tried_again_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Python started with too little memory to come up: it exits non-zero
    without a word about libnfc's layout, as on a Pi Zero short of memory at boot. Refused,
    the node stayed without its reader until the next restart."""
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nulimit -v 10000\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    monkeypatch.setattr(abi.sys, "executable", str(python))
    with pytest.raises(DriverError, match=r"could not run to an answer \(exit \d+: .*tried again"):
        abi.check(abi.NATIVE)


async def test_a_reader_refuses_to_open_when_libnfc_disagrees_with_its_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver as it ran on armhf, but refusing: a ConfigError, no tap, never ready."""
    monkeypatch.setattr(abi, "NATIVE", OTHER)
    libnfc._layout_checked.cache_clear()
    try:
        with Pn532Emulator(tmp_path / "nfc0") as emu:
            emu.put(bytes.fromhex("04a1b2c3"))
            rec = Recorder("front-reader")
            opts = LibnfcOptions(connstring=emu.connstring, poll_interval_s=0.01, release_s=0.05)
            with pytest.raises(ConfigError, match="will not read cards it would misread"):
                await LibnfcReader(opts).run(rec.ctx)
        assert rec.taps == []
        assert rec.readies == 0
    finally:
        libnfc._layout_checked.cache_clear()


# -- the record of the last agreement (a reader's start without the child) ---------------


class Children:
    """Counts the checks that ran their child, the real one each time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ran = 0
        real = subprocess.run

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.ran += 1
            return real(*args, **kwargs)

        monkeypatch.setattr("drivers.nfc.abi.subprocess.run", counted)


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Children:
    return Children(monkeypatch)


@pytest.fixture
def ld_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A loader cache of the test's own, so that rebuilding it can be played."""
    path = tmp_path / "ld.so.cache"
    path.write_bytes(b"ld.so-1.7.0")
    monkeypatch.setattr(abi, "LD_CACHE", path)
    return path


def record_of(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / abi.RECORD).read_text())
    return loaded


def test_an_agreement_is_recorded_and_the_next_start_runs_no_child(
    tmp_path: Path, children: Children
) -> None:
    abi.check(abi.NATIVE, remember_in=tmp_path)
    abi.check(abi.NATIVE, remember_in=tmp_path)
    abi.check(abi.NATIVE, remember_in=tmp_path)
    assert children.ran == 1
    assert Path(record_of(tmp_path)["library"]).name.startswith("libnfc.so")
    assert [p.name for p in tmp_path.iterdir()] == [abi.RECORD]  # no temporary file left


def test_links_planted_where_the_record_is_written_are_never_followed(tmp_path: Path) -> None:
    """The record is written to a new file of an unguessable name (not one named after the
    process: an `O_EXCL` create) and renamed over whatever had the record's name."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me")
    state = tmp_path / "state"
    state.mkdir()
    (state / abi.RECORD).symlink_to(elsewhere)
    (state / f".{abi.RECORD}.{os.getpid()}").symlink_to(elsewhere)
    abi.check(abi.NATIVE, remember_in=state)
    assert elsewhere.read_text() == "keep me"
    assert not (state / abi.RECORD).is_symlink() and abi.agreed_before(state)


def test_without_a_state_directory_every_check_runs_its_child(children: Children) -> None:
    abi.check(abi.NATIVE)
    abi.check(abi.NATIVE)
    assert children.ran == 2


def test_a_rebuilt_loader_cache_means_checking_again(
    tmp_path: Path, ld_cache: Path, children: Children
) -> None:
    """`ldconfig` runs at every library install: another libnfc may be the one loaded."""
    state = tmp_path / "state"
    state.mkdir()
    abi.check(abi.NATIVE, remember_in=state)
    ld_cache.write_bytes(b"ld.so-1.7.0 with one more library")
    assert not abi.agreed_before(state)
    abi.check(abi.NATIVE, remember_in=state)
    assert children.ran == 2
    assert abi.agreed_before(state)  # and the new agreement is the one kept


def test_another_library_path_in_the_environment_means_checking_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    abi.check(abi.NATIVE, remember_in=tmp_path)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert not abi.agreed_before(tmp_path)


def test_a_libnfc_replaced_at_its_path_means_checking_again(tmp_path: Path) -> None:
    """An upgrade writes a new file where the old one was: same path, another file."""
    loaded = tmp_path / "libnfc.so.6"
    shutil.copy(record_library(tmp_path / "first"), loaded)
    abi.remember(tmp_path, abi.NATIVE, str(loaded))
    assert abi.agreed_before(tmp_path)
    replacement = tmp_path / "libnfc.so.6.new"
    shutil.copy(loaded, replacement)
    replacement.write_bytes(replacement.read_bytes() + b"\0")
    replacement.replace(loaded)
    assert not abi.agreed_before(tmp_path)
    loaded.unlink()
    assert not abi.agreed_before(tmp_path)  # and one that is gone: the loader picks another


def record_library(directory: Path) -> str:
    """The libnfc file this machine's loader picks, as the check records it."""
    directory.mkdir()
    abi.check(abi.NATIVE, remember_in=directory)
    library: str = record_of(directory)["library"]
    return library


def test_the_record_covers_only_the_layout_it_was_made_for(tmp_path: Path) -> None:
    abi.check(abi.NATIVE, remember_in=tmp_path)
    assert abi.agreed_before(tmp_path, abi.NATIVE)
    assert not abi.agreed_before(tmp_path, OTHER)


def test_a_refusal_is_never_recorded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        abi.check(OTHER, remember_in=tmp_path)
    assert not (tmp_path / abi.RECORD).exists()
    assert list(tmp_path.iterdir()) == []  # nor a temporary file left behind


def test_a_refused_layout_is_checked_again_even_after_an_agreement_for_another(
    tmp_path: Path, children: Children
) -> None:
    abi.check(abi.NATIVE, remember_in=tmp_path)
    for _ in range(2):
        with pytest.raises(ConfigError):
            abi.check(OTHER, remember_in=tmp_path)
    assert children.ran == 3


HOSTILE_RECORDS = [
    b"",
    b"\x00\xff not json",
    b"[]",
    b'"libnfc.so.6"',
    b'{"library": 6}',
    b'{"library": "libnfc.so.6"}',  # relative: whatever is in the daemon's directory
    b'{"library": "/nonexistent/libnfc.so.6"}',
    b'{"library": "/etc/passwd", "layout": "anything"}',
    b"{" + b'"x": 1, ' * 2000 + b'"library": "/"}',  # over RECORD_MAX_BYTES
    b'{"library": "/", "library": "/usr"}',
    b"[" * 100_000,  # nesting deeper than the JSON parser goes
]


@pytest.mark.parametrize("content", HOSTILE_RECORDS, ids=range(len(HOSTILE_RECORDS)))
def test_a_malformed_or_foreign_record_means_checking_again(
    tmp_path: Path, children: Children, content: bytes
) -> None:
    (tmp_path / abi.RECORD).write_bytes(content)
    assert not abi.agreed_before(tmp_path)
    abi.check(abi.NATIVE, remember_in=tmp_path)
    assert children.ran == 1
    assert abi.agreed_before(tmp_path)  # replaced by a true one


def test_a_record_of_the_right_shape_for_another_machine_is_not_believed(tmp_path: Path) -> None:
    """Copied from another node (another libnfc build, another loader cache)."""
    abi.check(abi.NATIVE, remember_in=tmp_path)
    record = record_of(tmp_path)
    for key, other in (("library_file", [1, 2, 3, 4]), ("ld_cache", [5, 6, 7])):
        (tmp_path / abi.RECORD).write_text(json.dumps({**record, key: other}))
        assert not abi.agreed_before(tmp_path), key


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=4096))
def test_arbitrary_bytes_as_a_record_are_never_an_agreement(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / abi.RECORD).write_bytes(content)
        assert not abi.agreed_before(Path(tmp))


@pytest.mark.parametrize("where", ["missing", "a_file"])
def test_a_state_directory_that_cannot_be_written_only_means_checking_again(
    tmp_path: Path, children: Children, where: str
) -> None:
    state = tmp_path / "state"
    if where == "a_file":
        state.write_text("not a directory")
    abi.check(abi.NATIVE, remember_in=state)
    abi.check(abi.NATIVE, remember_in=state)
    assert children.ran == 2


async def open_a_reader(port: Path, state: Path) -> None:
    """One start of a reader in a new process (the layout check's cache cleared), until open."""
    libnfc._layout_checked.cache_clear()
    with Pn532Emulator(port) as emu:
        rec = Recorder("front-reader", state_dir=state)
        opts = LibnfcOptions(connstring=emu.connstring, poll_interval_s=0.01)
        reader = asyncio.create_task(LibnfcReader(opts).run(rec.ctx))
        await rec.wait_for(lambda: rec.is_ready or reader.done(), "the reader open", 10)
        assert rec.is_ready, reader
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def test_a_readers_start_records_the_agreement_in_its_nodes_state_directory(
    tmp_path: Path, children: Children
) -> None:
    """The second start of a reader (the node's next boot) opens without the child."""
    state = tmp_path / "state"
    state.mkdir()
    try:
        await open_a_reader(tmp_path / "nfc0", state)
        await open_a_reader(tmp_path / "nfc1", state)
    finally:
        libnfc._layout_checked.cache_clear()
    assert children.ran == 1
    assert abi.agreed_before(state)

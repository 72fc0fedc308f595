"""The compiled table decodes exactly what cantools decodes, and the node runs without cantools."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cantools.database
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from drivers.can import table as table_module
from drivers.can.decoder import Decoders, MessageDecoder
from drivers.can.table import (
    MAX_DBC_BYTES,
    MAX_TABLE_BYTES,
    SHIPPED_DBC,
    SHIPPED_TABLE,
    compile_dbc,
    load_table,
)
from tests.drivers.can.support import muxed_dbc, nested_dbc
from tests.helpers.disk import fifo_let_go_after

# Everything the table must get right that the FMS DBC does not use: simple and extended
# multiplexing (a multiplexer's VAL_ adds ids with no signal), big-endian, signed, IEEE
# float and double, signals that end one bit into a byte (cut by a short frame), a 12-byte
# message (J1939 transport), an 11-bit one.
TRICKY_DBC = """VERSION ""

NS_ :

BS_:

BU_:

BO_ 2566844926 EXTMUX: 12 Vector__XXX
 SG_ Mux M : 0|4@1+ (1,0) [0|15] "" Vector__XXX
 SG_ Sub m2M : 4|4@1+ (1,0) [0|15] "" Vector__XXX
 SG_ A m0 : 8|8@1- (0.5,-3) [0|0] "" Vector__XXX
 SG_ B m1 : 23|12@0+ (1,0) [0|0] "" Vector__XXX
 SG_ D m1 : 24|4@1+ (1,0) [0|15] "" Vector__XXX
 SG_ F m3 : 32|32@1- (1,0) [0|0] "" Vector__XXX
 SG_ G m3 : 71|16@0- (0.1,2) [0|0] "" Vector__XXX
 SG_ Always : 80|8@1+ (2,1) [0|0] "" Vector__XXX

BO_ 2566845182 SIMPLEMUX: 8 Vector__XXX
 SG_ Sel M : 7|3@0+ (1,0) [0|7] "" Vector__XXX
 SG_ P m0 : 8|16@1+ (0.125,0) [0|0] "" Vector__XXX
 SG_ Q m0 : 24|8@1- (1,-40) [0|0] "" Vector__XXX
 SG_ R m1 : 15|24@0- (0.01,0) [0|0] "" Vector__XXX
 SG_ S m4 : 32|1@1+ (1,0) [0|1] "" Vector__XXX
 SG_ T : 40|24@1+ (1,0) [0|0] "" Vector__XXX

BO_ 2365475326 BIG: 12 Vector__XXX
 SG_ Wide : 7|40@0+ (0.001,0) [0|0] "" Vector__XXX
 SG_ Neg : 40|9@1- (1,-1) [0|0] "" Vector__XXX
 SG_ Single : 56|32@1- (1,0) [0|0] "" Vector__XXX
 SG_ Top : 95|3@0+ (1,0) [0|0] "" Vector__XXX

BO_ 2365475582 DOUBLE: 8 Vector__XXX
 SG_ Dbl : 7|64@0- (1,0) [0|0] "" Vector__XXX

BO_ 2365475838 EDGES: 8 Vector__XXX
 SG_ Straddle : 3|5@0+ (1,0) [0|0] "" Vector__XXX
 SG_ Low : 20|13@1- (1,0) [0|0] "" Vector__XXX
 SG_ Last : 63|1@0+ (1,0) [0|0] "" Vector__XXX

BO_ 256 DASH: 8 Vector__XXX
 SG_ Light : 0|8@1+ (1,0) [0|255] "" Vector__XXX

VAL_ 2566844926 Mux 0 "zero" 1 "one" 2 "two" 3 "three" 9 "nine" ;
SIG_VALTYPE_ 2566844926 F : 1;
SIG_VALTYPE_ 2365475326 Single : 1;
SIG_VALTYPE_ 2365475582 Dbl : 2;
SG_MUL_VAL_ 2566844926 D Sub 1-2, 5-5;
"""


def cantools_db(path: Path) -> Any:
    db = cantools.database.can.Database(strict=True)
    db.add_dbc_file(str(path))
    return db


@pytest.fixture(scope="module")
def tricky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dbc") / "tricky.dbc"
    path.write_text(TRICKY_DBC)
    return path


def pairs(path: Path) -> list[tuple[MessageDecoder, Any]]:
    """(table decoder, cantools message) for every message of a DBC."""
    db = cantools_db(path)
    return [
        (MessageDecoder(0, m), db.get_message_by_frame_id(m["frame_id"]))
        for m in compile_dbc(path)["messages"]
    ]


def same(a: object, b: object) -> bool:
    """Equal, NaN included (a float signal may hold one), and of the same types."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def outcome(decode: Any, data: bytes) -> object:
    try:
        return decode(data)
    except Exception as exc:  # the two raise different classes: compare the words
        return ("error", str(exc))


def assert_same_as_cantools(decoder: MessageDecoder, message: Any, data: bytes) -> None:
    ours = outcome(decoder.raw, data)
    theirs = outcome(
        lambda d: message.decode_simple(
            d, decode_choices=False, scaling=False, allow_truncated=True
        ),
        data,
    )
    assert same(ours, theirs), (message.name, data.hex(), ours, theirs)


payloads = st.binary(min_size=0, max_size=16)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 8), data=payloads)
def test_every_fms_message_decodes_as_cantools_decodes_it(index: int, data: bytes) -> None:
    decoder, message = FMS[index % len(FMS)]
    assert_same_as_cantools(decoder, message, data)


@settings(max_examples=600, deadline=None)
@given(index=st.integers(0, 5), data=payloads)
def test_multiplexed_big_endian_signed_and_float_signals_decode_as_cantools(
    tricky: Path, index: int, data: bytes
) -> None:
    decoder, message = tricky_pairs(tricky)[index]
    assert_same_as_cantools(decoder, message, data)


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 5), data=st.binary(min_size=0, max_size=2), mux=st.integers(0, 255))
def test_every_multiplexer_value_in_a_short_frame_decodes_or_fails_as_in_cantools(
    tricky: Path, index: int, data: bytes, mux: int
) -> None:
    """The multiplexer in the first byte, the frame often cut before what it selects."""
    decoder, message = tricky_pairs(tricky)[index]
    assert_same_as_cantools(decoder, message, bytes([mux]) + data)


FMS = pairs(SHIPPED_DBC)
_tricky: dict[Path, list[tuple[MessageDecoder, Any]]] = {}


def tricky_pairs(path: Path) -> list[tuple[MessageDecoder, Any]]:
    if path not in _tricky:
        _tricky[path] = pairs(path)
    return _tricky[path]


def test_the_shipped_table_is_the_shipped_dbc_compiled() -> None:
    """Fails when fms.dbc was edited without `python -m drivers.can.table`."""
    compiled = json.loads(json.dumps(compile_dbc(SHIPPED_DBC)))
    assert json.loads(SHIPPED_TABLE.read_text()) == compiled


def test_a_multiplexer_value_the_dbc_does_not_list_is_refused(tricky: Path) -> None:
    decoder = MessageDecoder(0, compile_dbc(tricky)["messages"][1])
    with pytest.raises(Exception, match="expected multiplexer id 0, 1 or 4, but got 7"):
        decoder.decode(bytes([0xE0, 0, 0, 0, 0, 0, 0, 0]))


def users_dbc(folder: Path) -> Path:
    """A DBC that is not the shipped one (CCVS1 renamed), so it has no shipped table."""
    dbc = folder / "vehicle.dbc"
    dbc.write_text(SHIPPED_DBC.read_text().replace("CCVS1", "SPEED"))
    return dbc


def run_node_side(dbc: Path, env: dict[str, str]) -> dict[str, Any]:
    """Decoders built and a frame decoded in a fresh interpreter, as the node does."""
    code = (
        "import json, sys\n"
        "from drivers.can.decoder import Decoders\n"
        f"d = Decoders(__import__('pathlib').Path({str(dbc)!r}))\n"
        "v = d.by_pgn[65265].decode(bytes(8))\n"
        "print(json.dumps({'cantools': 'cantools' in sys.modules, 'v': v}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_the_node_decodes_the_shipped_dbc_without_loading_cantools(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    assert run_node_side(SHIPPED_DBC, env)["cantools"] is False
    assert not (tmp_path / "edged").exists()  # nothing to cache for the shipped DBC


def test_a_users_dbc_is_compiled_once_in_a_child_then_read_from_the_cache(
    tmp_path: Path,
) -> None:
    """The node never imports cantools, nor pays its parse (~60 bytes per byte of a DBC):
    a child compiles, the node reads the table back."""
    dbc = users_dbc(tmp_path)
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    first, second = run_node_side(dbc, env), run_node_side(dbc, env)
    assert (first["cantools"], second["cantools"]) == (False, False)
    assert first["v"] == second["v"] and "WheelBasedVehicleSpeed" in first["v"]
    assert len(list((tmp_path / "state" / "dbc-cache").glob("*.json"))) == 1


def test_a_corrupt_or_foreign_cached_table_is_compiled_again(
    tmp_path: Path, cache_dir: Path
) -> None:
    dbc = users_dbc(tmp_path)
    good = load_table(dbc)
    (cached,) = cache_dir.glob("*.json")
    broken_node = {**good["messages"][0], "node": {"signals": [{"name": "x"}]}}
    for bad in (
        b"{not json",
        json.dumps({**good, "format": 0}).encode(),
        b"[]",
        json.dumps({**good, "messages": [{"name": "CCVS1"}]}).encode(),
        json.dumps({**good, "messages": [broken_node]}).encode(),
    ):
        cached.write_bytes(bad)
        os.utime(dbc, ns=(1, len(bad)))  # another mtime: read again, not from memory
        assert load_table(dbc) == good
        assert json.loads(cached.read_bytes()) == good


def test_a_table_of_another_dbc_under_this_dbcs_hash_is_not_used(
    tmp_path: Path, cache_dir: Path
) -> None:
    dbc = users_dbc(tmp_path)
    good = load_table(dbc)
    (cached,) = cache_dir.glob("*.json")
    cached.write_text(json.dumps({**good, "sha256": "0" * 64, "messages": []}))
    os.utime(dbc, ns=(1, 2))
    assert Decoders(dbc).pgns() == Decoders(SHIPPED_DBC).pgns()


def test_an_unwritable_cache_only_costs_the_compilation(tmp_path: Path) -> None:
    dbc = users_dbc(tmp_path)
    (tmp_path / "state").write_text("a file where the cache directory would go")
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    assert "WheelBasedVehicleSpeed" in run_node_side(dbc, env)["v"]


@pytest.mark.parametrize("size", [MAX_DBC_BYTES + 1, 3 << 30])
def test_a_dbc_larger_than_the_cap_is_refused_unread(tmp_path: Path, size: int) -> None:
    """A config (`config.set`) naming a big file as its DBC (the outbox, a log, a 3 GB
    sparse file): read whole and parsed, it took some 25 bytes of memory per byte (a 64 MiB
    file: the OOM killer on a 512 MB Pi Zero). Refused by its size, with the cap named."""
    big = tmp_path / "big.dbc"
    with big.open("wb") as f:
        f.truncate(size)
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_table(big)


def test_a_dbc_that_is_no_regular_file_is_refused_without_waiting_on_it(tmp_path: Path) -> None:
    """A FIFO (or /dev/zero, read for ever into memory) named as the DBC: refused unread."""
    fifo = tmp_path / "pipe"
    started = time.monotonic()
    with fifo_let_go_after(fifo, 1.5), pytest.raises(ConfigError, match="no regular file"):
        load_table(fifo)
    assert time.monotonic() - started < 1.0


def test_a_dbc_that_takes_the_memory_is_refused_and_the_node_keeps_its_own(
    tmp_path: Path, cache_dir: Path
) -> None:
    """One line, `0-4000000000`: cantools lists four billion ids, in the node until the OOM
    killer came (MemoryMax=150M: the node itself). The bounded child fails, the node says
    so and holds no more memory than before."""
    hwm = vm("VmHWM")
    with pytest.raises(ConfigError, match="took more memory than the node lends it"):
        load_table(muxed_dbc(tmp_path, "0-4000000000"))
    assert vm("VmHWM") - hwm < 16 << 20
    assert not cache_dir.exists()


def test_a_table_larger_than_its_cap_is_refused_and_not_cached(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`0-200000` made a table of 29 MB from a DBC of 300 bytes (450 MB at the peak): the
    node would hold it in memory at every start. Shown here with a smaller cap."""
    monkeypatch.setattr(table_module, "MAX_TABLE_BYTES", 64 << 10)
    with pytest.raises(ConfigError, match="compiled table is larger than"):
        load_table(muxed_dbc(tmp_path, "0-2000"))
    assert not cache_dir.exists()


def test_a_dbc_that_takes_cantools_too_long_is_refused(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DBC that makes cantools loop: the child is stopped at the timeout (shown with one
    no compilation can meet)."""
    monkeypatch.setattr(table_module, "COMPILE_TIMEOUT_S", 0.05)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"did not finish compiling this DBC within 0\.05 s"):
        load_table(users_dbc(tmp_path))
    assert time.monotonic() - started < 1.0
    assert not cache_dir.exists()


def test_a_dbc_whose_multiplexers_nest_without_end_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    """36 KB chaining 400 multiplexers: a RecursionError out of the node's config check
    (no ConfigError: a traceback at start, a config.set answered with none of the reason)."""
    with pytest.raises(ConfigError, match="multiplexers nested more than 16 deep"):
        load_table(nested_dbc(tmp_path, 400))


def test_multiplexers_nested_as_deep_as_allowed_decode(tmp_path: Path) -> None:
    decoders = Decoders(nested_dbc(tmp_path, 16))
    (decoder,) = decoders.by_pgn.values()
    assert decoder.decode(bytes(64))["Leaf"] == 0


def test_a_link_to_the_outbox_named_as_the_dbc_is_refused_without_its_content(
    tmp_path: Path,
) -> None:
    """An SQLite file (the outbox, the state store) is no DBC: refused with where cantools
    stopped, none of its bytes quoted."""
    store = tmp_path / "outbox.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE secret (v)")
        db.execute("INSERT INTO secret VALUES ('the-broker-password')")
    db.close()
    link = tmp_path / "vehicle.dbc"
    link.symlink_to(store)
    with pytest.raises(ConfigError, match="cannot read this DBC") as refused:
        load_table(link)
    assert "password" not in str(refused.value) and "secret" not in str(refused.value)


def test_a_cached_table_larger_than_its_cap_is_not_read_but_compiled_again(
    tmp_path: Path, cache_dir: Path
) -> None:
    dbc = users_dbc(tmp_path)
    good = load_table(dbc)
    (cached,) = cache_dir.glob("*.json")
    with cached.open("wb") as f:
        f.truncate(MAX_TABLE_BYTES + 1)
    os.utime(dbc, ns=(1, 2))
    assert load_table(dbc) == good
    assert cached.stat().st_size < MAX_TABLE_BYTES


def test_a_table_compiled_off_the_node_beside_its_dbc_is_used_as_it_is(
    tmp_path: Path, cache_dir: Path
) -> None:
    """A DBC too big to compile on the node (the service's MemoryMax=150M holds the child
    too): `python -m drivers.can.table vehicle.dbc` on a PC, vehicle.dbc.json beside it."""
    dbc = users_dbc(tmp_path)
    assert table_module.main([str(dbc)]) == 0
    assert load_table(dbc) == compile_dbc(dbc)
    assert not cache_dir.exists()  # no compilation on the node


def test_a_table_beside_the_dbc_for_another_dbc_is_not_used(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The DBC edited since its table was made: compiled again, as if there were none."""
    dbc = users_dbc(tmp_path)
    assert table_module.main([str(dbc)]) == 0
    dbc.write_text(dbc.read_text().replace("SPEED", "VELOCITY"))
    assert [m["name"] for m in load_table(dbc)["messages"]].count("VELOCITY") == 1
    assert len(list(cache_dir.glob("*.json"))) == 1


def vm(field: str) -> int:
    """A field of this process's /proc status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def test_the_compiler_s_warnings_are_not_held_by_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cantools logs two warnings per message that repeats another's name and id (~190
    bytes for a line of 13): the node read the child's stderr whole, 19 MB for a DBC of
    1.3 MB (+60 MB of the node's RSS). The child says only why a DBC is refused."""
    dbc = tmp_path / "repeated.dbc"
    dbc.write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n' + "BO_ 1 a: 8 x\n" * 2000)
    said: list[bytes] = []
    run = subprocess.run

    def spy(*args: Any, **kwargs: Any) -> "subprocess.CompletedProcess[bytes]":
        done = run(*args, **kwargs)
        said.append(done.stderr)
        return done

    monkeypatch.setattr(subprocess, "run", spy)
    load_table(dbc)
    assert said == [b""]


def _nested_without_end(table: dict[str, Any]) -> str:
    return "[" * 100_000


def _scale_no_number(table: dict[str, Any]) -> str:
    table["messages"][0]["signals"][0]["scale"] = math.nan
    table["messages"][0]["node"]["signals"][0]["scale"] = math.nan
    return json.dumps(table)  # NaN, as Python's json writes and reads it


def _longer_than_j1939_carries(table: dict[str, Any]) -> str:
    table["messages"][0]["length"] = 10**12  # a short frame is padded to it: MemoryError
    return json.dumps(table)


@pytest.mark.parametrize(
    "forged", [_nested_without_end, _scale_no_number, _longer_than_j1939_carries]
)
def test_a_table_beside_the_dbc_that_no_compilation_makes_is_not_used(
    tmp_path: Path, forged: Any
) -> None:
    """vehicle.dbc.json is taken as it is, held only to the shape of a table: JSON nested
    100000 deep raised a RecursionError out of the config check (a traceback, no reason),
    a scale of NaN decoded every value as NaN, a message of 10**12 bytes had each short
    frame padded to it. The DBC is compiled instead, as with no table beside it."""
    dbc = users_dbc(tmp_path)
    assert table_module.main([str(dbc)]) == 0
    beside = tmp_path / "vehicle.dbc.json"
    beside.write_text(forged(json.loads(beside.read_text())))
    assert load_table(dbc) == compile_dbc(dbc)


def test_a_transport_message_s_signals_beyond_64_bytes_are_compiled_and_decoded(
    tmp_path: Path,
) -> None:
    """J1939's transport carries up to 1785 bytes, which the node reassembles and decodes
    with the DBC; the table's check held signals to the first 64 bytes, so the child's table
    of such a DBC was found unusable: refused, "the DBC compiler gave no usable table"."""
    dbc = tmp_path / "long.dbc"
    dbc.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n'
        "BO_ 2566844926 LONG: 100 Vector__XXX\n"
        ' SG_ Far : 600|8@1+ (1,0) [0|250] "" Vector__XXX\n'
    )
    (decoder,) = Decoders(dbc).by_pgn.values()
    assert decoder.decode(bytes(75) + b"\x2a" + bytes(24))["Far"] == 42


def test_a_signal_longer_than_64_bits_is_refused_with_the_reason(tmp_path: Path) -> None:
    """cantools reads it, the table holds no such signal: the child's table was found
    unusable, "the DBC compiler gave no usable table", which says nothing to fix."""
    dbc = tmp_path / "wide.dbc"
    dbc.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n'
        "BO_ 2566844926 WIDE: 64 Vector__XXX\n"
        ' SG_ Vin : 0|136@1+ (1,0) [0|1] "" Vector__XXX\n'
    )
    with pytest.raises(ConfigError, match="signal Vin of message WIDE is 136 bits long"):
        load_table(dbc)


@pytest.mark.parametrize("factor", ["(1e308,0)", "(1,-1e200)"], ids=["scale", "offset"])
def test_a_signal_whose_values_no_float_holds_is_refused_with_the_reason(
    tmp_path: Path, factor: str
) -> None:
    """A scale of 1e308 is an int of 309 digits to cantools: every value decoded with it
    was one no float holds (OverflowError where the vehicle service made it a float)."""
    dbc = tmp_path / "huge.dbc"
    dbc.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n'
        "BO_ 2365443326 CCVS1: 8 Vector__XXX\n"
        f' SG_ WheelBasedVehicleSpeed : 8|16@1+ {factor} [0|1] "km/h" Vector__XXX\n'
    )
    with pytest.raises(ConfigError, match="signal WheelBasedVehicleSpeed of message CCVS1 has"):
        load_table(dbc)


def test_a_table_whose_factor_no_float_holds_is_not_used() -> None:
    signal = {
        "name": "s",
        "start": 0,
        "length": 16,
        "big_endian": False,
        "signed": False,
        "float": False,
        "scale": 10**308,
        "offset": 0,
    }
    assert not table_module._signal_ok(signal)
    assert table_module._signal_ok({**signal, "scale": 0.125})
    assert not table_module._signal_ok({**signal, "offset": float("nan")})


def test_a_dbc_too_costly_for_the_node_is_told_where_its_table_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is looked for beside the file the DBC's name leads to: named through a
    link (/etc/edged/vehicle.dbc to a shared copy), "put it beside the DBC" sent the user
    to the link's folder, where it was never read."""
    shared = tmp_path / "shared"
    shared.mkdir()
    link = tmp_path / "vehicle.dbc"
    link.symlink_to(users_dbc(shared))
    monkeypatch.setattr(table_module, "COMPILE_TIMEOUT_S", 0.05)
    with pytest.raises(ConfigError) as refused:
        load_table(link)
    assert f"put it on the node as {shared / 'vehicle.dbc.json'}" in str(refused.value)


def test_a_compilation_ends_with_the_node_that_asked_for_it(tmp_path: Path) -> None:
    """A node killed while its child compiles (outside systemd, which kills the unit's
    cgroup): the child went on alone, up to 400 MiB and 120 s of CPU, and a node started
    again compiled beside it."""
    dbc = _many_messages(tmp_path, 60000)  # some 3 s of cantools on a PC
    code = (
        "import pathlib, threading, time\n"
        "from drivers.can.table import load_table\n"
        f"threading.Thread(target=load_table, args=[pathlib.Path({str(dbc)!r})]).start()\n"
        "time.sleep(60)\n"
    )
    node = subprocess.Popen([sys.executable, "-c", code])
    try:
        child = _wait_for(lambda: _compiling(dbc), "the compiling child")
        time.sleep(0.3)  # at work
    finally:
        node.kill()
        node.wait()
    _wait_for(lambda: not _alive(child), "the child's end", within_s=1.0)


def _compiling(dbc: Path) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            if str(dbc).encode() in (proc / "cmdline").read_bytes().split(b"\0"):  # an arg
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def _alive(pid: int) -> bool:
    try:  # a zombie left to a PID 1 that reaps nothing is dead all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(what: Any, name: str, within_s: float = 2.0) -> Any:
    deadline = time.monotonic() + within_s
    while not (found := what()):
        assert time.monotonic() < deadline, f"no {name} within {within_s} s"
        time.sleep(0.02)
    return found


def test_a_dbc_whose_table_beside_it_is_another_s_is_told_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DBC changed since its table was made on the PC (edited, its line ends turned to
    CRLF on the way): refused as too costly with "put vehicle.dbc.json there", which the
    user had done."""
    dbc = users_dbc(tmp_path)
    assert table_module.main([str(dbc)]) == 0
    dbc.write_bytes(dbc.read_bytes().replace(b"\n", b"\r\n"))
    monkeypatch.setattr(table_module, "COMPILE_TIMEOUT_S", 0.05)
    with pytest.raises(ConfigError, match=r"vehicle\.dbc\.json there is not this DBC's table"):
        load_table(dbc)


def test_a_stop_sent_to_the_whole_service_leaves_the_compilation_to_the_node(
    tmp_path: Path,
) -> None:
    """systemd's stop signals every process of the unit (KillMode=control-group), Ctrl-C
    the whole foreground group: the child died of it, and the node, whose own handler only
    notes the signal, took the DBC as refused ("its compiler failed (exit -15)"): exit 78,
    a release on trial counted as failed, a config on probation rolled back. The node
    decides: its own stop ends the child with it (at most 4.7 s later, edged.cli.signals)."""
    dbc = _many_messages(tmp_path, 15000)  # some 0.8 s of cantools on a PC
    code = (
        "import pathlib, signal\n"
        "from drivers.can.table import load_table\n"
        "signal.signal(signal.SIGTERM, lambda *_: None)  # noted, as edged.cli.signals does\n"
        f"print(len(load_table(pathlib.Path({str(dbc)!r}))['messages']))\n"
    )
    node = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_for(lambda: _compiling(dbc), "the compiling child")
        time.sleep(0.3)  # at work
        os.killpg(node.pid, signal.SIGTERM)
        out, _ = node.communicate(timeout=10)
    finally:
        node.kill()
    assert (node.returncode, out) == (0, b"15000\n")


def _many_messages(folder: Path, count: int) -> Path:
    dbc = folder / "many.dbc"
    dbc.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\n'
        + "".join(f"BO_ {0x80000000 + i} m{i}: 8 x\n" for i in range(count))
    )
    return dbc
def test_a_cached_tables_write_killed_midway_is_removed_when_the_cache_is_read(
    tmp_path: Path, cache_dir: Path
) -> None:
    """A node killed while it wrote a DBC's table left `.HASH.json.<hex>` (a table's size)
    in the cache at each kill, read back by nothing; the next load through the cache
    removes it, the tables and other files kept."""
    dbc = users_dbc(tmp_path)
    load_table(dbc)
    left = cache_dir / f".{'a' * 64}.json.0123456789abcdef"
    other = cache_dir / "notes.txt"
    for f in (left, other):
        f.write_text("{}")
        os.utime(f, (1, 1))
    os.utime(dbc, ns=(1, 3))  # another mtime: read again, not from memory
    load_table(dbc)
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [other.name, *(p.name for p in cache_dir.glob("*.json"))]
    )

"""The compiled table decodes exactly what cantools decodes, and the node runs without cantools."""

import json
import math
import os
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
from drivers.can.decoder import Decoders, MessageDecoder
from drivers.can.table import (
    MAX_DBC_BYTES,
    SHIPPED_DBC,
    SHIPPED_TABLE,
    compile_dbc,
    load_table,
)
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


def test_a_users_dbc_is_compiled_once_then_read_from_the_cache(tmp_path: Path) -> None:
    dbc = users_dbc(tmp_path)
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    first, second = run_node_side(dbc, env), run_node_side(dbc, env)
    assert (first["cantools"], second["cantools"]) == (True, False)
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


def test_a_dbc_larger_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    """A config (`config.set`) naming a big file as its DBC (the outbox, a log): read whole
    and parsed, it took some 25 bytes of memory per byte (a 64 MiB file: the OOM killer on a
    512 MB Pi Zero). Refused by its size, with the cap named."""
    big = tmp_path / "big.dbc"
    with big.open("wb") as f:
        f.truncate(MAX_DBC_BYTES + 1)
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_table(big)


def test_a_dbc_that_is_no_regular_file_is_refused_without_waiting_on_it(tmp_path: Path) -> None:
    """A FIFO (or /dev/zero, read for ever into memory) named as the DBC: refused unread."""
    fifo = tmp_path / "pipe"
    started = time.monotonic()
    with fifo_let_go_after(fifo, 1.5), pytest.raises(ConfigError, match="no regular file"):
        load_table(fifo)
    assert time.monotonic() - started < 1.0

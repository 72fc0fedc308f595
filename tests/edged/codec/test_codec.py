"""The payload encodings: each round-trips the JSON data model exactly, and garbage of any
kind ends as a PayloadError (never another exception, a hang or a memory spike)."""

import contextlib
import hashlib
import json
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.codec import (
    ENCODINGS,
    PayloadError,
    cbor,
    decode,
    deflate,
    encoding_of,
    messages,
    to_wire,
)
from edged.codec.dictionary import DICTIONARIES

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
payload_values = st.lists(json_values, max_size=4) | st.dictionaries(
    st.text(), json_values, max_size=6
)
"""What edged publishes: an object, or a list of them (a batch); never a bare scalar."""


def stored(value: object) -> bytes:
    """A payload as the outbox keeps it (edged.payloads.encode's separators)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=payload_values)
def test_every_encoding_gives_back_what_json_gives(encoding: str, value: object) -> None:
    wire = to_wire(stored(value), encoding)  # type: ignore[arg-type]
    assert decode(wire) == json.loads(stored(value))


def test_a_position_is_the_same_object_in_every_encoding() -> None:
    position = {
        "v": 1,
        "epoch": "9f3a0c5e7b1d2468",
        "seq": 48211,
        "ts": 1715673918123,
        "clock": "gps",
        "fix_time": "2024-05-14T08:05:18Z",
        "lat": 45.885390833333334,
        "lon": 2.1785374,
        "alt": 431.6,
        "speed": 16.4,
        "course": 351.8,
        "mode": "3D",
        "quality": 1,
        "satellites": 12,
        "hdop": 1.43,
        "odometer_m": 3336.5,
    }
    for encoding in ENCODINGS:
        wire = to_wire(stored(position), encoding)
        assert encoding_of(wire) == encoding
        back = decode(wire)
        assert back == position
        assert json.dumps(back) == json.dumps(position)  # floats bit for bit, key order kept


def test_deflate_gives_back_the_json_text_byte_for_byte() -> None:
    text = stored({"v": 1, "seq": 3, "door": "front", "open": True, "source": "can"})
    assert deflate.decode(to_wire(text, "deflate"), 1 << 20) == text


def test_cbor_floats_take_the_smallest_exact_width() -> None:
    assert cbor.encode(0.5) == b"\xf9\x38\x00"
    assert cbor.encode(196608.0)[0] == 0xFA  # beyond half precision, exact in single
    assert cbor.encode(16.4)[0] == 0xFB  # not exact in single precision
    assert math.isnan(cbor.decode(cbor.encode(float("nan"))))


def test_cbor_refuses_an_integer_beyond_64_bits_and_the_wire_falls_back_to_json() -> None:
    with pytest.raises(PayloadError, match="64 bits"):
        cbor.encode(2**64)
    assert to_wire(b'{"n":18446744073709551616}', "cbor") == b'{"n":18446744073709551616}'


def test_a_batch_is_a_list_of_messages() -> None:
    batch = [{"seq": 1, "lat": 1.0}, {"seq": 2, "lat": 2.0}]
    for encoding in ENCODINGS:
        assert messages(to_wire(stored(batch), encoding)) == batch
    assert messages(b'{"seq":1}') == [{"seq": 1}]


def test_the_first_dictionary_never_changes() -> None:
    """It is part of the wire format: payloads written with it must inflate forever."""
    assert hashlib.sha256(DICTIONARIES[1]).hexdigest() == (
        "46d216e693ead70d4a76536721dbdd14da35ec127cf1319bf897c9efcab043a5"
    )


# -- hostile and malformed -----------------------------------------------------------------

HOSTILE_CBOR = {
    "empty": b"",
    "truncated map": b"\xa2\x61a\x01",
    "truncated text": b"\xa1\x61a\x78\x10abc",
    "huge array claim": b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
    "huge map claim": b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00",
    "huge text claim": b"\xa1\x61a\x7b\x7f\xff\xff\xff\xff\xff\xff\xff",
    "indefinite map": b"\xbf\x61a\x01\xff",
    "indefinite array": b"\x9f\x01\xff",
    "tag (datetime)": b"\xa1\x61t\xc0\x74" + b"2024-05-14T08:00:00Z",
    "tag (regex)": b"\xa1\x61r\xd8\x23\x63a+b",
    "tag (bignum)": b"\xa1\x61n\xc2\x49" + b"\x01" * 9,
    "byte string": b"\xa1\x61b\x43abc",
    "integer key": b"\xa1\x01\x02",
    "duplicate key": b"\xa2\x61a\x01\x61a\x02",
    "bad utf-8": b"\xa1\x61a\x62\xff\xfe",
    "undefined": b"\xa1\x61u\xf7",
    "simple 16": b"\xa1\x61s\xf0",
    "reserved info 28": b"\xa1\x61a\x1c",
    "trailing bytes": b"\xa1\x61a\x01\x00",
    "deep nesting": b"\x81" * 100_000 + b"\x01",
    "deep maps": b"\xa1\x61a" * 50_000 + b"\x01",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_CBOR))
def test_hostile_cbor_is_refused_with_a_payload_error(name: str) -> None:
    data = HOSTILE_CBOR[name]
    with pytest.raises(PayloadError):
        decode(data) if data[:1] not in (b"",) and 0x80 <= data[0] <= 0xBF else cbor.decode(data)


def test_a_huge_length_claim_is_refused_before_allocating() -> None:
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(PayloadError, match="truncated"):
        cbor.decode(b"\x9b\x00\x00\x00\x00\xff\xff\xff\xff" + b"\x00" * 100)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000


@settings(max_examples=400)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode(data)


@settings(max_examples=300)
@given(value=payload_values, cut=st.integers(min_value=0, max_value=10_000))
def test_truncated_payloads_are_refused(value: object, cut: int) -> None:
    for encoding in ENCODINGS:
        wire = to_wire(stored(value), encoding)  # type: ignore[arg-type]
        short = wire[: cut % max(1, len(wire))]
        try:
            got = decode(short)
        except PayloadError:
            continue
        # a JSON prefix can be valid JSON by itself ("12" of "123"); never a wrong object
        assert encoding == "json" or got == json.loads(stored(value))


def test_a_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = deflate.encode(b"[" + b"0," * 5_000_000 + b"0]")
    assert len(bomb) < 20_000
    with pytest.raises(PayloadError, match="beyond"):
        decode(bomb, max_bytes=1_000_000)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x00\x07" + b"\x03\x00", "dictionary 7"),
        (b"\x00\x01garbage here", "damaged"),
        (to_wire(b'{"a":1}', "deflate")[:-2], "truncated"),
        (to_wire(b'{"a":1}', "deflate") + b"xx", "after the deflate"),
        (deflate.encode(b"not json at all"), "not valid JSON"),
        (b"\x00", "not a deflate"),
    ],
)
def test_damaged_deflate_payloads_are_refused(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        decode(payload)


@pytest.mark.parametrize(
    "payload", [b"", b"hello", b"\x1b[2J", b"\xff\xfe", b"null", b"42", struct.pack(">d", 1.0)]
)
def test_what_is_no_encoding_at_all_is_refused(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode(payload)


def test_deep_json_is_refused_cleanly() -> None:
    with pytest.raises(PayloadError):
        decode(b"[" * 200_000 + b"]" * 200_000)

"""CBOR (RFC 8949) for edged's payloads: exactly the JSON data model, nothing more.

A payload in CBOR is the same object as its JSON: maps with text keys, arrays, text, integers,
floats, true, false and null. The encoder writes the shortest form (definite lengths; a
float in the smallest of half, single or double precision that holds it exactly), so the
decoded value equals `json.loads` of the JSON text. The decoder accepts that subset and
nothing else: no tags, byte strings, undefined, indefinite lengths or duplicate keys; a
length is checked against the bytes that remain before anything is allocated, nesting is
bounded, and trailing bytes are refused. Anyone on the broker can publish, so garbage must
end as a `PayloadError`, never as a crash, a hang or a memory spike.

Written here rather than taken from cbor2: cbor2 decodes dozens of semantic tags by default
(regular expressions, Decimals with any exponent, shared references, sets, dates), which is
more to defend than these ~150 lines.
"""

import math
import struct
from typing import Any

from edged.codec.errors import PayloadError

MAX_DEPTH = 32
"""Deeper than any edged payload (a health report is 4 levels)."""

_HALF, _SINGLE, _DOUBLE = 0xF9, 0xFA, 0xFB
_FALSE, _TRUE, _NULL = 0xF4, 0xF5, 0xF6


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    if n < 0x1_0000_0000:
        return bytes([major << 5 | 26]) + n.to_bytes(4, "big")
    if n < 0x1_0000_0000_0000_0000:
        return bytes([major << 5 | 27]) + n.to_bytes(8, "big")
    raise PayloadError(f"integer {n} does not fit in 64 bits: CBOR cannot carry it here")


def _float(x: float) -> bytes:
    if math.isnan(x):
        return bytes([_HALF, 0x7E, 0x00])
    for code, fmt in ((_HALF, ">e"), (_SINGLE, ">f")):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == x:
            return bytes([code]) + packed
    return bytes([_DOUBLE]) + struct.pack(">d", x)


def _encode(x: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PayloadError(f"nested deeper than {MAX_DEPTH} levels")
    if x is True:
        out.append(_TRUE)
    elif x is False:
        out.append(_FALSE)
    elif x is None:
        out.append(_NULL)
    elif isinstance(x, int):
        out += _head(0, x) if x >= 0 else _head(1, -1 - x)
    elif isinstance(x, float):
        out += _float(x)
    elif isinstance(x, str):
        raw = x.encode("utf-8", "surrogatepass")
        out += _head(3, len(raw))
        out += raw
    elif isinstance(x, list | tuple):
        out += _head(4, len(x))
        for item in x:
            _encode(item, out, depth + 1)
    elif isinstance(x, dict):
        out += _head(5, len(x))
        for key, value in x.items():
            if not isinstance(key, str):
                raise PayloadError(f"map key {key!r} is not text: JSON has text keys only")
            _encode(key, out, depth + 1)
            _encode(value, out, depth + 1)
    else:
        raise PayloadError(f"{type(x).__name__} is not in the JSON data model")


def encode(value: Any) -> bytes:
    """The CBOR of a JSON value (what `json.loads` returns)."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        end = self.at + n
        if end > len(self.data):
            raise PayloadError(f"truncated CBOR: {n} bytes wanted at offset {self.at}")
        chunk = self.data[self.at : end]
        self.at = end
        return chunk

    def argument(self, info: int) -> int:
        if info < 24:
            return info
        if info in (24, 25, 26, 27):
            return int.from_bytes(self.take(1 << (info - 24)), "big")
        raise PayloadError(
            f"CBOR indefinite length or reserved value (additional info {info}) at offset "
            f"{self.at - 1}: edged payloads use definite lengths"
        )

    def count(self, n: int, least_each: int) -> int:
        """A length read from the data, refused before allocating when the rest is too short."""
        if n * least_each > len(self.data) - self.at:
            raise PayloadError(f"truncated CBOR: {n} items announced at offset {self.at}")
        return n

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise PayloadError(f"CBOR nested deeper than {MAX_DEPTH} levels")
        at = self.at
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            return self.simple(info, at)
        n = self.argument(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 3:
            raw = self.take(self.count(n, 1))
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PayloadError(f"CBOR text at offset {at} is not UTF-8: {exc}") from None
        if major == 4:
            return [self.value(depth + 1) for _ in range(self.count(n, 1))]
        if major == 5:
            result: dict[str, Any] = {}
            for _ in range(self.count(n, 2)):
                key_at = self.at
                key = self.value(depth + 1)
                if not isinstance(key, str):
                    raise PayloadError(f"CBOR map key at offset {key_at} is not text")
                if key in result:
                    raise PayloadError(f"CBOR map repeats the key {key[:40]!r}")
                result[key] = self.value(depth + 1)
            return result
        kind = "byte string" if major == 2 else "tag"
        raise PayloadError(f"CBOR {kind} at offset {at}: not in edged's payloads")

    def simple(self, info: int, at: int) -> Any:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return float(struct.unpack(">e", self.take(2))[0])
        if info == 26:
            return float(struct.unpack(">f", self.take(4))[0])
        if info == 27:
            return float(struct.unpack(">d", self.take(8))[0])
        raise PayloadError(f"CBOR simple value {info} at offset {at}: not in edged's payloads")


def decode(data: bytes) -> Any:
    """The JSON value a CBOR payload holds; `PayloadError` for anything else."""
    reader = _Reader(bytes(data))
    try:
        value = reader.value(0)
    except RecursionError:
        raise PayloadError("CBOR nested too deeply") from None
    if reader.at != len(reader.data):
        raise PayloadError(f"{len(reader.data) - reader.at} bytes after the CBOR value")
    return value

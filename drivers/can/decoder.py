"""DBC-driven decoding of J1939 parameter groups, looked up by PGN whatever the sender.

cantools' `decode_message` wants the exact frame id, so a message from another source
address than the one written in the DBC would not decode: the database is indexed by PGN
here instead. Values are decoded raw and scaled here, because J1939 marks "not available"
and "error" in the raw value (0xFF…, 0xFE…), and those must become None, not 1606.5 km/h.
Which raw values those are follows the parameter's size (`valid_limit`), unless the DBC's
value table (VAL_) says otherwise for a value: a state named an error or not available is
None whatever its code (SPN 1675's legacy error 1101b), and a state named otherwise beyond
the size rule is a reading (SPN 899 Engine Torque Mode: 1110b is "other", not an error).
The raw values come from the DBC's compiled table (drivers/can/table.py), read with
`int.from_bytes` and shifts as cantools' `decode_simple(…, scaling=False,
allow_truncated=True)` reads them, so the node does not load cantools.
"""

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, EdgedError
from drivers.can.j1939 import PGN_DM1, parse_id
from drivers.can.table import SHIPPED_DBC, load_table

__all__ = ["SHIPPED_DBC", "Decoders", "MessageDecoder", "MultiplexerError", "valid_limit"]

Value = float | int | None


def valid_limit(length: int) -> int:
    """The largest raw value of a `length`-bit J1939 parameter that is a measurement.

    J1939-71: for 1-, 2- and 4-byte parameters the top byte 0xFB..0xFF is
    parameter-specific, reserved, error (0xFE…) or not available (0xFF…); the same
    rule is applied to any parameter of 8 bits or more. Discrete parameters of 2..7 bits
    use their two highest codes: error (10, 1110) and not available (11, 1111).
    A single bit has no such code.
    """
    if length <= 1:
        return 1
    if length < 8:
        return (1 << length) - 3
    return (0xFB << (length - 8)) - 1


_NO_READING = re.compile(
    r"\s*(error( indicator)?|not[ _-]?available|unavailable|n/a)\s*(\(.*\))?\s*", re.I
)
"""A value-table name that says the value is no reading, in full: "Error", "Error
indicator", "Not available", "error (legacy implementation only, use 1110)". "No error"
or "Error active" are the states of a signal about errors: readings."""
_DOUBTFUL = re.compile(
    r"error|avail|\bn/?a\b|\bsna\b|invalid|unknown|fault|not supported|reserved"
    r"|don.?t care|no action|not defined|undefined|not used|unused|spare|not valid"
    r"|parameter specific",
    re.I,
)
"""A name that may mean no reading: a code beyond the size rule named so stays None."""


def _table_rules(choices: list[list[Any]], limit: int, all_ones: int) -> dict[int, bool] | None:
    """The raw values whose name in the value table decides otherwise than `limit`:
    raw -> whether it is a reading. A code within the size rule is no reading only when
    named an error or not available outright; a code beyond it is a reading when its name
    says a state and nothing doubtful (SPN 899's 1110b "other"), except all ones: J1939's
    "not available" whatever a table calls it. None when the table changes nothing (most
    signals), and for a single bit, which has no such codes: its states are readings."""
    if limit >= all_ones:
        return None
    rules = {}
    for raw, name in choices:
        if raw <= limit and _NO_READING.fullmatch(name):
            rules[int(raw)] = False
        elif limit < raw < all_ones and not _DOUBTFUL.search(name):
            rules[int(raw)] = True
    return rules or None


class MultiplexerError(EdgedError):
    """A frame whose multiplexer value the DBC does not list (cantools' DecodeError)."""


_FLOATS = {16: ">e", 32: ">f", 64: ">d"}


@dataclass(frozen=True, slots=True)
class _Raw:
    """Where one signal's raw value lies in the frame read as one integer."""

    name: str
    big_endian: bool
    shift: int  # right shift of the frame's integer (little- or big-endian read)
    end: int  # the signal's last bit + 1, counted in frame order: beyond a short frame?
    mask: int
    sign: int  # the sign bit of a signed signal, else 0
    float_format: str | None  # struct format of an IEEE float signal


@dataclass(frozen=True, slots=True)
class _Node:
    """cantools' decoding tree: signals always read here, and per multiplexer the nodes
    chosen by its value."""

    raws: tuple[_Raw, ...]
    multiplexers: tuple[tuple[str, dict[int, "_Node"]], ...]


def _raw(s: dict[str, Any], length: int) -> _Raw:
    start, size = int(s["start"]), int(s["length"])
    if s["big_endian"]:  # start is the most significant bit, in DBC sawtooth numbering
        first = 8 * (start // 8) + 7 - start % 8
        shift = 8 * length - first - size
        end = first + size
    else:
        shift, end = start, start + size
    return _Raw(
        name=s["name"],
        big_endian=bool(s["big_endian"]),
        shift=shift,
        end=end,
        mask=(1 << size) - 1,
        sign=1 << (size - 1) if s["signed"] else 0,
        float_format=_FLOATS[size] if s["float"] else None,
    )


def _tree(node: dict[str, Any], length: int) -> _Node:
    return _Node(
        raws=tuple(_raw(s, length) for s in node["signals"]),
        multiplexers=tuple(
            (name, {int(mux): _tree(child, length) for mux, child in children})
            for name, children in node["multiplexers"]
        ),
    )


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    mask: int
    limit: int
    scale: float | int
    offset: float | int
    integral: bool  # scale and offset are integers: keep an int
    rules: dict[int, bool] | None  # raw -> a reading or not, where the value table says


class MessageDecoder:
    """Decodes one DBC message into {signal name: physical value or None}."""

    __slots__ = ("_big", "_little", "length", "name", "pgn", "root", "signals")

    def __init__(self, pgn: int, message: dict[str, Any]) -> None:
        self.pgn = pgn
        self.name: str = message["name"]
        self.length: int = int(message["length"])
        self.root = _tree(message["node"], self.length)
        signals = message["signals"]
        self.signals = tuple(
            _Signal(
                name=s["name"],
                mask=(1 << s["length"]) - 1,
                limit=valid_limit(s["length"]),
                scale=s["scale"],
                offset=s["offset"],
                integral=isinstance(s["scale"], int) and isinstance(s["offset"], int),
                rules=_table_rules(
                    s.get("choices", []), valid_limit(s["length"]), (1 << s["length"]) - 1
                ),
            )
            for s in signals
        )
        self._big = any(s["big_endian"] for s in signals)
        self._little = not all(s["big_endian"] for s in signals)

    def bits(self, signal: str) -> int | None:
        """The bits of a frame that `signal`'s value is read from, as a mask of the frame
        read as a little-endian integer (`int.from_bytes(data, "little")`); every bit of
        the frame when the signal is multiplexed (which of its bits count depends on the
        multiplexer); None when the message has no such signal. The throttle tells a door
        status that changed from a frame whose other bytes did (drivers/can/pipeline.py)."""
        for r in self.root.raws:
            if r.name == signal:
                bits = r.mask << r.shift
                if r.big_endian:  # the same bytes, read the other way round
                    bits = int.from_bytes(bits.to_bytes(self.length, "big"), "little")
                return bits
        if any(s.name == signal for s in self.signals):
            return (1 << 8 * self.length) - 1
        return None

    def raw(self, data: bytes | bytearray) -> dict[str, int | float]:
        """The raw value of every signal the frame holds, as cantools' `decode_simple(data,
        decode_choices=False, scaling=False, allow_truncated=True)` gives them. Raises
        MultiplexerError on a multiplexer value the DBC does not list."""
        length = self.length
        have = len(data)
        if have != length:  # a short frame is padded with 0xFF, a long one cut
            data = bytes(data[:length]).ljust(length, b"\xff")
        little = int.from_bytes(data, "little") if self._little else 0
        big = int.from_bytes(data, "big") if self._big else 0
        out: dict[str, int | float] = {}
        self._read(self.root, little, big, have * 8 if have < length else 1 << 30, out)
        return out

    def _read(
        self, node: _Node, little: int, big: int, bits: int, out: dict[str, int | float]
    ) -> None:
        for r in node.raws:
            if r.end > bits:
                continue  # beyond a short frame
            v = ((big if r.big_endian else little) >> r.shift) & r.mask
            if r.float_format is not None:
                size = r.mask.bit_length() // 8
                out[r.name] = struct.unpack(r.float_format, v.to_bytes(size, "big"))[0]
            elif v & r.sign:
                out[r.name] = v - (r.sign << 1)
            else:
                out[r.name] = v
        for name, children in node.multiplexers:
            value = out.get(name)
            if value is None:
                continue
            mux = int(value)
            child = children.get(mux)
            if child is None:
                ids = [str(i) for i in sorted(children)]
                listed = ids[0] if len(ids) == 1 else f"{', '.join(ids[:-1])} or {ids[-1]}"
                raise MultiplexerError(f"expected multiplexer id {listed}, but got {mux}")
            self._read(child, little, big, bits, out)

    def decode(self, data: bytes | bytearray) -> dict[str, Value]:
        """Every signal of the message: a number, or None when not available, in error or
        beyond a short frame (an IEEE float signal, which has no such codes: when NaN or
        infinite). Raises MultiplexerError on a multiplexer value the DBC does not list."""
        raw = self.raw(data)
        out: dict[str, Value] = {}
        for s in self.signals:
            r = raw.get(s.name)
            if isinstance(r, float):  # an IEEE float signal: no J1939 codes, NaN is no value
                value = r * s.scale + s.offset
                out[s.name] = value if math.isfinite(value) else None
            elif r is None or (
                (r & s.mask) > s.limit
                if s.rules is None
                else not s.rules.get(r & s.mask, (r & s.mask) <= s.limit)
            ):
                out[s.name] = None
            elif s.integral:
                out[s.name] = r * s.scale + s.offset
            else:
                out[s.name] = round(r * s.scale + s.offset, 9)
        return out


class Decoders:
    """The DBC indexed by PGN, limited to an optional allow-list of PGNs."""

    def __init__(self, path: Path, pgns: "list[int] | None" = None) -> None:
        self.path = path
        self.notes: list[str] = []  # things the driver should log once
        table = load_table(path)
        by_pgn: dict[int, MessageDecoder] = {}
        problems: list[str] = []
        for message in table["messages"]:
            name = message["name"]
            if not message["extended"]:
                self.notes.append(f"DBC message {name} has an 11-bit id: not J1939, ignored")
                continue
            pgn = parse_id(message["frame_id"]).pgn
            if pgn in by_pgn:
                problems.append(
                    f"dbc: messages {by_pgn[pgn].name} and {name} have the same PGN "
                    f"{pgn}; decoding is by PGN, so keep one"
                )
                continue
            by_pgn[pgn] = MessageDecoder(pgn, message)
        if pgns is not None:
            known = set(by_pgn) | {PGN_DM1}
            unknown = sorted(set(pgns) - known)
            if unknown:
                names = {p: d.name for p, d in by_pgn.items()} | {PGN_DM1: "DM1"}
                listed = ", ".join(f"{p} ({n})" for p, n in sorted(names.items()))
                problems.append(
                    f"pgns: {unknown} not in {path.name}; add them to the DBC or choose among "
                    f"{listed}"
                )
            by_pgn = {p: d for p, d in by_pgn.items() if p in set(pgns)}
        if problems:
            raise ConfigError(str(path), problems)
        # DM1 has its own decoder (every trouble code, not just the first): see dm1.py
        by_pgn.pop(PGN_DM1, None)
        self.by_pgn = by_pgn
        self.dm1 = pgns is None or PGN_DM1 in pgns

    def pgns(self) -> set[int]:
        """Every PGN that leads to an event (DM1 included when enabled)."""
        return set(self.by_pgn) | ({PGN_DM1} if self.dm1 else set())

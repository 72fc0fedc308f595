"""DBC-driven decoding of J1939 parameter groups, looked up by PGN whatever the sender.

cantools' `decode_message` wants the exact frame id, so a message from another source
address than the one written in the DBC would not decode: the database is indexed by PGN
here instead. Values are decoded raw and scaled here, because J1939 marks "not available"
and "error" in the raw value (0xFF…, 0xFE…), and those must become None, not 1606.5 km/h.
"""

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cantools.database
from cantools.database.can import Message

from core.errors import ConfigError
from drivers.can.j1939 import PGN_DM1, parse_id

SHIPPED_DBC = Path(str(resources.files("drivers.can") / "fms.dbc"))
"""The FMS database used when a config names none: package data of drivers.can, so an
installed edged (install.sh's venv, a wheel) has it too; config/fms.dbc links to it."""

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


@dataclass(frozen=True, slots=True)
class _Signal:
    name: str
    mask: int
    limit: int
    scale: float | int
    offset: float | int
    integral: bool  # scale and offset are integers: keep an int


class MessageDecoder:
    """Decodes one DBC message into {signal name: physical value or None}."""

    __slots__ = ("message", "name", "pgn", "signals")

    def __init__(self, pgn: int, message: Message) -> None:
        self.pgn = pgn
        self.message = message
        self.name: str = message.name
        self.signals = tuple(
            _Signal(
                name=s.name,
                mask=(1 << s.length) - 1,
                limit=valid_limit(s.length),
                scale=s.scale,
                offset=s.offset,
                integral=isinstance(s.scale, int) and isinstance(s.offset, int),
            )
            for s in message.signals
        )

    @property
    def length(self) -> int:
        return int(self.message.length)

    def decode(self, data: bytes | bytearray) -> dict[str, Value]:
        """Every signal of the message: a number, or None when not available, in error or
        beyond a short frame. May raise cantools' DecodeError on a malformed multiplexer."""
        raw = self.message.decode_simple(
            bytes(data), decode_choices=False, scaling=False, allow_truncated=True
        )
        out: dict[str, Value] = {}
        for s in self.signals:
            r = raw.get(s.name)
            if not isinstance(r, int) or (r & s.mask) > s.limit:
                out[s.name] = None
            elif s.integral:
                out[s.name] = r * s.scale + s.offset
            else:
                out[s.name] = round(r * s.scale + s.offset, 9)
        return out


def _read_dbc(path: Path) -> cantools.database.can.Database:
    """The parsed DBC; a file read before and unchanged since is not parsed again (the
    config check and the driver both read it at start-up: ~15 ms each here, six times that
    on a Pi Zero)."""
    st = path.stat()
    return _parsed_dbc(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _parsed_dbc(path: str, mtime_ns: int, size: int) -> cantools.database.can.Database:
    db = cantools.database.can.Database(strict=True)
    db.add_dbc_file(path)
    return db


class Decoders:
    """The DBC indexed by PGN, limited to an optional allow-list of PGNs."""

    def __init__(self, path: Path, pgns: "list[int] | None" = None) -> None:
        self.path = path
        self.notes: list[str] = []  # things the driver should log once
        try:
            db = _read_dbc(path)
        except FileNotFoundError:
            raise ConfigError(str(path), ["dbc: no such file; set options.dbc"]) from None
        except Exception as exc:  # cantools raises many kinds: parse, overlap, encoding…
            raise ConfigError(
                str(path), [f"dbc: cannot read this DBC ({type(exc).__name__}: {exc})"]
            ) from exc
        by_pgn: dict[int, MessageDecoder] = {}
        problems: list[str] = []
        for message in db.messages:
            if not message.is_extended_frame:
                self.notes.append(
                    f"DBC message {message.name} has an 11-bit id: not J1939, ignored"
                )
                continue
            pgn = parse_id(message.frame_id).pgn
            if pgn in by_pgn:
                problems.append(
                    f"dbc: messages {by_pgn[pgn].name} and {message.name} have the same PGN "
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

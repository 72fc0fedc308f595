"""J1939 29-bit identifiers: priority, PGN, source and destination, and acceptance filters.

A J1939 identifier is priority (3 bits), extended data page, data page, PDU format (PF),
PDU specific (PS) and source address. With PF < 240 (PDU1) the PS byte is a destination
address and is not part of the PGN; with PF >= 240 (PDU2) PS is the group extension and the
message goes to everyone. Decoding is by PGN alone, so any source address decodes.
"""

from typing import NamedTuple

from can.typechecking import CanFilter

GLOBAL = 0xFF
"""Destination address meaning "everyone" (PDU2 messages, BAM)."""

PGN_TP_CM = 60416  # 0xEC00 transport protocol connection management
PGN_TP_DT = 60160  # 0xEB00 transport protocol data transfer
PGN_DM1 = 65226  # 0xFECA active diagnostic trouble codes

_PGN_MASK = 0x3FFFF  # EDP, DP, PF, PS
_FILTER_PDU2 = 0x3FFFF00  # the whole PGN, any priority and source
_FILTER_PDU1 = 0x3FF0000  # EDP, DP and PF: any priority, destination and source


class J1939Id(NamedTuple):
    priority: int
    pgn: int
    source: int
    destination: int


def pgn_of(can_id: int) -> int:
    """The PGN of a 29-bit identifier: the hot path needs only this, not a tuple."""
    pgn = (can_id >> 8) & _PGN_MASK
    if (pgn >> 8) & 0xFF < 240:
        return pgn & 0x3FF00
    return pgn


def parse_id(can_id: int) -> J1939Id:
    """Split a 29-bit identifier into priority, PGN, source and destination."""
    priority = (can_id >> 26) & 0x7
    pgn = (can_id >> 8) & _PGN_MASK
    pf = (pgn >> 8) & 0xFF
    if pf < 240:  # PDU1: PS is the destination address
        return J1939Id(priority, pgn & 0x3FF00, can_id & 0xFF, pgn & 0xFF)
    return J1939Id(priority, pgn, can_id & 0xFF, GLOBAL)


def is_pdu1(pgn: int) -> bool:
    return (pgn >> 8) & 0xFF < 240


def make_id(pgn: int, source: int, *, priority: int = 6, destination: int = GLOBAL) -> int:
    """The 29-bit identifier a sender of `pgn` uses (destination only counts for PDU1)."""
    if not 0 <= pgn <= _PGN_MASK:
        raise ValueError(f"PGN {pgn} is out of range 0..{_PGN_MASK}")
    if is_pdu1(pgn):
        pgn = (pgn & 0x3FF00) | (destination & 0xFF)
    return ((priority & 0x7) << 26) | (pgn << 8) | (source & 0xFF)


def acceptance_filters(pgns: "set[int] | frozenset[int]") -> list[CanFilter]:
    """python-can `can_filters` that pass these PGNs from any source, at any priority.

    A PDU1 PGN passes for every destination: the transport protocol groups too, as a
    passive listener reassembles BAM to everyone and RTS/CTS sessions between other nodes.
    """
    filters: list[CanFilter] = []
    for pgn in sorted(pgns):
        if is_pdu1(pgn):
            can_id, mask = pgn << 8, _FILTER_PDU1
        else:
            can_id, mask = pgn << 8, _FILTER_PDU2
        filters.append(CanFilter(can_id=can_id, can_mask=mask, extended=True))
    return filters

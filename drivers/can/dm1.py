"""J1939-73 DM1, active diagnostic trouble codes: lamp states and every active code.

A DBC can describe the first code only (cantools has no repeated structures), so the
payload is parsed here: 2 lamp bytes, then 4 bytes per code. One code fits in a single
frame (padded with 0xFF); more than one arrives over the transport protocol.
"""

from collections.abc import Sequence

from edged.events import ActiveFaults, TroubleCode

LAMPS = ("malfunction", "red_stop", "amber_warning", "protect")
"""Lamp names in ActiveFaults.lamps; each value is the 2-bit state: 0 off, 1 on,
2 reserved, 3 not available."""


def parse_dm1(source: int, data: bytes, ts: float) -> ActiveFaults | None:
    """The ActiveFaults of one DM1 payload, or None when it is too short to hold the lamps.

    Byte 1 holds the lamps (MIL bits 8-7, red stop 6-5, amber warning 4-3, protect 2-1).
    Each code: SPN = b3 | b4 << 8 | (b5 >> 5) << 16, FMI = b5 & 0x1F, occurrence count
    = b6 & 0x7F (the top bit is the SPN conversion method; version 4, CM = 0, is assumed).
    SPN 0 with FMI 0 means "no active code", and 4 bytes of 0xFF are padding: both are
    left out.
    """
    if len(data) < 2:
        return None
    b1 = data[0]
    lamps = {
        "malfunction": (b1 >> 6) & 3,
        "red_stop": (b1 >> 4) & 3,
        "amber_warning": (b1 >> 2) & 3,
        "protect": b1 & 3,
    }
    codes: list[TroubleCode] = []
    for i in range(2, len(data) - 3, 4):
        b3, b4, b5, b6 = data[i], data[i + 1], data[i + 2], data[i + 3]
        if b3 == b4 == b5 == b6 == 0xFF:
            continue
        spn = b3 | b4 << 8 | (b5 >> 5) << 16
        fmi = b5 & 0x1F
        if spn == 0 and fmi == 0:
            continue
        codes.append(TroubleCode(spn=spn, fmi=fmi, occurrence=b6 & 0x7F))
    return ActiveFaults(source=source, lamps=lamps, codes=tuple(codes), ts=ts)


def encode_dm1(lamps: dict[str, int], codes: Sequence[TroubleCode]) -> bytes:
    """The DM1 payload a sender would send (simulators and tests): at least 8 bytes."""
    b1 = (
        (lamps.get("malfunction", 0) & 3) << 6
        | (lamps.get("red_stop", 0) & 3) << 4
        | (lamps.get("amber_warning", 0) & 3) << 2
        | (lamps.get("protect", 0) & 3)
    )
    out = bytearray([b1, 0xFF])
    if not codes:
        out += bytes([0, 0, 0, 0])
    for c in codes:
        out += bytes(
            [
                c.spn & 0xFF,
                (c.spn >> 8) & 0xFF,
                ((c.spn >> 16) & 0x7) << 5 | (c.fmi & 0x1F),
                c.occurrence & 0x7F,
            ]
        )
    while len(out) < 8:
        out.append(0xFF)
    return bytes(out)

"""J1939-73 DM1, active diagnostic trouble codes: lamp states and every active code.

A DBC can describe the first code only (cantools has no repeated structures), so the
payload is parsed here: 2 lamp bytes, then 4 bytes per code. One code fits in a single
frame (8 bytes, the last two 0xFF); more than one arrives over the transport protocol,
2 + 4n bytes.

A payload is malformed, and refused as a whole (the pipeline counts `dm1_malformed` and
emits nothing, so the last good list of that ECU stands), when it is shorter than the
lamps and one code slot (6 bytes: J1939-73 sends SPN 0 FMI 0 when nothing is active, so a
5-byte DM1 cannot be "no fault"), or when it is not 2 + 4n bytes: bytes after the last
whole code must be 0xFF padding, except the last two of an 8-byte single frame, which are
padding whatever their value (some ECUs pad with 0x00). A code made of stray bytes, or a
cleared list made of a truncated frame, is worse than none.

The SPN conversion method bit (CM, byte 6 bit 8) is kept per code as `cm`: 0 is the SPN
layout of J1939-73 version 4, used here; 1 means the ECU uses one of the older layouts
(versions 1-3), which the bit alone does not tell apart (J1939-73: the receiver needs
prior knowledge of the ECU), so the SPN is not guessed: it is read with the version 4
layout and `cm: 1` says it may be in another byte order.
"""

from collections.abc import Sequence

from core.events import ActiveFaults, TroubleCode

MIN_LENGTH = 6
"""The lamps and one code slot."""
SINGLE_FRAME = 8

LAMPS = ("malfunction", "red_stop", "amber_warning", "protect")
"""Lamp names in ActiveFaults.lamps; each value is the 2-bit state: 0 off, 1 on,
2 reserved, 3 not available."""


def parse_dm1(source: int, data: bytes, ts: float) -> ActiveFaults | None:
    """The ActiveFaults of one DM1 payload, or None when it is malformed (see above).

    Byte 1 holds the lamps (MIL bits 8-7, red stop 6-5, amber warning 4-3, protect 2-1).
    Each code: SPN = b3 | b4 << 8 | (b5 >> 5) << 16, FMI = b5 & 0x1F, occurrence count
    = b6 & 0x7F, CM = b6 >> 7. SPN 0 with FMI 0 means "no active code", and 4 bytes of
    0xFF are padding: both are left out.
    """
    n = len(data)
    if n < MIN_LENGTH:
        return None
    whole = 2 + (n - 2) // 4 * 4
    if n != SINGLE_FRAME and any(b != 0xFF for b in data[whole:]):
        return None
    b1 = data[0]
    lamps = {
        "malfunction": (b1 >> 6) & 3,
        "red_stop": (b1 >> 4) & 3,
        "amber_warning": (b1 >> 2) & 3,
        "protect": b1 & 3,
    }
    codes: list[TroubleCode] = []
    for i in range(2, whole, 4):
        b3, b4, b5, b6 = data[i], data[i + 1], data[i + 2], data[i + 3]
        if b3 == b4 == b5 == b6 == 0xFF:
            continue
        spn = b3 | b4 << 8 | (b5 >> 5) << 16
        fmi = b5 & 0x1F
        if spn == 0 and fmi == 0:
            continue
        codes.append(TroubleCode(spn=spn, fmi=fmi, occurrence=b6 & 0x7F, cm=b6 >> 7))
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
                (c.cm & 1) << 7 | (c.occurrence & 0x7F),
            ]
        )
    while len(out) < 8:
        out.append(0xFF)
    return bytes(out)

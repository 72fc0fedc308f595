"""Cards the PN532 emulator can hold on its antenna, with the ATQA/SAK real cards answer.

ISO/IEC 14443-3 puts the UID size in ATQA bits 7–8 (00 single, 01 double, 10 triple), so
the ATQA below agree with the UID lengths:

| kind          | UID | ATQA (SENS_RES) | SAK  | what it stands for                              |
| ------------- | --- | --------------- | ---- | ----------------------------------------------- |
| CLASSIC_1K    | 4   | 00 04           | 0x08 | MIFARE Classic 1K, the usual co-pass card       |
| ULTRALIGHT    | 7   | 00 44           | 0x00 | MIFARE Ultralight / NTAG21x tickets and tags    |
| DESFIRE       | 7   | 03 44           | 0x20 | MIFARE DESFire EV1 (ISO 14443-4: has an ATS)    |
| TRIPLE        | 10  | 00 84           | 0x00 | a triple-size UID tag; rare in the field, values |
|               |     |                 |      | follow the standard rather than a product sheet |

A DESFire's ATS (06 75 77 81 02 80) is only sent when the host asked the chip to send RATS
itself (SetParameters bit fAutomaticRATS), as the PN532 does.
"""

import enum
from dataclasses import dataclass


class CardKind(enum.Enum):
    CLASSIC_1K = "classic-1k"
    ULTRALIGHT = "ultralight"
    DESFIRE = "desfire"
    TRIPLE = "triple"


@dataclass(frozen=True, slots=True)
class Profile:
    atqa: bytes
    sak: int
    ats: bytes = b""


PROFILES: dict[CardKind, Profile] = {
    CardKind.CLASSIC_1K: Profile(bytes([0x00, 0x04]), 0x08),
    CardKind.ULTRALIGHT: Profile(bytes([0x00, 0x44]), 0x00),
    CardKind.DESFIRE: Profile(bytes([0x03, 0x44]), 0x20, bytes.fromhex("067577810280")),
    CardKind.TRIPLE: Profile(bytes([0x00, 0x84]), 0x00),
}

DEFAULT_KIND = {4: CardKind.CLASSIC_1K, 7: CardKind.ULTRALIGHT, 10: CardKind.TRIPLE}


@dataclass(frozen=True, slots=True)
class Card:
    """A card in the field: its UID (NFCID1, without cascade tags) and what it answers."""

    uid: bytes
    atqa: bytes
    sak: int
    ats: bytes = b""

    @classmethod
    def make(cls, uid: bytes, kind: CardKind | None = None) -> "Card":
        """A card of `kind`, or of the usual kind for the UID length (4, 7 or 10 bytes).

        Any other length (1 to 16 bytes) is allowed with an explicit kind or none — a
        broken or hostile card — and then answers as a Classic 1K would.
        """
        if not 1 <= len(uid) <= 16:
            raise ValueError(f"a UID of {len(uid)} bytes cannot be put on the antenna")
        profile = PROFILES[kind or DEFAULT_KIND.get(len(uid), CardKind.CLASSIC_1K)]
        return cls(bytes(uid), profile.atqa, profile.sak, profile.ats)

    def target_data(self, *, tg: int = 1, rats: bool = False) -> bytes:
        """The target data of an InListPassiveTarget answer at 106 kbps type A (§7.3.5)."""
        data = bytes([tg]) + self.atqa + bytes([self.sak, len(self.uid)]) + self.uid
        if rats and self.ats:
            data += self.ats
        return data

    def cascaded(self) -> bytes:
        """The UID as a host names the card to select (InListPassiveTarget's InitiatorData,
        libnfc's iso14443_cascade_uid): a cascade tag 0x88 before each 3-byte part."""
        uid = self.uid
        if len(uid) == 7:
            return b"\x88" + uid
        if len(uid) == 10:
            return b"\x88" + uid[:3] + b"\x88" + uid[3:]
        return uid

    def page(self, n: int) -> bytes:
        """Four bytes of memory for an Ultralight READ; UID pages as the card lays them out."""
        uid = self.uid.ljust(7, b"\x00")
        bcc0 = 0x88 ^ uid[0] ^ uid[1] ^ uid[2]
        bcc1 = uid[3] ^ uid[4] ^ uid[5] ^ uid[6]
        pages = {0: uid[:3] + bytes([bcc0]), 1: uid[3:7], 2: bytes([bcc1, 0x48, 0x00, 0x00])}
        return pages.get(n, b"\x00\x00\x00\x00")

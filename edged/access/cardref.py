"""card_ref: what a card is called everywhere outside the NFC driver and this function.

HMAC-SHA256 under a per-fleet secret, truncated: dispatch (which holds the secret) can build
its lists from card numbers, but whoever reads the broker, the outbox or a log cannot turn a
card_ref back into a UID, nor link it to the same card in another fleet.

Not every UID names a card. ISO/IEC 14443-3 reserves, for single-size (4-byte) UIDs, the
first byte 08h for a random ID: the chip draws a new one each time it is powered in a
reader's field (NXP AN10927, "MIFARE product and handling of UIDs", RID). Phones' card
emulation, privacy cards and a PN532 emulating a card answer with one. A card_ref made of
it matches nothing the next time, or matches someone else's by chance; it is not an
identity and `random_uid` tells it. Double- and triple-size UIDs (7 and 10 bytes) begin
with the manufacturer's code instead (ISO/IEC 7816-6), where 08h means nothing special.
"""

import hashlib
import hmac
from pathlib import Path

from core.errors import ConfigError

MIN_SECRET_BYTES = 16
RANDOM_UID0 = 0x08
"""ISO/IEC 14443-3: UID0 of a single-size UID that is a random number (RID)."""


def random_uid(uid: bytes) -> bool:
    """Whether `uid` is a random ID (a new one at each presentation), not a card's own."""
    return len(uid) == 4 and uid[0] == RANDOM_UID0


class CardRefs:
    def __init__(self, secret: bytes, nbytes: int = 16) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the fleet secret must have at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.nbytes = nbytes

    @classmethod
    def from_file(cls, path: Path, nbytes: int = 16) -> "CardRefs":
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(str(path), [f"cannot read the fleet secret: {exc.strerror}"]) from exc
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                str(path),
                [
                    f"the fleet secret has {len(secret)} bytes; it needs at least "
                    f"{MIN_SECRET_BYTES} (head -c 32 /dev/urandom | base64 > {path})"
                ],
            )
        return cls(secret, nbytes)

    def __call__(self, uid: bytes) -> str:
        mac = hmac.new(self._secret, uid, hashlib.sha256).digest()
        return mac[: self.nbytes].hex()

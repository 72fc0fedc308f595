"""card_ref: what a card is called everywhere outside the NFC driver and this function.

HMAC-SHA256 under a per-fleet secret, truncated: dispatch (which holds the secret) can build
its lists from card numbers, but whoever reads the broker, the outbox or a log cannot turn a
card_ref back into a UID, nor link it to the same card in another fleet.
"""

import hashlib
import hmac
from pathlib import Path

from core.errors import ConfigError

MIN_SECRET_BYTES = 16


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

"""Ed25519 signatures over a command's topic, id, timestamp and arguments.

The topic is part of what is signed, so a command signed for one node cannot be replayed to
another, and a `ping` signature cannot be moved onto `door.unlock`. The message is canonical
JSON (sorted keys, no spaces, UTF-8), easy to rebuild in any language at dispatch.

A node checks signatures with the OpenSSL its `ssl` module already loaded
(`edged.security.ed25519`), never with `cryptography`, which cost every node in service
~9 MB from its first command on. A key in the config must be base64 of 32 bytes that
decode to a point of the curve not of small order (`edged.security.keycheck`). Signing and
key files (`edgectl`, the tests) use `cryptography`, imported only there.
"""

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import EdgedError
from edged.security import ed25519, keycheck
from edged.security.canonical import canonical_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

KEY_BYTES = 32


class PublicKey:
    """An Ed25519 public key read from a config: its 32 raw bytes."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError(f"an Ed25519 public key is {KEY_BYTES} bytes, not {len(raw)}")
        if (why := keycheck.problem(raw)) is not None:
            raise ValueError(f"this Ed25519 public key cannot be used: {why}")
        self.raw = raw


def signed_message(topic: str, cmd_id: str, ts: int, args: dict[str, Any]) -> bytes:
    """What a command's signature covers. Made in pieces (`canonical_json`): the router
    makes it in a worker thread for a command over 64 KiB (an access list), and the event
    loop decides taps between two pieces."""
    doc = {"args": args, "id": cmd_id, "topic": topic, "ts": ts}
    return canonical_json(doc).encode()


def sign(key: "Ed25519PrivateKey", topic: str, cmd_id: str, ts: int, args: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(signed_message(topic, cmd_id, ts, args))).decode()


def verify(key: "PublicKey | Ed25519PublicKey", signature: str, message: bytes) -> bool:
    """Whether `signature` (base64) is `key`'s signature of `message`. A config's key is
    checked by OpenSSL (the daemon); a `cryptography` key (a tool's) by `cryptography`."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    if isinstance(key, PublicKey):
        return ed25519.verify(key.raw, raw, message)
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(raw, message)
    except InvalidSignature:
        return False
    return True


def public_key_from_text(text: str) -> PublicKey:
    """A public key as written in a config: base64 of the 32 raw bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(
            "not an Ed25519 public key: expected base64 of 32 bytes, as printed by "
            "`edgectl keys generate`"
        )
    try:
        return PublicKey(raw)
    except ValueError as exc:
        raise ValueError(f"{exc}: use a key printed by `edgectl keys generate`") from None


def public_key_text(key: "Ed25519PublicKey") -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def generate_key_file(path: Path) -> str:
    """Write a new private key (PEM, mode 0600); return its public key text for the config."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over an old key
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_key_text(key.public_key())


def load_private_key(path: Path) -> "Ed25519PrivateKey":
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise EdgedError(f"cannot read the key {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise EdgedError(f"{path} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgedError(f"{path} is not an Ed25519 key; make one with `edgectl keys generate`")
    return key

"""Payload encodings: JSON (the default), CBOR and deflate, chosen per fleet.

The node keeps every message as JSON (in the outbox, for de-duplication and replays) and
writes it on the wire in `[broker] encoding`; its birth says which. A reader does not need
to know: the first byte tells the three apart (`{` or `[` JSON, `0x80`–`0xBF` CBOR, `0x00`
deflate), and `decode` returns what `json.loads` of the JSON would. Every edged tool reads
through here, so a fleet can switch encodings without its tools following.

A payload that decodes to a list is a batch: several messages of the topic, each exactly
as it would have come alone (`messages`).
"""

import json
from typing import Any, Literal

from edged.codec import cbor, deflate
from edged.codec.errors import PayloadError

Encoding = Literal["json", "cbor", "deflate"]
ENCODINGS: tuple[Encoding, ...] = ("json", "cbor", "deflate")
MAX_DECODED_BYTES = 16 * 1024 * 1024
"""Largest JSON text a reader inflates a deflate payload to (a full access list is 4 MiB)."""

__all__ = ["ENCODINGS", "Encoding", "PayloadError", "decode", "encoding_of", "messages", "to_wire"]


def to_wire(json_payload: bytes, encoding: Encoding) -> bytes:
    """A stored JSON payload as the fleet's encoding puts it on the wire."""
    if encoding == "json":
        return json_payload
    if encoding == "deflate":
        return deflate.encode(json_payload)
    try:
        return cbor.encode(json.loads(json_payload))
    except PayloadError:  # e.g. an integer beyond 64 bits: readers sniff, JSON always works
        return json_payload


def encoding_of(payload: bytes) -> Encoding | None:
    """Which encoding a payload is in, from its first byte; None when it is none of them."""
    if not payload:
        return None
    first = payload[0]
    if first == deflate.MAGIC:
        return "deflate"
    if 0x80 <= first <= 0xBF:
        return "cbor"
    if payload.lstrip(b" \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return None


def decode(payload: bytes | bytearray | str, max_bytes: int = MAX_DECODED_BYTES) -> Any:
    """The JSON value of a payload in any of the encodings; `PayloadError` when it is none,
    damaged, hostile or larger than `max_bytes` once decoded."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    payload = bytes(payload)
    kind = encoding_of(payload)
    if kind is None:
        shown = payload[:16].hex() if payload else "empty"
        raise PayloadError(f"not a JSON, CBOR or deflate payload (it starts {shown})")
    if kind == "cbor":
        return cbor.decode(payload)
    text = deflate.decode(payload, max_bytes) if kind == "deflate" else payload
    if len(text) > max_bytes:
        raise PayloadError(f"payload of {len(text)} bytes, larger than {max_bytes}")
    try:
        return json.loads(text)
    except RecursionError:
        raise PayloadError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"not valid JSON: {exc}") from None


def messages(payload: bytes | bytearray | str, max_bytes: int = MAX_DECODED_BYTES) -> list[Any]:
    """The messages a payload carries: one, or each of a batch (a list), in order."""
    value = decode(payload, max_bytes)
    return value if isinstance(value, list) else [value]

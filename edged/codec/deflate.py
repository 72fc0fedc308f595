"""The `deflate` encoding: the JSON payload, deflated against a preset dictionary.

On the wire: a zero byte (no JSON or CBOR payload starts with one), the dictionary's id,
then a raw deflate stream (RFC 1951) of the JSON text. Decoded, it is the JSON payload byte
for byte. Inflating is bounded: a stream that would grow beyond `max_bytes` (a compression
bomb) is refused without being expanded further.
"""

import zlib

from edged.codec.dictionary import CURRENT, DICTIONARIES
from edged.codec.errors import PayloadError

MAGIC = 0x00
LEVEL = 9


def encode(json_text: bytes, dictionary: int = CURRENT) -> bytes:
    compressor = zlib.compressobj(
        LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARIES[dictionary]
    )
    return bytes([MAGIC, dictionary]) + compressor.compress(json_text) + compressor.flush()


def decode(payload: bytes, max_bytes: int) -> bytes:
    """The JSON text a `deflate` payload holds; `PayloadError` for anything else."""
    if len(payload) < 3 or payload[0] != MAGIC:
        raise PayloadError("not a deflate payload (it starts with 0x00, the dictionary id)")
    dictionary = DICTIONARIES.get(payload[1])
    if dictionary is None:
        raise PayloadError(
            f"deflate payload with dictionary {payload[1]}, unknown to this edged "
            f"(it knows {sorted(DICTIONARIES)}): update the reader"
        )
    inflater = zlib.decompressobj(-15, zdict=dictionary)
    try:
        text = inflater.decompress(payload[2:], max_bytes)
    except zlib.error as exc:
        raise PayloadError(f"damaged deflate payload: {exc}") from None
    if inflater.unconsumed_tail:
        raise PayloadError(f"deflate payload inflates beyond {max_bytes} bytes: refused")
    if not inflater.eof:
        raise PayloadError("truncated deflate payload")
    if inflater.unused_data:
        raise PayloadError(f"{len(inflater.unused_data)} bytes after the deflate stream")
    return text

"""What the GPS driver tests share: NMEA lines as a receiver sends them."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def nmea(body: str) -> bytes:
    """`$body*hh\\r\\n` with the checksum a receiver would send."""
    checksum = 0
    for byte in body.encode("ascii"):
        checksum ^= byte
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def recording(name: str) -> list[bytes]:
    """The bursts of corpus log `name` (corpus/README.md), each line with its CRLF."""
    raw = (CORPUS / f"{name}.nmea").read_bytes()
    return [b.strip(b"\r\n") + b"\r\n" for b in raw.split(b"\r\n\r\n") if b.strip()]

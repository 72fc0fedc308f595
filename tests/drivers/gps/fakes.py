"""What the GPS driver tests share: NMEA lines as a receiver sends them."""


def nmea(body: str) -> bytes:
    """`$body*hh\\r\\n` with the checksum a receiver would send."""
    checksum = 0
    for byte in body.encode("ascii"):
        checksum ^= byte
    return f"${body}*{checksum:02X}\r\n".encode("ascii")

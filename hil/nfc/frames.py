"""PN532 host-link frames (PN532 User Manual §6.2): building them and reading a byte stream.

    normal    00 00 FF LEN LCS TFI PD0..PDn DCS 00      LEN = len(TFI+PD), LEN+LCS = 0 (mod 256)
    extended  00 00 FF FF FF LENM LENL LCS TFI PD.. DCS 00
    ACK       00 00 FF 00 FF 00          NACK  00 00 FF FF 00 00
    error     00 00 FF 01 FF 7F 81 00    (the chip's "syntax error" answer)

TFI is D4 from the host, D5 from the chip; TFI + PD + DCS = 0 (mod 256).

`FrameReader` is a streaming parser for what the host sends: it copes with the HSU wake-up
bytes (0x55 0x55 00 00 00), any run of 00 preamble bytes, frames split across reads, several
frames in one read, ACK/NACK from the host (an ACK aborts the running command), and noise.
A frame with a bad length or data checksum is reported as `BadFrame` and skipped by moving
past its start code only, so a good frame that follows it is still found (resync).
"""

from dataclasses import dataclass

START = b"\x00\xff"
PREAMBLE = b"\x00"
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
HOST_TFI = 0xD4
CHIP_TFI = 0xD5
MAX_NORMAL = 255  # TFI + data in a normal frame
MAX_EXTENDED = 265  # TFI + data the PN532 accepts in an extended frame


@dataclass(frozen=True, slots=True)
class Frame:
    """An information frame: `tfi` (D4 host→chip, D5 chip→host) and its data (PD0..PDn)."""

    tfi: int
    data: bytes

    @property
    def command(self) -> int:
        return self.data[0] if self.data else -1


@dataclass(frozen=True, slots=True)
class Ack:
    """An ACK frame: from the host, it aborts the command the chip is running."""


@dataclass(frozen=True, slots=True)
class Nack:
    """A NACK frame: the host asks for the last answer again."""


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Something that started like a frame and failed a check (`reason` says which)."""

    reason: str


Event = Frame | Ack | Nack | BadFrame


def build(tfi: int, data: bytes, *, extended: bool | None = None) -> bytes:
    """A complete frame with preamble, checksums and postamble.

    Normal when TFI + data fit in 255 bytes, extended otherwise (or when asked).
    """
    body = bytes([tfi]) + data
    if len(body) > MAX_EXTENDED:
        raise ValueError(f"{len(body)} bytes do not fit in a PN532 frame (at most 265)")
    dcs = (-sum(body)) & 0xFF
    if extended is None:
        extended = len(body) > MAX_NORMAL
    if extended:
        hi, lo = len(body) >> 8, len(body) & 0xFF
        head = bytes([0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF])
    else:
        head = bytes([len(body), (-len(body)) & 0xFF])
    return PREAMBLE + START + head + body + bytes([dcs, 0x00])


def command(code: int, params: bytes = b"") -> bytes:
    """A host→chip frame: D4, command code, parameters."""
    return build(HOST_TFI, bytes([code]) + params)


def answer(code: int, payload: bytes = b"") -> bytes:
    """The chip's answer to command `code`: D5, code + 1, payload."""
    return build(CHIP_TFI, bytes([(code + 1) & 0xFF]) + payload)


class FrameReader:
    """Turns a byte stream into frames; `feed` returns what completed, keeps the rest."""

    def __init__(self, max_buffer: int = 4096) -> None:
        self._buf = bytearray()
        self.max_buffer = max_buffer
        self.noise = 0  # bytes skipped that were neither preamble, wake-up nor a frame

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        out: list[Event] = []
        while True:
            event = self._next()
            if event is None:
                break
            out.append(event)
        if len(self._buf) > self.max_buffer:  # a flood without a start code: keep the tail
            self.noise += len(self._buf) - 1
            del self._buf[:-1]
        return out

    def _skip(self, n: int) -> None:
        self.noise += sum(1 for b in self._buf[:n] if b not in (0x00, 0x55))
        del self._buf[:n]

    def _next(self) -> Event | None:
        buf = self._buf
        at = buf.find(START)
        if at < 0:
            # keep a trailing 00: it may be the first half of a start code
            keep = 1 if buf[-1:] == b"\x00" else 0
            self._skip(len(buf) - keep)
            return None
        self._skip(at)
        if len(buf) < 4:
            return None
        length, lcs = buf[2], buf[3]
        if length == 0x00 and lcs == 0xFF:
            del buf[:4]
            return Ack()
        if length == 0xFF and lcs == 0x00:
            del buf[:4]
            return Nack()
        if length == 0xFF and lcs == 0xFF:  # extended
            if len(buf) < 7:
                return None
            hi, lo, lcs = buf[4], buf[5], buf[6]
            if (hi + lo + lcs) & 0xFF:
                del buf[:2]
                return BadFrame("extended length checksum")
            length, start = (hi << 8) | lo, 7
        else:
            if (length + lcs) & 0xFF:
                del buf[:2]
                return BadFrame("length checksum")
            start = 4
        if length == 0:
            del buf[:2]
            return BadFrame("empty frame")
        end = start + length + 1  # body, then DCS
        if len(buf) < end:
            return None
        body = bytes(buf[start : end - 1])
        if (sum(body) + buf[end - 1]) & 0xFF:
            del buf[:2]
            return BadFrame("data checksum")
        del buf[:end]
        return Frame(body[0], body[1:])

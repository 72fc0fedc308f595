"""The drain's QoS 1 PUBLISH packets and the PUBACKs that answer them, without paho's
objects per message.

A profile of `bench.outbox`'s node put 45 % of its event loop in paho reading PUBACKs: three
reads per packet, then a `ReasonCode` and a `Properties` built, an `MQTTMessage` looked up
and its info updated, for four bytes that say "message id N arrived". Publishing through
paho's `publish` cost another 15 % (an `MQTTMessage`, its info, debug formatting), and paho
writes each packet with its own `send`. So the drain (`edged.uplink.sender`):

- builds its QoS 1 PUBLISH packets here, byte for byte what paho would (tested against
  paho), with message ids from paho's own counter, and hands the packets of one loop turn to
  paho's write queue as one write: they go out in order with anything paho queued before;
- takes its PUBACKs out of the bytes read from the broker (`PubackFilter`, used by
  `edged.uplink.readahead`) before paho parses them; every other packet (the birth's PUBACK,
  commands, SUBACK, PINGRESP, DISCONNECT) reaches paho unchanged and in order.

QoS 0 and 2 still go through paho's `publish` (QoS 0 is acknowledged when written, which
only paho knows). A PUBACK is taken only for a message id the drain says is its own, so
paho never sees a PUBACK for a message it sent, nor misses one.
"""

from collections.abc import Callable

from paho.mqtt.properties import Properties

from core.errors import EdgedError

PUBACK = 0x40
"""A PUBACK's first byte: packet type 4, flags 0."""
MAX_REMAINING = 268_435_455
"""The largest remaining length a 4-byte MQTT varint holds."""


class PacketTooLarge(ConnectionError):
    """The broker sends a packet larger than the node takes (`PubackFilter`'s `limit`): the
    connection ends before it is read (MQTT 5: a protocol error, 0x95). An OSError, so paho
    takes it for the connection's end."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the broker sends a packet of {size} bytes, over the {limit} the node takes: "
            "the connection is closed before reading it (a broker must not send it: set its "
            "max_packet_size, Mosquitto, at most that; or a publish to cmd/ that large came "
            "from a commander)"
        )
        self.size = size


class BadPublish(EdgedError):
    """A publish no broker can take (what paho's `publish` refuses too): a wildcard in its
    topic, a topic over 65535 bytes, a packet over MQTT's 256 MB. The drain does not send
    it and goes on (`edged.uplink.sender`); the row stays in the outbox."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property length)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    """The variable byte integer at `buf[i:]` and the index after it; (-1, i) when `buf`
    ends before it does. Raises `ValueError` on a fifth byte: not MQTT."""
    value = shift = 0
    size, at = len(buf), i
    while True:
        if at >= size:
            return -1, i
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 21:
            raise ValueError("a variable byte integer longer than 4 bytes")


def packed(properties: Properties | None, *, v5: bool) -> bytes | None:
    """A PUBLISH's properties as they go on the wire: None over MQTT 3.1.1 (it has none)."""
    if not v5:
        return None
    return b"\x00" if properties is None else properties.pack()  # type: ignore[no-untyped-call]


def publish_size(topic: str, payload: int, *, qos: int, properties: bytes | None) -> int:
    """Bytes of the PUBLISH packet of `payload` bytes on `topic` at `qos`, as paho or
    `publish_packet` writes it: what a broker's Maximum Packet Size (MQTT 5 CONNACK) is
    compared with. `properties`: as for `publish_packet`. Refuses what paho refuses."""
    remaining = _remaining(topic.encode(), payload, qos, properties)
    return 1 + _varint_size(remaining) + remaining


def publish_packet(
    topic: str, payload: bytes, mid: int, *, retain: bool, properties: bytes | None
) -> bytes:
    """A QoS 1 PUBLISH. `properties`: MQTT 5's packed properties (b"\\x00" for none);
    None for MQTT 3.1.1, which has no properties. Refuses what paho's `publish` refuses."""
    name = topic.encode()
    length = _remaining(name, len(payload), 1, properties)
    first = 0x32 | (1 if retain else 0)  # PUBLISH, QoS 1, not a duplicate
    return b"".join(
        (
            bytes((first,)),
            varint(length),
            len(name).to_bytes(2, "big"),
            name,
            mid.to_bytes(2, "big"),
            properties if properties is not None else b"",
            payload,
        )
    )


def _remaining(name: bytes, payload: int, qos: int, properties: bytes | None) -> int:
    """A PUBLISH's remaining length (MQTT 3.3.1.4): the one place its rules are written."""
    if b"+" in name or b"#" in name:
        raise BadPublish(f"publish topic {name.decode(errors='replace')!r} contains a wildcard")
    if len(name) > 0xFFFF:
        raise BadPublish("publish topic is longer than 65535 bytes")
    if not name and properties is None:
        raise BadPublish("an empty publish topic needs MQTT 5 and a topic alias")
    length = 2 + len(name) + (2 if qos else 0) + len(properties or b"") + payload
    if length > MAX_REMAINING:
        raise BadPublish(f"publish of {payload} bytes is larger than MQTT allows")
    return length


def _varint_size(n: int) -> int:
    """len(varint(n)), without building it."""
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3 if n < 0x20_0000 else 4


class PubackFilter:
    """The bytes read from the broker, less the PUBACKs `claim` takes (it is told their
    message id and reason code, 0 for success, and says whether the id was its own).

    A packet not yet complete is held back only while it may be a PUBACK (or its header is
    incomplete); any other packet's bytes pass on as they come, so a large command is not
    held here. A header that is not MQTT (a remaining length longer than 4 bytes) turns the
    filter off: paho sees the bytes as they came and ends the session. A packet larger than
    `limit` (None: any) raises `PacketTooLarge` at its header: paho would hold all of it in
    memory (a broker ignoring MQTT 5's Maximum Packet Size, or any large message over 3.1.1,
    which cannot announce one: 200 MB took a node to 619 MB, over a Pi Zero's memory)."""

    def __init__(self, claim: Callable[[int, int], bool], limit: int | None = None) -> None:
        self.claim = claim
        self.limit = limit
        self._too_large: PacketTooLarge | None = None
        self._held = b""  # the start of a packet that may be a PUBACK
        self._passing = 0  # bytes of the current packet still to pass on unseen
        self._off = False

    @property
    def too_large(self) -> PacketTooLarge | None:
        """The packet over `limit` that ends the connection (None: none came)."""
        return self._too_large

    def feed(self, data: bytes) -> bytes:
        """What paho is to read of `data`, in order."""
        if self._too_large is not None:
            raise self._too_large
        if self._off:
            return data
        out: list[bytes] = []
        if self._passing:
            n = min(self._passing, len(data))
            out.append(data[:n])
            self._passing -= n
            data = data[n:]
        buf = self._held + data if self._held else data
        self._held = b""
        size, pos, keep = len(buf), 0, 0  # buf[keep:pos] is passed on
        claim = self.claim
        while pos < size:
            first = buf[pos]
            try:
                length, i = read_varint(buf, pos + 1)
            except ValueError:  # not MQTT: paho will say so
                self._off = True
                out.append(buf[keep:])
                return b"".join(out)
            if length < 0:  # the header is not complete yet
                out.append(buf[keep:pos])
                self._held = buf[pos:]
                return b"".join(out)
            end = i + length
            if self.limit is not None and end - pos > self.limit:
                # what came before it is read; the connection ends at the next read
                self._too_large = PacketTooLarge(end - pos, self.limit)
                out.append(buf[keep:pos])
                before = b"".join(out)
                if before:
                    return before
                raise self._too_large
            if first == PUBACK and length >= 2:
                if end > size:  # may be ours: wait for the rest
                    out.append(buf[keep:pos])
                    self._held = buf[pos:]
                    return b"".join(out)
                # MQTT 5: a reason code after the id (none: 0, success); 3.1.1 has none
                reason = buf[i + 2] if length >= 3 else 0
                if claim(int.from_bytes(buf[i : i + 2], "big"), reason):
                    out.append(buf[keep:pos])
                    keep = end
            elif end > size:  # not a PUBACK: pass its bytes on as they come
                self._passing = end - size
                break
            pos = end
        out.append(buf[keep:])
        return b"".join(out)

    def pending(self) -> bool:
        """Whether bytes are held back, waiting for the rest of their packet."""
        return bool(self._held)

"""Shared bench pieces: a private Mosquitto, a counting subscriber, /proc readings, stats."""

import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from edged.uplink.packets import read_varint, varint
from hil.broker import Mosquitto, free_port
from hil.proc import proc_cpu_s, proc_status_mb

__all__ = ["Mosquitto", "free_port", "proc_cpu_s", "proc_status_mb"]


def say(quiet: bool, msg: str) -> None:
    """Progress on stderr (stdout is kept for the JSON)."""
    if not quiet:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- numbers ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rnd(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


# -- counting subscriber ----------------------------------------------------------------


def field_int(payload: bytes, name: bytes) -> int:
    """An integer field of a compact JSON envelope, without parsing the whole payload."""
    key = b'"' + name + b'":'
    i = payload.index(key) + len(key)
    j = i
    while j < len(payload) and payload[j : j + 1].isdigit():
        j += 1
    return int(payload[i:j])


@dataclass
class Arrivals:
    """What a subscriber saw: backlog messages by `seq`, live ones with their latency."""

    target: int
    live_marker: bytes
    seqs: set[int] = field(default_factory=set)
    received: int = 0
    duplicates: int = 0
    first: float | None = None  # time.time() of the first backlog arrival
    last: float | None = None  # ... and of the one that completed the set
    live: list[tuple[int, float]] = field(default_factory=list)  # (ts ms, arrival s)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, payload: bytes, now: float) -> None:
        self.received += 1
        if self.live_marker and self.live_marker in payload:
            self.live.append((field_int(payload, b"ts"), now))
            return
        seq = field_int(payload, b"seq")
        if seq in self.seqs:
            self.duplicates += 1
            return
        self.seqs.add(seq)
        if self.first is None:
            self.first = now
        if len(self.seqs) >= self.target and not self.done.is_set():
            self.last = now
            self.done.set()

    def rate(self) -> float | None:
        """Backlog messages per second between the first and the last arrival."""
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return (len(self.seqs) - 1) / (self.last - self.first)


def _utf8(s: str) -> bytes:
    raw = s.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


async def subscribe_and_count(
    port: int, topic: str, arrivals: Arrivals, ready: asyncio.Event, client_id: str
) -> None:
    """A lean QoS 1, MQTT 5 subscriber feeding `arrivals` until cancelled.

    Raw MQTT on an asyncio stream, not aiomqtt: aiomqtt (over paho) handles one packet
    per socket wake-up and sends one PUBACK per write, which tops out near the rate the
    publishers reach, so it would measure itself. This one parses every complete PUBLISH
    in each read and answers them with one write of PUBACKs."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # CONNECT: "MQTT", level 5, clean start, keepalive 0 (off), no properties
        connect = _utf8("MQTT") + bytes([5, 0x02, 0, 0, 0]) + _utf8(client_id)
        writer.write(_packet(0x10, connect))
        # SUBSCRIBE: packet id 1, no properties, one filter at QoS 1
        writer.write(_packet(0x82, b"\x00\x01\x00" + _utf8(topic) + b"\x01"))
        await writer.drain()
        buf = b""
        while True:
            chunk = await reader.read(1 << 18)
            if not chunk:
                raise ConnectionError("the broker closed the subscriber's connection")
            now = time.time()
            buf += chunk
            acks = bytearray()
            pos, size = 0, len(buf)
            while True:
                if size - pos < 2:
                    break
                first = buf[pos]
                length, i = read_varint(buf, pos + 1)  # remaining length
                if length < 0 or i + length > size:
                    break
                end = i + length
                kind = first >> 4
                if kind == 3:  # PUBLISH
                    qos = (first >> 1) & 3
                    tlen = int.from_bytes(buf[i : i + 2], "big")
                    j = i + 2 + tlen
                    if qos:
                        acks += b"\x40\x02" + buf[j : j + 2]
                        j += 2
                    plen, j = read_varint(buf, j)  # property length
                    arrivals.on_message(buf[j + plen : end], now)
                elif kind == 2:  # CONNACK
                    if buf[i + 1] != 0:
                        raise ConnectionError(f"CONNACK reason code {buf[i + 1]}")
                elif kind == 9:  # SUBACK: packet id, properties, reason codes
                    if buf[end - 1] > 1:
                        raise ConnectionError(f"SUBACK reason code {buf[end - 1]}")
                    ready.set()
                pos = end
            buf = buf[pos:]
            if acks:
                writer.write(acks)
                await writer.drain()
    finally:
        writer.close()

"""The captive DNS: what a phone that has not accepted the terms gets for every name.

The firewall sends such a phone's udp/53 here (whatever server it asked). Every A query is
answered with the node's hotspot address, so whatever page the phone opens, it lands on the
portal; AAAA and every other type get an empty answer (the hotspot is IPv4 only). Nothing
is ever forwarded: before accepting, no name resolves to the outside and no DNS tunnel can
carry data out. Two names get "no such name", so the phone does not route around the
portal: Firefox's DNS-over-HTTPS canary and iCloud Private Relay's.

A query is parsed strictly (one question, no compression in it, at most 512 bytes); what
does not parse is dropped and counted. An answer is at most 16 bytes longer than its
query: the node cannot be used to amplify a flood towards another phone. Queries are
rate-limited per phone by the firewall (by MAC), and in all here. Nothing is logged per
query.

EDNS (RFC 6891) is answered in its minimal form, as RFC 8906 section 3.2 expects of a
server: a query with an OPT record gets one back (version 0, a 512-byte payload, its DO
bit copied as RFC 3225 asks, no options); a higher EDNS version gets BADVERS, two OPT
records or one not at the root FORMERR. Stub resolvers send EDNS queries (systemd-resolved
does); an answer without OPT broke RFC 6891's rule that a server either speaks EDNS or
refuses it with FORMERR, and a resolver that meets it may stop using EDNS with the
address (systemd-resolved lowers its "feature level"), which is also its resolver once
the rider accepts.
"""

import asyncio
import ipaddress
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.counters import Counters
from core.ratelimit import TokenBucket

log = logging.getLogger(__name__)

MAX_QUERY = 512
TTL_S = 1
"""Short: once the phone accepts, its next lookups go to the real resolver."""
QTYPE_A = 1
QTYPE_OPT = 41
QCLASS_IN = 1
OPCODE_QUERY = 0
RCODE_OK, RCODE_FORMERR, RCODE_NXDOMAIN, RCODE_NOTIMP, RCODE_REFUSED = 0, 1, 3, 4, 5
RCODE_BADVERS = 16
"""An extended RCODE: its low 4 bits in the header, the rest in the OPT record."""
EDNS_VERSION = 0
EDNS_DO = 0x8000
NO_SUCH_NAME = frozenset(
    {
        b"use-application-dns.net",  # Firefox: NXDOMAIN keeps it on the network's DNS
        b"mask.icloud.com",  # iCloud Private Relay: NXDOMAIN turns it off on this network
        b"mask-h2.icloud.com",
    }
)


class Malformed(ValueError):
    """Not a DNS query this server answers; dropped without a reply."""


class BadOpt(ValueError):
    """An OPT record RFC 6891 section 6.1.1 refuses (two of them, or one not at the root)."""


@dataclass(frozen=True)
class Edns:
    """What the answer keeps of the query's OPT record."""

    version: int
    do: bool

    def record(self, rcode: int) -> bytes:
        """The answer's OPT record: at the root, version 0, `rcode`'s upper 8 bits."""
        ttl = ((rcode >> 4) << 24) | (EDNS_VERSION << 16) | (EDNS_DO if self.do else 0)
        return b"\0" + struct.pack("!HHIH", QTYPE_OPT, MAX_QUERY, ttl, 0)


def _skip_name(packet: bytes, pos: int) -> int:
    """The end of a record's owner name; a compression pointer ends it and is never
    followed (so it cannot loop)."""
    while True:
        if pos >= len(packet):
            raise Malformed("a record runs past the end")
        n = packet[pos]
        if n & 0xC0 == 0xC0:
            return pos + 2
        if n & 0xC0:
            raise Malformed("an extended label in a record")
        pos += 1 + n
        if n == 0:
            return pos


def _edns(packet: bytes, pos: int, count: int) -> Edns | None:
    """The OPT record of the additional section's `count` records from `pos`, if any."""
    found = None
    for _ in range(count):
        start = pos
        pos = _skip_name(packet, pos)
        if pos + 10 > len(packet):
            raise Malformed("a record runs past the end")
        rtype, _, ttl, size = struct.unpack_from("!HHIH", packet, pos)
        pos += 10 + size
        if pos > len(packet):
            raise Malformed("a record's data runs past the end")
        if rtype == QTYPE_OPT:
            if found is not None:
                raise BadOpt("two OPT records")
            if packet[start] != 0:
                raise BadOpt("an OPT record not at the root")
            found = Edns(version=(ttl >> 16) & 0xFF, do=bool(ttl & EDNS_DO))
    return found


def _question(packet: bytes) -> tuple[int, bytes, int, int]:
    """(end offset, lower-case name, qtype, qclass) of the one question after the header."""
    pos, labels, size = 12, [], 0
    while True:
        if pos >= len(packet):
            raise Malformed("the name runs past the end")
        n = packet[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            raise Malformed("a compressed or extended label in a question")
        label = packet[pos : pos + n]
        if len(label) != n:
            raise Malformed("a label runs past the end")
        size += n + 1
        if size > 255:
            raise Malformed("the name is over 255 bytes")
        labels.append(label.lower())
        pos += n
    if pos + 4 > len(packet):
        raise Malformed("no type and class after the name")
    qtype, qclass = struct.unpack_from("!HH", packet, pos)
    return pos + 4, b".".join(labels), qtype, qclass


def answer(packet: bytes, address: ipaddress.IPv4Address) -> bytes:
    """The reply to one query; raises Malformed for what gets no reply at all."""
    if len(packet) < 12:
        raise Malformed("shorter than a DNS header")
    if len(packet) > MAX_QUERY:
        raise Malformed("over 512 bytes")
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", packet)
    if flags & 0x8000:
        raise Malformed("a response, not a query")  # never answer an answer (no loops)
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100

    edns: Edns | None = None

    def reply(rcode: int, question: bytes = b"", answers: bytes = b"", count: int = 0) -> bytes:
        head = struct.pack(
            "!HHHHHH",
            ident,
            0x8000 | (opcode << 11) | 0x0400 | rd | (rcode & 0xF),  # QR, AA, RD copied, no RA
            1 if question else 0,
            count,
            0,
            0 if edns is None else 1,
        )
        return head + question + answers + (b"" if edns is None else edns.record(rcode))

    if opcode != OPCODE_QUERY:
        return reply(RCODE_NOTIMP)
    if qd > 1 or an or ns:
        return reply(RCODE_FORMERR)
    end, name, qtype, qclass = _question(packet) if qd else (12, b"", 0, 0)
    try:
        edns = _edns(packet, end, ar)
    except BadOpt:
        return reply(RCODE_FORMERR)
    if not qd:
        return reply(RCODE_FORMERR)
    question = packet[12:end]
    if edns is not None and edns.version > EDNS_VERSION:
        return reply(RCODE_BADVERS, question)  # RFC 6891 section 6.1.3
    if qclass != QCLASS_IN:
        return reply(RCODE_REFUSED, question)
    if name in NO_SUCH_NAME:
        return reply(RCODE_NXDOMAIN, question)
    if qtype != QTYPE_A:
        return reply(RCODE_OK, question)  # no data of that type: the hotspot is IPv4 only
    record = struct.pack("!HHHIH", 0xC00C, QTYPE_A, QCLASS_IN, TTL_S, 4) + address.packed
    return reply(RCODE_OK, question, record, 1)


class CaptiveDns(asyncio.DatagramProtocol):
    """The UDP server; one per hotspot address.

    Its budget is for all phones together: it bounds the server's work. Each phone's share
    is the firewall's, counted by MAC (`render/nft.py`, DNS_PER_S). The server sees only
    source addresses, and any phone on the hotspot can write another phone's address as
    its source: a share per address here let one phone spend another's (within seconds,
    at the rate the firewall lets it send) and so keep it off the portal."""

    def __init__(
        self,
        address: ipaddress.IPv4Address,
        counters: Counters,
        *,
        per_s: float = 500.0,
        burst: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.counters = counters
        self.clock = clock
        self.budget = TokenBucket(burst, per_s * 60.0, clock())
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.budget.wait_s(self.clock()) > 0:
            self.counters.inc("wifi.dns.limited")
            return
        self.budget.take()
        try:
            reply = answer(data, self.address)
        except Malformed:
            self.counters.inc("wifi.dns.malformed")
            return
        if self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        self.counters.inc("wifi.dns.error")


async def serve_dns(
    address: ipaddress.IPv4Address, port: int, counters: Counters
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: CaptiveDns(address, counters), local_addr=(str(address), port)
    )
    return transport

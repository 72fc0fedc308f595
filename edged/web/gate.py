"""Each connection passes a gate before a byte of it is read: over a limit it is closed at
once, with no answer (an answer would cost what the limit saves)."""

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import Protocol, cast


def peer_of(transport: asyncio.BaseTransport) -> str:
    """The peer's address as one text per host (an IPv4-mapped IPv6 address as IPv4)."""
    return peer_text(transport.get_extra_info("peername"))


def peer_text(name: object, ipv6_prefix: int = 128) -> str:
    """`name` (a socket's peer address) as one text per host, or per IPv6 network of
    `ipv6_prefix` bits: on the internet one subscriber has a whole /64, a new address of it
    for each connection if it likes, so a cap per address would hold it to nothing."""
    host = name[0] if isinstance(name, tuple) and name else "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


class Admission(Protocol):
    """Who may open a connection (edged/kiosk/limits.py `ConnectionLimits`)."""

    connections: Counter[str]
    """Open connections per peer: the gate counts them in and out."""

    def refuse_connection(self, peer: str) -> str | None:
        """Why `peer` may not open one more now, or None."""

    def refuse_request(self, peer: str) -> float:
        """Take one request from `peer`'s budget: 0.0, or the seconds until it has one."""

    def refused(self, what: str, peer: str, why: str) -> None:
        """Count (and log, sparingly) a refusal."""


def count_out(admission: Admission, peer: str) -> None:
    """One connection of `peer` fewer (none left: the peer no longer kept)."""
    admission.connections[peer] -= 1
    if admission.connections[peer] <= 0:
        del admission.connections[peer]


class Gate(asyncio.Protocol):
    """Stands in front of one connection's protocol: admits it (and hands every transport
    event through) or aborts it at once."""

    def __init__(
        self,
        admission: Admission,
        make: Callable[[], asyncio.Protocol],
        peer: Callable[[asyncio.BaseTransport], str] = peer_of,
        *,
        admitted: str | None = None,
    ) -> None:
        """`admitted`: the peer, when it was let in and counted already, as it was accepted
        (`edged/web/accept.py`): counted out here all the same."""
        self.admission = admission
        self.make = make
        self.peer_of = peer
        self.inner: asyncio.Protocol | None = None
        self.peer = admitted or ""
        self.admitted = admitted is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.admitted:
            self.inner = self.make()
            self.inner.connection_made(transport)
            return
        self.peer = self.peer_of(transport)
        why = self.admission.refuse_connection(self.peer)
        if why is not None:
            self.admission.refused("connection", self.peer, why)
            cast(asyncio.Transport, transport).abort()
            return
        self.admission.connections[self.peer] += 1
        self.inner = self.make()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return
        count_out(self.admission, self.peer)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

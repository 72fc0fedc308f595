"""Forget a phone's DNS flows still sent to the captive DNS, once it has accepted.

The firewall sends a stranger's udp/53 to the captive DNS with a NAT redirect, and the
kernel's connection tracking keeps a redirect for the flow's whole life: the same source
port keeps reaching the captive DNS after the phone accepted, for as long as it asks at
least every 30 s (120 s once the flow is "assured"). A resolver that reuses its sockets
(dnsmasq as a laptop's local cache keeps a pool) then gets the node's address for every
name, online but unable to reach anything. Deleting those flows (ctnetlink, what
`conntrack -D` does; the daemon has CAP_NET_ADMIN for `nft` already) makes the next query
a new flow, which the firewall no longer redirects.

Only UDP flows from the phone's address whose reply comes from the captive DNS's port are
deleted; a phone's connections to the portal are the portal's to close.
"""

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

from core.errors import EdgedError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE = 1, 2, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC = 1
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT = 1, 2
UDP = 17
TIMEOUT_S = 2.0


class ConntrackError(EdgedError):
    """The kernel's connection table could not be read or changed."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what} ({os.strerror(code)})")
        self.code = code


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, pos)
        if size < 4 or pos + size > len(data):
            return
        yield kind & NLA_TYPE_MASK, data[pos + 4 : pos + size]
        pos += (size + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, flags: int, seq: int, body: bytes = b"") -> bytes:
    payload = struct.pack("=BBH", socket.AF_INET, 0, 0) + body  # nfgenmsg, version 0
    head = struct.pack(
        "=IHHII", 16 + len(payload), (NFNL_SUBSYS_CTNETLINK << 8) | kind, flags, seq, 0
    )
    return head + payload


def _endpoint(tuple_: bytes) -> tuple[bytes | None, int | None, int | None]:
    """(IPv4 source, protocol, source port) of a conntrack tuple."""
    src = proto = port = None
    for kind, value in _attrs(tuple_):
        if kind == CTA_TUPLE_IP:
            src = dict(_attrs(value)).get(CTA_IP_V4_SRC)
        elif kind == CTA_TUPLE_PROTO:
            fields = dict(_attrs(value))
            if CTA_PROTO_NUM in fields:
                proto = fields[CTA_PROTO_NUM][0]
            if CTA_PROTO_SRC_PORT in fields:
                port = struct.unpack("!H", fields[CTA_PROTO_SRC_PORT][:2])[0]
    return src, proto, port


def _replies(sock: socket.socket, seq: int) -> Iterator[tuple[int, bytes]]:
    """(message type, payload after nfgenmsg) until the answer to `seq` is done."""
    while True:
        data = sock.recv(1 << 16)
        pos = 0
        while pos + 16 <= len(data):
            size, kind, _, got_seq, _ = struct.unpack_from("=IHHII", data, pos)
            if size < 16:
                raise ConntrackError(errno.EPROTO, "a malformed netlink answer")
            body = data[pos + 16 : pos + size]
            pos += (size + 3) & ~3
            if got_seq != seq:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", body)[0]
                if code:
                    raise ConntrackError(code, "the kernel refused a conntrack request")
                return  # the acknowledgement
            yield kind, body[4:]


def forget_redirected(ip: ipaddress.IPv4Address, port: int) -> int:
    """Delete the UDP flows from `ip` redirected to `port` (the captive DNS's); how many.

    Raises ConntrackError when the table cannot be read (no CAP_NET_ADMIN, no connection
    tracking in this kernel)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        raise ConntrackError(exc.errno or errno.EPERM, "no netfilter netlink socket") from None
    with sock:
        sock.settimeout(TIMEOUT_S)
        sock.bind((0, 0))
        doomed = []
        try:
            sock.sendall(_message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1))
            for _, body in _replies(sock, 1):
                found = dict(_attrs(body))
                orig, reply = found.get(CTA_TUPLE_ORIG), found.get(CTA_TUPLE_REPLY)
                if orig is None or reply is None:
                    continue
                src, proto, _ = _endpoint(orig)
                _, _, reply_port = _endpoint(reply)
                if src == ip.packed and proto == UDP and reply_port == port:
                    zone = found.get(CTA_ZONE)
                    doomed.append(
                        _attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig)
                        + (_attr(CTA_ZONE, zone) if zone is not None else b"")
                    )
            gone = 0
            for seq, body in enumerate(doomed, start=2):
                sock.sendall(_message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, body))
                try:
                    for _ in _replies(sock, seq):
                        pass
                    gone += 1
                except ConntrackError as exc:
                    if exc.code != errno.ENOENT:  # ended meanwhile: as good
                        raise
        except TimeoutError:
            raise ConntrackError(errno.ETIMEDOUT, "the kernel did not answer") from None
        except OSError as exc:
            raise ConntrackError(exc.errno or errno.EIO, "the connection table") from None
    return gone

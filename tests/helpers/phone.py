"""What a phone does on a network, done plainly with sockets (run it in the phone's
namespace: tests.helpers.netns.NsThread): ask a DNS server, fetch a URL the way an OS's
captive-portal check does (no redirect followed), try a port."""

import http.client
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any


def dns_query(name: str, qtype: int = 1, *, ident: int | None = None) -> bytes:
    ident = random.getrandbits(16) if ident is None else ident
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


@dataclass
class DnsAnswer:
    rcode: int
    addresses: list[str]
    size: int
    flags: int


def parse_answer(data: bytes) -> DnsAnswer:
    _, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    pos = 12
    for _ in range(qd):
        while data[pos] != 0:
            pos += 1 + data[pos]
        pos += 5
    out = []
    for _ in range(an):
        if data[pos] & 0xC0:
            pos += 2
        else:
            while data[pos] != 0:
                pos += 1 + data[pos]
            pos += 1
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return DnsAnswer(flags & 0xF, out, len(data), flags)


def resolve(server: str, name: str, qtype: int = 1, timeout: float = 2.0) -> DnsAnswer | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(dns_query(name, qtype), (server, 53))
        try:
            return parse_answer(s.recv(4096))
        except TimeoutError:
            return None


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(
    ip: str,
    path: str,
    *,
    host: str | None = None,
    port: int = 80,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Fetched:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host or ip, **(headers or {})})
        r = conn.getresponse()
        return Fetched(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def tcp(ip: str, port: int, timeout: float = 1.0, family: int = socket.AF_INET) -> str:
    """'open', 'refused' (a reset came back) or 'timeout' (nothing answered)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port) if family == socket.AF_INET else (ip, port, 0, 0))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error: {exc.strerror}"


def download(ip: str, port: int, path: str, timeout: float = 30.0) -> dict[str, Any]:
    """One download, with when each part arrived: `steady_mbit` is the rate over the last
    half of the bytes, after the firewall's bucket (its burst allowance) is spent."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    marks: list[tuple[float, int]] = []
    try:
        conn.request("GET", path, headers={"Host": ip})
        r = conn.getresponse()
        got = 0
        while chunk := r.read(16384):
            got += len(chunk)
            marks.append((time.monotonic() - t0, got))
        absolute = [(t0 + t, n) for t, n in marks]
        status = r.status
    finally:
        conn.close()
    half = next(m for m in marks if m[1] >= got / 2)
    end = marks[-1]
    steady = (end[1] - half[1]) * 8 / max(1e-6, end[0] - half[0]) / 1e6
    return {
        "status": status,
        "bytes": got,
        "seconds": end[0],
        "steady_mbit": steady,
        "marks": absolute,  # (time.monotonic(), bytes so far)
        "started": t0,
    }


def bytes_at(marks: list[tuple[float, int]], t: float) -> int:
    """Bytes a download had received by instant `t` (from its marks)."""
    got = 0
    for when, n in marks:
        if when > t:
            break
        got = n
    return got

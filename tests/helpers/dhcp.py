"""A phone's DHCP client, just enough to join the hotspot and read what it is told.

`python -m tests.helpers.dhcp IFACE` (run inside the phone's namespace) does DISCOVER,
OFFER, REQUEST, ACK on the interface, prints the lease as JSON (address, prefix, router,
DNS, lease time, and option 114, the captive-portal API of RFC 8910), and configures the
address and default route as a phone would.
"""

import ipaddress
import json
import random
import socket
import struct
import subprocess
import sys
import time
from typing import Any

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
WANTED = bytes([1, 3, 6, 51, 54, 114])


def _mac(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def _packet(kind: int, xid: int, mac: bytes, extra: bytes = b"") -> bytes:
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 0, xid, 0, 0x8000,  # BOOTREQUEST, ethernet, broadcast flag
        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"), b"", b"",
    )  # fmt: skip
    opts = bytes([53, 1, kind]) + bytes([55, len(WANTED)]) + WANTED + extra + b"\xff"
    return head + MAGIC + opts


def _options(packet: bytes) -> dict[int, bytes]:
    pos = 240
    out: dict[int, bytes] = {}
    while pos < len(packet):
        code = packet[pos]
        if code == 255:
            break
        if code == 0:
            pos += 1
            continue
        n = packet[pos + 1]
        out[code] = packet[pos + 2 : pos + 2 + n]
        pos += 2 + n
    return out


def _wait(sock: socket.socket, xid: int, kind: int, deadline: float) -> bytes:
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(2048)
        except TimeoutError:
            break
        ours = len(data) > 240 and struct.unpack_from("!I", data, 4)[0] == xid
        if ours and _options(data).get(53) == bytes([kind]):
            return data
    raise TimeoutError(f"no DHCP answer of type {kind}")


def lease(iface: str, timeout: float = 10.0) -> dict[str, Any]:
    mac = _mac(iface)
    xid = random.getrandbits(32)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.bind(("0.0.0.0", 68))
    deadline = time.monotonic() + timeout
    try:
        offer = b""
        while not offer:
            sock.sendto(_packet(DISCOVER, xid, mac), ("255.255.255.255", 67))
            try:
                offer = _wait(sock, xid, OFFER, min(deadline, time.monotonic() + 1.0))
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        yiaddr = offer[16:20]
        server = _options(offer)[54]
        extra = bytes([50, 4]) + yiaddr + bytes([54, 4]) + server
        sock.sendto(_packet(REQUEST, xid, mac, extra), ("255.255.255.255", 67))
        ack = _wait(sock, xid, ACK, deadline)
    finally:
        sock.close()
    opts = _options(ack)
    mask = ipaddress.IPv4Address(opts[1])
    prefix = bin(int(mask)).count("1")
    out = {
        "address": str(ipaddress.IPv4Address(ack[16:20])),
        "prefix": prefix,
        "router": str(ipaddress.IPv4Address(opts[3][:4])) if 3 in opts else None,
        "dns": [
            str(ipaddress.IPv4Address(opts[6][i : i + 4]))
            for i in range(0, len(opts.get(6, b"")), 4)
        ],
        "lease_s": struct.unpack("!I", opts[51])[0] if 51 in opts else None,
        "captive_api": opts[114].decode() if 114 in opts else None,
    }
    return out


def main() -> int:
    iface = sys.argv[1]
    got = lease(iface)
    subprocess.run(
        ["ip", "addr", "add", f"{got['address']}/{got['prefix']}", "dev", iface], check=True
    )
    if got["router"]:
        subprocess.run(["ip", "route", "add", "default", "via", got["router"]], check=True)
    print(json.dumps(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())

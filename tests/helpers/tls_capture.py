"""A TLS connection made in memory between two OpenSSL ends (no socket, no broker), with
the client's key log: the bytes each way as they would cross a socket, for the tests of
what names them (`bench.wire`, `bench.budget`)."""

import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

CONNECT_V5 = bytes.fromhex(
    # CONNECT, MQTT 5, clean start off, will (qos 1, retain), keepalive 30,
    # properties: session expiry 86400, maximum packet size 8 MiB; client id "n1";
    # will properties: will delay 300; will topic "t/state", payload "off"
    "10 2d 0004 4d515454 05 2e 001e 0a 11 00015180 27 00800000 0002 6e31"
    " 05 18 0000012c 0007 742f7374617465 0003 6f6666"
)
CONNACK = bytes.fromhex("20 03 01 00 00")


@dataclass
class Capture:
    up: bytes
    down: bytes
    keylog: Path


def capture(fleet: Path, keylog: Path, *, tls12_ciphers: str | None = None) -> Capture:
    """A TLS connection between two in-memory OpenSSL ends, a CONNECT up and a CONNACK
    down: the bytes each way as they would cross a socket."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(fleet / "broker.crt"), str(fleet / "broker.key"))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(str(fleet / "ca.crt"))
    client.keylog_filename = str(keylog)
    if tls12_ciphers is not None:
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_ciphers(tls12_ciphers)
    bios = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
    c = client.wrap_bio(bios[0], bios[1], server_hostname="localhost")
    s = server.wrap_bio(bios[2], bios[3], server_side=True)
    up, down = bytearray(), bytearray()

    def pump() -> None:
        data = bios[1].read()
        up.extend(data)
        bios[2].write(data)
        data = bios[3].read()
        down.extend(data)
        bios[0].write(data)

    for _ in range(10):
        for end in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        pump()
    c.write(CONNECT_V5)
    pump()
    assert s.read(1024) == CONNECT_V5
    s.write(CONNACK)
    pump()
    assert c.read(1024) == CONNACK
    return Capture(bytes(up), bytes(down), keylog)

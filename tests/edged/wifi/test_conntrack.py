"""Forgetting a phone's captive DNS flows, in the kernel's own connection table: the
generated ruleset on a node's namespace, a phone beside it, real redirected flows."""

import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from core.counters import Counters
from edged.wifi.conntrack import forget_redirected
from edged.wifi.layout import ALLOWED_SET, TABLE
from edged.wifi.sessions import NftFirewall, Sessions
from tests.edged.wifi.test_firewall import (  # noqa: F401
    NODE_IP,
    PHONE_IP,
    Cable,
    ask,
    cable,
    dns_socket,
    udp_tagged,
)
from tests.helpers.netns import NsThread
from tests.helpers.nodes import ROOT
from tests.helpers.phone import dns_query


@pytest.fixture
def node(cable: Cable) -> Iterator[NsThread]:  # noqa: F811
    thread = NsThread(cable.node.name)
    yield thread
    thread.close()


def flow_to(port: int) -> socket.socket:
    """A phone's DNS socket that asked once through `port` (answered by the echo)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.bind((PHONE_IP, 0))
    sock.sendto(dns_query("x.example"), (NODE_IP, port))
    sock.recv(512)
    return sock


def connect(port: int) -> socket.socket:
    return socket.create_connection((NODE_IP, port), timeout=2, source_address=(PHONE_IP, 0))


def test_only_the_phones_flows_redirected_to_the_captive_dns_are_forgotten(
    cable: Cable,  # noqa: F811
    node: NsThread,
) -> None:
    redirected = cable.phone.call(flow_to, 53)  # udp/53, NAT'ed to the captive DNS
    portal = cable.phone.call(connect, cable.portal_port)  # the phone's other flow: its own
    assert isinstance(redirected, socket.socket) and isinstance(portal, socket.socket)
    try:
        other = ipaddress.IPv4Address("10.42.0.77")
        assert node.call(forget_redirected, other, cable.dns_port) == 0  # another phone's
        phone = ipaddress.IPv4Address(PHONE_IP)
        assert node.call(forget_redirected, phone, cable.dns_port) == 1
        assert node.call(forget_redirected, phone, cable.dns_port) == 0  # gone
    finally:
        redirected.close()
        portal.close()


def test_the_flows_are_forgotten_under_the_units_seccomp_filters(cable: Cable) -> None:  # noqa: F811
    """As edged.service runs the daemon (its system-call filter and socket families,
    tests/systemd/sandbox.py): the netlink socket is one of the families it keeps."""
    redirected = cable.phone.call(flow_to, 53)
    assert isinstance(redirected, socket.socket)
    code = (
        "import ipaddress, sys\n"
        "from edged.wifi.conntrack import forget_redirected\n"
        f"print(forget_redirected(ipaddress.IPv4Address({PHONE_IP!r}), {cable.dns_port}))\n"
    )
    try:
        ran = subprocess.run(
            [
                *cable.node.prefix,
                sys.executable,
                str(ROOT / "tests/systemd/sandbox.py"),
                str(ROOT / "systemd/edged.service"),
                "--",
                sys.executable,
                "-c",
                code,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        redirected.close()
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["1"]


async def test_a_session_put_back_after_a_firewall_reload_forgets_its_captive_flows(
    cable: Cable,  # noqa: F811
    node: NsThread,
) -> None:
    # A reload of the firewall (`edged wifi apply`) empties the set; until the daemon puts
    # the sessions back (every 15 s), the phones are strangers and a new DNS flow is
    # redirected to the captive DNS, which conntrack then keeps after the session is back:
    # the same socket kept getting the node's address for every name.
    resolver = node.call(udp_tagged, 53, b"resolver:")
    assert isinstance(resolver, socket.socket)
    mac = json.loads(cable.phone_ns.run("ip", "-j", "link", "show", "eth0").stdout)[0]["address"]
    phone = ipaddress.IPv4Address(PHONE_IP)

    async def forget(ip: ipaddress.IPv4Address) -> None:
        node.call(forget_redirected, ip, cable.dns_port)

    s = Sessions(
        NftFirewall(prefix=cable.node.prefix),
        session_s=300,
        max_sessions=4,
        counters=Counters(),
        forget=forget,
    )
    sock = cable.phone.call(dns_socket)
    assert isinstance(sock, socket.socket)
    try:
        await s.accept(mac, phone)
        cable.node.run("nft", "flush", "set", "inet", TABLE, ALLOWED_SET)  # the reload
        assert cable.phone.call(ask, sock) == b"\x12\x34query"  # the captive DNS's echo
        await s.resync()  # the session is put back
        got = cable.phone.call(ask, sock)
        assert isinstance(got, bytes) and got.startswith(b"resolver:")
    finally:
        sock.close()
        resolver.close()

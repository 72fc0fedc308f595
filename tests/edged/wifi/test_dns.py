"""The captive DNS: every name is the node, nothing is forwarded, nothing is amplified, and
whatever a phone sends, the server answers sensibly or not at all."""

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.counters import Counters
from edged.wifi.dns import CaptiveDns, Malformed, answer
from edged.wifi.render.nft import DNS_PER_S
from tests.helpers.phone import dns_query, parse_answer

NODE = ipaddress.IPv4Address("10.42.0.1")


def test_every_name_is_the_node() -> None:
    for name in ("connectivitycheck.gstatic.com", "captive.apple.com", "a.b.c.d.example"):
        got = parse_answer(answer(dns_query(name, ident=7), NODE))
        assert got.rcode == 0 and got.addresses == ["10.42.0.1"]


def test_an_answer_says_it_is_authoritative_and_keeps_the_query_id() -> None:
    reply = answer(dns_query("x.example", ident=0xBEEF), NODE)
    ident, flags = struct.unpack_from("!HH", reply)
    assert ident == 0xBEEF and flags & 0x8000 and flags & 0x0400  # QR, AA
    assert reply[-4:] == NODE.packed and struct.unpack_from("!I", reply, len(reply) - 10)[0] == 1


@pytest.mark.parametrize("qtype", [28, 65, 15, 16, 255])
def test_other_record_types_get_an_empty_answer(qtype: int) -> None:
    got = parse_answer(answer(dns_query("captive.apple.com", qtype), NODE))
    assert got.rcode == 0 and got.addresses == []


def test_an_empty_answer_is_authoritative_so_stub_resolvers_do_not_call_it_a_referral() -> None:
    # glibc's res_send.c: NOERROR, no answer, AA and RA clear, no additional record is a
    # referral, and the resolver moves to the next server (the phone's AAAA lookups)
    reply = answer(dns_query("captive.apple.com", 28), NODE)
    assert parse_answer(reply).flags & 0x0400


@pytest.mark.parametrize(
    "name", ["use-application-dns.net", "mask.icloud.com", "MASK-H2.iCloud.com"]
)
def test_the_names_that_would_route_around_the_portal_do_not_exist(name: str) -> None:
    assert parse_answer(answer(dns_query(name), NODE)).rcode == 3


def with_opt(query: bytes, *, version: int = 0, do: bool = False, count: int = 1) -> bytes:
    """The query with `count` OPT records (EDNS, RFC 6891) carrying a DNS cookie option, as
    Android's resolver and systemd-resolved send them."""
    ttl = (version << 16) | (0x8000 if do else 0)
    cookie = struct.pack("!HH", 10, 8) + b"\x11" * 8  # option 10: an 8-byte client cookie
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, ttl, len(cookie)) + cookie
    return query[:10] + struct.pack("!H", count) + query[12:] + opt * count


def opt_of(reply: bytes) -> tuple[int, int, int, int, int]:
    """(payload size, extended rcode, version, flags, options length) of a reply's OPT,
    which ends it (the only additional record)."""
    assert struct.unpack_from("!H", reply, 10)[0] == 1, "no OPT record in the reply"
    assert reply[-11] == 0, "the OPT record is not at the root"
    rtype, size, ttl, rdlen = struct.unpack_from("!HHIH", reply, len(reply) - 10)
    assert rtype == 41
    return size, ttl >> 24, (ttl >> 16) & 0xFF, ttl & 0xFFFF, rdlen


def test_the_answer_keeps_the_case_of_the_question_0x20() -> None:
    # resolvers that randomise the case of a name (draft-vixie-dnsext-dns0x20) drop an
    # answer whose question is not the one they sent, letter for letter
    query = dns_query("CaPtIvE.aPpLe.CoM")
    assert answer(query, NODE)[12 : len(query)] == query[12:]


def test_an_edns_query_gets_a_minimal_opt_record_back() -> None:
    # RFC 6891 section 7: a server either speaks EDNS (an OPT in the answer) or refuses the
    # query with FORMERR; the answer without OPT did neither. RFC 8906 section 3.2.1:
    # version 0, no options echoed; RFC 3225 section 3: the DO bit copied.
    for do in (False, True):
        reply = answer(with_opt(dns_query("captive.apple.com"), do=do), NODE)
        assert parse_answer(reply).addresses == ["10.42.0.1"]
        assert opt_of(reply) == (512, 0, 0, 0x8000 if do else 0, 0)


def test_an_unknown_edns_version_gets_badvers() -> None:
    # RFC 6891 section 6.1.3: BADVERS (16: 0 in the header, 1 in the OPT), with version 0
    reply = answer(with_opt(dns_query("captive.apple.com"), version=1), NODE)
    got = parse_answer(reply)
    assert got.rcode == 0 and got.addresses == []
    assert opt_of(reply)[1:3] == (1, 0)


def test_two_opt_records_get_formerr() -> None:
    # RFC 6891 section 6.1.1
    reply = answer(with_opt(dns_query("captive.apple.com"), count=2), NODE)
    assert parse_answer(reply).rcode == 1 and parse_answer(reply).addresses == []


def test_an_additional_section_running_past_the_end_gets_no_reply() -> None:
    with pytest.raises(Malformed, match="past the end"):
        answer(with_opt(dns_query("captive.apple.com"))[:-3], NODE)


def test_a_response_is_never_answered() -> None:
    query = bytearray(dns_query("x.example"))
    query[2] |= 0x80
    with pytest.raises(Malformed, match="response"):
        answer(bytes(query), NODE)


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x00\x01", "shorter than a DNS header"),
        (dns_query("x.example")[:-3], "no type and class"),
        (dns_query("x.example")[:14], "past the end"),
        (dns_query("x.example") + b"\0" * 600, "over 512 bytes"),
        (dns_query("x.example")[:12] + b"\xc0\x0c\x00\x01\x00\x01", "compressed"),
        (dns_query("x.example")[:12] + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1", "255 bytes"),
    ],
    ids=lambda v: v if isinstance(v, str) else "packet",  # the packets hold random query ids
)
def test_what_is_not_a_query_gets_no_reply(packet: bytes, why: str) -> None:
    with pytest.raises(Malformed, match=why):
        answer(packet, NODE)


def test_two_questions_or_an_update_get_an_error_not_an_address() -> None:
    two = bytearray(dns_query("x.example"))
    two[5] = 2
    assert parse_answer(answer(bytes(two), NODE)).rcode == 1  # FORMERR
    update = bytearray(dns_query("x.example"))
    update[2] = (5 << 3) | (update[2] & 0x87)  # opcode UPDATE
    assert struct.unpack_from("!H", answer(bytes(update), NODE), 2)[0] & 0xF == 4  # NOTIMP


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_get_a_small_reply_or_none(packet: bytes) -> None:
    try:
        reply = answer(packet, NODE)
    except Malformed:
        return
    assert len(reply) <= len(packet) + 16  # no amplification towards a spoofed source


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[A-Za-z0-9-]{1,63}", fullmatch=True), min_size=1, max_size=4))
def test_any_well_formed_name_is_the_node(labels: list[str]) -> None:
    got = parse_answer(answer(dns_query(".".join(labels)), NODE))
    assert got.addresses == ["10.42.0.1"] or ".".join(labels).lower() in {
        "use-application-dns.net",
        "mask.icloud.com",
        "mask-h2.icloud.com",
    }


async def test_the_server_answers_on_its_socket_and_counts_the_junk() -> None:
    counters = Counters()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: CaptiveDns(NODE, counters), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, b"junk")
            await loop.sock_sendall(s, dns_query("captive.apple.com"))
            reply = await asyncio.wait_for(loop.sock_recv(s, 512), 2)
        assert parse_answer(reply).addresses == ["10.42.0.1"]
        assert counters["wifi.dns.malformed"] == 1
    finally:
        transport.close()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    ends = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < ends, "the server did not get through"
        await asyncio.sleep(0.01)


def drain(sock: socket.socket) -> int:
    got = 0
    while True:
        try:
            sock.recv(512)
        except BlockingIOError:
            return got
        got += 1


async def test_a_phone_writing_another_phones_address_as_its_source_cannot_silence_it() -> None:
    # The attack: on the hotspot any phone can send UDP with another phone's address as its
    # source (rp_filter passes it: the address is on the hotspot's side). The firewall
    # counts DNS by MAC, the sender's; the server counted by address, the victim's. At the
    # rate the firewall lets one phone send (its burst, then DNS_PER_S a second), the
    # victim's share here was spent within seconds: its lookups went unanswered, and its
    # connectivity check never reached the portal.
    now = [0.0]
    counters = Counters()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: CaptiveDns(NODE, counters, clock=lambda: now[0]), local_addr=("127.0.0.1", 0)
    )
    server = ("127.0.0.1", transport.get_extra_info("sockname")[1])
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as victim,
        ):
            for s in (spoofer, victim):
                s.bind(("127.0.0.2", 0))  # the same address: what the server sees
                s.setblocking(False)
            sent = answered = 0

            def handled() -> bool:
                nonlocal answered
                answered += drain(spoofer)
                return answered + counters["wifi.dns.limited"] >= sent

            for second in range(30):
                now[0] = float(second)
                for _ in range(2 * DNS_PER_S if second == 0 else DNS_PER_S):
                    spoofer.sendto(dns_query("x.example"), server)
                    sent += 1
                await until(handled)
            victim.sendto(dns_query("captive.apple.com"), server)
            reply = await asyncio.wait_for(loop.sock_recv(victim, 512), 2)
        assert parse_answer(reply).addresses == ["10.42.0.1"]
    finally:
        transport.close()


async def test_a_flood_past_the_servers_budget_gets_no_answers() -> None:
    # the server's own bound on its work, whoever sends; each phone's share is the
    # firewall's, by MAC (test_firewall.py)
    counters = Counters()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: CaptiveDns(NODE, counters, burst=20, per_s=1.0), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            flood.bind(("127.0.0.2", 0))
            flood.setblocking(False)
            for _ in range(500):
                flood.sendto(dns_query("x.example"), ("127.0.0.1", port))
            await asyncio.sleep(0.3)
            answered = drain(flood)
        assert answered <= 21  # the burst, not the flood (the kernel may drop some too)
        assert counters["wifi.dns.limited"] >= 100
    finally:
        transport.close()

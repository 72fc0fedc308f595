"""paho's socket read in chunks: the same bytes in the same order, whatever the read sizes."""

import contextlib
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.uplink.packets import PacketTooLarge, PubackFilter, varint
from edged.uplink.readahead import ReadAhead


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_small_reads_come_from_one_chunk_and_pending_counts_the_rest(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, peer = pair
    pubacks = b"\x40\x02\x00\x01" * 3
    peer.sendall(pubacks)
    sock = ReadAhead(mine)
    assert sock.recv(1) == b"\x40"
    assert sock.pending() == len(pubacks) - 1  # the kernel has nothing left: all held here
    rest = b"".join(sock.recv(n) for n in (1, 2, 4, 4))
    assert b"\x40" + rest == pubacks
    assert sock.pending() == 0


def test_an_empty_socket_still_says_would_block(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(BlockingIOError):
        ReadAhead(pair[0]).recv(1)


def test_the_peer_closing_reads_as_end_of_stream_after_the_held_bytes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, peer = pair
    peer.sendall(b"abc")
    peer.close()
    sock = ReadAhead(mine)
    assert sock.recv(1) == b"a"
    assert sock.recv(5) == b"bc"
    assert sock.recv(1) == b""


def test_other_socket_methods_pass_through(pair: tuple[socket.socket, socket.socket]) -> None:
    sock = ReadAhead(pair[0])
    assert sock.fileno() == pair[0].fileno()


@given(
    data=st.binary(min_size=1, max_size=200_000),
    sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=50),
)
def test_any_read_sizes_give_back_the_stream_byte_for_byte(data: bytes, sizes: list[int]) -> None:
    mine, peer = socket.socketpair()
    try:
        mine.setblocking(False)
        peer.setblocking(False)
        sent, got = 0, bytearray()
        sock = ReadAhead(mine)
        i = 0
        while len(got) < len(data):
            if sent < len(data):
                with contextlib.suppress(BlockingIOError):
                    sent += peer.send(data[sent : sent + 65536])
            try:
                chunk = sock.recv(sizes[i % len(sizes)])
            except BlockingIOError:
                continue
            assert 0 < len(chunk) <= sizes[i % len(sizes)]
            got += chunk
            i += 1
        assert bytes(got) == data
    finally:
        mine.close()
        peer.close()


def puback(mid: int) -> bytes:
    return b"\x40" + varint(2) + mid.to_bytes(2, "big")


def test_a_read_of_only_claimed_pubacks_says_would_block(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, peer = pair
    peer.sendall(puback(1) + puback(2))
    sock = ReadAhead(mine, PubackFilter(lambda mid, reason: True))
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    assert sock.pending() == 0
    assert sock.heard_at is not None  # the broker was heard all the same


def test_the_end_of_the_stream_reaches_paho_after_claimed_pubacks(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    mine, peer = pair
    peer.sendall(puback(1) + puback(2)[:2])
    peer.close()
    sock = ReadAhead(mine, PubackFilter(lambda mid, reason: True))
    assert sock.recv(1) == b""


def test_a_packet_over_the_limit_ends_the_connection_at_its_header(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A broker that ignores the node's Maximum Packet Size (or any large message over
    3.1.1, which cannot announce one): paho held all of it in memory, 200 MB took a node
    to 619 MB. Told at the header, before any of it is kept."""
    mine, peer = pair
    peer.sendall(puback(1) + b"\x30" + varint(9 * 1024 * 1024) + b"\x00\x03a/b")
    sock = ReadAhead(mine, PubackFilter(lambda mid, reason: False, limit=8 * 1024 * 1024))
    assert sock.recv(4) == puback(1)  # what came before it is read
    peer.sendall(b"x" * 65536)  # the rest of it, coming
    with pytest.raises(PacketTooLarge, match=f"{9 * 1024 * 1024 + 5} bytes"):
        sock.recv(1)
    assert isinstance(PacketTooLarge(1, 0), OSError)  # paho takes it for the connection's end

"""RTS/CTS sessions between two other nodes, reassembled by a listener watching both sides."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.can.transport import MAX_CONNECTIONS, T2_S, ConnectionReassembler

DM1 = 65226
PAYLOAD = bytes(range(1, 18))  # 17 bytes -> 3 packets (7 + 7 + 3)
ECU, R = 0x00, 0x21  # originator (an engine ECU), responder (a tool or a gateway)


def rts(size: int = 17, packets: int = 3, pgn: int = DM1, per_cts: int = 0xFF) -> bytes:
    return bytes(
        [16, size & 0xFF, size >> 8, packets, per_cts, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16]
    )


def cts(count: int, first: int, pgn: int = DM1) -> bytes:
    return bytes([17, count, first, 0xFF, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16])


def ack(size: int = 17, packets: int = 3, pgn: int = DM1) -> bytes:
    return bytes(
        [19, size & 0xFF, size >> 8, packets, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16]
    )


def abort(pgn: int = DM1) -> bytes:
    return bytes([255, 3, 0xFF, 0xFF, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16])


def dt(seq: int, payload: bytes = PAYLOAD) -> bytes:
    chunk = payload[(seq - 1) * 7 : seq * 7]
    return bytes([seq]) + chunk + b"\xff" * (7 - len(chunk))


@pytest.fixture
def counts() -> dict[str, int]:
    return {}


@pytest.fixture
def tp(counts: dict[str, int]) -> ConnectionReassembler:
    return ConnectionReassembler(counts, wanted=lambda pgn: pgn != 65242)


def test_a_session_granted_at_once_is_reassembled_by_watching_both_sides(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    assert tp.on_dt(ECU, R, dt(1), 0.02) is None
    assert tp.on_dt(ECU, R, dt(2), 0.03) is None
    assert tp.on_dt(ECU, R, dt(3), 0.04) == (DM1, PAYLOAD)
    tp.on_cm(R, ECU, ack(), 0.05)  # the acknowledgement of a message already complete
    assert counts == {"rts_complete": 1} and not tp.sessions


def test_a_session_granted_one_packet_at_a_time_with_a_hold_is_reassembled(
    tp: ConnectionReassembler,
) -> None:
    tp.on_cm(ECU, R, rts(per_cts=1), 0.0)
    tp.on_cm(R, ECU, cts(1, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.on_cm(R, ECU, cts(0, 0xFF), 0.03)  # hold: the responder is busy
    tp.on_cm(R, ECU, cts(1, 2), 0.5)
    tp.on_dt(ECU, R, dt(2), 0.51)
    tp.on_cm(R, ECU, cts(1, 3), 0.52)
    assert tp.on_dt(ECU, R, dt(3), 0.53) == (DM1, PAYLOAD)


def test_a_retransmission_the_responder_asks_for_replaces_the_packets_from_there(
    tp: ConnectionReassembler,
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(2, 1), 0.01)
    tp.on_dt(ECU, R, dt(1, bytes(17)), 0.02)  # packet 1 the responder found bad
    tp.on_dt(ECU, R, dt(2), 0.03)
    tp.on_cm(R, ECU, cts(3, 1), 0.04)  # send everything again from packet 1
    tp.on_dt(ECU, R, dt(1), 0.05)
    tp.on_dt(ECU, R, dt(2), 0.06)
    assert tp.on_dt(ECU, R, dt(3), 0.07) == (DM1, PAYLOAD)


def test_a_grant_of_a_whole_window_past_the_last_packet_takes_what_remains(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    # J1939-21 bounds a CTS's count by the RTS's packet count and packets-per-CTS, not by
    # the packets left: a responder with a window of 2 grants (2, from 3) for the last of 3
    # packets, and an originator sends packet 3 and is done (the Linux J1939 stack clamps
    # the grant to the total, net/can/j1939/transport.c j1939_xtp_rx_cts_one)
    tp.on_cm(ECU, R, rts(per_cts=2), 0.0)
    tp.on_cm(R, ECU, cts(2, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.on_dt(ECU, R, dt(2), 0.03)
    tp.on_cm(R, ECU, cts(2, 3), 0.04)
    assert tp.on_dt(ECU, R, dt(3), 0.05) == (DM1, PAYLOAD)
    tp.on_cm(R, ECU, ack(), 0.06)
    assert counts == {"rts_complete": 1} and not tp.sessions


def test_a_packet_beyond_what_the_responder_granted_is_ignored_until_it_grants_it(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(1, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    assert tp.on_dt(ECU, R, dt(2), 0.03) is None  # not granted: the responder did not take it
    assert counts == {"rts_ignored": 1} and tp.sessions
    tp.on_cm(R, ECU, cts(2, 2), 0.04)
    tp.on_dt(ECU, R, dt(2), 0.05)
    assert tp.on_dt(ECU, R, dt(3), 0.06) == (DM1, PAYLOAD)


@pytest.mark.parametrize("order", [[2, 1, 3], [1, 3]], ids=["swapped", "missing"])
def test_a_packet_out_of_order_is_ignored_and_the_acknowledgement_tells_the_loss(
    tp: ConnectionReassembler, counts: dict[str, int], order: list[int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    done = [tp.on_dt(ECU, R, dt(seq), 0.02 + i * 0.01) for i, seq in enumerate(order)]
    assert done.count(None) == len(done) and counts["rts_ignored"] >= 1
    assert tp.sessions  # the responder's word decides, not a packet the listener saw
    tp.on_cm(R, ECU, ack(), 0.1)  # the responder placed them all; we cannot
    assert counts["rts_sequence"] == 1 and not tp.sessions


@pytest.mark.parametrize(
    ("order", "asked"),
    [
        ([1, 3, 2], [(1, 3), 3]),  # swapped on the bus: the responder asks for packet 3 again
        ([1, 3, 2], [(2, 2), 2, 3]),  # ... or for everything from packet 2
        ([1, 3], [(2, 2), 2, 3]),  # packet 2 lost: asked again
        ([2, 1], [(2, 2), 2, 3]),  # the first two swapped, then the rest asked for
    ],
    ids=["swapped-last", "swapped-from-2", "lost", "swapped-first"],
)
def test_a_retransmission_of_packets_out_of_order_on_the_bus_completes_the_message(
    tp: ConnectionReassembler, counts: dict[str, int], order: list[int], asked: list
) -> None:
    # J1939-21: the responder asks for the packets it misses with a CTS naming the next
    # one. It sees the same bus as the listener: a packet out of order there is the very
    # reason it asks; the listener that gave the session up at that packet lost the message
    # the two nodes then completed
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    now = 0.02
    for seq in order:
        assert tp.on_dt(ECU, R, dt(seq), now) is None
        now += 0.01
    (count, first), *resent = asked
    tp.on_cm(R, ECU, cts(count, first), now)
    done = [tp.on_dt(ECU, R, dt(seq), now + 0.01 * (i + 1)) for i, seq in enumerate(resent)]
    assert done[-1] == (DM1, PAYLOAD)
    tp.on_cm(R, ECU, ack(), now + 0.1)
    assert counts["rts_complete"] == 1 and "rts_sequence" not in counts and not tp.sessions


def test_a_packet_sent_again_with_other_bytes_unasked_drops_the_session(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    # which of the two copies of packet 1 the responder kept is not on the bus: no message
    # is better than one it may not have received
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.on_dt(ECU, R, dt(1, bytes(17)), 0.03)
    tp.on_dt(ECU, R, dt(2), 0.04)
    assert tp.on_dt(ECU, R, dt(3), 0.05) is None
    assert counts == {"rts_sequence": 1, "rts_orphan": 2} and not tp.sessions


def test_a_packet_received_twice_is_ignored_and_the_message_completes(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    # a CAN frame reaches a receiver twice when an error hits the last bit of its end of
    # frame (the sender sends it again; the receivers had taken it already)
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.on_dt(ECU, R, dt(1), 0.021)
    tp.on_dt(ECU, R, dt(2), 0.03)
    assert tp.on_dt(ECU, R, dt(3), 0.04) == (DM1, PAYLOAD)
    assert counts == {"rts_ignored": 1, "rts_complete": 1}


def test_an_abort_from_either_side_drops_the_session(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, abort(), 0.01)  # the responder refuses
    tp.on_cm(ECU, 0x3D, rts(), 0.02)
    tp.on_cm(ECU, 0x3D, abort(), 0.03)  # the originator gives up
    assert tp.on_dt(ECU, R, dt(1), 0.04) is None
    assert counts == {"rts_aborted": 2, "rts_orphan": 1}


def test_an_abort_for_another_pgn_leaves_the_session_between_the_same_two_nodes(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    # the engine sends DM1 to the tool; the tool's own RTS for another PGN is refused by the
    # engine, busy (J1939-21 abort reason 1), with an abort naming that PGN: only that
    # transfer ends (the Linux J1939 stack ignores an abort of another PGN,
    # j1939_xtp_rx_abort_one -> j1939_xtp_rx_cmd_bad_pgn)
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.on_cm(R, ECU, rts(pgn=0xD700), 0.03)  # the tool's own transfer to the engine
    tp.on_cm(ECU, R, abort(pgn=0xD700), 0.04)  # the engine: busy
    tp.on_dt(ECU, R, dt(2), 0.05)
    assert tp.on_dt(ECU, R, dt(3), 0.06) == (DM1, PAYLOAD)
    assert counts == {"rts_aborted": 1, "rts_complete": 1} and not tp.sessions


def test_an_acknowledgement_while_packets_are_missing_drops_the_session(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.on_cm(R, ECU, ack(), 0.05)  # the responder got all three; we did not
    assert counts == {"rts_sequence": 1} and not tp.sessions


def test_a_grant_for_another_pgn_drops_the_session(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1, pgn=65260), 0.01)
    assert counts == {"rts_sequence": 1}


def test_silence_beyond_t2_times_the_session_out(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    tp.on_dt(ECU, R, dt(1), 0.02)
    tp.expire(0.02 + T2_S / 2)
    assert tp.sessions
    assert tp.on_dt(ECU, R, dt(2), 0.03 + T2_S) is None
    assert counts == {"rts_timeout": 1}


def test_a_new_rts_over_an_open_session_aborts_it(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(ECU, R, rts(), 0.01)
    assert counts == {"rts_aborted": 1} and len(tp.sessions) == 1


@pytest.mark.parametrize(
    ("size", "packets", "pgn"),
    [(17, 200, DM1), (17, 2, DM1), (1786, 255, DM1), (8, 2, DM1), (0, 0, DM1), (17, 3, 0x40000)],
)
def test_an_impossible_rts_is_refused_as_bam_ones_are(
    tp: ConnectionReassembler, counts: dict[str, int], size: int, packets: int, pgn: int
) -> None:
    tp.on_cm(ECU, R, rts(size, packets, pgn), 0.0)
    assert not tp.sessions and counts == {"rts_refused": 1}


def test_grants_and_packets_without_an_rts_are_orphans(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(R, ECU, cts(3, 1), 0.0)
    assert tp.on_dt(ECU, R, dt(1), 0.01) is None
    assert counts == {"rts_orphan": 2}


def test_truncated_frames_are_malformed_not_errors(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, b"\x10\x11", 0.0)
    tp.on_cm(ECU, R, rts(), 0.01)
    tp.on_cm(R, ECU, cts(3, 1), 0.02)
    assert tp.on_dt(ECU, R, b"\x01\x02", 0.03) is None
    assert counts == {"rts_malformed": 2}


def test_interleaved_sessions_of_several_pairs_reassemble_separately(
    tp: ConnectionReassembler,
) -> None:
    other = bytes(range(100, 117))
    tp.on_cm(ECU, R, rts(), 0.0)
    tp.on_cm(0x3D, R, rts(), 0.0)
    tp.on_cm(R, ECU, cts(3, 1), 0.01)
    tp.on_cm(R, 0x3D, cts(3, 1), 0.01)
    done = []
    for seq in (1, 2, 3):
        done.append(tp.on_dt(0x3D, R, dt(seq, other), 0.02 * seq))
        done.append(tp.on_dt(ECU, R, dt(seq), 0.02 * seq + 0.001))
    assert [d for d in done if d] == [(DM1, other), (DM1, PAYLOAD)]


def test_a_message_nobody_decodes_is_followed_but_not_returned(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    tp.on_cm(ECU, R, rts(pgn=65242), 0.0)
    tp.on_cm(R, ECU, cts(3, 1, pgn=65242), 0.01)
    assert [tp.on_dt(ECU, R, dt(s), 0.02) for s in (1, 2, 3)] == [None, None, None]
    assert counts == {"rts_complete": 1}


def test_a_flood_of_rts_from_a_hostile_node_holds_at_most_the_cap(
    tp: ConnectionReassembler, counts: dict[str, int]
) -> None:
    for i in range(10_000):
        tp.on_cm(i % 251, (i // 251) % 250, rts(1785, 255), 0.0)
    assert len(tp.sessions) == MAX_CONNECTIONS
    assert counts["rts_busy"] == 10_000 - MAX_CONNECTIONS - counts.get("rts_aborted", 0)
    tp.expire(T2_S + 1)
    assert not tp.sessions  # and they time out like any other


frame = st.tuples(
    st.sampled_from(["cm", "dt"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.binary(max_size=8),
    st.floats(0, 0.5),
)


@settings(deadline=None, max_examples=300)
@given(st.lists(frame, max_size=60))
def test_any_frames_never_raise_and_complete_messages_have_their_size(
    frames: list[tuple[str, int, int, bytes, float]],
) -> None:
    counts: dict[str, int] = {}
    tp = ConnectionReassembler(counts, max_sessions=4)
    now = 0.0
    for kind, src, dst, data, step in frames:
        now += step
        if kind == "cm":
            tp.on_cm(src, dst, data, now)
        else:
            done = tp.on_dt(src, dst, data, now)
            if done is not None:
                pgn, payload = done
                assert 9 <= len(payload) <= 1785 and 0 <= pgn <= 0x3FFFF
        assert len(tp.sessions) <= 4


# A listener's packet k must be the last TP.DT numbered k the originator put on the bus
# since its RTS: what a responder keeping the latest copy (the Linux stack) holds. A packet
# the listener leaves out (out of order, repeated, beyond the grant) may never stand in a
# message for a later copy. Every exchange up to 4 frames (grants, acknowledgement, packets
# of two contents), and up to 5 of packets (the first of one content) and grants of the
# rest, after an RTS of 3 packets.
PACKETS = [("dt", seq, fill) for seq in (1, 2, 3) for fill in (0, 1)]
EXCHANGE = [*PACKETS, *(("cts", n, first) for n in (1, 3) for first in (1, 2, 3)), ("ack", 0, 0)]


def test_a_message_is_made_of_the_last_copy_of_each_packet_on_the_bus() -> None:
    exchanges = itertools.chain(
        *(itertools.product(EXCHANGE, repeat=n) for n in range(1, 5)),
        itertools.product([*PACKETS[1:], *(("cts", 3, first) for first in (1, 2, 3))], repeat=5),
    )
    for frames in exchanges:
        tp = ConnectionReassembler({})
        tp.on_cm(ECU, R, rts(), 0.0)
        on_bus: dict[int, bytes] = {}
        for kind, a, b in frames:
            if kind == "cts":
                tp.on_cm(R, ECU, cts(a, b), 0.01)
            elif kind == "ack":
                tp.on_cm(R, ECU, ack(), 0.01)
            else:
                on_bus[a] = bytes([b]) * 7
                done = tp.on_dt(ECU, R, bytes([a]) + on_bus[a], 0.01)
                if done is not None:
                    assert done[1] == (on_bus[1] + on_bus[2] + on_bus[3])[:17], frames

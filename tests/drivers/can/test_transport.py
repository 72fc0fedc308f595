import itertools

import pytest

from drivers.can.transport import BamReassembler

DM1 = 65226
PAYLOAD = bytes(range(1, 11))  # 10 bytes -> 2 packets (7 + 3)


def cm(size: int, packets: int, pgn: int = DM1, control: int = 32) -> bytes:
    return bytes(
        [control, size & 0xFF, size >> 8, packets, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16]
    )


def dt(seq: int, chunk: bytes) -> bytes:
    return bytes([seq]) + chunk + b"\xff" * (7 - len(chunk))


@pytest.fixture
def counts() -> dict[str, int]:
    return {}


@pytest.fixture
def bam(counts: dict[str, int]) -> BamReassembler:
    return BamReassembler(counts, wanted=lambda pgn: pgn != 65242)


def test_bam_reassembles_and_strips_the_padding(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    assert bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05) is None
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.10) == (DM1, PAYLOAD)
    assert counts == {"bam_complete": 1}
    assert not bam.sessions


def test_out_of_order_packet_drops_the_message(bam: BamReassembler, counts: dict[str, int]) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.05) is None
    assert bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.10) is None
    assert counts == {"bam_sequence": 1, "bam_orphan": 1}


def test_missing_packet_drops_the_message(bam: BamReassembler, counts: dict[str, int]) -> None:
    payload = bytes(range(20))  # 3 packets
    bam.on_cm(0x00, cm(20, 3), 0.0)
    bam.on_dt(0x00, dt(1, payload[:7]), 0.05)
    assert bam.on_dt(0x00, dt(3, payload[14:]), 0.10) is None
    assert counts == {"bam_sequence": 1}


def test_a_packet_received_twice_byte_for_byte_is_ignored(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    # a CAN frame reaches a receiver twice when an error hits the last bit of its end of
    # frame: the sender sends it again, the receivers had taken it already
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    assert bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.0501) is None
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.10) == (DM1, PAYLOAD)
    assert counts == {"bam_ignored": 1, "bam_complete": 1}


def test_a_packet_received_twice_is_ignored_for_a_message_nobody_decodes_too(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2, pgn=65242), 0.0)  # not wanted: its bytes are not kept
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.0501)
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.10) is None
    assert counts == {"bam_ignored": 1, "bam_complete": 1}


def test_a_repeated_sequence_number_with_other_bytes_drops_the_message(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    assert bam.on_dt(0x00, dt(1, bytes(7)), 0.10) is None  # not a frame received twice
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.15) is None
    assert counts == {"bam_sequence": 1, "bam_orphan": 1}


def test_packet_later_than_t1_times_the_message_out(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.05 + 0.76) is None
    assert counts == {"bam_timeout": 1}


def test_packet_just_within_t1_completes(bam: BamReassembler) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.74)
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 1.48) == (DM1, PAYLOAD)


def test_expire_counts_a_sender_that_went_quiet(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    bam.expire(0.5)
    assert bam.sessions
    bam.expire(0.9)
    assert not bam.sessions and counts == {"bam_timeout": 1}


def test_interleaved_senders_reassemble_separately(bam: BamReassembler) -> None:
    other = bytes(range(100, 110))
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_cm(0x3D, cm(10, 2), 0.01)
    assert bam.on_dt(0x3D, dt(1, other[:7]), 0.02) is None
    assert bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.03) is None
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.04) == (DM1, PAYLOAD)
    assert bam.on_dt(0x3D, dt(2, other[7:]), 0.05) == (DM1, other)


@pytest.mark.parametrize(
    ("size", "packets"),
    [
        (10, 200),  # far more packets than 10 bytes need
        (10, 3),  # one packet too many
        (20, 2),  # one packet too few
        (1786, 255),  # beyond what 255 packets of 7 bytes carry
        (8, 2),  # fits a single frame: never sent over TP
        (0, 0),
    ],
)
def test_inconsistent_announcement_is_refused(
    bam: BamReassembler, counts: dict[str, int], size: int, packets: int
) -> None:
    bam.on_cm(0x00, cm(size, packets), 0.0)
    assert not bam.sessions
    assert counts == {"bam_refused": 1}
    assert bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05) is None
    assert counts["bam_orphan"] == 1


def test_largest_announcement_is_accepted(bam: BamReassembler) -> None:
    payload = bytes(i & 0xFF for i in range(1785))
    bam.on_cm(0x00, cm(1785, 255), 0.0)
    done = None
    for seq in range(1, 256):
        done = bam.on_dt(0x00, dt(seq, payload[(seq - 1) * 7 : seq * 7]), seq * 0.001)
    assert done == (DM1, payload)


def test_packet_after_the_last_is_an_orphan(bam: BamReassembler, counts: dict[str, int]) -> None:
    bam.on_cm(0x00, cm(10, 2), 0.0)
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.10)
    assert bam.on_dt(0x00, dt(3, b"\x00"), 0.15) is None
    assert counts == {"bam_complete": 1, "bam_orphan": 1}


def test_new_bam_from_the_same_source_aborts_the_old_one(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(20, 3, pgn=65260), 0.0)
    bam.on_dt(0x00, dt(1, bytes(7)), 0.05)
    bam.on_cm(0x00, cm(10, 2), 0.10)
    assert counts == {"bam_aborted": 1}
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.15)
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.20) == (DM1, PAYLOAD)


def test_rts_cts_connection_messages_open_no_session(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2, control=16), 0.0)  # RTS
    assert not bam.sessions and counts == {}


def test_truncated_frames_are_malformed_not_errors(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, b"\x20\x0a", 0.0)
    bam.on_cm(0x01, cm(10, 2), 0.0)
    assert bam.on_dt(0x01, b"\x01\x02", 0.05) is None
    assert counts == {"bam_malformed": 2}


def test_message_nobody_decodes_is_followed_but_not_returned(
    bam: BamReassembler, counts: dict[str, int]
) -> None:
    bam.on_cm(0x00, cm(10, 2, pgn=65242), 0.0)  # software identification: not wanted
    bam.on_dt(0x00, dt(1, PAYLOAD[:7]), 0.05)
    assert bam.on_dt(0x00, dt(2, PAYLOAD[7:]), 0.10) is None
    assert counts == {"bam_complete": 1}


def test_a_bam_is_made_of_the_one_copy_of_each_packet_on_the_bus() -> None:
    # a packet left out (received twice) never stands in the message for other bytes: every
    # run of up to 6 packets of 3 numbers and two contents after an announcement of 3
    packets = [(seq, fill) for seq in (1, 2, 3) for fill in (0, 1)]
    runs = itertools.chain(*(itertools.product(packets, repeat=n) for n in range(1, 7)))
    for run in runs:
        bam = BamReassembler({})
        bam.on_cm(0x00, cm(17, 3), 0.0)
        on_bus: dict[int, set[bytes]] = {}
        for seq, fill in run:
            on_bus.setdefault(seq, set()).add(bytes([fill]) * 7)
            done = bam.on_dt(0x00, bytes([seq, *[fill] * 7]), 0.01)
            if done is not None:
                assert all(len(copies) == 1 for copies in on_bus.values()), run
                assert done[1] == b"".join(on_bus[s].pop() for s in (1, 2, 3))[:17], run

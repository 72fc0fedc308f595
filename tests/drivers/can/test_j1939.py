from can.typechecking import CanFilter
from hypothesis import given
from hypothesis import strategies as st

from drivers.can.j1939 import GLOBAL, J1939Id, acceptance_filters, make_id, parse_id, pgn_of


def test_pdu2_identifier_keeps_the_group_extension_in_the_pgn() -> None:
    # 0x18FEF100: priority 6, PF 0xFE (>= 240), PS 0xF1, SA 0x00 -> CCVS1, to everyone
    assert parse_id(0x18FEF100) == J1939Id(priority=6, pgn=65265, source=0x00, destination=GLOBAL)


def test_pdu2_priority_3_engine_controller() -> None:
    assert parse_id(0x0CF00400) == J1939Id(priority=3, pgn=61444, source=0x00, destination=GLOBAL)


def test_pdu1_identifier_moves_the_ps_byte_to_the_destination() -> None:
    # 0x18EA0017: PF 0xEA (< 240) -> Request, PGN 59904 whatever PS is; PS 0x00 is the engine
    assert parse_id(0x18EA0017) == J1939Id(priority=6, pgn=59904, source=0x17, destination=0x00)


def test_pdu1_to_different_destinations_is_the_same_pgn() -> None:
    assert pgn_of(0x18EF2133) == pgn_of(0x18EF0033) == 61184  # proprietary A


def test_data_page_and_extended_data_page_are_part_of_the_pgn() -> None:
    assert pgn_of(0x19FEF100) == 0x1FEF1
    assert pgn_of(0x1AFEF100) == 0x2FEF1


def test_transport_announcement_to_global() -> None:
    assert parse_id(0x1CECFF00) == J1939Id(priority=7, pgn=60416, source=0x00, destination=GLOBAL)


@given(
    pgn=st.integers(0, 0x3FFFF),
    source=st.integers(0, 255),
    priority=st.integers(0, 7),
    destination=st.integers(0, 255),
)
def test_make_id_and_parse_id_round_trip(
    pgn: int, source: int, priority: int, destination: int
) -> None:
    parsed = parse_id(make_id(pgn, source, priority=priority, destination=destination))
    pdu1 = (pgn >> 8) & 0xFF < 240
    assert parsed.pgn == (pgn & 0x3FF00 if pdu1 else pgn)
    assert parsed.source == source and parsed.priority == priority
    assert parsed.destination == (destination if pdu1 else GLOBAL)
    assert pgn_of(make_id(pgn, source)) == parsed.pgn


def _passes(filters: list[CanFilter], can_id: int) -> bool:
    """python-can's rule: id & mask == can_id & mask for at least one filter."""
    return any((can_id ^ int(f["can_id"])) & int(f["can_mask"]) == 0 for f in filters)


def test_filters_pass_a_pgn_from_any_source_at_any_priority() -> None:
    filters = acceptance_filters({65265})
    assert _passes(filters, 0x18FEF100)
    assert _passes(filters, 0x0CFEF117)
    assert not _passes(filters, 0x18FEF200)
    assert not _passes(filters, 0x18FEF000)


def test_filters_pass_transport_protocol_to_every_destination() -> None:
    filters = acceptance_filters({60416, 60160})
    assert _passes(filters, 0x1CECFF00)  # TP.CM BAM
    assert _passes(filters, 0x1CEBFF3D)  # TP.DT to everyone
    assert _passes(filters, 0x1CEC2100)  # RTS/CTS between 0x00 and 0x21: read by watching
    assert _passes(filters, 0x1CEB2100)
    assert _passes(filters, 0x1CEC0021)  # the responder's CTS
    assert not _passes(filters, 0x1CED2100)


def test_filters_pass_a_pdu1_pgn_to_any_destination() -> None:
    filters = acceptance_filters({59904})
    assert _passes(filters, 0x18EA0017)
    assert _passes(filters, 0x18EAFF17)
    assert not _passes(filters, 0x18EB0017)


def test_filters_are_extended_frame_filters() -> None:
    assert all(f["extended"] is True for f in acceptance_filters({65265, 60416}))

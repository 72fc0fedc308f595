import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.events import TroubleCode
from drivers.can.dm1 import encode_dm1, parse_dm1

OFF = {"malfunction": 0, "red_stop": 0, "amber_warning": 0, "protect": 0}


def test_no_active_code_is_spn_0_fmi_0() -> None:
    faults = parse_dm1(0x00, bytes([0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF]), 1.0)
    assert faults is not None
    assert faults.codes == () and faults.lamps == OFF and faults.source == 0x00 and faults.ts == 1.0


def test_all_zero_dm1_means_no_active_code() -> None:
    faults = parse_dm1(0x00, bytes(8), 0.0)
    assert faults is not None and faults.codes == ()


def test_one_code_in_a_single_frame() -> None:
    # lamps 0x04: amber warning (bits 4-3) on; SPN 110 = 0x6E, FMI 16, occurrence 3; padding
    faults = parse_dm1(0x00, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x03, 0xFF, 0xFF]), 0.0)
    assert faults is not None
    assert faults.lamps == {**OFF, "amber_warning": 1}
    assert faults.codes == (TroubleCode(spn=110, fmi=16, occurrence=3),)


def test_spn_high_bits_come_from_the_top_of_byte_5() -> None:
    # SPN 0x5A3C1 = 369601: C1 A3, byte 5 = 0b101_00100 (SPN bits 18-16 = 101, FMI 4);
    # byte 6 0x85: conversion method 1, occurrence 5
    faults = parse_dm1(0x3D, bytes([0x00, 0xFF, 0xC1, 0xA3, 0xA4, 0x85, 0xFF, 0xFF]), 0.0)
    assert faults is not None
    assert faults.codes == (TroubleCode(spn=369601, fmi=4, occurrence=5, cm=1),)


def test_several_codes_from_a_transport_message() -> None:
    # lamps 0x51 = 01 01 00 01: malfunction on, red stop on, amber off, protect on
    data = bytes(
        [
            *(0x51, 0xFF),
            *(0x64, 0x00, 0x01, 0x01),  # SPN 100 FMI 1 x1
            *(0xBE, 0x00, 0x02, 0x02),  # SPN 190 FMI 2 x2
            *(0x7E, 0x14, 0x00, 0x01),  # SPN 5246 FMI 0 x1
        ]
    )
    faults = parse_dm1(0x00, data, 0.0)
    assert faults is not None
    assert faults.lamps == {"malfunction": 1, "red_stop": 1, "amber_warning": 0, "protect": 1}
    assert faults.codes == (
        TroubleCode(spn=100, fmi=1, occurrence=1),
        TroubleCode(spn=190, fmi=2, occurrence=2),
        TroubleCode(spn=5246, fmi=0, occurrence=1),
    )


def test_ff_padding_after_the_last_code_is_ignored() -> None:
    data = bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01] + [0xFF] * 4 + [0xFF, 0xFF])
    faults = parse_dm1(0x00, data, 0.0)
    assert faults is not None and [c.spn for c in faults.codes] == [110]


def test_zero_padding_of_a_single_frame_is_ignored() -> None:
    faults = parse_dm1(0x00, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0x00, 0x00]), 0.0)
    assert faults is not None and [c.spn for c in faults.codes] == [110]


@pytest.mark.parametrize(
    "data",
    [
        bytes([0x04, 0xFF, 0x6E, 0x00, 0x10]),  # single frame of DLC 5: a truncated code
        b"\x04\xff",  # lamps only
        b"\x04",
        b"",
        bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0x12]),  # DLC 7: a stray byte
        bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01] + [0xFF] * 4 + [0x12, 0x34]),  # TP 12 bytes
        bytes([0x04, 0xFF, *([0x6E, 0x00, 0x10, 0x01] * 3), 0x00]),  # TP 15 = 2 + 12 + 1
    ],
    ids=["dlc5", "lamps-only", "one-byte", "empty", "dlc7-stray", "tp-stray-pair", "tp-15"],
)
def test_a_dm1_that_is_not_lamps_plus_whole_codes_is_refused(data: bytes) -> None:
    assert parse_dm1(0x00, data, 0.0) is None


def test_lamps_not_available() -> None:
    faults = parse_dm1(0x00, bytes([0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF]), 0.0)
    assert faults is not None and set(faults.lamps.values()) == {3}


codes = st.builds(
    TroubleCode,
    spn=st.integers(1, (1 << 19) - 2),
    fmi=st.integers(0, 31),
    occurrence=st.integers(0, 126),
    cm=st.integers(0, 1),
)


@given(
    lamps=st.fixed_dictionaries({k: st.integers(0, 3) for k in OFF}),
    codes=st.lists(codes, max_size=20),
)
def test_encode_then_parse_gives_back_lamps_and_codes(
    lamps: dict[str, int], codes: list[TroubleCode]
) -> None:
    faults = parse_dm1(0x00, encode_dm1(lamps, codes), 0.0)
    assert faults is not None
    assert faults.lamps == lamps and faults.codes == tuple(codes)


def test_old_conversion_method_is_kept_per_code_and_the_occurrence_without_it() -> None:
    # byte 6 = 0x83: CM 1 (an older SPN layout), occurrence 3
    faults = parse_dm1(0x00, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x83, 0xFF, 0xFF]), 0.0)
    assert faults is not None
    assert faults.codes == (TroubleCode(spn=110, fmi=16, occurrence=3, cm=1),)


@given(st.binary(max_size=40))
def test_any_payload_is_refused_or_gives_codes_in_range(data: bytes) -> None:
    faults = parse_dm1(0x00, data, 0.0)
    if faults is None:
        return
    assert len(data) >= 6
    assert len(faults.codes) <= (len(data) - 2) // 4
    for c in faults.codes:
        assert 0 <= c.spn < 1 << 19 and 0 <= c.fmi < 32 and 0 <= c.occurrence < 128
        assert c.cm in (0, 1)

import struct
from pathlib import Path

import pytest

from core.errors import ConfigError
from drivers.can.decoder import SHIPPED_DBC, Decoders, valid_limit
from drivers.can.table import _table


@pytest.fixture(scope="module")
def dbc() -> Decoders:
    return Decoders(SHIPPED_DBC)


def decode(dbc: Decoders, pgn: int, data: bytes) -> dict[str, float | int | None]:
    return dbc.by_pgn[pgn].decode(data)


def test_shipped_dbc_has_the_fms_groups_under_their_conventional_names(dbc: Decoders) -> None:
    names = {pgn: d.name for pgn, d in dbc.by_pgn.items()}
    assert names == {
        65265: "CCVS1", 65217: "VDHR", 65257: "LFC", 65276: "DD", 61444: "EEC1",
        65253: "HOURS", 65102: "DC1", 64933: "DC2",
    }  # fmt: skip
    assert dbc.dm1  # DM1 (65226) is in the DBC too, but has its own decoder


def test_ccvs1_speed_and_switches(dbc: Decoders) -> None:
    # byte 1 0xF4: parking brake (bits 3-4) = 01; bytes 2-3 0x2580 = 9600 / 256 = 37.5 km/h;
    # byte 4 0x10: cruise active (1-2) 00, brake switch (5-6) 01, clutch (7-8) 00; byte 6: 80 km/h
    data = bytes([0xF4, 0x80, 0x25, 0x10, 0xFF, 0x50, 0xFF, 0xFF])
    assert decode(dbc, 65265, data) == {
        "ParkingBrakeSwitch": 1,
        "WheelBasedVehicleSpeed": 37.5,
        "CruiseControlActive": 0,
        "BrakeSwitch": 1,
        "ClutchSwitch": 0,
        "CruiseControlSetSpeed": 80,
    }


def test_vdhr_distance_is_5_m_per_bit(dbc: Decoders) -> None:
    # bytes 1-4 0x00BC614E = 12,345,678 x 5 m; bytes 5-8 0x2710 = 10,000 x 5 m
    data = bytes([0x4E, 0x61, 0xBC, 0x00, 0x10, 0x27, 0x00, 0x00])
    assert decode(dbc, 65217, data) == {
        "TotalVehicleDistanceHighRes": 61_728_390,
        "TripDistanceHighRes": 50_000,
    }


def test_lfc_fuel_is_half_a_litre_per_bit(dbc: Decoders) -> None:
    # bytes 1-4: 100 x 0.5 L trip; bytes 5-8 0x0001E240 = 123,456 x 0.5 L total
    data = bytes([0x64, 0x00, 0x00, 0x00, 0x40, 0xE2, 0x01, 0x00])
    assert decode(dbc, 65257, data) == {"EngineTripFuel": 50.0, "EngineTotalFuelUsed": 61_728.0}


def test_dd_fuel_level_is_0_4_percent_per_bit(dbc: Decoders) -> None:
    # byte 1 250 x 0.4 = 100 % washer fluid; byte 2 156 x 0.4 = 62.4 %; byte 7 0xFF: no tank 2
    data = bytes([0xFA, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    assert decode(dbc, 65276, data) == {
        "WasherFluidLevel": 100.0,
        "FuelLevel1": 62.4,
        "FuelLevel2": None,
    }


def test_eec1_engine_speed_is_an_eighth_rpm_per_bit(dbc: Decoders) -> None:
    # byte 1 0xF1: torque mode 1; byte 2 150 - 125 = 25 %; byte 3 125 - 125 = 0 %;
    # bytes 4-5 0x1C20 = 7200 x 0.125 = 900 rpm; byte 8 0xFF: not available
    data = bytes([0xF1, 0x96, 0x7D, 0x20, 0x1C, 0x00, 0xFF, 0xFF])
    assert decode(dbc, 61444, data) == {
        "EngineTorqueMode": 1,
        "DriversDemandEnginePercentTorque": 25,
        "ActualEnginePercentTorque": 0,
        "EngineSpeed": 900.0,
        "EngineDemandPercentTorque": None,
    }


def test_hours_is_0_05_h_per_bit(dbc: Decoders) -> None:
    # bytes 1-4 10,000 x 0.05 h = 500 h; bytes 5-8 1000 x 1000 revolutions
    data = bytes([0x10, 0x27, 0x00, 0x00, 0xE8, 0x03, 0x00, 0x00])
    assert decode(dbc, 65253, data) == {
        "EngineTotalHoursOfOperation": 500.0,
        "EngineTotalRevolutions": 1_000_000,
    }


def test_dc1_position_of_doors_ramp_and_status(dbc: Decoders) -> None:
    # 0x42 = 01 00 0010: status 2 of doors 1 (enabled), ramp 0 (inside), position 2 (all closed)
    data = bytes([0x42, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    assert decode(dbc, 65102, data) == {
        "PositionOfDoors": 2,
        "RampWheelchairLiftPosition": 0,
        "Status2OfDoors": 1,
    }


def test_dc2_per_door_lock_open_and_enable(dbc: Decoders) -> None:
    # byte 1 0x54 = 01 01 01 00: door 2 locked, door 1 enabled, door 1 open, door 1 unlocked
    # byte 2 0xF4 = 11 11 01 00: door 3 open n/a, door 3 lock n/a, door 2 enabled, door 2 closed
    data = bytes([0x54, 0xF4, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    signals = decode(dbc, 64933, data)
    assert signals["Door1LockStatus"] == 0
    assert signals["Door1OpenStatus"] == 1
    assert signals["Door1EnableStatus"] == 1
    assert signals["Door2LockStatus"] == 1
    assert signals["Door2OpenStatus"] == 0
    assert signals["Door2EnableStatus"] == 1
    assert all(
        signals[f"Door{d}{p}Status"] is None
        for d in range(3, 11)
        for p in ("Lock", "Open", "Enable")
    )
    assert len(signals) == 30


def test_door_10_is_in_bytes_7_and_8(dbc: Decoders) -> None:
    # door 10: lock at bits 55-56 (byte 7 bits 7-8), open byte 8 bits 1-2, enable bits 3-4
    data = bytes([0xFF] * 6 + [0x3F, 0xF5])
    signals = decode(dbc, 64933, data)
    assert (
        signals["Door10LockStatus"],
        signals["Door10OpenStatus"],
        signals["Door10EnableStatus"],
    ) == (0, 1, 1)


@pytest.mark.parametrize(
    ("speed_bytes", "expected"),
    [
        (b"\xff\xff", None),  # 0xFFFF not available
        (b"\x00\xfe", None),  # 0xFE00 error indicator
        (b"\x34\xfe", None),  # 0xFE34 error indicator range
        (b"\x00\xfb", None),  # 0xFB00 parameter-specific indicator
        (b"\xff\xfa", 64255 / 256),  # 0xFAFF: the highest valid value, 250.996 km/h
        (b"\xfe\x00", 254 / 256),  # 0x00FE: a low byte of 0xFE is just a number
    ],
)
def test_two_byte_not_available_and_error_are_none(
    dbc: Decoders, speed_bytes: bytes, expected: float | None
) -> None:
    data = bytes([0xF4]) + speed_bytes + bytes([0x10, 0xFF, 0x50, 0xFF, 0xFF])
    assert decode(dbc, 65265, data)["WheelBasedVehicleSpeed"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [(0xFF, None), (0xFE, None), (0xFB, None), (0xFA, 100.0), (0, 0.0)]
)
def test_one_byte_not_available_and_error_are_none(
    dbc: Decoders, raw: int, expected: float | None
) -> None:
    assert (
        decode(dbc, 65276, bytes([0xFF, raw, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))["FuelLevel1"]
        == expected
    )


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (0xFFFFFFFF, None),
        (0xFE000000, None),
        (0xFE123456, None),
        (0xFB000000, None),
        (0xFAFFFFFF, 0xFAFFFFFF * 5),
    ],
)
def test_four_byte_not_available_and_error_are_none(
    dbc: Decoders, total: int, expected: int | None
) -> None:
    data = total.to_bytes(4, "little") + bytes(4)
    assert decode(dbc, 65217, data)["TotalVehicleDistanceHighRes"] == expected


@pytest.mark.parametrize(("bits", "expected"), [(0b00, 0), (0b01, 1), (0b10, None), (0b11, None)])
def test_two_bit_error_and_not_available_are_none(
    dbc: Decoders, bits: int, expected: int | None
) -> None:
    data = bytes([0xF3 | bits << 2, 0, 0, 0, 0, 0, 0, 0])
    assert decode(dbc, 65265, data)["ParkingBrakeSwitch"] == expected


@pytest.mark.parametrize(("value", "expected"), [(13, 13), (14, None), (15, None)])
def test_four_bit_error_and_not_available_are_none(
    dbc: Decoders, value: int, expected: int | None
) -> None:
    assert decode(dbc, 65102, bytes([0x40 | value] + [0xFF] * 7))["PositionOfDoors"] == expected


@pytest.mark.parametrize(("mode", "expected"), [(13, 13), (14, 14), (15, None)])
def test_engine_torque_mode_other_is_a_mode_and_only_not_available_is_none(
    dbc: Decoders, mode: int, expected: int | None
) -> None:
    # SPN 899: 1110b "other" (modes 0001b-1110b name what controls the engine), 1111b not
    # available; the DBC's value table overrules the 4-bit rule of PositionOfDoors above
    data = bytes([0xF0 | mode, 0x7D, 0x7D, 0x20, 0x1C, 0x00, 0xFF, 0xFF])
    assert decode(dbc, 61444, data)["EngineTorqueMode"] == expected


STARTER_DBC = """VERSION ""

NS_ :

BS_:

BU_:

BO_ 2364540158 EEC1: 8 Vector__XXX
 SG_ EngineStarterMode : 48|4@1+ (1,0) [0|15] "" Vector__XXX
 SG_ Fault : 52|2@1+ (1,0) [0|3] "" Vector__XXX
 SG_ Gear : 56|4@1+ (1,0) [0|15] "" Vector__XXX

VAL_ 2364540158 EngineStarterMode 0 "start not requested" 12 "starter inhibited - reason unknown" 13 "error (legacy implementation only, use 1110)" 14 "error" 15 "not available" ;
VAL_ 2364540158 Fault 0 "No error" 1 "Error active" 2 "Error" 3 "Not available" ;
VAL_ 2364540158 Gear 13 "reverse" 14 "SNA" 15 "park" ;
"""


@pytest.mark.parametrize(
    ("byte7", "starter", "fault"),
    [(0x00, 0, 0), (0x1C, 12, 1), (0xFD, None, None), (0x2E, None, None), (0x0F, None, 0)],
)
def test_a_state_the_value_table_names_an_error_is_none_whatever_its_code(
    tmp_path: Path, byte7: int, starter: int | None, fault: int | None
) -> None:
    # SPN 1675 Engine Starter Mode: 1101b is a legacy error code, below the 4-bit rule's
    # 1110b; a state named "No error" or "Error active" is a reading
    path = tmp_path / "starter.dbc"
    path.write_text(STARTER_DBC)
    signals = Decoders(path).by_pgn[61444].decode(bytes([0xFF] * 6 + [byte7, 0xFF]))
    assert (signals["EngineStarterMode"], signals["Fault"]) == (starter, fault)


@pytest.mark.parametrize(("gear", "expected"), [(13, 13), (14, None), (15, None)])
def test_a_doubtful_name_or_all_ones_is_never_made_a_reading_by_the_value_table(
    tmp_path: Path, gear: int, expected: int | None
) -> None:
    # a user's DBC: "SNA" (signal not available, Vector's spelling) is doubtful, and all
    # ones is J1939's "not available" whatever the table names it
    path = tmp_path / "starter.dbc"
    path.write_text(STARTER_DBC)
    signals = Decoders(path).by_pgn[61444].decode(bytes([0xFF] * 7 + [0xF0 | gear]))
    assert signals["Gear"] == expected


@pytest.mark.parametrize(
    "name", ["Not used", "Spare", "Not valid", "Parameter specific", "reserved for SAE"]
)
def test_a_code_past_the_size_rule_named_as_no_state_stays_no_reading(
    tmp_path: Path, name: str
) -> None:
    # J1939DA's value tables name the codes past the rule so too ("1110 Not used"): only a
    # name that says a state (SPN 899's "other") makes one a reading
    path = tmp_path / "mode.dbc"
    path.write_text(STARTER_DBC.replace('14 "SNA"', f'14 "{name}"'))
    signals = Decoders(path).by_pgn[61444].decode(bytes([0xFF] * 7 + [0xF0 | 14]))
    assert signals["Gear"] is None


FLAG_DBC = """VERSION ""

NS_ :

BS_:

BU_:

BO_ 2364540158 EEC1: 8 Vector__XXX
 SG_ DerateActive : 48|1@1+ (1,0) [0|1] "" Vector__XXX
 SG_ SensorFault : 49|1@1+ (1,0) [0|1] "" Vector__XXX

VAL_ 2364540158 DerateActive 0 "Not available" 1 "Available" ;
VAL_ 2364540158 SensorFault 0 "OK" 1 "Error" ;
"""


@pytest.mark.parametrize(("bits", "derate", "fault"), [(0b00, 0, 0), (0b11, 1, 1)])
def test_a_single_bit_is_a_reading_whatever_its_value_table_names_it(
    tmp_path: Path, bits: int, derate: int, fault: int
) -> None:
    # a bit has no J1939 error or not-available code (`valid_limit`): an OEM's flag whose
    # set state is named "Error" is that error reported, not a value missing
    path = tmp_path / "flags.dbc"
    path.write_text(FLAG_DBC)
    signals = Decoders(path).by_pgn[61444].decode(bytes([0xFF] * 6 + [0xFC | bits, 0xFF]))
    assert (signals["DerateActive"], signals["SensorFault"]) == (derate, fault)


@pytest.mark.parametrize(
    ("length", "limit"),
    [(1, 1), (2, 1), (3, 5), (4, 13), (8, 0xFA), (12, 0xFAF), (16, 0xFAFF), (32, 0xFAFFFFFF)],
)
def test_valid_limit_by_parameter_size(length: int, limit: int) -> None:
    assert valid_limit(length) == limit


def test_short_frame_decodes_what_it_holds_and_the_rest_is_none(dbc: Decoders) -> None:
    signals = decode(dbc, 65265, bytes([0xF4, 0x80, 0x25]))
    assert signals["ParkingBrakeSwitch"] == 1
    assert signals["WheelBasedVehicleSpeed"] == 37.5
    assert signals["BrakeSwitch"] is None and signals["CruiseControlSetSpeed"] is None


def test_empty_frame_is_all_none(dbc: Decoders) -> None:
    assert set(decode(dbc, 65276, b"").values()) == {None}


def test_pgns_allow_list_keeps_only_those(dbc: Decoders) -> None:
    only = Decoders(SHIPPED_DBC, pgns=[65265, 65276])
    assert set(only.by_pgn) == {65265, 65276}
    assert not only.dm1
    assert only.pgns() == {65265, 65276}


def test_pgns_allow_list_with_dm1_only() -> None:
    only = Decoders(SHIPPED_DBC, pgns=[65226])
    assert only.by_pgn == {} and only.dm1


def test_pgns_allow_list_naming_an_unknown_pgn_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[1234\] not in fms.dbc.*65265 \(CCVS1\)"):
        Decoders(SHIPPED_DBC, pgns=[65265, 1234])


def test_unreadable_dbc_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dbc"
    bad.write_text("BO_ this is not a DBC\n SG_ nope\n")
    with pytest.raises(ConfigError, match="cannot read this DBC"):
        Decoders(bad)


def test_missing_dbc_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        Decoders(tmp_path / "nope.dbc")


def test_two_messages_with_one_pgn_is_a_config_error(tmp_path: Path) -> None:
    text = SHIPPED_DBC.read_text()
    # a second CCVS1 from another source address (0x18FEF100 | 0x80000000)
    extra = 'BO_ 2566844672 CCVS1_ENGINE: 8 Vector__XXX\n SG_ Speed : 8|16@1+ (0.00390625,0) [0|250] "km/h" Vector__XXX\n\n'
    path = tmp_path / "dup.dbc"
    path.write_text(text.replace("BO_ 2364540158 EEC1", extra + "BO_ 2364540158 EEC1", 1))
    with pytest.raises(ConfigError, match="CCVS1_ENGINE and CCVS1 have the same PGN 65265"):
        Decoders(path)


def test_standard_frame_message_is_ignored_with_a_note(tmp_path: Path) -> None:
    text = SHIPPED_DBC.read_text()
    extra = 'BO_ 256 DASH: 8 Vector__XXX\n SG_ Light : 0|8@1+ (1,0) [0|255] "" Vector__XXX\n\n'
    path = tmp_path / "mixed.dbc"
    path.write_text(text.replace("BO_ 2364540158 EEC1", extra + "BO_ 2364540158 EEC1", 1))
    decoders = Decoders(path)
    assert "DASH" not in {d.name for d in decoders.by_pgn.values()}
    assert any("DASH" in note and "11-bit" in note for note in decoders.notes)


def test_an_unchanged_dbc_is_parsed_once_and_a_changed_one_again(tmp_path: Path) -> None:
    dbc = tmp_path / "bus.dbc"
    dbc.write_bytes(SHIPPED_DBC.read_bytes())
    before = _table.cache_info().misses
    first, second = Decoders(dbc), Decoders(dbc)
    assert _table.cache_info().misses == before + 1
    assert first.pgns() == second.pgns()
    dbc.write_bytes(b"this is not a DBC file\n")
    with pytest.raises(ConfigError, match="cannot read this DBC"):
        Decoders(dbc)


FLOAT_DBC = """VERSION ""

NS_ :

BS_:

BU_:

BO_ 2566844926 PROP: 8 Vector__XXX
 SG_ Temperature : 0|32@1- (0.5,-10) [0|0] "degC" Vector__XXX
 SG_ Counter : 32|16@1+ (1,0) [0|65535] "" Vector__XXX

SIG_VALTYPE_ 2566844926 Temperature : 1;
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [(21.5, 0.75), (-3.0, -11.5), (0.0, -10.0), (float("nan"), None), (float("inf"), None)],
)
def test_an_ieee_float_signal_is_scaled_like_any_other(
    tmp_path: Path, value: float, expected: float | None
) -> None:
    # DBC SIG_VALTYPE_ 1: an IEEE 754 single (docs/drivers.md: decoding reads "signed and
    # IEEE float signals" as cantools does); a number is scaled, NaN or infinity is no value
    path = tmp_path / "float.dbc"
    path.write_text(FLOAT_DBC)
    decoder = Decoders(path).by_pgn[0xFEF1]
    signals = decoder.decode(struct.pack("<f", value) + bytes([7, 0, 0xFF, 0xFF]))
    assert signals == {"Temperature": expected, "Counter": 7}


BIG_ENDIAN_DBC = """VERSION ""
BS_:
BU_:
BO_ 2365480958 BIGDOORS: 8 Vector__XXX
 SG_ Door1OpenStatus : 3|2@0+ (1,0) [0|3] "" Vector__XXX
 SG_ Ramp : 13|10@0+ (1,0) [0|1023] "" Vector__XXX
"""


@pytest.mark.parametrize("source", ["shipped", "big_endian"])
def test_a_signal_s_bits_are_exactly_those_its_value_is_read_from(
    tmp_path: Path, source: str
) -> None:
    """The throttle compares only a door status's bits (`MessageDecoder.bits`): flipping a
    bit outside them never changes the signal's raw value, flipping one inside always does."""
    if source == "shipped":
        decoders = Decoders(SHIPPED_DBC)
    else:
        path = tmp_path / "big.dbc"
        path.write_text(BIG_ENDIAN_DBC)
        decoders = Decoders(path)
    base = bytes(range(0x11, 0x99, 0x11))
    for decoder in decoders.by_pgn.values():
        if decoder.root.multiplexers:
            continue
        data = base[: decoder.length]
        before = decoder.raw(data)
        for signal in before:
            bits = decoder.bits(signal)
            assert bits is not None
            for bit in range(8 * decoder.length):
                flipped = int.from_bytes(data, "little") ^ (1 << bit)
                after = decoder.raw(flipped.to_bytes(decoder.length, "little"))[signal]
                assert (after != before[signal]) == bool(bits >> bit & 1), (signal, bit)
    assert decoders.by_pgn[next(iter(decoders.by_pgn))].bits("NoSuchSignal") is None

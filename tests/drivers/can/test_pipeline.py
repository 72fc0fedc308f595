from pathlib import Path

import can
import pytest

from core.events import ActiveFaults, J1939Signals, TroubleCode
from drivers.can.decoder import SHIPPED_DBC, Decoders
from drivers.can.pipeline import PROMPT_CHANGES, Pipeline
from hil.can.fms import bam_frames, rts_cts_frames
from tests.drivers.can.support import frame

CCVS1_37_5 = bytes([0xF4, 0x80, 0x25, 0x10, 0xFF, 0x50, 0xFF, 0xFF])  # 37.5 km/h
DM1_TWO_CODES = bytes(
    [0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xE1, 0x06, 0x12, 0x02]
)  # 110/16, 1761/18


@pytest.fixture(scope="module")
def decoders() -> Decoders:
    return Decoders(SHIPPED_DBC)


def bam_messages(pgn: int, source: int, payload: bytes) -> list[can.Message]:
    return [
        can.Message(arbitration_id=i, data=d, is_extended_id=True)
        for i, d in bam_frames(pgn, source, payload)
    ]


def test_a_pgn_from_any_source_address_decodes(decoders: Decoders) -> None:
    event = Pipeline(decoders).process(frame(65265, CCVS1_37_5, source=0x17), 12.5)
    assert isinstance(event, J1939Signals)
    assert (event.pgn, event.name, event.source, event.ts) == (65265, "CCVS1", 0x17, 12.5)
    assert event.signals["WheelBasedVehicleSpeed"] == 37.5


def test_a_pgn_outside_the_dbc_makes_no_event_and_no_error(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders)
    assert pipeline.process(frame(61442, bytes(8), source=0x03), 0.0) is None  # ETC1
    assert pipeline.counts == {} and pipeline.decoded == 0


@pytest.mark.parametrize(
    "msg",
    [
        can.Message(arbitration_id=0x123, data=bytes(8), is_extended_id=False),
        frame(65265, b"", is_remote_frame=True),
        frame(65265, bytes(12), is_fd=True),
    ],
    ids=["11-bit", "remote", "fd"],
)
def test_frames_that_are_not_j1939_are_counted(decoders: Decoders, msg: can.Message) -> None:
    pipeline = Pipeline(decoders)
    assert pipeline.process(msg, 0.0) is None
    assert pipeline.counts == {"not_j1939": 1}


def test_short_frame_is_decoded_and_counted(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders)
    event = pipeline.process(frame(65265, CCVS1_37_5[:3]), 0.0)
    assert isinstance(event, J1939Signals) and event.signals["CruiseControlSetSpeed"] is None
    assert pipeline.counts == {"short_frame": 1}


def test_dm1_in_one_frame_is_active_faults(decoders: Decoders) -> None:
    event = Pipeline(decoders).process(
        frame(65226, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xFF, 0xFF])), 3.0
    )
    assert event == ActiveFaults(
        source=0x00,
        lamps={"malfunction": 0, "red_stop": 0, "amber_warning": 1, "protect": 0},
        codes=(TroubleCode(110, 16, 1),),
        ts=3.0,
    )


def test_dm1_over_bam_is_active_faults_with_every_code(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders)
    events = [
        pipeline.process(m, i * 0.05)
        for i, m in enumerate(bam_messages(65226, 0x00, DM1_TWO_CODES))
    ]
    assert events[:-1] == [None, None]
    last = events[-1]
    assert isinstance(last, ActiveFaults)
    assert last.codes == (TroubleCode(110, 16, 1), TroubleCode(1761, 18, 2))


def test_dm1_is_left_out_by_an_allow_list_without_it() -> None:
    pipeline = Pipeline(Decoders(SHIPPED_DBC, pgns=[65265]))
    assert pipeline.process(frame(65226, bytes(8)), 0.0) is None


def rts_cts_messages(
    pgn: int, originator: int, responder: int, payload: bytes
) -> list[can.Message]:
    return [
        can.Message(arbitration_id=i, data=d, is_extended_id=True)
        for i, d in rts_cts_frames(pgn, originator, responder, payload)
    ]


def test_dm1_sent_to_one_node_over_rts_cts_is_read_by_watching_both_sides(
    decoders: Decoders,
) -> None:
    pipeline = Pipeline(decoders)
    events = [
        pipeline.process(m, 0.01 * i)
        for i, m in enumerate(rts_cts_messages(65226, 0x00, 0xF9, DM1_TWO_CODES))
    ]
    (faults,) = [e for e in events if e is not None]
    assert isinstance(faults, ActiveFaults) and faults.source == 0x00
    assert faults.codes == (TroubleCode(110, 16, 1), TroubleCode(1761, 18, 2))
    assert pipeline.counts == {"rts_complete": 1, "faults": 1}


def test_a_dbc_message_sent_over_rts_cts_is_decoded(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders)
    long_ccvs1 = CCVS1_37_5 + bytes([0xFF] * 4)  # 12 bytes: a sender padding it over TP
    events = [
        pipeline.process(m, 0.01 * i)
        for i, m in enumerate(rts_cts_messages(65265, 0x17, 0x21, long_ccvs1))
    ]
    (signals,) = [e for e in events if e is not None]
    assert isinstance(signals, J1939Signals) and signals.source == 0x17
    assert signals.signals["WheelBasedVehicleSpeed"] == 37.5


def test_a_single_frame_dm1_too_short_is_refused_and_clears_nothing(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    good = frame(65226, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xFF, 0xFF]))
    assert isinstance(pipeline.process(good, 0.0), ActiveFaults)
    short = frame(65226, bytes([0x00, 0xFF, 0x00, 0x00, 0x00]))  # DLC 5
    assert pipeline.process(short, 1.0) is None
    assert pipeline.counts == {"faults": 1, "dm1_malformed": 1}


def test_throttle_decodes_one_frame_per_interval_per_pgn_and_source(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    emitted = [
        pipeline.process(frame(65265, CCVS1_37_5), t) is not None for t in (0.0, 0.02, 0.05, 0.074)
    ]
    assert emitted == [True, False, False, False]
    assert pipeline.process(frame(65265, CCVS1_37_5, source=0x17), 0.074) is not None  # another ECU
    assert pipeline.process(frame(65265, CCVS1_37_5), 0.076) is not None  # 3/4 of the interval
    assert pipeline.throttled == 3


def test_throttle_delivers_the_last_held_value_when_the_sender_goes_quiet(
    decoders: Decoders,
) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    stopped = bytes([0xF4, 0x00, 0x00, 0x10, 0xFF, 0x50, 0xFF, 0xFF])  # 0 km/h
    pipeline.process(frame(65265, CCVS1_37_5), 0.0)
    assert pipeline.process(frame(65265, stopped), 0.03) is None
    assert pipeline.tick(0.05) == []  # its interval is not over yet
    (event,) = pipeline.tick(0.1)
    assert isinstance(event, J1939Signals)
    assert event.signals["WheelBasedVehicleSpeed"] == 0.0 and event.ts == 0.03
    assert pipeline.tick(0.5) == []


@pytest.mark.parametrize(
    "other",
    [frame(65265, b"", is_remote_frame=True), frame(65265, bytes(12), is_fd=True)],
    ids=["remote", "fd"],
)
def test_a_remote_or_fd_frame_with_the_same_id_neither_takes_nor_drops_a_held_value(
    decoders: Decoders, other: can.Message
) -> None:
    """A remote frame (or a CAN FD one) with the CCVS1 identifier, on a bus shared with
    other protocols or sent by a device on the port, is no J1939 frame: it neither
    replaces the real frame the throttle holds back (the last speed before the sender went
    quiet was lost) nor takes the decoding slot of the next real one."""
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    stopped = bytes([0xF4, 0x00, 0x00, 0x10, 0xFF, 0x50, 0xFF, 0xFF])  # 0 km/h
    pipeline.process(frame(65265, CCVS1_37_5), 0.0)
    assert pipeline.process(frame(65265, stopped), 0.03) is None  # held back
    assert pipeline.process(other, 0.05) is None
    (event,) = pipeline.tick(0.1)
    assert isinstance(event, J1939Signals) and event.signals["WheelBasedVehicleSpeed"] == 0.0
    assert pipeline.process(other, 0.2) is None
    after = pipeline.process(frame(65265, CCVS1_37_5), 0.21)
    assert isinstance(after, J1939Signals)
    assert pipeline.counts["not_j1939"] == 2


DC2_SHUT = bytes([0xF3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  # door 1 closed
DC2_OPEN = bytes([0xF7, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  # door 1 open


def test_a_door_status_changing_amid_a_flood_under_its_source_goes_through_the_throttle(
    decoders: Decoders,
) -> None:
    """A device on the FMS port floods DC2 "closed" under the door controller's address
    (0x21), 2000 a second; the door controller says "open" every 100 ms. Each "open" is
    decoded, not only whichever frame comes first after each interval."""
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    opened = 0
    for ms2 in range(2000):  # one second, a frame every 0.5 ms
        data = DC2_OPEN if ms2 % 200 == 137 else DC2_SHUT
        event = pipeline.process(frame(64933, data, source=0x21), ms2 / 2000)
        if isinstance(event, J1939Signals) and event.signals["Door1OpenStatus"] == 1:
            opened += 1
    assert opened == 10


DOORS = ("DC2.Door1OpenStatus", "DC2.Door2OpenStatus")


def test_a_device_flipping_other_bytes_of_dc2_under_the_controller_s_address_does_not_hold_back_its_open(
    decoders: Decoders,
) -> None:
    """The device floods DC2 "closed" under the door controller's address, its byte 4
    different in every frame: were any change of the frame a change, those frames took
    every prompt pass of each interval and the controller's "open" waited it out (0 of
    10 decoded). Only the bits of the doors in use count."""
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=DOORS)
    opened = 0
    for ms2 in range(2000):  # one second, a frame every 0.5 ms
        forged = DC2_SHUT[:3] + bytes([ms2 % 256]) + DC2_SHUT[4:]
        data = DC2_OPEN if ms2 % 200 == 137 else forged
        event = pipeline.process(frame(64933, data, source=0x21), ms2 / 2000)
        if isinstance(event, J1939Signals) and event.signals["Door1OpenStatus"] == 1:
            opened += 1
    assert opened == 10


DC2_NOT_AVAILABLE = bytes([0xFF] * 8)


def test_a_device_flapping_the_door_s_own_bits_under_the_controller_s_address_does_not_hold_back_its_open(
    decoders: Decoders,
) -> None:
    """The device alternates the door's status between "closed" and "not available" in
    every frame: each a change of the door's bits, which took the interval's prompt passes
    before the controller's "open" came (0 of 10 decoded). A value of a door let through
    within the interval is no reason to let it through again; the controller's "open" is
    the one value not recently passed."""
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=DOORS)
    opened = 0
    for ms2 in range(2000):  # one second, a frame every 0.5 ms
        forged = (DC2_SHUT, DC2_NOT_AVAILABLE)[ms2 % 2]
        data = DC2_OPEN if ms2 % 200 == 137 else forged
        event = pipeline.process(frame(64933, data, source=0x21), ms2 / 2000)
        if isinstance(event, J1939Signals) and event.signals["Door1OpenStatus"] == 1:
            opened += 1
    assert opened == 10
    assert pipeline.decoded <= 10 * 2 * 4 * 2  # per 75 ms at most each door's 4 values


def test_a_door_controller_s_own_counter_byte_is_throttled_like_any_other_group(
    decoders: Decoders,
) -> None:
    """A door controller whose DC2 carries a byte that changes in every frame (a counter,
    a ramp's position), doors steady: no door changed, so it is decoded about once an
    interval, as EEC1 is, not up to `PROMPT_CHANGES` more times."""
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=DOORS)
    decoded = sum(
        pipeline.process(frame(64933, DC2_SHUT[:6] + bytes([i % 256, 0xFF]), source=0x21), i / 100)
        is not None
        for i in range(100)
    )
    assert decoded <= 14


def test_a_change_of_a_door_not_in_use_is_not_let_through_at_once(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=("DC2.Door1OpenStatus",))
    door2_open = bytes([0xF3, 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    assert pipeline.process(frame(64933, DC2_SHUT, source=0x21), 0.0) is not None
    assert pipeline.process(frame(64933, door2_open, source=0x21), 0.01) is None
    assert pipeline.process(frame(64933, DC2_OPEN, source=0x21), 0.02) is not None


def test_a_door_status_cut_off_by_a_short_frame_is_a_change(decoders: Decoders) -> None:
    """A frame too short for door 2's status gives it as not available: a change."""
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=("DC2.Door2OpenStatus",))
    door2_shut = bytes([0xF3, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    assert pipeline.process(frame(64933, door2_shut, source=0x21), 0.0) is not None
    event = pipeline.process(frame(64933, door2_shut[:1], source=0x21), 0.01)
    assert isinstance(event, J1939Signals) and event.signals["Door2OpenStatus"] is None


def test_with_no_door_in_use_dc2_is_throttled_like_any_other_group(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=())
    assert pipeline.process(frame(64933, DC2_SHUT, source=0x21), 0.0) is not None
    assert pipeline.process(frame(64933, DC2_OPEN, source=0x21), 0.01) is None


def test_a_door_status_flapping_with_every_frame_is_decoded_a_bounded_number_of_times(
    decoders: Decoders,
) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    decoded = sum(
        pipeline.process(frame(64933, (DC2_OPEN, DC2_SHUT)[i % 2], source=0x21), i / 2000)
        is not None
        for i in range(2000)
    )
    assert decoded <= 11 * (1 + PROMPT_CHANGES)  # ten intervals, their windows not aligned


def test_a_changing_parameter_group_other_than_a_door_s_stays_throttled(
    decoders: Decoders,
) -> None:
    """EEC1's engine speed changes with nearly every frame (10 ms): the throttle's point."""
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    speeds = [bytes([0xF0, 0x7D, 0x7D, i % 256, 0x20, 0, 0xF0, 0x7D]) for i in range(100)]
    decoded = sum(
        pipeline.process(frame(61444, d), i / 100) is not None for i, d in enumerate(speeds)
    )
    assert decoded <= 14


def test_without_throttle_every_frame_is_decoded(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.0)
    assert all(pipeline.process(frame(65265, CCVS1_37_5), t / 1000) for t in range(10))


def test_a_changed_dm1_is_never_held_back(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=10.0)
    no_fault = bytes([0x00, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF])
    fault = bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xFF, 0xFF])
    events = [
        pipeline.process(frame(65226, data), t / 1000)
        for t, data in enumerate([no_fault, fault, no_fault])
    ]
    assert [len(e.codes) for e in events if isinstance(e, ActiveFaults)] == [0, 1, 0]


def test_a_repeated_dm1_is_skipped_within_the_interval_only(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    dm1 = frame(65226, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xFF, 0xFF]))
    emitted = [pipeline.process(dm1, t) is not None for t in (0.0, 0.01, 0.05, 0.08, 1.0)]
    assert emitted == [True, False, False, True, True]
    assert pipeline.process(frame(65226, dm1.data, source=0x3D), 1.0) is not None  # another ECU


def test_a_repeated_dm1_is_let_through_every_second_whatever_the_interval(
    decoders: Decoders,
) -> None:
    """A repeat is its ECU saying it is still there: held back for `min_interval_s` (up to
    60 s), the vehicle service took a steady ECU for silent."""
    pipeline = Pipeline(decoders, min_interval_s=60.0)
    dm1 = frame(65226, bytes([0x04, 0xFF, 0x6E, 0x00, 0x10, 0x01, 0xFF, 0xFF]))
    emitted = [pipeline.process(dm1, t) is not None for t in (0.0, 0.5, 1.0, 2.0, 3.0)]
    assert emitted == [True, False, True, True, True]


def test_bus_off_error_frame_is_counted_and_cleared_when_frames_flow(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders)
    bus_off = can.Message(
        arbitration_id=0x040, is_error_frame=True, is_extended_id=False, data=bytes(8)
    )
    pipeline.process(bus_off, 1.0)
    assert pipeline.counts == {"error_frame": 1, "bus_off": 1}
    assert pipeline.bus_off_at == 1.0
    pipeline.tick(1.5)
    assert pipeline.bus_off_at == 1.0  # nothing received since
    pipeline.process(frame(65265, CCVS1_37_5), 1.6)
    assert pipeline.bus_off_at is None


def test_controller_overflow_is_counted(decoders: Decoders) -> None:
    pipeline = Pipeline(decoders)
    overflow = can.Message(
        arbitration_id=0x004, is_error_frame=True, data=bytes([0, 0x01, 0, 0, 0, 0, 0, 0])
    )
    pipeline.process(overflow, 0.0)
    assert pipeline.counts == {"error_frame": 1, "rx_overflow": 1}


def _dbc_with(tmp_path: Path, message: str) -> Path:
    path = tmp_path / "custom.dbc"
    path.write_text(
        SHIPPED_DBC.read_text().replace("BO_ 2364540158 EEC1", message + "\nBO_ 2364540158 EEC1", 1)
    )
    return path


def test_a_message_added_to_the_dbc_is_decoded_without_code(tmp_path: Path) -> None:
    # ET1, PGN 65262 (0x18FEEE00 | 0x80000000): coolant temperature, byte 1, 1 degC/bit, -40
    dbc = _dbc_with(
        tmp_path,
        'BO_ 2566843904 ET1: 8 Vector__XXX\n SG_ EngineCoolantTemperature : 0|8@1+ (1,-40) [-40|210] "degC" Vector__XXX\n',
    )
    event = Pipeline(Decoders(dbc)).process(
        frame(65262, bytes([0x82] + [0xFF] * 7), source=0x00), 0.0
    )
    assert isinstance(event, J1939Signals)
    assert (event.name, dict(event.signals)) == ("ET1", {"EngineCoolantTemperature": 90})


def test_a_dbc_message_longer_than_a_frame_is_decoded_from_bam(tmp_path: Path) -> None:
    # PGN 65280 (proprietary B, 0x18FF0000 | 0x80000000), 12 bytes, a counter in bytes 9-12
    dbc = _dbc_with(
        tmp_path,
        'BO_ 2566848512 LONG: 12 Vector__XXX\n SG_ Counter : 64|32@1+ (1,0) [0|4000000000] "" Vector__XXX\n',
    )
    pipeline = Pipeline(Decoders(dbc))
    payload = bytes(8) + (123456).to_bytes(4, "little")
    events = [
        pipeline.process(m, i * 0.05) for i, m in enumerate(bam_messages(65280, 0x42, payload))
    ]
    last = events[-1]
    assert isinstance(last, J1939Signals)
    assert (last.name, last.source, last.signals["Counter"]) == ("LONG", 0x42, 123456)


def test_on_a_frame_clock_the_transport_is_timed_by_the_frames_timestamps(
    decoders: Decoders,
) -> None:
    # can.replay stamps frames with the log's time: a 0.8 s pause between two packets in the
    # log is past T1 however fast they are processed, and housekeeping expires a session
    # only as far as the frames' time went, not the node's clock
    pipeline = Pipeline(decoders, min_interval_s=0, frame_clock=True)
    cm = bytes([32, 10, 0, 2, 0xFF, 0xCA, 0xFE, 0x00])
    stamped = [
        (10.0, frame(60416, cm)),
        (10.05, frame(60160, bytes.fromhex("0104FF6E00100364"))),
        (10.85, frame(60160, bytes.fromhex("0200010AFFFFFFFF"))),
    ]
    for ts, msg in stamped[:2]:
        msg.timestamp = ts
        assert pipeline.process(msg, now=500.0) is None
    pipeline.tick(10_000.0)
    assert pipeline.bam.sessions  # the node's clock went on; the log's did not
    ts, msg = stamped[2]
    msg.timestamp = ts
    assert pipeline.process(msg, now=500.001) is None
    assert pipeline.counts == {"bam_timeout": 1}


def test_a_bam_and_an_rts_cts_message_from_one_source_interleaved_keep_their_bytes(
    decoders: Decoders,
) -> None:
    # one ECU broadcasts its DM1 and sends another DM1 to a tool at once, packet for packet:
    # the two sessions have the same source and PGN and must not take each other's packets
    other = bytes([0x04, 0xFF, 0x5B, 0x00, 0x03, 0x01, 0x5C, 0x00, 0x04, 0x02])  # 91/3, 92/4
    bam = bam_frames(65226, 0x00, DM1_TWO_CODES)
    rts = rts_cts_frames(65226, 0x00, 0xF9, other)
    mixed = [f for pair in zip(bam, rts, strict=False) for f in pair]
    mixed += rts[len(bam) :]
    pipeline = Pipeline(decoders, min_interval_s=0)
    events = [
        e
        for i, (can_id, data) in enumerate(mixed)
        if (e := pipeline.process(can.Message(arbitration_id=can_id, data=data), i * 0.01))
    ]
    assert [[c.spn for c in e.codes] for e in events if isinstance(e, ActiveFaults)] == [
        [110, 1761],
        [91, 92],
    ]
    assert pipeline.counts == {"bam_complete": 1, "rts_complete": 1, "faults": 2}


def stamped(frames: list[tuple[int, bytes]], start: float, step: float) -> list[can.Message]:
    """Frames as a live bus gives them: stamped `step` apart on the bus (the wall clock)."""
    return [
        can.Message(timestamp=start + i * step, arbitration_id=i_d, data=d, is_extended_id=True)
        for i, (i_d, d) in enumerate(frames)
    ]


@pytest.mark.parametrize(
    "frames",
    [bam_frames(65226, 0x00, DM1_TWO_CODES), rts_cts_frames(65226, 0x00, 0xF9, DM1_TWO_CODES)],
    ids=["bam", "rts-cts"],
)
def test_on_a_live_bus_packets_on_time_but_processed_late_make_the_message(
    decoders: Decoders, frames: list[tuple[int, bytes]]
) -> None:
    # the receive thread stalled for 1.5 s (past T1 and T2) after the first frame: the rest
    # waited in the kernel's queue, stamped when they were on the bus, 20 ms apart
    pipeline = Pipeline(decoders, min_interval_s=0)
    first, *rest = stamped(frames, 1.7e9, 0.02)
    assert pipeline.process(first, now=100.0) is None
    pipeline.tick(101.5, rest[0])  # housekeeping between frames of the backlog
    events = [pipeline.process(m, now=101.5 + i * 1e-4) for i, m in enumerate(rest)]
    assert [[c.spn for c in e.codes] for e in events if isinstance(e, ActiveFaults)] == [
        [110, 1761]
    ]
    assert not any(k.endswith("_timeout") for k in pipeline.counts)


def test_on_a_live_bus_a_sender_quiet_on_the_bus_is_timed_out_even_when_processed_late(
    decoders: Decoders,
) -> None:
    pipeline = Pipeline(decoders, min_interval_s=0)
    cm, dt1, dt2 = stamped(bam_frames(65226, 0x00, DM1_TWO_CODES), 1.7e9, 0.02)
    dt2.timestamp += 0.8  # 0.82 s after the first packet on the bus: past T1
    pipeline.process(cm, now=100.0)
    pipeline.process(dt1, now=100.02)
    assert pipeline.process(dt2, now=101.5) is None  # stalled too, it changes nothing
    assert pipeline.counts == {"bam_timeout": 1}


def test_on_a_live_bus_a_session_the_sender_left_is_timed_out_whatever_the_frames_clock(
    decoders: Decoders,
) -> None:
    # the last frame stamped an hour ahead (a clock step): nothing comes after it, and once
    # the receiver waits with nothing queued, the node's clock times the session out
    pipeline = Pipeline(decoders, min_interval_s=0)
    cm, dt1, _ = stamped(bam_frames(65226, 0x00, DM1_TWO_CODES), 1.7e9, 0.02)
    dt1.timestamp += 3600
    pipeline.process(cm, now=100.0)
    pipeline.process(dt1, now=100.02)
    pipeline.tick(100.5)
    assert pipeline.bam.sessions
    pipeline.tick(100.8)
    assert not pipeline.bam.sessions and pipeline.counts == {"bam_timeout": 1}


def test_on_a_live_bus_a_frame_held_back_by_the_throttle_keeps_its_bus_time(
    decoders: Decoders,
) -> None:
    # the housekeeping reads the bus's time from the frame just read, which may be one the
    # throttle held back: its timestamp is still the bus's, not the node's
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    cm, dt1, dt2 = stamped(bam_frames(65226, 0x00, DM1_TWO_CODES), 1.7e9, 0.02)
    ccvs = stamped([(frame(65265, CCVS1_37_5).arbitration_id, CCVS1_37_5)] * 2, 1.7e9 + 0.03, 0)
    pipeline.process(cm, now=100.0)
    pipeline.process(dt1, now=100.02)
    assert pipeline.process(ccvs[0], now=101.5) is not None  # after a stall of 1.5 s
    assert pipeline.process(ccvs[1], now=101.5001) is None  # held back
    pipeline.tick(101.5002, ccvs[1])
    dm1 = pipeline.process(dt2, now=101.5003)
    assert isinstance(dm1, ActiveFaults) and pipeline.counts["bam_complete"] == 1
    assert ccvs[1].timestamp == 1.7e9 + 0.03


def test_a_door_shut_again_within_the_interval_arrives_at_the_interval_s_end(
    decoders: Decoders,
) -> None:
    """"closed" was let through 40 ms before: not at once again, but not lost either."""
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=DOORS)
    assert pipeline.process(frame(64933, DC2_SHUT, source=0x21), 0.0) is not None
    assert pipeline.process(frame(64933, DC2_OPEN, source=0x21), 0.02) is not None
    assert pipeline.process(frame(64933, DC2_SHUT, source=0x21), 0.04) is None
    (event,) = pipeline.tick(0.13)
    assert isinstance(event, J1939Signals) and event.signals["Door1OpenStatus"] == 0


def test_a_door_s_values_not_let_through_lately_make_room_for_new_ones(
    decoders: Decoders,
) -> None:
    """Not told the doors, DC2 is one door of every bit, with more values than the 4 kept:
    four frames long past leave room for the frames after them, which go through at once
    when they change, not once an interval."""
    pipeline = Pipeline(decoders, min_interval_s=0.1)
    for i in range(4):
        assert pipeline.process(frame(64933, DC2_SHUT[:7] + bytes([i]), source=0x21), i / 100)
    assert pipeline.process(frame(64933, DC2_SHUT[:7] + b"\x04", source=0x21), 1.0)
    assert pipeline.process(frame(64933, DC2_OPEN, source=0x21), 1.01) is not None


def test_a_door_status_of_4_bits_keeps_a_place_for_each_of_its_values(
    decoders: Decoders,
) -> None:
    """A door status wider than 2 bits (DC1's PositionOfDoors, a maker's own message): a
    device under the door controller's address cycling 4 other values in every frame
    filled the 4 kept and held the controller's value back every interval (0 of 10)."""
    pipeline = Pipeline(decoders, min_interval_s=0.1, doors=("DC1.PositionOfDoors",))
    told = 0
    for ms2 in range(2000):  # one second, a frame every 0.5 ms
        value = 1 if ms2 % 200 == 137 else 2 + ms2 % 4
        data = bytes([0xF0 | value]) + bytes([0xFF] * 7)
        event = pipeline.process(frame(65102, data, source=0x21), ms2 / 2000)
        if isinstance(event, J1939Signals) and event.signals["PositionOfDoors"] == 1:
            told += 1
    assert told == 10

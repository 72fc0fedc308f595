"""Recordings other tools write (Vector ASC and BLF, PEAK TRC), read by python-can's own
readers into the frames `can.replay` plays; a damaged one ends, said, never crashes."""

import asyncio
import itertools
from pathlib import Path

import can
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.can.candump import LogFrame, LogLineError
from drivers.can.recordings import FORMATS, read_recording
from tests.drivers.can.test_replay import replaying
from tests.helpers.drivers import Recorder

DATA = Path(__file__).parent / "data"
FMS = [  # (id, data) of the frames both recordings hold
    (0x0CF00400, bytes.fromhex("F07D7D401F00FFFF")),  # EEC1 1000 rpm
    (0x18FEF100, bytes.fromhex("F4802510FF50FFFF")),  # CCVS1 37.5 km/h
    (0x18FEC1EE, bytes.fromhex("400D0300FFFFFFFF")),  # VDHR from the tachograph
    (0x18FEFC17, bytes.fromhex("009CFFFFFFFFFFFF")),  # DD 62.4 %
]


def frames(path: Path) -> list[LogFrame]:
    return [f for _, f in read_recording(path) if isinstance(f, LogFrame)]


def errors(path: Path) -> list[LogLineError]:
    return [f for _, f in read_recording(path) if isinstance(f, LogLineError)]


def test_a_vector_asc_recording_gives_its_frames_and_refuses_the_fd_one() -> None:
    got = frames(DATA / "fms.asc")
    data = [(f.can_id, f.data) for f in got if not (f.error or f.remote)]
    assert data == FMS
    assert [f.ts for f in got] == [0.1, 0.15, 0.2, 1.0, 1.1, 1.2]
    assert sum(f.error for f in got) == 1 and sum(f.remote for f in got) == 1
    assert [str(e) for e in errors(DATA / "fms.asc")] == ["CAN FD frames are not read"]


def test_a_peak_trc_recording_gives_its_frames_a_tenth_of_a_second_apart() -> None:
    got = frames(DATA / "fms.trc")
    assert [(f.can_id, f.data) for f in got] == FMS
    assert [round(b.ts - a.ts, 3) for a, b in itertools.pairwise(got)] == [0.1, 0.8, 0.1]
    assert errors(DATA / "fms.trc") == []


def write_blf(path: Path, n: int = 200) -> None:
    with can.BLFWriter(path) as writer:
        for i in range(n):
            can_id, data = FMS[i % len(FMS)]
            writer.on_message_received(
                can.Message(timestamp=1.7e9 + i * 0.01, arbitration_id=can_id, data=data)
            )


def test_a_vector_blf_recording_gives_its_frames(tmp_path: Path) -> None:
    write_blf(tmp_path / "day.blf")
    got = frames(tmp_path / "day.blf")
    assert [(f.can_id, f.data) for f in got] == FMS * 50


def test_a_blf_recording_cut_short_ends_with_one_malformed_entry_saying_so(tmp_path: Path) -> None:
    write_blf(tmp_path / "day.blf", n=5000)
    whole = (tmp_path / "day.blf").read_bytes()
    (tmp_path / "cut.blf").write_bytes(whole[: len(whole) * 2 // 3])
    items = [item for _, item in read_recording(tmp_path / "cut.blf")]
    assert all(isinstance(i, LogFrame) for i in items[:-1])
    assert isinstance(items[-1], LogLineError) and "cut short after frame" in str(items[-1])
    assert 0 < len(items) - 1 < 5000


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(suffix=st.sampled_from(sorted(FORMATS)), junk=st.binary(max_size=2000))
def test_whatever_bytes_a_recording_holds_reading_it_never_raises(
    tmp_path: Path, suffix: str, junk: bytes
) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(junk)
    for _, item in read_recording(path):
        assert isinstance(item, LogFrame | LogLineError)


def test_a_blf_recording_with_a_damaged_container_ends_with_one_malformed_entry(
    tmp_path: Path,
) -> None:
    write_blf(tmp_path / "day.blf", n=5000)
    whole = bytearray((tmp_path / "day.blf").read_bytes())
    whole[200:260] = bytes(range(60))  # inside the first compressed container
    (tmp_path / "bad.blf").write_bytes(bytes(whole))
    items = [item for _, item in read_recording(tmp_path / "bad.blf")]
    assert items and isinstance(items[-1], LogLineError)
    assert sum(isinstance(i, LogLineError) for i in items) == 1


def test_a_recording_that_is_not_there_says_so() -> None:
    with pytest.raises(OSError):
        list(read_recording(DATA / "missing.asc"))


async def test_can_replay_plays_an_asc_recording_through_the_decoders() -> None:
    rec = Recorder("replay")
    async with replaying(rec, log=DATA / "fms.asc", speed=100, min_interval_s=0):
        await rec.wait_for(lambda: bool(rec.signals("DD")), "the last frame decoded", 10)
        await asyncio.sleep(0.1)
    assert rec.signals("CCVS1")[0].signals["WheelBasedVehicleSpeed"] == 37.5
    assert rec.signals("EEC1")[0].signals["EngineSpeed"] == 1000.0
    assert rec.counts["malformed_lines"] == 1  # the CAN FD frame

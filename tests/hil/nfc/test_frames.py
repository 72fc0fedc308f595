from hypothesis import given
from hypothesis import strategies as st

from hil.nfc import frames
from hil.nfc.frames import Ack, BadFrame, Frame, FrameReader, Nack

tfis = st.sampled_from([frames.HOST_TFI, frames.CHIP_TFI])
bodies = st.binary(min_size=0, max_size=frames.MAX_EXTENDED - 1)


def read_all(*chunks: bytes) -> list[object]:
    reader = FrameReader()
    out: list[object] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out


@given(tfis, bodies)
def test_a_built_frame_reads_back_as_the_same_frame(tfi: int, data: bytes) -> None:
    assert read_all(frames.build(tfi, data)) == [Frame(tfi, data)]


@given(st.lists(st.tuples(tfis, bodies), min_size=1, max_size=5), st.data())
def test_frames_cut_anywhere_into_reads_come_out_whole_and_in_order(
    sent: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(frames.build(tfi, body) for tfi, body in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert read_all(*pieces) == [Frame(tfi, body) for tfi, body in sent]


@given(st.binary(max_size=2000))
def test_any_bytes_are_read_without_raising(noise: bytes) -> None:
    for event in read_all(noise):
        assert isinstance(event, Frame | Ack | Nack | BadFrame)


@given(st.binary(max_size=200).filter(lambda b: frames.START not in b and not b.endswith(b"\0")))
def test_a_frame_after_noise_without_a_start_code_is_found(noise: bytes) -> None:
    frame = frames.command(0x02)
    assert read_all(noise + frame) == [Frame(frames.HOST_TFI, b"\x02")]


def test_extended_frames_read_back() -> None:
    data = bytes(range(256)) + b"\x01\x02"
    assert read_all(frames.build(frames.CHIP_TFI, data)) == [Frame(frames.CHIP_TFI, data)]
    assert read_all(frames.build(frames.HOST_TFI, b"\x02", extended=True)) == [
        Frame(frames.HOST_TFI, b"\x02")
    ]


def test_ack_nack_and_the_error_frame_are_told_apart() -> None:
    assert read_all(frames.ACK, frames.NACK, frames.ERROR) == [Ack(), Nack(), Frame(0x7F, b"")]


def test_the_hsu_wake_up_before_a_command_is_skipped_as_preamble() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x55\x55\x00\x00\x00" + frames.command(0x14, b"\x01")) == [
        Frame(frames.HOST_TFI, b"\x14\x01")
    ]
    assert reader.noise == 0


def test_a_bad_data_checksum_is_reported_and_the_next_frame_still_found() -> None:
    bad = bytearray(frames.command(0x02))
    bad[-2] ^= 0xFF
    assert read_all(bytes(bad) + frames.command(0x04)) == [
        BadFrame("data checksum"),
        Frame(frames.HOST_TFI, b"\x04"),
    ]


def test_a_bad_length_checksum_is_reported_and_the_next_frame_still_found() -> None:
    bad = bytearray(frames.command(0x02))
    bad[4] ^= 0x01
    assert read_all(bytes(bad) + frames.command(0x04)) == [
        BadFrame("length checksum"),
        Frame(frames.HOST_TFI, b"\x04"),
    ]


def test_a_truncated_frame_then_a_whole_one_yields_the_whole_one() -> None:
    whole = frames.command(0x4A, b"\x01\x00")
    events = read_all(whole[:7] + whole)
    assert events[-1] == Frame(frames.HOST_TFI, b"\x4a\x01\x00")
    assert all(isinstance(e, BadFrame) for e in events[:-1])


def test_a_flood_without_start_code_keeps_the_buffer_bounded() -> None:
    reader = FrameReader(max_buffer=64)
    reader.feed(b"\x01" * 10_000)
    assert reader.noise >= 9_000
    assert reader.feed(frames.command(0x02)) == [Frame(frames.HOST_TFI, b"\x02")]

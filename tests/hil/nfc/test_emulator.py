import os
import select
import shutil
import subprocess
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.nfc import frames
from hil.nfc.cards import Card, CardKind
from hil.nfc.emulator import FAULTS, Faults, Pn532Emulator
from hil.nfc.frames import Ack, BadFrame, Frame, FrameReader

ROOT = Path(__file__).resolve().parents[3]
FIRMWARE = frames.command(0x02)
POLL = frames.command(0x4A, b"\x01\x00")  # InListPassiveTarget: 1 target, 106 kbps type A
FINITE = frames.command(0x32, b"\x05\x00\x01\x02")  # RFConfiguration MaxRetries, as libnfc


class Host:
    """The host side of the link, byte for byte: what libnfc's pn532_uart does, by hand."""

    def __init__(self, port: str) -> None:
        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.reader = FrameReader()

    def close(self) -> None:
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def raw(self, seconds: float) -> bytes:
        """Everything that arrives within `seconds`."""
        data = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.fd], [], [], left)[0]:
                data += os.read(self.fd, 4096)
        return data

    def events(self, n: int, timeout: float = 2.0) -> list[object]:
        """The next `n` frames (ACKs included) the chip sends."""
        out: list[object] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and (left := deadline - time.monotonic()) > 0:
            if select.select([self.fd], [], [], left)[0]:
                out += self.reader.feed(os.read(self.fd, 4096))
        return out

    def ask(self, frame: bytes) -> object:
        """Send a command; the answer after its ACK."""
        self.send(frame)
        ack, answer = self.events(2)
        assert ack == Ack()
        return answer


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Pn532Emulator]:
    with Pn532Emulator(tmp_path / "nfc0") as e:
        yield e


@pytest.fixture
def host(emu: Pn532Emulator) -> Iterator[Host]:
    h = Host(emu.port)
    yield h
    h.close()


def test_get_firmware_version_is_acked_then_answered_as_a_pn532_v1_6(host: Host) -> None:
    assert host.ask(FIRMWARE) == Frame(frames.CHIP_TFI, b"\x03\x32\x01\x06\x07")


def test_the_wake_up_preamble_before_the_first_command_is_ignored(
    host: Host, emu: Pn532Emulator
) -> None:
    assert host.ask(b"\x55\x55\x00\x00\x00" + frames.command(0x14, b"\x01")) == Frame(
        frames.CHIP_TFI, b"\x15"
    )
    assert emu.bad_frames == 0


def test_the_communication_test_echoes_its_data(host: Host) -> None:
    answer = host.ask(frames.command(0x00, b"\x00libnfc"))
    assert answer == Frame(frames.CHIP_TFI, b"\x01\x00libnfc")


@pytest.mark.parametrize(
    ("uid", "kind", "target"),
    [
        ("04a1b2c3", None, "0100040804 04a1b2c3"),
        ("04112233445566", None, "0100440007 04112233445566"),
        ("04112233445566", CardKind.DESFIRE, "0103442007 04112233445566"),
        ("0811223344556677889a", None, "010084000a 0811223344556677889a"),
    ],
)
def test_a_card_on_the_antenna_is_listed_with_its_atqa_sak_and_uid(
    host: Host, emu: Pn532Emulator, uid: str, kind: CardKind | None, target: str
) -> None:
    emu.put(bytes.fromhex(uid), kind)
    answer = host.ask(POLL)
    assert answer == Frame(frames.CHIP_TFI, bytes.fromhex("4b01" + target.replace(" ", "")))
    assert (emu.polls, emu.card_polls) == (1, 1)


def test_a_desfire_adds_its_ats_when_the_host_asked_for_automatic_rats(
    host: Host, emu: Pn532Emulator
) -> None:
    host.ask(frames.command(0x12, b"\x10"))  # SetParameters fAutomaticRATS
    emu.put(bytes.fromhex("04112233445566"), CardKind.DESFIRE)
    answer = host.ask(POLL)
    assert isinstance(answer, Frame)
    assert answer.data.endswith(bytes.fromhex("067577810280"))


def test_no_card_with_finite_retries_answers_no_target(host: Host) -> None:
    host.ask(FINITE)
    assert host.ask(POLL) == Frame(frames.CHIP_TFI, b"\x4b\x00")


def test_no_card_with_infinite_retries_waits_until_a_card_is_put(
    host: Host, emu: Pn532Emulator
) -> None:
    host.send(POLL)
    assert host.events(2, timeout=0.3) == [Ack()]  # the chip keeps trying
    emu.put(bytes.fromhex("04a1b2c3"))
    (answer,) = host.events(1)
    assert isinstance(answer, Frame) and answer.data[:2] == b"\x4b\x01"


def test_an_ack_from_the_host_aborts_the_waiting_poll(host: Host, emu: Pn532Emulator) -> None:
    host.send(POLL)
    assert host.events(1) == [Ack()]
    host.send(frames.ACK)
    time.sleep(0.05)
    emu.put(bytes.fromhex("04a1b2c3"))
    assert host.raw(0.2) == b""
    assert emu.aborts == 1


def test_a_glitch_hides_the_card_from_exactly_that_many_polls(
    host: Host, emu: Pn532Emulator
) -> None:
    host.ask(FINITE)
    emu.put(bytes.fromhex("04a1b2c3"))
    emu.glitch(2)
    found = [host.ask(POLL) != Frame(frames.CHIP_TFI, b"\x4b\x00") for _ in range(4)]
    assert found == [False, False, True, True]


def listed(answer: object) -> bytes | None:
    """The UID an InListPassiveTarget answer lists, or None for "no target"."""
    assert isinstance(answer, Frame) and answer.data[:1] == b"\x4b"
    if answer.data[1] == 0:
        return None
    return answer.data[7 : 7 + answer.data[6]]


A, B, C = (bytes.fromhex(h) for h in ("04a1b2c3", "04112233445566", "04d5e6f7"))


def test_two_cards_in_the_field_are_listed_in_turn(host: Host, emu: Pn532Emulator) -> None:
    host.ask(FINITE)
    emu.put(A)
    emu.add(B)
    assert [listed(host.ask(POLL)) for _ in range(6)] == [A, B, A, B, A, B]
    assert emu.cards == (Card.make(A), Card.make(B))


def test_a_card_alone_in_the_field_is_listed_on_every_poll(host: Host, emu: Pn532Emulator) -> None:
    host.ask(FINITE)
    emu.put(A)
    assert [listed(host.ask(POLL)) for _ in range(3)] == [A, A, A]


def test_a_card_added_beside_a_held_one_is_listed_at_the_next_poll(
    host: Host, emu: Pn532Emulator
) -> None:
    host.ask(FINITE)
    emu.put(A)
    assert listed(host.ask(POLL)) == A
    emu.add(B)
    assert listed(host.ask(POLL)) == B


def test_with_three_cards_the_chip_alternates_between_the_first_two(
    host: Host, emu: Pn532Emulator
) -> None:
    host.ask(FINITE)
    for uid in (A, B, C):
        emu.add(uid)
    assert [listed(host.ask(POLL)) for _ in range(4)] == [A, B, A, B]


def test_removing_one_of_two_cards_leaves_the_other_listed(host: Host, emu: Pn532Emulator) -> None:
    host.ask(FINITE)
    emu.put(A)
    emu.add(B)
    assert listed(host.ask(POLL)) == A
    emu.remove(A)
    assert [listed(host.ask(POLL)) for _ in range(2)] == [B, B]
    emu.remove()
    assert listed(host.ask(POLL)) is None


@pytest.mark.parametrize(
    ("uid", "named"),
    [
        ("04a1b2c3", "04a1b2c3"),
        ("04112233445566", "8804112233445566"),
        ("0811223344556677889a", "88081122883344556677889a"),
    ],
)
def test_a_poll_naming_a_uid_lists_that_card_alone(
    host: Host, emu: Pn532Emulator, uid: str, named: str
) -> None:
    """InitiatorData carries the UID with its cascade tags, as libnfc sends it."""
    host.ask(FINITE)
    emu.put(A)
    emu.add(bytes.fromhex(uid))
    poll = frames.command(0x4A, b"\x01\x00" + bytes.fromhex(named))
    assert [listed(host.ask(poll)) for _ in range(3)] == [bytes.fromhex(uid)] * 3
    emu.remove(bytes.fromhex(uid))
    assert listed(host.ask(poll)) is None


def test_adding_a_card_already_in_the_field_changes_nothing(emu: Pn532Emulator) -> None:
    emu.put(A)
    emu.add(A)
    assert emu.cards == (Card.make(A),)


def test_in_communicate_thru_answers_a_timeout_status(host: Host, emu: Pn532Emulator) -> None:
    emu.put(bytes.fromhex("04a1b2c3"))
    assert host.ask(frames.command(0x42, b"\x26")) == Frame(frames.CHIP_TFI, b"\x43\x01")


def test_an_unknown_command_is_counted_and_answered_with_the_error_frame(
    host: Host, emu: Pn532Emulator
) -> None:
    assert host.ask(frames.command(0x8C, b"\x00")) == Frame(0x7F, b"")
    assert emu.unknown[0x8C] == 1


def test_a_frame_with_a_bad_checksum_is_counted_and_not_answered(
    host: Host, emu: Pn532Emulator
) -> None:
    bad = bytearray(FIRMWARE)
    bad[-2] ^= 0x01
    host.send(bytes(bad))
    assert host.raw(0.1) == b""
    assert emu.bad_frames == 1


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("garbage", lambda raw: raw and not raw.startswith(b"\x00\x00\xff")),
        ("bad_checksum", lambda raw: FrameReader().feed(raw) == [BadFrame("data checksum")]),
        ("bad_length_checksum", lambda raw: BadFrame("length checksum") in FrameReader().feed(raw)),
        (
            "wrong_code",
            lambda raw: FrameReader().feed(raw) == [Frame(frames.CHIP_TFI, b"\x4d\x00")],
        ),
        ("error_frame", lambda raw: raw == frames.ERROR),
        ("truncated", lambda raw: len(raw) > 0 and FrameReader().feed(raw) == []),
        ("no_answer", lambda raw: raw == b""),
    ],
)
def test_each_fault_spoils_the_next_poll_answer_as_named(
    host: Host, emu: Pn532Emulator, fault: str, check: object
) -> None:
    host.ask(FINITE)
    emu.put(bytes.fromhex("04a1b2c3"))
    emu.inject(fault)  # type: ignore[arg-type]
    host.send(POLL)
    raw = host.raw(0.1)
    assert raw.startswith(frames.ACK)
    raw = raw[len(frames.ACK) :]
    assert callable(check) and check(raw), raw.hex(" ")
    assert emu.served[fault] == 1
    assert host.ask(POLL) == Frame(frames.CHIP_TFI, bytes.fromhex("4b01010004080404a1b2c3"))


def test_no_ack_leaves_the_host_without_even_an_ack(host: Host, emu: Pn532Emulator) -> None:
    emu.inject("no_ack")
    host.send(POLL)
    assert host.raw(0.1) == b""


def test_a_slow_answer_comes_after_slow_s(host: Host, emu: Pn532Emulator) -> None:
    emu.slow_s = 0.2
    host.ask(FINITE)
    emu.inject("slow")
    started = time.monotonic()
    host.send(POLL)
    assert host.events(2)[1] == Frame(frames.CHIP_TFI, b"\x4b\x00")
    assert time.monotonic() - started >= 0.19


def test_a_silent_chip_answers_nothing_until_it_speaks_again(
    host: Host, emu: Pn532Emulator
) -> None:
    emu.silent = True
    host.send(FIRMWARE)
    assert host.raw(0.1) == b""
    emu.silent = False
    assert host.ask(FIRMWARE) == Frame(frames.CHIP_TFI, b"\x03\x32\x01\x06\x07")


def test_probabilistic_faults_follow_their_seed(tmp_path: Path) -> None:
    def served(seed: int) -> dict[str, int]:
        with Pn532Emulator(faults=Faults(garbage=0.3, bad_checksum=0.3, seed=seed)) as emu:
            host = Host(emu.port)
            host.ask(FINITE)
            for _ in range(20):
                host.send(POLL)
                host.raw(0.01)
            host.close()
            return dict(emu.served)

    assert served(7) == served(7)
    assert sum(served(7).values()) > 0


def test_unplug_removes_the_port_and_replug_brings_a_fresh_chip(emu: Pn532Emulator) -> None:
    host = Host(emu.port)
    host.ask(frames.command(0x12, b"\x10"))
    emu.unplug()
    assert not os.path.exists(emu.port)
    with pytest.raises(OSError):  # EIO: nobody on the other side any more
        os.write(host.fd, FIRMWARE)
    host.close()
    emu.replug()
    host = Host(emu.port)
    assert host.ask(FIRMWARE) == Frame(frames.CHIP_TFI, b"\x03\x32\x01\x06\x07")
    host.close()


def test_unknown_faults_are_refused_by_name(emu: Pn532Emulator) -> None:
    with pytest.raises(ValueError, match="unknown fault 'gargabe'"):
        emu.inject("gargabe")  # type: ignore[arg-type]
    assert "garbage" in FAULTS


@given(st.integers(0, 2**32))
def test_garbage_target_data_never_holds_the_ats_length_that_crashes_libnfc(seed: int) -> None:
    """libnfc copies (ATS length - 1) bytes when the answer is longer than the UID: 0 is fatal."""
    emu = Pn532Emulator(faults=Faults(seed=seed))
    try:
        for _ in range(20):
            payload = emu._garbage_targets()  # InListPassiveTarget payload: NbTg, Tg, ...
            raw = payload[1:]  # what libnfc decodes: Tg, ATQA(2), SAK, UID length, UID, ATS
            if len(raw) > 5:
                uid_len = raw[4]
                if len(raw) > uid_len + 5:
                    assert raw[5 + uid_len] != 0
    finally:
        emu.close()


def test_cards_of_odd_lengths_can_be_put_as_a_broken_card_would_answer() -> None:
    card = Card.make(b"\x01\x02\x03\x04\x05")
    assert (card.atqa, card.sak) == (b"\x00\x04", 0x08)
    with pytest.raises(ValueError, match="17 bytes"):
        Card.make(bytes(17))


@pytest.mark.skipif(shutil.which("nfc-list") is None, reason="libnfc-bin is not installed")
def test_nfc_list_reads_the_card_through_libnfc(emu: Pn532Emulator) -> None:
    emu.put(bytes.fromhex("04112233445566"))
    env = {**os.environ, "LIBNFC_DEVICE": emu.connstring, "LIBNFC_LOG_LEVEL": "0"}
    out = subprocess.run(
        ["nfc-list", "-t", "1"], env=env, capture_output=True, text=True, timeout=20
    ).stdout
    assert "1 ISO14443A passive target(s) found" in out
    assert "04  11  22  33  44  55  66" in out
    assert "00  44" in out  # ATQA of an Ultralight

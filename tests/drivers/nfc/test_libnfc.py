"""nfc.libnfc against the PN532 emulator: ctypes → libnfc's pn532_uart → a pty → the emulator."""

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import DriverError
from core.events import Tap
from drivers.nfc import quiet_libnfc
from drivers.nfc.libnfc import LibnfcOptions, LibnfcReader
from drivers.registry import driver_class
from edged.config.models import SupervisorConfig
from edged.supervisor import Supervised
from hil.nfc.cards import CardKind
from hil.nfc.emulator import Fault, Faults, Pn532Emulator
from tests.helpers.drivers import Recorder, configured, wait_until
from tests.helpers.journal import FEW, Journal

ROOT = Path(__file__).resolve().parents[3]
A = bytes.fromhex("04a1b2c3")
B = bytes.fromhex("04112233445566")
FAST = SupervisorConfig(backoff_initial_s=0.05, backoff_max_s=0.1, stable_after_s=10)
QUICK = {"poll_interval_s": 0.01, "release_s": 0.05}


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Pn532Emulator]:
    with Pn532Emulator(tmp_path / "nfc0") as e:
        yield e


def reader(emu: Pn532Emulator | str, **options: Any) -> LibnfcReader:
    cs = emu if isinstance(emu, str) else emu.connstring
    return LibnfcReader(LibnfcOptions(connstring=cs, **{**QUICK, **options}))


class Running:
    """Driver tasks a test started, cancelled at its end."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, emu: Pn532Emulator, **options: Any) -> Recorder:
        rec = Recorder("front-reader")
        self.tasks.append(asyncio.create_task(reader(emu, **options).run(rec.ctx)))
        await wait_until(lambda: rec.readies == 1 or self.tasks[-1].done(), 5, "ready")
        if self.tasks[-1].done():
            self.tasks[-1].result()
        return rec


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    r = Running()
    yield r
    for task in r.tasks:
        task.cancel()
    await asyncio.gather(*r.tasks, return_exceptions=True)


def nfc_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("nfc-")]


# -- options ------------------------------------------------------------------------------


def test_the_registry_names_this_driver_nfc_libnfc() -> None:
    assert driver_class("nfc.libnfc") is LibnfcReader


def test_an_unknown_libnfc_driver_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown libnfc driver 'pn532-uart': use one of"):
        LibnfcOptions(connstring="pn532-uart:/dev/ttyS0")


def test_a_pn532_on_a_uart_needs_its_port() -> None:
    with pytest.raises(
        ValidationError, match=r"pn532_uart needs the device: e.g. 'pn532_uart:/dev"
    ):
        LibnfcOptions(connstring="pn532_uart")


def test_a_serial_speed_termios_cannot_set_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"serial speed '11520' is not one of"):
        LibnfcOptions(connstring="pn532_uart:/dev/ttyS0:11520")


def test_a_release_shorter_than_two_polls_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"release_s \(0.05\) must be at least twice"):
        LibnfcOptions(connstring="acr122_usb", poll_interval_s=0.05, release_s=0.05)


def test_unknown_option_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="debounce"):
        LibnfcOptions.model_validate({"connstring": "acr122_usb", "debounce": 1})


def test_the_defaults_poll_often_enough_for_a_150_ms_tap_budget() -> None:
    o = LibnfcOptions(connstring="pn532_uart:/dev/ttyS0")
    assert o.poll_interval_s * o.confirm_reads <= 0.1


# -- opening ------------------------------------------------------------------------------


async def test_a_missing_port_says_which_and_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match=r"nfc0 does not exist: check the reader's cable"):
        await reader(f"pn532_uart:{tmp_path / 'nfc0'}").run(Recorder("front-reader").ctx)


async def test_a_port_where_nothing_answers_says_to_check_the_wiring(emu: Pn532Emulator) -> None:
    emu.silent = True
    with pytest.raises(DriverError, match=r"nothing answered as a PN532: check TX/RX"):
        await asyncio.wait_for(reader(emu).run(Recorder("front-reader").ctx), 5)


async def test_a_port_another_program_locked_says_it_is_in_use(emu: Pn532Emulator) -> None:
    port = os.open(emu.port, os.O_RDONLY | os.O_NOCTTY)  # never pytest's terminal
    try:
        fcntl.flock(port, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as gps.nmea-serial's pyserial does
        with pytest.raises(DriverError, match=r"in use by another program that locked it"):
            await asyncio.wait_for(reader(emu).run(Recorder("front-reader").ctx), 5)
    finally:
        os.close(port)


async def test_ready_once_the_reader_answered_its_opening(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    assert rec.readies == 1
    assert rec.counts["opened"] == 1
    assert emu.commands["GetFirmwareVersion"] >= 1


# -- taps ---------------------------------------------------------------------------------


async def test_a_card_held_for_seconds_is_one_tap(emu: Pn532Emulator, running: Running) -> None:
    rec = await running.start(emu)
    emu.put(A)
    polls = emu.polls
    await asyncio.sleep(2.0)
    assert emu.polls - polls > 100  # it kept polling the held card
    assert rec.uids == [A]
    assert rec.taps[0].reader == "front-reader"


async def test_a_card_taken_off_and_put_back_is_a_second_tap(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the first tap")
    emu.remove()
    await asyncio.sleep(0.2)  # longer than release_s
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 2, 2, "the second tap")
    assert rec.uids == [A, A]


async def tapped_then_lifted_during_a_stalled_poll(
    emu: Pn532Emulator, running: Running
) -> Recorder:
    """Card A tapped, then lifted while the poll asked with it on is answered `slow_s` late."""
    rec = await running.start(emu)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the first tap")
    emu.inject("slow")
    await wait_until(lambda: emu.served["slow"] == 1, 2, "the stalled poll")
    emu.remove()
    return rec


async def test_a_card_lifted_and_put_back_while_a_poll_stalls_is_one_presentation(
    tmp_path: Path, running: Running
) -> None:
    # a loaded node: the poll asked while the card was on is answered late, so no poll
    # completes while it is off; the driver cannot tell the lift from a read glitch
    with Pn532Emulator(tmp_path / "nfc1", slow_s=0.5) as slow:
        rec = await tapped_then_lifted_during_a_stalled_poll(slow, running)
        await asyncio.sleep(0.2)  # four times release_s, all within the stalled poll
        slow.put(A)
        await asyncio.sleep(0.6)  # the stalled answer and many polls after it
        assert rec.uids == [A]


async def test_a_card_put_back_once_the_emulator_saw_the_reader_let_it_go_taps_again(
    tmp_path: Path, running: Running
) -> None:
    # what the rig does before presenting a card again (hil.rig, `present`)
    with Pn532Emulator(tmp_path / "nfc1", slow_s=0.5) as slow:
        rec = await tapped_then_lifted_during_a_stalled_poll(slow, running)
        await asyncio.to_thread(slow.wait_let_go, A, QUICK["release_s"])
        slow.put(A)
        await wait_until(lambda: len(rec.taps) == 2, 2, "the second tap")
        assert rec.uids == [A, A]


def test_waiting_for_a_card_never_taken_off_returns_at_once(emu: Pn532Emulator) -> None:
    emu.put(A)
    emu.wait_let_go(A, 0.05, timeout=0.01)  # on the antenna: nothing to wait for
    emu.wait_let_go(B, 0.05, timeout=0.01)  # never there


async def test_a_different_card_taps_at_once_without_the_first_taken_off(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the first tap")
    put_at = emu.put(B)
    await wait_until(lambda: len(rec.taps) == 2, 2, "the second card's tap")
    assert rec.uids == [A, B]
    assert rec.arrived[1] - put_at < 0.1


@pytest.mark.parametrize(
    ("uid", "kind"),
    [
        ("04a1b2c3", CardKind.CLASSIC_1K),
        ("04112233445566", CardKind.ULTRALIGHT),
        ("04112233445566", CardKind.DESFIRE),
        ("0811223344556677889a", CardKind.TRIPLE),
    ],
)
async def test_uids_of_4_7_and_10_bytes_are_read_exactly(
    emu: Pn532Emulator, running: Running, uid: str, kind: CardKind
) -> None:
    rec = await running.start(emu)
    emu.put(bytes.fromhex(uid), kind)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
    assert rec.uids == [bytes.fromhex(uid)]


async def test_a_card_missed_by_one_poll_is_not_a_second_tap(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
    emu.glitch(1)
    await asyncio.to_thread(emu.wait_polls, 10)
    assert rec.uids == [A]


async def test_a_card_missed_by_polls_shorter_than_release_s_is_not_a_second_tap(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu, poll_interval_s=0.01, release_s=0.3)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
    emu.glitch(15)  # about 150 ms at the edge of the field
    await asyncio.to_thread(emu.wait_polls, 30)
    assert rec.uids == [A]


async def test_a_held_card_taps_again_every_repeat_held_s(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu, repeat_held_s=0.3)
    emu.put(A)
    await asyncio.sleep(1.0)
    assert len(rec.taps) in (3, 4)  # at 0, 0.3, 0.6, 0.9 s


async def test_a_flood_of_cards_gives_exactly_one_tap_each_in_order(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu, poll_interval_s=0.005, release_s=0.02)
    uids = [(0x04000000 + i).to_bytes(4, "big") for i in range(150)]
    started = time.monotonic()
    for n, uid in enumerate(uids, 1):
        emu.put(uid)
        await wait_until(lambda n=n: len(rec.taps) == n, 1, uid.hex())
        emu.remove()
    assert rec.uids == uids
    assert time.monotonic() - started < 10
    assert rec.counts["taps"] == 150


async def test_the_same_card_presented_again_and_again_taps_each_time(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu, poll_interval_s=0.005, release_s=0.02)
    for n in range(1, 16):
        emu.put(A)
        await wait_until(lambda n=n: len(rec.taps) == n, 1, f"tap {n}")
        emu.remove()
        await asyncio.sleep(0.05)  # off the reader for longer than release_s
    await asyncio.sleep(0.1)
    assert rec.uids == [A] * 15


async def test_two_cards_held_together_tap_once_each(emu: Pn532Emulator, running: Running) -> None:
    """The chip lists them in turn (A, B, A, B): no two reads in a row agree."""
    rec = await running.start(emu)
    emu.put(A)
    emu.add(B)
    await wait_until(lambda: len(rec.taps) == 2, 2, "both taps")
    await asyncio.to_thread(emu.wait_polls, 50)
    assert sorted(rec.uids) == sorted([A, B])
    assert rec.counts["unconfirmed"] == 0


async def test_a_second_card_laid_beside_a_held_one_taps_once(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the first tap")
    put_at = emu.add(B)
    await wait_until(lambda: len(rec.taps) == 2, 2, "the second card's tap")
    await asyncio.to_thread(emu.wait_polls, 50)
    assert rec.uids == [A, B]
    assert rec.arrived[1] - put_at < 0.1


async def test_two_cards_held_together_are_one_tap_each_however_long_they_stay(
    emu: Pn532Emulator, running: Running
) -> None:
    """Each is read only every other poll: still held, under the default release_s."""
    rec = await running.start(emu, poll_interval_s=0.05, release_s=0.3)
    emu.put(A)
    emu.add(B)
    await asyncio.sleep(2.0)
    assert sorted(rec.uids) == sorted([A, B])


async def test_one_of_two_cards_taken_off_and_put_back_taps_again(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.put(A)
    emu.add(B)
    await wait_until(lambda: len(rec.taps) == 2, 2, "both taps")
    emu.remove(B)
    await asyncio.sleep(0.2)  # longer than release_s
    emu.add(B)
    await wait_until(lambda: len(rec.taps) == 3, 2, "B's second tap")
    assert rec.uids[2] == B


# -- bad answers --------------------------------------------------------------------------

BAD_ANSWERS: list[Fault] = [
    "garbage",
    "bad_checksum",
    "bad_length_checksum",
    "wrong_code",
    "error_frame",
    "truncated",
    "no_answer",
    "no_ack",
    "slow",
]


@pytest.mark.parametrize("fault", BAD_ANSWERS)
async def test_a_bad_answer_is_counted_without_a_crash_or_a_phantom_tap(
    emu: Pn532Emulator, running: Running, fault: Fault
) -> None:
    rec = await running.start(emu)
    emu.inject(fault, 2)  # two in a row: below max_errors
    await wait_until(lambda: rec.counts["poll_error"] == 2, 3, f"two {fault} answers counted")
    await asyncio.to_thread(emu.wait_polls, 3)
    assert rec.counts["poll_error"] == 2
    assert rec.taps == []
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "a tap after the bad answers")
    assert not running.tasks[0].done()


async def test_garbage_target_data_never_becomes_a_tap(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.inject("garbage_payload", 100)
    await wait_until(lambda: emu.served["garbage_payload"] == 100, 10, "100 garbage answers")
    await asyncio.to_thread(emu.wait_polls, 3)
    assert rec.taps == []
    assert rec.counts["unconfirmed"] + rec.counts["bad_uid"] > 0
    assert not running.tasks[0].done()


async def test_garbage_target_data_while_a_card_is_held_is_no_second_tap(
    emu: Pn532Emulator, running: Running
) -> None:
    """Garbage may decode as "no card": shorter than release_s, that is a read glitch."""
    rec = await running.start(emu, poll_interval_s=0.01, release_s=0.3)
    emu.put(A)
    await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
    emu.inject("garbage_payload", 10)
    await wait_until(lambda: emu.served["garbage_payload"] == 10, 2, "10 garbage answers")
    await asyncio.to_thread(emu.wait_polls, 10)
    assert rec.uids == [A]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_garbage_among_no_card_answers_never_becomes_a_tap(
    tmp_path: Path, running: Running, seed: int
) -> None:
    """Half the polls garbled, the rest "no card": no garbled answer taps, though a short
    one decodes as whatever the answer before it left in libnfc's buffer."""
    with Pn532Emulator(tmp_path / "nfc0", faults=Faults(garbage_payload=0.5, seed=seed)) as e:
        rec = await running.start(e)
        await wait_until(lambda: e.served["garbage_payload"] >= 150, 10, "150 garbage answers")
        assert rec.taps == []


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_garbage_among_two_held_cards_taps_only_the_cards(
    tmp_path: Path, running: Running, seed: int
) -> None:
    with Pn532Emulator(tmp_path / "nfc0", faults=Faults(garbage_payload=0.3, seed=seed)) as e:
        rec = await running.start(e, release_s=0.3)
        e.put(A)
        e.add(B)
        await wait_until(lambda: e.served["garbage_payload"] >= 150, 10, "150 garbage answers")
        assert sorted(rec.uids) == sorted([A, B])


async def test_a_reader_failing_every_other_poll_leaves_a_few_lines_in_the_journal(
    tmp_path: Path, running: Running, journal: Journal
) -> None:
    """The first failure after a good poll was a warning: a reader failing half its polls
    wrote 250 lines a minute. Now its first ones at once, the rest counted."""
    with Pn532Emulator(tmp_path / "nfc0", faults=Faults(error_frame=0.5, seed=1)) as e:
        rec = await running.start(e, max_errors=100)
        await wait_until(lambda: rec.counts["poll_error"] >= 80, 15, "80 failed polls")
    said = journal.with_("poll failed")
    assert 1 <= len(said) <= FEW, "\n".join(said)
    assert f"NFC reader {e.connstring} poll failed: " in said[0]


async def test_libnfc_writes_no_line_of_its_own_per_bad_frame(
    tmp_path: Path,
    running: Running,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libnfc printed "error libnfc.driver.pn532_uart Frame preamble+start code mismatch" to
    stderr, the journal, for each bad frame: past any limit edged sets on its own lines."""
    monkeypatch.delenv("LIBNFC_LOG_LEVEL", raising=False)
    quiet_libnfc()  # as edged's entry point does, first thing (tests/cli/test_run.py)
    with Pn532Emulator(tmp_path / "nfc0", faults=Faults(garbage=0.5, seed=1)) as e:
        rec = await running.start(e, max_errors=100)
        await wait_until(lambda: rec.counts["poll_error"] >= 20, 10, "20 failed polls")
    assert "libnfc" not in capfd.readouterr().err


def test_importing_the_driver_turns_libnfc_s_log_off_for_any_host_of_it() -> None:
    """A host other than `edged run` (a rig, a bench) gets libnfc quiet too: at the import,
    on its main thread, not when a reader starts among the host's threads."""
    env = {k: v for k, v in os.environ.items() if k != "LIBNFC_LOG_LEVEL"}
    code = "import os, drivers.nfc.libnfc; print(os.environ.get('LIBNFC_LOG_LEVEL'))"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert run.stdout.strip() == "0", run.stderr[-2000:]


async def test_an_operators_libnfc_log_level_is_kept(
    emu: Pn532Emulator,
    running: Running,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIBNFC_LOG_LEVEL", "1")
    rec = await running.start(emu, max_errors=100)
    emu.inject("garbage", 2)
    await wait_until(lambda: rec.counts["poll_error"] == 2, 3, "two bad frames")
    assert "libnfc.driver.pn532_uart" in capfd.readouterr().err


async def test_wrong_uid_lengths_are_counted_and_dropped(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.inject("bad_uid_length", 20)
    await wait_until(lambda: rec.counts["bad_uid"] == 20, 3, "20 bad UIDs counted")
    await asyncio.to_thread(emu.wait_polls, 2)
    assert rec.counts["bad_uid"] == 20
    assert rec.taps == []


async def test_a_card_with_a_5_byte_uid_is_counted_never_tapped(
    emu: Pn532Emulator, running: Running
) -> None:
    rec = await running.start(emu)
    emu.put(bytes.fromhex("04a1b2c3d4"))
    await wait_until(lambda: rec.counts["bad_uid"] >= 20, 2, "20 bad UIDs counted")
    assert rec.taps == []


async def test_bad_answers_in_a_row_raise_saying_the_reader_stopped_answering(
    emu: Pn532Emulator, running: Running
) -> None:
    await running.start(emu, max_errors=3)
    emu.inject("garbage", 3)
    with pytest.raises(DriverError, match=r"stopped answering \(3 polls failed in a row"):
        await asyncio.wait_for(running.tasks[0], 3)


# -- losing the reader --------------------------------------------------------------------


async def test_an_unplugged_reader_raises_and_a_fresh_run_after_replug_reads_again(
    emu: Pn532Emulator, running: Running
) -> None:
    await running.start(emu)
    emu.unplug()
    with pytest.raises(DriverError, match=r"stopped answering .*check its cable and power"):
        await asyncio.wait_for(running.tasks[0], 2)
    emu.replug()
    rec = await running.start(emu)
    emu.put(A)
    await wait_until(lambda: rec.uids == [A], 2, "a tap after the replug")


async def test_a_reader_that_stops_answering_raises_within_a_second_or_so(
    emu: Pn532Emulator, running: Running
) -> None:
    await running.start(emu)
    emu.silent = True
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"stopped answering .*last: .*[Tt]imeout"):
        await asyncio.wait_for(running.tasks[0], 5)
    assert time.monotonic() - started < 2.0  # 3 polls of libnfc's 300 ms


async def test_under_the_supervisor_a_replugged_reader_taps_again(emu: Pn532Emulator) -> None:
    rec = Recorder("front-reader")
    events = rec.events
    sup = rec.supervisor(FAST)
    task = asyncio.create_task(sup.supervise("front-reader", "nfc.libnfc", lambda: reader(emu)))
    try:
        await wait_until(lambda: "front-reader" in sup.drivers, 1, "supervision")
        status = sup.drivers["front-reader"]
        await wait_until(lambda: status.state == "running", 5, "running")
        emu.unplug()
        await wait_until(lambda: status.restarts >= 2, 5, "restarts while unplugged")
        assert "does not exist" in (status.last_error or "")
        emu.replug()
        await wait_until(lambda: status.state == "running", 5, "running after the replug")
        emu.put(A)
        await wait_until(lambda: any(isinstance(e, Tap) for e in events), 2, "a tap")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_reader_plugged_back_after_a_long_unplug_reads_within_a_second(
    emu: Pn532Emulator,
) -> None:
    """A USB serial adapter unplugged for minutes (a cable shaken loose on the road): its
    device file is gone, each reopen fails, and the backoff grows to a minute. Plugged
    back, the reader waited for the end of that backoff, riders tapping at a dead reader
    meanwhile; the supervisor now watches the missing file and restarts it when it is back."""
    rec = Recorder("front-reader")
    slow = SupervisorConfig(backoff_initial_s=20, backoff_max_s=60, stable_after_s=30)
    d = configured("front-reader", "nfc.libnfc", {"connstring": emu.connstring, **QUICK})
    status, task = await rec.supervised(d, slow)
    try:
        emu.unplug()
        await wait_until(lambda: status.failures >= 2, 5, "a reopen failed: backing off")
        assert "does not exist" in (status.last_error or "")
        emu.replug()
        plugged = time.monotonic()
        await wait_until(lambda: status.state == "running", 3, "running after the replug")
        assert time.monotonic() - plugged < 1.5
        emu.put(A)
        await wait_until(lambda: any(isinstance(e, Tap) for e in rec.events), 2, "a tap")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def supervised(emu: Pn532Emulator, rec: Recorder) -> AsyncIterator[Supervised]:
    """The reader under a real supervisor, which builds it afresh at each start, as the node;
    stopped when the block ends."""
    sup = rec.supervisor(FAST)
    task = asyncio.create_task(sup.supervise("front-reader", "nfc.libnfc", lambda: reader(emu)))
    try:
        await wait_until(lambda: "front-reader" in sup.drivers, 1, "supervision")
        status = sup.drivers["front-reader"]
        await wait_until(lambda: status.state == "running", 5, "running")
        yield status
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def reopened(emu: Pn532Emulator, status: Supervised) -> None:
    """A burst of line noise: max_errors bad frames in a row, and the reader reopened."""
    restarts = status.restarts
    emu.inject("bad_checksum", 3)
    await wait_until(lambda: status.restarts > restarts, 5, "the reopen")
    await wait_until(lambda: status.state == "running", 5, "running again")


async def test_a_card_resting_on_the_reader_is_one_tap_across_a_reopen(
    emu: Pn532Emulator,
) -> None:
    rec = Recorder("front-reader")
    async with supervised(emu, rec) as status:
        emu.put(A)  # a card left lying on the reader
        await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
        for _ in range(3):
            await reopened(emu, status)
            await asyncio.to_thread(emu.wait_polls, 20)
        assert rec.uids == [A]
        assert rec.counts["opened"] == 4


async def test_a_card_resting_on_the_reader_is_one_tap_across_an_unplug(
    emu: Pn532Emulator,
) -> None:
    rec = Recorder("front-reader")
    async with supervised(emu, rec) as status:
        emu.put(A)
        await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
        emu.unplug()
        await wait_until(lambda: status.restarts >= 2, 5, "restarts while unplugged")
        emu.replug()  # the card never left the antenna
        await wait_until(lambda: status.state == "running", 5, "running after the replug")
        await asyncio.to_thread(emu.wait_polls, 20)
        assert rec.uids == [A]


async def test_a_card_taken_off_while_the_reader_reopened_taps_when_put_back(
    emu: Pn532Emulator,
) -> None:
    rec = Recorder("front-reader")
    async with supervised(emu, rec) as status:
        emu.put(A)
        await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
        emu.inject("bad_checksum", 3)
        emu.remove()
        await wait_until(lambda: status.restarts >= 1, 5, "the reopen")
        await wait_until(lambda: status.state == "running", 5, "running again")
        await asyncio.to_thread(emu.wait_polls, 2)  # a clean poll sees the reader empty
        emu.put(A)
        await wait_until(lambda: len(rec.taps) == 2, 2, "the second tap")
        assert rec.uids == [A, A]


async def test_a_card_put_on_during_a_reopen_taps_once_the_reader_is_back(
    emu: Pn532Emulator,
) -> None:
    rec = Recorder("front-reader")
    async with supervised(emu, rec) as status:
        emu.put(A)
        await wait_until(lambda: len(rec.taps) == 1, 2, "the tap")
        emu.inject("bad_checksum", 3)
        emu.put(B)  # A lifted, B laid down while the reader is failing
        await wait_until(lambda: status.restarts >= 1, 5, "the reopen")
        await wait_until(lambda: len(rec.taps) == 2, 5, "B's tap")
        assert rec.uids == [A, B]


async def test_what_one_reader_holds_is_not_held_on_another(tmp_path: Path) -> None:
    """The record that outlives a reopen is per reader: the same card on a second
    reader (or on a reader given another port) is a tap there."""
    with Pn532Emulator(tmp_path / "a") as front, Pn532Emulator(tmp_path / "b") as back:
        recs = [Recorder("front-reader"), Recorder("back-reader")]
        tasks = [
            asyncio.create_task(reader(e).run(r.ctx))
            for e, r in zip((front, back), recs, strict=True)
        ]
        try:
            front.put(A)
            await wait_until(lambda: recs[0].uids == [A], 2, "the front tap")
            back.put(A)
            await wait_until(lambda: recs[1].uids == [A], 2, "the back tap")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# -- stopping -----------------------------------------------------------------------------


async def test_cancel_stops_the_polling_thread_promptly(
    emu: Pn532Emulator, running: Running
) -> None:
    await running.start(emu)
    task = running.tasks[0]
    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert time.monotonic() - started < 0.5
    await wait_until(lambda: not nfc_threads(), 1, "the thread to end")
    # libnfc closed the reader (field off, asleep); the emulator's thread counts the
    # command once it has read it, which a loaded machine may do after the close returned
    await wait_until(lambda: emu.commands["PowerDown"] >= 1, 2, "the PowerDown")
    assert emu.commands["PowerDown"] == 1


async def test_cancel_during_a_poll_waiting_for_its_answer_is_prompt(
    emu: Pn532Emulator, running: Running
) -> None:
    await running.start(emu)
    emu.inject("no_answer", 100)
    await wait_until(lambda: emu.served["no_answer"] >= 1, 1, "a poll left unanswered")
    task = running.tasks[0]
    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert time.monotonic() - started < 0.5
    await wait_until(lambda: not nfc_threads(), 1, "the thread to end")


async def test_after_cancel_the_port_is_free_for_the_next_run(
    emu: Pn532Emulator, running: Running
) -> None:
    for _ in range(3):
        rec = await running.start(emu)
        running.tasks[-1].cancel()
        await asyncio.gather(running.tasks[-1], return_exceptions=True)
        assert rec.readies == 1


async def test_a_libnfc_call_stuck_past_stall_s_raises_and_the_thread_still_cleans_up(
    emu: Pn532Emulator,
) -> None:
    """Opening a deaf PN532 keeps libnfc busy about 1.4 s: longer than this stall_s."""
    emu.silent = True
    rec = Recorder("front-reader")
    started = time.monotonic()
    with pytest.raises(DriverError, match=r"a libnfc call has not returned for 0.5 s"):
        await asyncio.wait_for(reader(emu, stall_s=0.5).run(rec.ctx), 5)
    assert time.monotonic() - started < 1.2  # stall_s, then at most 0.5 s waiting to stop
    assert rec.counts["stall"] == 1
    await wait_until(lambda: not nfc_threads(), 3, "the thread to finish and close libnfc")


async def test_a_reader_stopped_while_still_opening_never_says_it_is_ready(
    tmp_path: Path,
) -> None:
    """A slow PN532 (every answer 150 ms late: a busy chip, a slow UART) keeps nfc_open
    past stall_s; the session is stopped, but nfc_open cannot be aborted before it has a
    device. Its thread went on opening and said `ready` (and counted `opened`) after the
    driver had raised: under the supervisor, `health` read `running` during the backoff."""
    with Pn532Emulator(tmp_path / "nfc0", delay_s=0.15) as emu:
        rec = Recorder("front-reader")
        with pytest.raises(DriverError, match=r"a libnfc call has not returned for 0.5 s"):
            await asyncio.wait_for(reader(emu, stall_s=0.5).run(rec.ctx), 5)
        await wait_until(lambda: not nfc_threads(), 5, "the thread to finish and close libnfc")
        await asyncio.sleep(0.05)  # anything it handed the loop has run
    assert emu.commands["GetFirmwareVersion"] == 1  # it did talk to the chip
    assert rec.readies == 0
    assert rec.counts["opened"] == 0


def test_without_libnfc_the_driver_fails_as_a_config_error(tmp_path: Path) -> None:
    """A node without the library: not retried, and the message says what to install.
    (The only mock here: a machine without libnfc, made by refusing to load it.)"""
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes\n"
        "_load = ctypes.CDLL.__init__\n"
        "def _refuse(self, name, *args, **kwargs):\n"
        "    if name and 'libnfc' in str(name):\n"
        "        raise OSError(f'{name}: cannot open shared object file')\n"
        "    _load(self, name, *args, **kwargs)\n"
        "ctypes.CDLL.__init__ = _refuse\n"
    )
    code = (
        "import asyncio\n"
        "from drivers.nfc.libnfc import LibnfcReader, LibnfcOptions\n"
        "from tests.helpers.drivers import Recorder\n"
        "async def main():\n"
        "    opts = LibnfcOptions(connstring='pn532_uart:/dev/null')\n"
        "    await LibnfcReader(opts).run(Recorder('front-reader').ctx)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert "ConfigError" in run.stderr
    assert "libnfc.so.6: cannot open shared object file" in run.stderr
    assert "install the Debian package libnfc6" in run.stderr


def test_a_reader_reads_a_card_without_loading_pynfc_or_libfreefare(tmp_path: Path) -> None:
    """The driver binds libnfc itself (drivers.nfc.binding): pynfc's bindings of libnfc and
    libfreefare cost ~0.6 MB of a node's memory (#19). A separate interpreter, so no other
    test's import can hide it."""
    code = (
        "import asyncio, json, sys\n"
        "from pathlib import Path\n"
        "from drivers.nfc.libnfc import LibnfcOptions, LibnfcReader\n"
        "from hil.nfc.emulator import Pn532Emulator\n"
        "from tests.helpers.drivers import Recorder, configured, wait_until\n"
        "async def main():\n"
        "    with Pn532Emulator(Path(sys.argv[1])) as emu:\n"
        "        rec = Recorder('front-reader')\n"
        "        opts = LibnfcOptions(connstring=emu.connstring, poll_interval_s=0.01,\n"
        "                             release_s=0.05)\n"
        "        task = asyncio.create_task(LibnfcReader(opts).run(rec.ctx))\n"
        "        emu.put(bytes.fromhex('04a1b2c3'))\n"
        "        await wait_until(lambda: len(rec.taps) == 1, 10, 'a tap')\n"
        "        maps = open('/proc/self/maps').read()\n"
        "        task.cancel()\n"
        "        await asyncio.gather(task, return_exceptions=True)\n"
        "    print(json.dumps({'uid': rec.taps[0].uid.hex(), 'pynfc': 'pynfc' in sys.modules,\n"
        "                      'libnfc': 'libnfc.so' in maps, 'freefare': 'freefare' in maps}))\n"
        "asyncio.run(main())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "nfc0")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen == {"uid": "04a1b2c3", "pynfc": False, "libnfc": True, "freefare": False}

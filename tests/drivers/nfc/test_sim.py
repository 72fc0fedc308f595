import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.nfc import sim
from drivers.nfc.sim import SimReader, SimReaderOptions
from drivers.registry import driver_class, options_model
from tests.helpers.drivers import Recorder, wait_until

A, B, C = "04A1B2C3", "04112233445566", "0811223344556677889A"


def reader(**options: Any) -> SimReader:
    return SimReader(SimReaderOptions.model_validate(options))


class Running:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, r: SimReader, name: str = "front-reader") -> Recorder:
        rec = Recorder(name)
        self.tasks.append(asyncio.create_task(r.run(rec.ctx)))
        return rec


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    r = Running()
    yield r
    for task in r.tasks:
        task.cancel()
    await asyncio.gather(*r.tasks, return_exceptions=True)


def test_the_registry_names_this_driver_nfc_sim() -> None:
    assert driver_class("nfc.sim") is SimReader
    assert options_model("nfc.sim") is SimReaderOptions


async def test_scripted_taps_arrive_at_their_times(running: Running) -> None:
    r = reader(taps=[{"at_s": 0.1, "uid": A}, {"at_s": 0.3, "uid": B}, {"at_s": 0.2, "uid": C}])
    started = time.monotonic()
    rec = running.start(r)
    await wait_until(lambda: len(rec.taps) == 3, 2, "three taps")
    assert [t.uid.hex().upper() for t in rec.taps] == [A, C, B]
    offsets = [t.ts - started for t in rec.taps]
    for got, want in zip(offsets, [0.1, 0.2, 0.3], strict=True):
        assert got == pytest.approx(want, abs=0.03)
    assert rec.readies == 1
    assert rec.counts["taps"] == 3


async def test_a_repeated_script_plays_again_every_repeat_every_s(running: Running) -> None:
    started = time.monotonic()
    rec = running.start(reader(taps=[{"at_s": 0.0, "uid": A}], repeat_every_s=0.1))
    await wait_until(lambda: len(rec.taps) == 4, 2, "four taps")
    offsets = [t.ts - started for t in rec.taps]
    assert offsets == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=0.03)


async def test_cards_tap_in_turn_every_every_s(running: Running) -> None:
    rec = running.start(reader(cards=[A, B, C], every_s=0.05))
    await wait_until(lambda: len(rec.taps) == 4, 2, "four taps")
    assert [t.uid.hex().upper() for t in rec.taps] == [A, B, C, A]


def test_random_picks_follow_the_seed() -> None:
    def picks(seed: int) -> list[bytes]:
        schedule = reader(cards=[A, B, C], every_s=1, pick="random", seed=seed).schedule()
        return [next(schedule)[1] for _ in range(20)]

    assert picks(3) == picks(3)
    assert len(set(picks(3))) == 3


def test_the_schedule_merges_script_and_cards_in_time_order() -> None:
    r = reader(taps=[{"at_s": 1.5, "uid": C}], cards=[A], every_s=1)
    schedule = r.schedule()
    assert [round(next(schedule)[0], 3) for _ in range(3)] == [1.0, 1.5, 2.0]


async def test_present_on_the_instance_taps_now_stamped_when_called(running: Running) -> None:
    r = reader()
    rec = running.start(r)
    await wait_until(lambda: rec.readies == 1, 1, "ready")
    called = time.monotonic()
    assert r.present(bytes.fromhex(A))
    await wait_until(lambda: len(rec.taps) == 1, 1, "the tap")
    assert called <= rec.taps[0].ts <= called + 0.001


async def test_present_by_reader_name_reaches_only_that_reader(running: Running) -> None:
    front, back = running.start(reader(), "front"), running.start(reader(), "back")
    await wait_until(lambda: front.readies == back.readies == 1, 1, "ready")
    assert sim.present(bytes.fromhex(B), reader="back") == 1
    assert sim.present(bytes.fromhex(B), reader="side") == 0
    await wait_until(lambda: len(back.taps) == 1, 1, "the tap at the back")
    assert front.taps == []
    assert sim.present(bytes.fromhex(A)) == 2


async def test_present_from_another_thread_taps_on_the_loop(running: Running) -> None:
    r = reader()
    rec = running.start(r)
    await wait_until(lambda: rec.readies == 1, 1, "ready")
    thread = threading.Thread(target=lambda: [r.present(bytes([4, i, 0, 0])) for i in range(50)])
    thread.start()
    await wait_until(lambda: len(rec.taps) == 50, 2, "50 taps")
    thread.join()
    assert [t.uid[1] for t in rec.taps] == list(range(50))


async def test_a_stopped_reader_takes_no_present_and_leaves_the_registry(
    running: Running,
) -> None:
    r = reader()
    rec = running.start(r, "gone")
    await wait_until(lambda: rec.readies == 1, 1, "ready")
    running.tasks[0].cancel()
    await asyncio.gather(running.tasks[0], return_exceptions=True)
    assert not r.present(bytes.fromhex(A))
    assert sim.present(bytes.fromhex(A), reader="gone") == 0


def test_present_refuses_a_uid_no_reader_would_read() -> None:
    with pytest.raises(ValueError, match="4, 7 or 10 bytes, not 5"):
        reader().present(b"\x01\x02\x03\x04\x05")
    with pytest.raises(ValueError, match="4, 7 or 10 bytes, not 3"):
        sim.present(b"\x01\x02\x03")


def test_a_uid_that_is_not_hex_is_refused_naming_the_tap() -> None:
    with pytest.raises(ValidationError, match=r"taps\.0\.uid\n.*'04A1B2CG' is not a hex UID"):
        reader(taps=[{"at_s": 0, "uid": "04A1B2CG"}])


def test_a_card_of_the_wrong_length_is_refused_saying_4_7_or_10() -> None:
    with pytest.raises(ValidationError, match=r"cards\.1\n.*is 5 bytes; an ISO 14443A UID is 4"):
        reader(cards=[A, "04A1B2C3D4"], every_s=1)


def test_a_repeat_shorter_than_the_script_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must be longer than the script, whose last tap"):
        reader(taps=[{"at_s": 2, "uid": A}], repeat_every_s=1)


def test_cards_without_every_s_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"`cards` and `every_s` go together"):
        reader(cards=[A])


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="interval"):
        reader(cards=[A], interval=1)
    with pytest.raises(ValidationError, match="when"):
        reader(taps=[{"when": 1, "uid": A}])


def test_options_dump_uids_as_hex_text() -> None:
    o = SimReaderOptions.model_validate({"taps": [{"at_s": 1, "uid": "04:a1:b2:c3"}]})
    assert o.model_dump(mode="json")["taps"] == [{"at_s": 1.0, "uid": A}]

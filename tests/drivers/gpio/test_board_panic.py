"""The panic button on gpiozero's MockFactory, with the default timings (hold_s 1.0,
bounce_s 0.02, dropout_s 0.2, 3 presses within 3 s): a worn contact on a bumpy road, a
frightened rider's jabs, and the knocks and brushes that must not raise an alarm."""

import asyncio
import random

import pytest
from gpiozero.pins.mock import MockFactory, MockPin
from pydantic import ValidationError

from core.events import PanicInput
from drivers.gpio.options import PanicButton
from tests.drivers.gpio.conftest import Start
from tests.drivers.gpio.fakes import chatter, wait_until

PANIC = 19


def after_start(events: list[PanicInput]) -> list[PanicInput]:
    """The button's events after the state at start (up: PanicInput(False))."""
    assert events and events[0].pressed is False, events
    return events[1:]


async def presses(pin: MockPin, down_s: float, up_s: float, n: int) -> float:
    """n presses (the button shorts the pull-up: LOW), each down_s then up_s; returns the
    loop time of the first."""
    first = asyncio.get_running_loop().time()
    for _ in range(n):
        pin.drive_low()
        await asyncio.sleep(down_s)
        pin.drive_high()
        await asyncio.sleep(up_s)
    return first


async def test_held_through_bumps_that_open_a_worn_contact_raises_once(
    start: Start, factory: MockFactory
) -> None:
    r = await start(panic={"pin": PANIC})
    pin = factory.pin(PANIC)
    first = await presses(pin, 0.6, 0.03, 8)  # held 5 s; opens 30 ms every 600 ms
    await wait_until(lambda: len(after_start(r.rec.of(PanicInput))) == 2, 1, "the release")
    events = after_start(r.rec.of(PanicInput))
    assert [e.pressed for e in events] == [True, False]  # the drop-outs are no releases
    assert events[0].ts == pytest.approx(first, abs=0.01)
    assert r.rec.counts["panic_brush"] == 0


async def test_five_quick_jabs_raise_dated_at_the_first(start: Start, factory: MockFactory) -> None:
    r = await start(panic={"pin": PANIC})
    first = await presses(factory.pin(PANIC), 0.4, 0.35, 5)  # none held for hold_s
    await asyncio.sleep(0.3)
    raised = [e for e in r.rec.of(PanicInput) if e.pressed]
    assert len(raised) == 1
    assert raised[0].ts == pytest.approx(first, abs=0.01)


async def test_fast_jabs_merged_by_the_drop_out_rule_still_raise(
    start: Start, factory: MockFactory
) -> None:
    # a frightened rider hammering the button at 4 Hz, four times (0.9 s, never held a
    # second): each gap (0.1 s) is shorter than dropout_s, so the jabs are one press, but
    # each is a deliberate jab longer than 0.1 s. People tap 5-7 times a second at their
    # fastest (finger tapping test norms: 50-70 taps in 10 s, grokipedia.com/page/tapping_rate);
    # merging presses must only ever raise (docs/drivers.md, panic `dropout_s`)
    r = await start(panic={"pin": PANIC})
    first = await presses(factory.pin(PANIC), 0.15, 0.1, 4)
    await asyncio.sleep(0.4)
    raised = [e for e in after_start(r.rec.of(PanicInput)) if e.pressed]
    assert len(raised) == 1
    assert raised[0].ts == pytest.approx(first, abs=0.01)


async def test_two_presses_are_brushes_not_an_alarm(start: Start, factory: MockFactory) -> None:
    r = await start(panic={"pin": PANIC})
    await presses(factory.pin(PANIC), 0.4, 0.5, 2)
    await wait_until(lambda: r.rec.counts["panic_brush"] == 2, 1, "two brushes")
    assert after_start(r.rec.of(PanicInput)) == []


async def test_knocks_shorter_than_a_jab_never_raise(start: Start, factory: MockFactory) -> None:
    r = await start(panic={"pin": PANIC})
    await presses(factory.pin(PANIC), 0.05, 0.3, 6)  # a bag swinging against it: 50 ms hits
    await asyncio.sleep(0.3)
    assert after_start(r.rec.of(PanicInput)) == []
    assert r.rec.counts["panic_brush"] == 6


async def test_letting_go_longer_than_a_drop_out_ends_the_hold(
    start: Start, factory: MockFactory
) -> None:
    r = await start(panic={"pin": PANIC, "presses": 0})
    await presses(factory.pin(PANIC), 0.6, 0.4, 2)  # 1.2 s down in all, never 1 s at once
    await wait_until(lambda: r.rec.counts["panic_brush"] == 2, 1, "two brushes")
    assert after_start(r.rec.of(PanicInput)) == []


async def test_a_press_chattering_throughout_raises_while_still_held(
    start: Start, factory: MockFactory
) -> None:
    # a worn button held for 1.5 s whose contact never stays made 20 ms (fakes.chatter): a
    # provider alone in a truck presses it, and the alarm must come while they hold it
    r = await start(panic={"pin": PANIC})
    pin = factory.pin(PANIC)
    first = asyncio.get_running_loop().time()
    held = await chatter(pin, False, 1.5)  # the button shorts the pull-up: LOW while made
    if held.broken >= 0.2:  # dropout_s
        pytest.skip(f"this machine let go of the button {held.broken:.3f} s: not a chatter")
    raised = [e for e in after_start(r.rec.of(PanicInput)) if e.pressed]
    assert len(raised) == 1, "no alarm while the button was held"
    assert raised[0].ts == pytest.approx(first, abs=0.01)
    pin.drive_high()
    await wait_until(lambda: len(after_start(r.rec.of(PanicInput))) == 2, 1, "the release")
    assert [e.pressed for e in after_start(r.rec.of(PanicInput))] == [True, False]


async def test_a_press_back_that_chatters_goes_on_with_the_hold(
    start: Start, factory: MockFactory
) -> None:
    # held 0.5 s, let go 0.1 s (a drop-out), pressed again lightly: the worn contact makes
    # barely longer than it breaks (6 ms made, 5 ms broken), so the press back is confirmed
    # only some 0.2 s after it began, past the end of the drop-out. It began inside it: the
    # press goes on, and the hold raises dated at the first press
    r = await start(panic={"pin": PANIC})
    pin = factory.pin(PANIC)
    loop = asyncio.get_running_loop()
    first = loop.time()
    pin.drive_low()
    await asyncio.sleep(0.5)
    pin.drive_high()
    released = loop.time()
    await asyncio.sleep(0.1)
    dropped = loop.time() - released
    held = await chatter(pin, False, 0.4, made_s=(0.006, 0.006), broken_s=(0.005, 0.005))
    if dropped >= 0.18:  # near dropout_s (0.2): the press back did not begin inside it
        pytest.skip(f"this machine let go of the button {dropped:.3f} s, not 0.1 s")
    if held.broken >= 0.02 or held.made >= 0.02:  # bounce_s: steady, so no chatter
        pytest.skip(f"this machine held a level {max(held.made, held.broken):.3f} s")
    await wait_until(lambda: bool(after_start(r.rec.of(PanicInput))), 1, "the alarm")
    assert [(e.pressed, e.ts) for e in after_start(r.rec.of(PanicInput))] == [
        (True, pytest.approx(first, abs=0.01))
    ]
    assert r.rec.counts["panic_brush"] == 0


async def test_emi_spikes_on_the_line_never_press_the_button(
    start: Start, factory: MockFactory
) -> None:
    # a long cable beside the ignition coil: 1-4 ms spikes 5-40 ms apart for 2 s. Each is
    # shorter than bounce_s and they add up to far less than half the time: never a press
    r = await start(panic={"pin": PANIC})
    pin = factory.pin(PANIC)
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    end = loop.time() + 2.0
    longest = 0.0
    while loop.time() < end:
        pin.drive_low()
        t = loop.time()
        await asyncio.sleep(rng.uniform(0.001, 0.004))
        longest = max(longest, loop.time() - t)
        pin.drive_high()
        await asyncio.sleep(rng.uniform(0.005, 0.04))
    await asyncio.sleep(0.3)
    if longest >= 0.02:  # bounce_s: a spike this machine stretched is a press
        pytest.skip(f"this machine held a spike {longest:.3f} s: not EMI")
    assert after_start(r.rec.of(PanicInput)) == []


async def test_a_button_up_at_start_is_reported_released(
    start: Start, factory: MockFactory
) -> None:
    # let go while the driver was down (a restart): the services must not go on believing
    # it held (a stuck report; a hold after an ack that silences the next press)
    r = await start(panic={"pin": PANIC})
    assert [e.pressed for e in r.rec.of(PanicInput)] == [False]


async def test_a_button_down_at_start_is_not_reported_released(
    start: Start, factory: MockFactory
) -> None:
    factory.pin(PANIC).drive_low()
    r = await start(panic={"pin": PANIC, "hold_s": 0.05})
    await wait_until(lambda: bool(r.rec.of(PanicInput)), 1, "the hold")
    assert [e.pressed for e in r.rec.of(PanicInput)] == [True]


def test_one_press_raising_the_alarm_is_refused() -> None:
    with pytest.raises(ValidationError, match="presses = 1"):
        PanicButton(pin=PANIC, presses=1)

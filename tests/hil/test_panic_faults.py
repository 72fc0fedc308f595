"""The panic promise under a truck's faults, with every real part: `edged run`, Mosquitto,
the GPIO driver on gpiozero's mock pins driven through the rig's wire."""

import asyncio
import time
from pathlib import Path

import pytest

from hil.rig.rig import PIN_PANIC, Rig, RigSetup
from tests.helpers.disk import fill, mounted_tmpfs


async def raised_in_log(rig: Rig, offset: int, timeout: float = 5.0) -> None:
    """Until the daemon's log says the alarm is raised (its light is on)."""
    deadline = time.monotonic() + timeout
    while "PANIC alarm" not in rig.daemon.log.read_text(errors="replace")[offset:]:
        if time.monotonic() > deadline:
            raise AssertionError("the press raised no alarm")
        await asyncio.sleep(0.001)


@pytest.mark.slow
async def test_a_power_cut_right_after_the_press_loses_neither_the_alarm_nor_its_ack(
    tmp_path: Path,
) -> None:
    """The provider sees the red light, lets go, and the power goes before the outbox's
    next commit (every second here, so the cut surely lands before it; 20 ms as shipped):
    the alarm still reaches dispatch, and the restarted node still knows it, so dispatch
    can acknowledge it."""
    async with Rig(tmp_path, RigSetup(profile="venue", outbox="flush_interval_ms = 1000")) as rig:
        rig.broker_down()  # nothing leaves from memory meanwhile
        offset = len(rig.daemon.log.read_text(errors="replace"))
        await rig.set_pin(PIN_PANIC, 0)
        await raised_in_log(rig, offset)
        await rig.set_pin(PIN_PANIC, 1)
        rig.daemon.kill9()
        rig.broker_up()
        await rig.start_daemon()  # its button is up: nothing raises the alarm again
        again = await rig.expect(
            "alarm/panic",
            lambda m: m.payload.get("reason") == "still active after a restart",
            15,
            "the alarm, from the node's memory of it",
        )
        alarm_id = again.payload["details"]["alarm_id"]
        await rig.expect(
            "alarm/panic",
            lambda m: (
                m.payload.get("reason") == "panic button pressed"
                and m.payload["details"]["alarm_id"] == alarm_id
            ),
            5,
            "the press's own message",
        )
        reply = await rig.command("alarm.ack", {"alarm_id": alarm_id, "by": "dispatch"})
        assert reply["ok"] is True, reply
        await rig.expect("alarm/panic", lambda m: m.payload.get("active") is False, 10, "the clear")


@pytest.mark.slow
async def test_an_ack_sent_before_a_new_alarm_does_not_clear_it(tmp_path: Path) -> None:
    """Dispatch acknowledges the first alarm (`edgectl cmd ... alarm.ack`, as the fleet page
    says), gets no reply as the truck drives into a dead zone, and sends the ack again: the
    broker keeps it for the node. Meanwhile the provider, in danger again, presses: that new
    alarm must not be cleared by the ack waiting at the broker, sent before it existed."""
    async with Rig(tmp_path, RigSetup(profile="venue", link_proxy=True)) as rig:
        assert rig.proxy is not None
        await rig.press_panic()
        a = await rig.expect("alarm/panic", lambda m: m.payload.get("active") is True, 10, "A")
        a_id = a.payload["details"]["alarm_id"]
        assert (await rig.command("alarm.ack", {"by": "dispatch"}))["ok"] is True
        await asyncio.sleep(0.5)  # the first press is over (up longer than dropout_s)
        rig.proxy.down = True
        rig.proxy.blackhole()  # the dead zone
        again = await rig.send_command("alarm.ack", {"by": "dispatch"})
        await asyncio.sleep(0.1)  # sent a moment before the new press
        await rig.press_panic()
        await asyncio.sleep(1.0)  # raised offline
        rig.proxy.down = False
        b = await rig.expect(
            "alarm/panic",
            lambda m: m.payload.get("active") is True and m.payload["details"]["alarm_id"] != a_id,
            20,
            "alarm B",
        )
        reply = await rig.expect(
            "reply/alarm/ack", lambda m: m.payload.get("id") == again, 20, "the stale ack's reply"
        )
        b_id = b.payload["details"]["alarm_id"]
        assert reply.payload["ok"] is False, reply.payload
        assert reply.payload["error"]["code"] == "wrong_alarm"
        await asyncio.sleep(1.0)
        cleared = [
            m
            for m in rig.on("alarm/panic")
            if m.payload.get("active") is False and m.payload["details"]["alarm_id"] == b_id
        ]
        assert cleared == [], "alarm B was cleared by an ack sent before it was raised"


@pytest.mark.slow
async def test_a_press_on_a_full_disk_then_a_power_cut_still_reaches_dispatch(
    tmp_path: Path,
) -> None:
    """The SD card full (something else filled it) and the link down at the press, then
    the power cut before either comes back: the journal, allocated in advance, holds the
    alarm and the node's memory of it; the restarted node, on the still full disk, sends
    it and dispatch can acknowledge it."""
    (tmp_path / "rig").mkdir()
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        async with Rig(tmp_path / "rig", RigSetup(profile="venue", outbox_dir=disk)) as rig:
            filler = fill(disk)
            rig.broker_down()
            offset = len(rig.daemon.log.read_text(errors="replace"))
            await rig.set_pin(PIN_PANIC, 0)
            await raised_in_log(rig, offset)
            await rig.set_pin(PIN_PANIC, 1)
            await asyncio.sleep(1.5)  # the commits fail meanwhile: the alarm is in memory
            rig.daemon.kill9()
            rig.broker_up()
            await rig.start_daemon()
            raised = await rig.expect(
                "alarm/panic", lambda m: m.payload.get("active") is True, 15, "the alarm"
            )
            alarm_id = raised.payload["details"]["alarm_id"]
            reply = await rig.command("alarm.ack", {"alarm_id": alarm_id})
            assert reply["ok"] is True, reply
            await rig.expect(
                "alarm/panic", lambda m: m.payload.get("active") is False, 10, "the clear"
            )
            filler.unlink()

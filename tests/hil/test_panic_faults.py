"""The panic promise under a truck's faults, with every real part: `edged run`, Mosquitto,
the GPIO driver on gpiozero's mock pins driven through the rig's wire."""

import asyncio
import time
from pathlib import Path

import pytest

from hil.rig.rig import PIN_PANIC, Rig, RigSetup


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
    rig = Rig(tmp_path, RigSetup(profile="venue", outbox="flush_interval_ms = 1000"))
    await rig.start()
    try:
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
    except Exception:
        print(rig.log())
        raise
    finally:
        await rig.close()

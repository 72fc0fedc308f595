"""Faults: each device unplugged and plugged back, power cuts at random instants, the outbox
at its cap with the broker away, the receiver's clock jumping an hour, a flood of hostile
commands, a link that flaps (see `hil.scenarios.link`), the disk filling up (through a
broker blip and a restart), and the outbox damaged four ways.

What must hold: a driver that loses its device is restarted by itself and works again when
the device is back; a power cut loses nothing that was stored (events keep counting up with
no gap or duplicate, but for a batch the cut catches mid-commit, never stored, whose seqs
the node reports lost in `alarm/outbox_lost`); a full outbox raises `alarm/outbox_full` and
counts what it refuses, so every event is either delivered or counted; a clock jump changes
timestamps, not the daemon's life; a full disk or a damaged outbox never keeps the node off
the broker or the doors shut, and is reported (`hil.scenarios.storage`). Dispatch's view is
de-duplicated on (topic, epoch, seq), as docs/topics.md says.
"""

import asyncio
import random
import time

from hil.rig.report import Report
from hil.rig.rig import PIN_DOOR, Cards, Rig, RigSetup
from hil.scenarios import Scenario, storage
from hil.scenarios.checks import event_streams_have_no_gaps, no_uid_reached_the_broker
from hil.scenarios.link import flapping_link, hostile_flood

JUMP_BY_S = 3600.0


def setup(quick: bool) -> RigSetup:
    return RigSetup(
        profile="shuttle",
        health_s=2.0,
        speed_factor=30.0,
        # small caps, so a few hundred door events fill the outbox while the broker is away
        outbox="max_rows = 40\nhard_max_rows = 80\nalarm_reserve_rows = 20\n",
        gps_jump_s=JUMP_BY_S,
        trust_system_clock=False,
        link_proxy=True,  # the flapping link
    )


async def _unplug(rig: Rig, device: str, driver: str) -> None:
    rig.unplug(device)  # type: ignore[arg-type]
    await rig.driver_state(driver, "backoff", 20)
    await asyncio.sleep(1.0)
    rig.replug(device)  # type: ignore[arg-type]
    await rig.driver_state(driver, "running", 20)


async def toggle_door(rig: Rig, n: int, gap_s: float = 0.08) -> int:
    """`n` door movements (each an events/door once steady 50 ms); how many reached a pin.

    While the daemon is down (a power cut) its mock pins are gone: those movements are not
    made, and not counted."""
    made = 0
    for i in range(n):
        try:
            await rig.set_pin(PIN_DOOR, 1 if i % 2 == 0 else 0)
            made += 1
        except OSError:
            pass
        await asyncio.sleep(gap_s)
    return made


async def run(rig: Rig, report: Report, quick: bool) -> None:
    rng = random.Random()

    async def gps() -> None:
        await _unplug(rig, "gps", "gps")
        after = len(rig.on("position"))
        await rig.expect("position", timeout=40, what="positions again", after=after)

    await report.step("GPS unplugged and replugged: the driver comes back", gps())

    async def can() -> None:
        await _unplug(rig, "can", "can")
        after = len(rig.on("vehicle"))
        await rig.expect("vehicle", timeout=20, what="vehicle data again", after=after)

    await report.step("CAN adapter unplugged and replugged: the driver comes back", can())

    async def nfc() -> None:
        await _unplug(rig, "nfc", "reader")
        t = await rig.tap(Cards.RESIDENT)
        assert t.payload["decision"] == "granted", t.payload

    await report.step("NFC reader unplugged and replugged: taps work again", nfc())

    async def power_cuts() -> None:
        made, kills = 0, []
        lost_before = len(rig.on("alarm/outbox_lost"))
        for _ in range(3):
            task = asyncio.create_task(toggle_door(rig, 20))
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # somewhere in the flow
            kills.append(time.monotonic())
            rig.daemon.kill9()
            made += await task  # the pin changes while the node is down: not events
            await rig.start_daemon()
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)
        seqs = sorted({m.payload["seq"] for m in rig.on("events/door")})
        holes = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
        reported = await storage.losses_acked(rig, lost_before, "events/door")
        unexplained = [s for s in holes if s not in reported]
        assert not unexplained, f"a gap in events/door no alarm/outbox_lost reports: {unexplained}"
        report.measured["power_cuts"] = len(kills)
        report.measured["power_cuts_mid_commit"] = {"door_seqs_reported_lost": holes}

    await report.step(
        "3 power cuts at random instants: events/door has no gap the node does not report",
        power_cuts(),
    )

    async def outbox_full() -> None:
        rig.unplug("can")  # only the door makes events now, so every one can be accounted
        await asyncio.sleep(1.0)
        health = await rig.health()
        refused_before = health["outbox"]["refused"]
        last_seq = max((m.payload["seq"] for m in rig.on("events/door")), default=0)
        rig.broker_down()
        await asyncio.sleep(0.5)
        made = await toggle_door(rig, 120 if quick else 300)
        await asyncio.sleep(0.5)
        rig.broker_up()
        await rig.expect(
            "alarm/outbox_full", lambda m: m.payload.get("active") is True, 30, "the alarm"
        )
        await rig.expect(
            "alarm/outbox_full", lambda m: m.payload.get("active") is False, 60, "its clearing"
        )
        await asyncio.sleep(2)
        health = await rig.health()
        refused = health["outbox"]["refused"] - refused_before
        delivered = len(
            {m.payload["seq"] for m in rig.on("events/door")} - set(range(last_seq + 1))
        )
        rig.replug("can")
        report.measured["outbox_full"] = {"made": made, "delivered": delivered, "refused": refused}
        assert refused > 0, "nothing was refused: the cap was not reached"
        assert delivered + refused == made, f"{made} made, {delivered} delivered, {refused} refused"

    await report.step(
        "outbox at its cap with no broker: alarm raised, refusals counted", outbox_full()
    )

    async def clock_jump() -> None:
        rig.jump_gps_clock()
        m = await rig.expect(
            "position",
            lambda m: (
                m.payload.get("clock") != "gps" or m.payload["ts"] > time.time() * 1000 + 1800e3
            ),
            30,
            "a position stamped after the jump",
        )
        online = [s for s in rig.on("state") if s.payload.get("state") == "online"]
        births = len(online)
        t = await rig.tap(Cards.SENIOR)
        assert t.payload["decision"] == "granted", t.payload
        await asyncio.sleep(2)
        now_online = [s for s in rig.on("state") if s.payload.get("state") == "online"]
        assert len(now_online) == births, "the daemon restarted after the jump"
        if m.payload.get("clock") == "gps":
            reply = await rig.command("ping")
            assert not reply["ok"] and reply["error"]["code"] == "stale", reply
            report.measured["clock_jump"] = "GPS time followed; signed commands refused as stale"
        else:
            report.measured["clock_jump"] = "system clock synced: GPS time not used for stamps"

    if rig.scripted_gps:
        await report.step(
            f"the receiver's clock jumps {JUMP_BY_S:g} s: taps and events go on", clock_jump()
        )
    else:
        report.skip("a GPS clock jump", "a real receiver's clock cannot be made to jump")
    await report.step(
        "a flood of hostile commands: each answered, the session never dropped",
        hostile_flood(rig, report, quick),
    )
    await report.step(
        "the link cut every 2 s: shortest reconnect delays, every door event once, no gap",
        flapping_link(rig, report, quick),
    )

    door = storage.DoorToggler(rig, PIN_DOOR)
    await storage.full_disk(rig, report, door)
    for damage in storage.DAMAGES:
        await storage.damaged_outbox(rig, report, damage, door)
    storage.no_seq_reused(rig, report, "events/door", "events/tap", "alarm/outbox_full", "state")
    event_streams_have_no_gaps(rig, report, "events/tap")
    no_uid_reached_the_broker(rig, report)


SCENARIO = Scenario("faults", __doc__ or "", setup, run)

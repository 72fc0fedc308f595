"""A shuttle day: depart, boardings by tap and beam, fuel burn, a DM1 fault, a dead zone
without broker, a panic press, arrival at the service market.

The bus leaves Felletin on the Creuse route (GPS on a pty, 60x along the road), its FMS bus
on an slcan adapter burns fuel and raises a coolant-temperature fault after ~95 s; riders
tap co-pass cards on a PN532; children board through the counting beams at the rear door;
the broker goes away for `outage_s` (two minutes, 15 s with --quick) with taps and a panic
press in the middle; then the bus arrives at the Guéret market.
"""

import asyncio
import time

from hil.rig.report import Report
from hil.rig.rig import PIN_LOCK, Cards, Rig, RigSetup
from hil.scenarios import Scenario
from hil.scenarios.checks import (
    arrives_at_market,
    event_streams_have_no_gaps,
    no_uid_reached_the_broker,
)


def setup(quick: bool) -> RigSetup:
    return RigSetup(profile="shuttle", speed_factor=60.0, count_from=("taps", "beams"))


async def run(rig: Rig, report: Report, quick: bool) -> None:
    outage_s = 15.0 if quick else 120.0

    async def departs() -> None:
        if rig.scripted_gps:
            await rig.expect(
                "position", lambda m: (m.payload.get("speed") or 0) > 3, 60, "moving position"
            )
        await rig.expect("vehicle", lambda m: m.payload.get("ignition") is True, 20, "ignition")

    await report.step("the bus departs: moving positions, ignition on", departs())

    async def boards() -> None:
        t = await rig.tap(Cards.RESIDENT)
        p = t.payload
        assert (p["decision"], p["action"], p["fare_cents"]) == ("granted", "board", 150), p
        assert await rig.get_pin(PIN_LOCK) == 1, "the lock relay is not energised"
        t = await rig.tap(Cards.SENIOR)
        assert (t.payload["decision"], t.payload["fare_cents"]) == ("granted", 0), t.payload

    await report.step("riders tap and board with their fare; the relay opens", boards())

    async def refused() -> None:
        t = await rig.tap(Cards.LOST)
        assert (t.payload["decision"], t.payload["reason"]) == ("denied", "blocked"), t.payload
        t = await rig.tap(Cards.UNKNOWN)
        assert (t.payload["decision"], t.payload["reason"]) == ("denied", "unknown"), t.payload

    await report.step("a lost card and an unknown card are refused", refused())

    async def beams() -> None:
        await rig.cross("in")
        await rig.glitch()
        await rig.cross("in")
        await rig.expect("occupancy", lambda m: m.payload.get("count") == 4, 10, "count 4")

    await report.step("two children board through the beams (a glitch ignored)", beams())

    async def fuel() -> None:
        first = await rig.expect("vehicle", lambda m: "fuel_used_l" in m.payload, 20)
        await rig.expect(
            "vehicle",
            lambda m: m.payload.get("fuel_used_l", 0) > first.payload["fuel_used_l"],
            40,
            "more fuel used",
        )

    await report.step("fuel burns (vehicle.fuel_used_l grows)", fuel())

    async def outage() -> None:
        rig.broker_down()
        await asyncio.sleep(1.0)
        await rig.present(Cards.JOBSEEKER, 0.4)
        await rig.press_panic()
        await asyncio.sleep(outage_s)
        before = {m.payload["seq"] for m in rig.on("events/tap")}
        rig.broker_up()
        alarm = await rig.expect(
            "alarm/panic", lambda m: m.payload.get("active") is True, 30, "the panic alarm"
        )
        tap = await rig.expect(
            "events/tap",
            lambda m: (
                m.payload["seq"] not in before and m.payload["card_ref"] == rig.ref(Cards.JOBSEEKER)
            ),
            30,
            "the tap made offline",
        )
        assert alarm.at <= tap.at, "the alarm did not go out before the taps queued with it"
        assert "lat" in alarm.payload["details"], "the alarm has no position"

    await report.step(f"{outage_s:g} s without broker: tap and panic kept and sent", outage())

    async def ack() -> None:
        active = rig.on("alarm/panic")[-1].payload["details"]["alarm_id"]
        reply = await rig.command("alarm.ack", {"alarm_id": active, "by": "rig"})
        assert reply["ok"], reply
        await rig.expect("alarm/panic", lambda m: m.payload.get("active") is False, 10)

    await report.step("dispatch acknowledges the panic alarm", ack())

    async def fault() -> None:
        await rig.expect(
            "vehicle/faults",
            lambda m: any(c.get("spn") == 110 for c in m.payload.get("active", [])),
            120,
            "DM1 SPN 110",
        )

    await report.step("the coolant fault (DM1 SPN 110) reaches dispatch", fault())

    await arrives_at_market(rig, report, "bus")

    occupancy = rig.on("occupancy")
    report.check(
        "occupancy never negative, capacity and status present",
        bool(occupancy)
        and all(m.payload["count"] >= 0 and m.payload.get("status") for m in occupancy),
    )
    event_streams_have_no_gaps(rig, report, "events/tap", "alarm/panic")
    no_uid_reached_the_broker(rig, report)
    report.measured["taps"] = rig.counts.taps
    report.measured["elapsed_s"] = round(time.monotonic() - report.started, 1)


SCENARIO = Scenario("shuttle-day", __doc__ or "", setup, run)

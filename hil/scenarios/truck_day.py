"""A truck day at a service market: the provider logs in, drives to the market, opens the
side door, checks clients in; alone in the truck, presses the panic button; the power is
cut before dispatch answers, and the alarm is still there after the restart until acked.
"""

from hil.rig.report import Report
from hil.rig.rig import Cards, Rig, RigSetup
from hil.scenarios import Scenario
from hil.scenarios.checks import (
    arrives_at_market,
    event_streams_have_no_gaps,
    no_uid_reached_the_broker,
)


def setup(quick: bool) -> RigSetup:
    return RigSetup(profile="truck", speed_factor=60.0, capacity=8)


async def run(rig: Rig, report: Report, quick: bool) -> None:
    async def login() -> None:
        t = await rig.tap(Cards.PROVIDER)
        assert (t.payload["action"], t.payload["profile"]) == ("login", "provider"), t.payload

    await report.step("the provider logs in with a card", login())

    await arrives_at_market(rig, report, "truck")

    async def door() -> None:
        await rig.door(True)
        await rig.expect(
            "events/door",
            lambda m: m.payload.get("source") == "sensor" and m.payload.get("open") is True,
            5,
        )
        await rig.door(False)
        await rig.expect("events/door", lambda m: m.payload.get("open") is False, 5)

    await report.step("the side door opens and closes (events/door from the contact)", door())

    async def clients() -> None:
        for uid in (Cards.RESIDENT, Cards.SENIOR, Cards.UNKNOWN):
            t = await rig.tap(uid)
            assert (t.payload["decision"], t.payload["action"]) == ("granted", "checkin"), t.payload
        t = await rig.tap(Cards.LOST)
        assert t.payload["reason"] == "blocked", t.payload
        await rig.expect("occupancy", lambda m: m.payload.get("count") == 3, 5, "3 checked in")

    await report.step("three clients check in (one unknown), a lost card is refused", clients())

    async def panic() -> None:
        await rig.press_panic()
        raised = await rig.expect(
            "alarm/panic", lambda m: m.payload.get("active") is True, 5, "the alarm"
        )
        assert "lat" in raised.payload["details"], "no position in the alarm"
        await rig.expect(
            "alarm/panic",
            lambda m: m.payload.get("reason") == "not acknowledged yet",
            15,
            "a reminder",
        )

    await report.step("panic: the alarm arrives with the position, and is repeated", panic())

    async def power_cut() -> None:
        await rig.power_cut()
        await rig.expect(
            "alarm/panic",
            lambda m: m.payload.get("reason") == "still active after a restart",
            15,
            "the alarm restored",
        )
        alarm_id = rig.on("alarm/panic")[-1].payload["details"]["alarm_id"]
        reply = await rig.command("alarm.ack", {"alarm_id": alarm_id, "by": "dispatch"})
        assert reply["ok"], reply
        await rig.expect("alarm/panic", lambda m: m.payload.get("active") is False, 10)

    await report.step("a power cut does not clear the alarm; alarm.ack does", power_cut())

    async def logout() -> None:
        t = await rig.tap(Cards.PROVIDER)
        assert t.payload["action"] == "logout", t.payload

    await report.step("the provider logs out (the login survived the power cut)", logout())
    event_streams_have_no_gaps(rig, report, "events/tap", "events/door", "alarm/panic")
    no_uid_reached_the_broker(rig, report)


SCENARIO = Scenario("truck-day", __doc__ or "", setup, run)

"""A coworking venue: bookings open the door, staff always, a full room refuses entry, a lost
card reported during the day is refused at once, ops unlock the door remotely.
"""

import asyncio

from edged.access.lists import sign_lists
from hil.rig.report import Report
from hil.rig.rig import PIN_LOCK, Cards, Rig, RigSetup
from hil.scenarios import Scenario
from hil.scenarios.checks import event_streams_have_no_gaps, no_uid_reached_the_broker


def setup(quick: bool) -> RigSetup:
    return RigSetup(profile="venue", capacity=3, count_from=("beams",))


async def run(rig: Rig, report: Report, quick: bool) -> None:
    async def booking() -> None:
        t = await rig.tap(Cards.JOBSEEKER)
        assert (t.payload["decision"], t.payload["reason"]) == ("granted", "booking"), t.payload
        assert await rig.get_pin(PIN_LOCK) == 1, "the door strike did not open"
        await rig.cross("in")
        await rig.expect("occupancy", lambda m: m.payload.get("count") == 1, 5)

    await report.step("a booked card opens the door; the beams count one in", booking())

    async def others() -> None:
        t = await rig.tap(Cards.RESIDENT)
        assert (t.payload["decision"], t.payload["reason"]) == ("denied", "no_booking")
        t = await rig.tap(Cards.STAFF)
        assert (t.payload["decision"], t.payload["reason"]) == ("granted", "staff")
        await rig.cross("in")

    await report.step("no booking: refused; staff: let in", others())

    async def full() -> None:
        await rig.cross("in")  # a third person: the room holds 3
        await rig.expect("occupancy", lambda m: m.payload.get("status") == "FULL", 5, "status FULL")
        await asyncio.sleep(11)  # past the repeat window of the jobseeker's first tap
        # the jobseeker is inside: a tap is an exit, never refused
        t = await rig.tap(Cards.JOBSEEKER)
        assert t.payload["action"] == "exit", t.payload
        t = await rig.tap(Cards.SENIOR)  # no booking, and full anyway
        assert t.payload["decision"] == "denied", t.payload

    await report.step("the room at capacity says FULL; leaving is never refused", full())

    async def refused_when_full() -> None:
        delta = {
            "kind": "delta",
            "fleet": "rig",
            "version": rig.lists_version + 1,
            "base_version": rig.lists_version,
            "bookings": {
                rig.ref(Cards.RESIDENT): [
                    {
                        "room": "salle-1",
                        "start": "2020-01-01T00:00:00Z",
                        "end": "2099-01-01T00:00:00Z",
                    }
                ]
            },
        }
        reply = await rig.command(
            "access.update", {"lists": delta, "sig": sign_lists(rig.list_key, delta)}
        )
        assert reply["ok"], reply
        rig.lists_version += 1
        t = await rig.tap(Cards.RESIDENT)
        assert (t.payload["decision"], t.payload["reason"]) == ("denied", "full"), t.payload
        await rig.cross("out")
        t = await rig.tap(Cards.RESIDENT)  # a refusal is not remembered: no repeat window
        assert (t.payload["decision"], t.payload["reason"]) == ("granted", "booking"), t.payload

    await report.step(
        "a booking added by a signed delta: refused `full`, let in once someone left",
        refused_when_full(),
    )

    async def lost() -> None:
        delta = {
            "kind": "delta",
            "fleet": "rig",
            "version": rig.lists_version + 1,
            "base_version": rig.lists_version,
            "deny": {rig.ref(Cards.STAFF): {"reason": "lost"}},
        }
        bad = {"lists": delta, "sig": sign_lists(rig.cmd_key, delta)}  # the wrong key
        reply = await rig.command("access.update", bad)
        assert not reply["ok"] and reply["error"]["code"] == "bad_signature", reply
        reply = await rig.command(
            "access.update", {"lists": delta, "sig": sign_lists(rig.list_key, delta)}
        )
        assert reply["ok"], reply
        rig.lists_version += 1  # an update forgets recent grants: no repeat window to wait
        t = await rig.tap(Cards.STAFF)
        assert (t.payload["decision"], t.payload["reason"]) == ("denied", "blocked"), t.payload

    await report.step("a lost staff card (signed delta) is refused at once", lost())

    async def unlock() -> None:
        await asyncio.sleep(5.5)  # the last grant's pulse is over
        assert await rig.get_pin(PIN_LOCK) == 0
        reply = await rig.command("door.unlock", {"pulse_s": 2})
        assert reply["ok"], reply
        assert await rig.get_pin(PIN_LOCK) == 1, "door.unlock did not energise the relay"
        reply = await rig.command("occupancy.reset", {"count": 0})
        assert reply["ok"], reply
        await rig.expect("occupancy", lambda m: m.payload.get("count") == 0, 5)

    await report.step("ops unlock the door remotely and reset the count", unlock())
    event_streams_have_no_gaps(rig, report, "events/tap")
    no_uid_reached_the_broker(rig, report)


SCENARIO = Scenario("venue", __doc__ or "", setup, run)

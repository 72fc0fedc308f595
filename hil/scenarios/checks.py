"""Checks every scenario ends with: nothing lost, nothing private, the daemon still sane."""

import itertools

from hil.rig.report import Report
from hil.rig.rig import Rig


def no_uid_reached_the_broker(rig: Rig, report: Report) -> None:
    """Grep every byte dispatch received for every card UID, in hex of both cases."""
    assert rig.dispatch is not None
    text = "\n".join(str(m.payload) for m in rig.dispatch.messages)
    leaked = [uid.hex() for uid in rig.uids() if uid.hex() in text.lower()]
    report.check(
        f"no raw UID in {len(rig.dispatch.messages)} messages at the broker",
        not leaked,
        f"leaked: {leaked}" if leaked else "",
    )


def event_streams_have_no_gaps(rig: Rig, report: Report, *suffixes: str) -> None:
    """After de-duplication on (epoch, seq), each event stream counts up by one: nothing
    lost (seq goes on across epochs: a new epoch starts above the last seq written)."""
    for suffix in suffixes:
        keys = {
            (m.payload.get("epoch"), m.payload["seq"]) for m in rig.on(suffix) if "seq" in m.payload
        }
        seqs = sorted(seq for _, seq in keys)
        gaps = [b for a, b in itertools.pairwise(seqs) if b != a + 1]
        report.check(
            f"{suffix}: {len(seqs)} messages, no seq gap",
            bool(seqs) and not gaps,
            f"gaps before {gaps[:5]}" if gaps else ("none received" if not seqs else ""),
        )


async def arrives_at_market(rig: Rig, report: Report, vehicle: str) -> None:
    """The route's Guéret market geofence: reached on the emulated bench, skipped on a
    real receiver, which goes where it is."""
    if not rig.scripted_gps:
        report.skip("arrival at the market", "a real receiver does not drive the route")
        return
    await report.step(
        f"the {vehicle} arrives at the Guéret service market",
        rig.expect(
            "events/geofence",
            lambda m: m.payload.get("kind") == "market" and m.payload.get("event") == "arrive",
            240,
            "arrival at the market",
        ),
    )

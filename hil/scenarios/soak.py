"""Soak: a 24-hour shuttle day, accelerated (the route at 144x: a day in 10 minutes; one
minute with --quick), with a tap every 10 s, beam crossings, door cycles and a broker
outage in the middle. RSS may grow by at most 5 MB after warm-up, file descriptors not at
all, and the outbox must be empty again at the end.
"""

import asyncio
import time

from hil.rig.report import Report
from hil.rig.rig import Cards, Rig, RigSetup
from hil.scenarios import Scenario
from hil.scenarios.checks import event_streams_have_no_gaps, no_uid_reached_the_broker

DAY_S = 86_400.0
MAX_RSS_GROWTH_MB = 5.0

BACKLOG_S = 2.0
"""An outbox row this old at the end is a backlog, not the last sample on its way."""


def duration(quick: bool) -> float:
    return 60.0 if quick else 600.0


def setup(quick: bool) -> RigSetup:
    return RigSetup(
        profile="shuttle",
        speed_factor=DAY_S / 600.0,
        seconds=duration(quick) + 120,
        count_from=("taps", "beams"),
        health_s=5.0,
    )


async def run(rig: Rig, report: Report, quick: bool) -> None:
    total = duration(quick)
    warmup = 30.0 if not quick else 20.0
    outage_at, outage_s = total / 2, (20.0 if not quick else 8.0)
    cards = [Cards.RESIDENT, Cards.SENIOR, Cards.JOBSEEKER, Cards.STAFF, Cards.UNKNOWN]
    t0 = time.monotonic()
    samples: list[tuple[float, float, int]] = []
    taps = crossings = 0
    outage_done = False
    rss0 = fds0 = None

    async def activity() -> None:
        nonlocal taps, crossings, outage_done, rss0, fds0
        while (elapsed := time.monotonic() - t0) < total:
            if rss0 is None and elapsed >= warmup:
                rss0, fds0 = rig.daemon.rss_mb(), rig.daemon.fds()
            if not outage_done and elapsed >= outage_at:
                rig.broker_down()
                await asyncio.sleep(outage_s)
                rig.broker_up()
                outage_done = True
            await rig.present(cards[taps % len(cards)], 0.4)
            taps += 1
            for direction in ("in", "out"):
                await rig.cross(direction)  # type: ignore[arg-type]
                crossings += 1
            await rig.door(True)
            await asyncio.sleep(0.2)
            await rig.door(False)
            samples.append((elapsed, rig.daemon.rss_mb(), rig.daemon.fds()))
            await asyncio.sleep(max(0.0, 10.0 - 1.6))

    await report.step(f"{total:g} s of taps, crossings, door cycles and an outage", activity())
    await asyncio.sleep(8)  # drain after the last activity

    async def drained() -> None:
        # positions keep coming: one written just before a report is no backlog. The next
        # report may show another (the sample period and the health period can keep the
        # same phase: CI saw depth 1, a sample 0.0 s old, in three reports in a row), so a
        # report whose oldest row is younger than BACKLOG_S counts as drained; a backlog
        # that did not drain has an old row in all three
        for _ in range(3):
            outbox = (await rig.health())["outbox"]
            age = outbox.get("oldest_age_s")
            if outbox["depth"] == 0 or (isinstance(age, int | float) and age < BACKLOG_S):
                return
        raise AssertionError(outbox)

    await report.step("the outbox is empty again at the end", drained())
    rss1, fds1 = rig.daemon.rss_mb(), rig.daemon.fds()
    report.measured.update(
        {
            "simulated_h": round(total * rig.setup.speed_factor / 3600, 1),
            "taps": taps,
            "crossings": crossings,
            "rss_warm_mb": round(rss0 or 0, 1),
            "rss_end_mb": round(rss1, 1),
            "fds_warm": fds0,
            "fds_end": fds1,
            "rss_samples_mb": [round(r, 1) for _, r, _ in samples],
        }
    )
    report.check(
        f"RSS growth after warm-up ≤ {MAX_RSS_GROWTH_MB:g} MB",
        rss0 is not None and rss1 - rss0 <= MAX_RSS_GROWTH_MB,
        f"{rss0 or 0:.1f} -> {rss1:.1f} MB",
    )
    report.check(
        "no file descriptor growth",
        fds0 is not None and fds1 <= fds0,
        f"{fds0} -> {fds1}",
    )
    taps_seen = len({m.payload["seq"] for m in rig.on("events/tap")})
    report.check(f"every tap reached dispatch ({taps})", taps_seen == taps, f"{taps_seen} seen")
    event_streams_have_no_gaps(rig, report, "events/tap", "events/door")
    no_uid_reached_the_broker(rig, report)


SCENARIO = Scenario("soak", __doc__ or "", setup, run)

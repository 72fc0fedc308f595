"""A power cut at any instant (the ignition) loses nothing the outbox called durable.

The real outbox runs in a child process on an ext4 card (`tests.helpers.disk.sd_card`),
writing alarms, events and samples while an uplink acknowledges them; the card is cut
(only what was fsync'd stays) at different points: mid-commit, mid-delete of acknowledged
rows, mid-checkpoint of the WAL (64 KiB here: one every few commits), mid-thinning.

What the test demands is what the outbox reported durable before the cut began. The cut
(the ext4 shutdown ioctl) takes milliseconds, and an fdatasync running through it can
return success for a write that extended the file and that the cut then loses (its new
size is not on the card): the child goes on and says `durable`, which no process can do
after a real power cut. So each `durable` line carries the instant it was said, and the
lines said once the cut had begun are not counted (they may or may not be on the card, as
any commit in flight at the cut)."""

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.errors import NotDurableError
from edged.outbox import Outbox
from tests.edged.outbox.test_store import TOPICS, alarm, door, drain
from tests.helpers.disk import power_back, power_cut, sd_card

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


async def run_until_cut(card: Path, durable_lines: int, *extra: str) -> tuple[list[str], float]:
    """The child's lines, and the instant (`time.monotonic()`) the cut began, once the
    child reported `durable_lines`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.helpers.outbox_child",
        str(card / "outbox.sqlite"),
        *extra,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    durable = 0
    try:
        async with asyncio.timeout(60):
            while durable < durable_lines:
                line = (await proc.stdout.readline()).decode()
                assert line, "the child stopped"
                lines.append(line.strip())
                durable += line.startswith("durable ")
        cut = time.monotonic()
        power_cut(card)
    finally:
        proc.kill()
        rest, _ = await proc.communicate()
    # said before the cut, during it or after it (until the kill): `before`
    lines += rest.decode().splitlines()
    return lines, cut


def before(lines: list[str], cut: float) -> list[str]:
    """The lines, `durable` ones only when said before the `cut` began."""
    return [
        line for line in lines if not line.startswith("durable ") or float(line.split()[3]) < cut
    ]


def said(lines: list[str], what: str) -> set[tuple[str, int]]:
    out = set()
    for line in lines:
        word, *rest = line.split()
        if word == what:
            out.add((rest[0], int(rest[1])))
    return out


CUTS = [(lines, caps, "") for lines in (50, 700, 3000, 9000) for caps in ("200000:3", "300:50")]
GATHERING = [  # each way of gathering at a cut early and late, at its caps and not (CI's time)
    (lines, caps, gather)
    for gather in ("offline", "online")
    for lines, caps in ((700, "300:50"), (3000, "200000:3"))
]


@pytest.mark.parametrize(("durable_lines", "caps", "gather"), CUTS + GATHERING)
async def test_a_power_cut_loses_no_alarm_or_event_the_outbox_called_durable(
    tmp_path: Path, durable_lines: int, caps: str, gather: str
) -> None:
    """`caps`: max_rows and the uplink's delay before an ack (at its caps: thinning);
    `gather`: runs of samples gathering for one commit (the link down, or `batch_s`)."""
    max_rows, in_flight_ms = caps.split(":")
    extra = ["--gather", gather] if gather else []
    with sd_card(tmp_path / "sd") as card:
        lines, cut = await run_until_cut(
            card, durable_lines, "--max-rows", max_rows, "--in-flight-ms", in_flight_ms, *extra
        )
        power_back(card)
        box = Outbox(OutboxConfig(path=card / "outbox.sqlite", flush_interval_ms=0), Clock())
        await box.open()
        present = {
            (m.topic.removeprefix(TOPICS.base + "/"), json.loads(m.payload)["seq"])
            for m in await drain(box)
        }
        losses = box.losses
        await box.close()
    durable, acked = said(before(lines, cut), "durable"), said(lines, "acked")
    kept = {(s, q) for s, q in durable - acked if s != "position"}  # samples: by rule
    assert {s for s, _ in kept} <= {"alarm/panic", "events/door"}
    assert not {s for s, _ in said(lines, "refused")} & {"alarm/panic"}, "an alarm refused"
    missing = kept - present
    assert not missing, f"{len(missing)} durable message(s) lost: {sorted(missing)[:10]}"
    # a cut inside a commit (the state store's seq marks written, the outbox's rows not
    # yet): a gap of that commit's messages, none of them reported durable
    assert {loss.cause for loss in losses} <= {"rolled_back"}
    in_gaps = {
        (stream, seq)
        for loss in losses
        for stream, (lo, hi) in loss.gaps.items()
        for seq in range(lo, hi + 1)
    }
    assert not in_gaps & durable, sorted(in_gaps & durable)[:10]


async def test_a_card_that_fails_every_call_with_eio_still_hands_out_the_panic(
    tmp_path: Path,
) -> None:
    """An SD card giving up (every read and write EIO, as a cut filesystem does): the
    commit fails, the alarm waits in memory and is the uplink's next message."""
    with sd_card(tmp_path / "sd") as card:
        box = Outbox(OutboxConfig(path=card / "outbox.sqlite", flush_interval_ms=0), Clock())
        await box.open()
        box.put_nowait(door(1))
        await box.flush()
        power_cut(card)
        refused = box.put_nowait(alarm())
        with pytest.raises(sqlite3.OperationalError, match="I/O"):
            await box.flush()
        with pytest.raises(NotDurableError):
            await refused
        batch = await asyncio.wait_for(box.next_batch(10), 5)
        await box.close()
        power_back(card)
    assert batch[0].topic == TOPICS.base + "/alarm/panic"

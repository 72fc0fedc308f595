"""Storage faults, for the faults scenario: the disk fills up through a broker blip and a
restart; the outbox is damaged four ways (truncated, a garbled page, emptied, its WAL lost).

What must hold, judged as dispatch would judge it (de-duplicated on (topic, epoch, seq), as
docs/topics.md says): the node stays on the broker and says what is wrong
(`alarm/outbox_full` straight to the broker on a full disk; `alarm/outbox_lost` after a
damaged outbox), doors answer from the lists in the state store, and no (topic, epoch,
seq) ever carries two different messages.
"""

import asyncio
import json
import os
from pathlib import Path

from hil.disk import fill, small_disk
from hil.dispatch import Received, dedup_key, publish
from hil.rig.report import Report
from hil.rig.rig import Cards, Rig, node_files

DAMAGES = ("truncated", "garbled page", "emptied", "WAL lost")
EXPECTED_CAUSE = {
    "truncated": "corrupt",
    "garbled page": "corrupt",
    "emptied": "missing",
    "WAL lost": "rolled_back",
}


def active(m: Received) -> bool:
    return m.payload.get("active") is True


async def online_again(rig: Rig, births: int, timeout: float = 20.0) -> None:
    await rig.expect(
        "state",
        lambda m: m.payload.get("state") == "online",
        timeout,
        "the node online again",
        after=births,
    )


async def full_disk(rig: Rig, report: Report, door: "DoorToggler") -> None:
    """The outbox on a small disk that fills up; a broker blip; a restart on the full disk."""
    used = sum(f.stat().st_size for f in node_files(rig.outbox_path.parent))
    size = f"{max(4 << 20, 2 * used + (2 << 20)) // 1024}k"
    with small_disk(rig.workdir / "small-disk", size) as disk:
        if disk is None:
            report.skip("the full disk", "cannot mount a tmpfs here (needs root)")
            return
        await rig.move_outbox(disk)
        try:
            await report.step(
                "the disk fills up: the alarm goes straight to the broker",
                _fill_and_alarm(rig, disk, door),
            )
            await report.step(
                "a broker blip on the full disk: back online, alarm again", _blip(rig, door)
            )
            await report.step(
                "a restart on the full disk: online, alarm, doors answer", _restart_full(rig)
            )
            await report.step("the disk has room again: the alarm is cleared", _free(rig, disk))
        finally:
            (disk / "filler").unlink(missing_ok=True)
            await rig.move_outbox(None)


async def _fill_and_alarm(rig: Rig, disk: Path, door: "DoorToggler") -> None:
    before = len(rig.on("alarm/outbox_full"))
    fill(disk)
    made = await door.toggle(10)
    alarm = await rig.expect("alarm/outbox_full", active, 15, "the direct alarm", after=before)
    assert "cannot write the outbox" in alarm.payload["reason"], alarm.payload
    await door.delivered(made, "door events made on the full disk (sent from memory)")


async def _blip(rig: Rig, door: "DoorToggler") -> None:
    before = len(rig.on("alarm/outbox_full"))
    births = len(rig.on("state"))
    rig.broker_down()
    made = await door.toggle(6)  # in memory only: sent once the link is back
    await asyncio.sleep(0.5)
    rig.broker_up()
    await online_again(rig, births)
    await rig.expect("alarm/outbox_full", active, 15, "the alarm at the new session", after=before)
    await door.delivered(made, "door events made during the blip")


async def _restart_full(rig: Rig) -> None:
    before = len(rig.on("alarm/outbox_full"))
    lost_before = len(rig.on("alarm/outbox_lost"))
    rig.daemon.kill9()
    await rig.start_daemon(timeout=30)
    await rig.expect("alarm/outbox_full", active, 15, "the alarm after the restart", after=before)
    t = await rig.tap(Cards.RESIDENT)
    assert t.payload["decision"] == "granted", t.payload
    # what the disk refused was kept in memory and sent, or lost with the restart: the node
    # may report it (it cannot know which were sent), as ops would see and acknowledge
    await losses_acked(rig, lost_before)


async def losses_acked(rig: Rig, after: int, stream: str | None = None) -> set[int]:
    """The seqs of `stream` that an `alarm/outbox_lost` raised since index `after` reports
    as lost by a commit cut short (`rolled_back`); the alarm is then acknowledged, as ops
    would, so the next step sees only its own.

    A kill -9 between the seq marks' write and the outbox's COMMIT (a few ms per commit)
    loses the batch being committed, never stored, its callers never told it was; a
    commit the full disk refused is sent from memory, or lost with a restart. The node
    reports those seqs rather than reuse them: any other cause is a loss of what was
    stored."""
    raised = [m for m in rig.on("alarm/outbox_lost")[after:] if active(m)]
    reported: set[int] = set()
    for m in raised:
        for loss in m.payload["details"]["losses"]:
            assert loss["cause"] == "rolled_back", f"reported as {loss}"
            if stream is not None:
                lo, hi = loss.get("gaps", {}).get(stream, (1, 0))
                reported.update(range(lo, hi + 1))
    if raised:
        acked = len(rig.on("alarm/outbox_lost"))
        await ack_unsigned(rig)
        await rig.expect("alarm/outbox_lost", lambda m: not active(m), 10, "the ack", after=acked)
    return reported


async def _free(rig: Rig, disk: Path) -> None:
    before = len(rig.on("alarm/outbox_full"))
    (disk / "filler").unlink()
    await rig.expect(
        "alarm/outbox_full", lambda m: not active(m), 30, "the alarm cleared", after=before
    )
    seen = unique(rig.on("alarm/outbox_full"))
    assert not active(seen[-1]), "de-duplicated on (topic, epoch, seq), the clear must show"


async def damaged_outbox(rig: Rig, report: Report, damage: str, door: "DoorToggler") -> None:
    async def run() -> None:
        births = len(rig.on("state"))
        lost_before = len(rig.on("alarm/outbox_lost"))
        rig.broker_down()  # these stay queued in the outbox, and are lost with it
        await door.toggle(6)
        await asyncio.sleep(0.3)
        if damage == "WAL lost":
            rig.daemon.kill9()  # a power cut...
        else:
            rig.daemon.stop()  # ...or the SD card goes bad while the node is off
        damage_outbox(rig.outbox_path, damage)
        rig.broker_up()
        await rig.start_daemon(timeout=30)
        await online_again(rig, births)
        alarm = await rig.expect(
            "alarm/outbox_lost", active, 20, "alarm/outbox_lost", after=lost_before
        )
        causes = [loss["cause"] for loss in alarm.payload["details"]["losses"]]
        assert EXPECTED_CAUSE[damage] in causes, (
            alarm.payload,
            [m.payload for m in rig.on("alarm/outbox_lost")[lost_before:]],
        )
        moved = [loss.get("moved_to") for loss in alarm.payload["details"]["losses"]]
        missing = absent([m for m in moved if m])
        assert not missing, f"{missing}: the damaged file must be kept"
        t = await rig.tap(Cards.SENIOR)  # the lists came through: they live apart
        assert t.payload["decision"] == "granted", t.payload
        acked = len(rig.on("alarm/outbox_lost"))
        await ack_unsigned(rig)
        await rig.expect("alarm/outbox_lost", lambda m: not active(m), 10, "the ack", after=acked)

    await report.step(f"outbox {damage}: the node starts, says so, the doors answer", run())


def absent(paths: list[str]) -> list[str]:
    return [p for p in paths if not Path(p).exists()]


def damage_outbox(db: Path, damage: str) -> None:
    if damage == "WAL lost":
        Path(f"{db}-wal").unlink(missing_ok=True)
    elif damage == "truncated":
        os.truncate(db, db.stat().st_size // 2 + 100)
    elif damage == "emptied":
        os.truncate(db, 0)
    else:
        with db.open("r+b") as f:  # noise over page 2's b-tree header
            f.seek(4096)
            f.write(os.urandom(100))


async def ack_unsigned(rig: Rig) -> None:
    """`alarm.ack` is not a signed command by default: sent unsigned, it is judged by the
    broker's ACL alone, and a node whose clock jumped (GPS time) still takes it."""
    before = len(rig.on("reply/alarm/ack"))
    body = {"id": f"ack-{before}", "args": {"kind": "outbox_lost", "by": "rig"}}
    await publish(rig.broker.port, f"{rig.base}/cmd/alarm.ack", json.dumps(body).encode())
    reply = await rig.expect("reply/alarm/ack", timeout=10, after=before)
    assert reply.payload["ok"], reply.payload


def unique(messages: list[Received]) -> list[Received]:
    seen: set[tuple[str, str | None, int]] = set()
    out = []
    for m in messages:
        if "seq" in m.payload and dedup_key(m) not in seen:
            seen.add(dedup_key(m))
            out.append(m)
    return out


def no_seq_reused(rig: Rig, report: Report, *suffixes: str) -> None:
    """No (topic, epoch, seq) ever carried two different messages."""
    assert rig.dispatch is not None
    clashes = []
    for suffix in suffixes:
        by_key: dict[tuple[str, str | None, int], set[int]] = {}
        for m in rig.on(suffix):
            if "seq" in m.payload:
                by_key.setdefault(dedup_key(m), set()).add(m.payload["ts"])
        clashes += [k for k, ts in by_key.items() if len(ts) > 1]
    report.check(
        f"no (topic, epoch, seq) carried two messages on {', '.join(suffixes)}",
        not clashes,
        f"reused: {clashes[:5]}" if clashes else "",
    )


class DoorToggler:
    """Door movements at the pin, and whether dispatch got an event for each."""

    def __init__(self, rig: Rig, pin: int) -> None:
        self.rig = rig
        self.pin = pin
        self._known: set[tuple[str, str | None, int]] = set()

    async def toggle(self, n: int, gap_s: float = 0.1) -> int:
        """`n` movements; returns `n` (each is one events/door)."""
        self._known = self._sensor_events()
        # the level a (re)start set must be steady for the driver's debounce (50 ms) first,
        # or the first movement is not one
        await asyncio.sleep(0.2)
        level = await self.rig.get_pin(self.pin)
        for _ in range(n):
            level ^= 1
            await self.rig.set_pin(self.pin, level)
            await asyncio.sleep(gap_s)
        return n

    def _sensor_events(self) -> set[tuple[str, str | None, int]]:
        """Door events from the pin (the CAN bus reports doors too)."""
        return {
            dedup_key(m)
            for m in self.rig.on("events/door")
            if "seq" in m.payload and m.payload.get("source") == "sensor"
        }

    def _new(self) -> int:
        return len(self._sensor_events() - self._known)

    async def delivered(self, made: int, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 15
        while self._new() < made:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: {self._new()} of {made} reached dispatch")
            await asyncio.sleep(0.1)

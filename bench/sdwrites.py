"""What the node writes to its SD card per day, and where from.

    python -m bench.sdwrites --json                  # shuttle and venue, 120 s online, 60 s offline
    python -m bench.sdwrites --quick --json          # 40 s and 20 s
    python -m bench.sdwrites --profile venue --online-s 300

Root only (it loop-mounts a file). The node's data directory (outbox, state store, tap journal,
marks) is a fresh ext4 filesystem in a file, mounted `noatime` as Raspberry Pi OS mounts its
root, on a loop device: the device's own counters (`/sys/block/loopN/stat`) say what reached
the "card", as the kernel's writeback sends it (dirty pages after 30 s, every fsync at once,
ext4's journal every 5 s). The daemon is `edged run` on `hil.rig` (a real Mosquitto; NMEA GPS
at 1 Hz on a pty and the FMS bus at its own rate on an slcan pty for a shuttle; a PN532 on a
pty; mock GPIO), started under `strace -f --seccomp-bpf`, which lists each write and sync
call with its file: the per-file figures. strace changes no byte written.

Workload, per profile: a tap every 10 s (shuttle) or 60 s (venue), the door opened and closed
every 60 s, a person through the door and the beams every 30 s (venue: the door opens for
them, two more door events), health every 30 s with a beat every 300 s (the shipped
configs'), a position for every 1 Hz fix (shuttle). Three windows, each
measured after the last one's writes had 35 s to settle: `online` (the broker up), `offline`
(the broker stopped: the backlog grows) and `drain` (35 s from the broker's return). Rates
are extrapolated to a day (x 86,400 / the window's seconds).
Before the windows, 900 door events at 12 a second fill both WALs to their bound, so that
they are written over in place as on a node that has run a while (`--fresh-wal`: measured as
a start leaves them, growing, where each synced commit also journals new blocks).

Keys, per profile and window (`shuttle.online.card_bytes_per_day`...):
- card_bytes_per_day, card_writes_per_day: the loop device's bytes and requests written;
- syscall_bytes_per_day, fsyncs_per_day: what the daemon's write and sync calls on its data
  files asked (fsync, fdatasync, msync);
- by_file: per file, {bytes_per_day, writes_per_day, fsyncs_per_day};
- dispatch_messages_per_day, payload_bytes_per_day: the messages dispatch received and their
  JSON size (online and drain);
- log_bytes_per_day: what the daemon wrote to its standard output and error (the journal's
  input on a node);
- idle_card_bytes_per_day (per profile): the same filesystem with the daemon stopped, after
  the windows: the baseline measured in the same run (the filesystem's own writes);
- files_after: the data files' sizes once the daemon stopped.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import say
from hil.rig.rig import Cards, Rig, RigSetup

SETTLE_S = 35.0
"""The kernel writes a dirty page back 30 s after it was dirtied (vm.dirty_expire_centisecs
3000, looked at every 5 s): a window measured from this long after the last one's change
counts its own writes, in the steady state."""
WARM_DOOR_EVENTS = 900
SHUTTLE_POSITION = """
[services.position.moving]
min_period_s = 1
max_period_s = 1
[services.position.stopped]
min_period_s = 1
max_period_s = 1
"""
"""A position for every fix (1 Hz), stopped or moving: the most the GPS can make the node
write (the shuttle example's rules send one every 1-2 s while moving, fewer when stopped)."""
_CALL = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>(.*)\)\s+=\s+(-?\d+)")
_SYNCS = {"fsync", "fdatasync", "msync", "sync_file_range"}
_WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class Card:
    """A fresh ext4 filesystem in a file on a loop device, mounted at `mount`."""

    def __init__(self, workdir: Path, size_mb: int = 512) -> None:
        self.image = workdir / "card.img"
        self.mount = workdir / "card"
        self.size_mb = size_mb
        self.device = ""

    def __enter__(self) -> "Card":
        with self.image.open("wb") as f:
            f.truncate(self.size_mb * 2**20)
        # initialised now, not by ext4lazyinit in the background during the windows
        _run(
            "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image)
        )
        self.device = _run("losetup", "--find", "--show", str(self.image)).strip()
        self.mount.mkdir()
        _run("mount", "-o", "noatime", self.device, str(self.mount))
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", str(self.mount)], check=False)
        if self.device:
            subprocess.run(["losetup", "-d", self.device], check=False)

    def written(self) -> tuple[int, int]:
        """Bytes and write requests the device has received so far."""
        fields = Path(f"/sys/block/{Path(self.device).name}/stat").read_text().split()
        return int(fields[6]) * 512, int(fields[4])


class Trace:
    """The strace output file, read from where the last window ended."""

    def __init__(self, path: Path, data_dir: Path, log: Path) -> None:
        self.path = path
        self.data_dir = str(data_dir)
        self.log = str(log)
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self) -> dict[str, dict[str, int]]:
        """Per file name: bytes, writes and syncs called since `mark`."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: {"bytes": 0, "writes": 0, "syncs": 0})
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        for line in data.decode(errors="replace").splitlines():
            m = _CALL.match(line)
            if m is None:
                continue
            call, path, result = m.group(2), m.group(4), int(m.group(6))
            if path == self.log:
                name = "log (stderr)"
            elif path.startswith(self.data_dir + "/"):
                name = path[len(self.data_dir) + 1 :]
            else:
                continue
            if call in _WRITES and result > 0:
                out[name]["bytes"] += result
                out[name]["writes"] += 1
            elif call in _SYNCS:
                out[name]["syncs"] += 1
        return dict(out)


def _per_day(n: float, seconds: float) -> int:
    return round(n * 86400 / seconds)


async def _window(
    rig: Rig, card: Card, trace: Trace, seconds: float, act: Any, quiet: bool, name: str
) -> dict[str, Any]:
    say(quiet, f"{name}: {seconds:g} s")
    trace.mark()
    b0, r0 = card.written()
    got0 = len(rig.dispatch.messages) if rig.dispatch else 0
    t0 = time.monotonic()
    await act(t0 + seconds)
    wall = time.monotonic() - t0
    b1, r1 = card.written()
    files = trace.since_mark()
    got = rig.dispatch.messages[got0:] if rig.dispatch else []
    data = {k: v for k, v in files.items() if k != "log (stderr)"}
    log = files.get("log (stderr)", {"bytes": 0})
    result = {
        "seconds": round(wall, 1),
        "card_bytes_per_day": _per_day(b1 - b0, wall),
        "card_writes_per_day": _per_day(r1 - r0, wall),
        "syscall_bytes_per_day": _per_day(sum(v["bytes"] for v in data.values()), wall),
        "fsyncs_per_day": _per_day(sum(v["syncs"] for v in data.values()), wall),
        "log_bytes_per_day": _per_day(log["bytes"], wall),
        "dispatch_messages_per_day": _per_day(len(got), wall),
        "payload_bytes_per_day": _per_day(sum(len(json.dumps(m.payload)) for m in got), wall),
        "by_file": {
            k: {
                "bytes_per_day": _per_day(v["bytes"], wall),
                "writes_per_day": _per_day(v["writes"], wall),
                "fsyncs_per_day": _per_day(v["syncs"], wall),
            }
            for k, v in sorted(files.items(), key=lambda kv: -kv[1]["bytes"])
            if k != "log (stderr)"
        },
    }
    say(quiet, json.dumps(result))
    return result


def _workload(rig: Rig, profile: str) -> Any:
    tap_every = 10.0 if profile == "shuttle" else 60.0
    cards = [Cards.RESIDENT, Cards.SENIOR, Cards.STAFF] if profile == "shuttle" else [Cards.STAFF]
    state = {"tap": 0.0, "door": 0.0, "cross": 0.0, "i": 0}

    async def act(until: float) -> None:
        while time.monotonic() < until:
            now = time.monotonic()
            if now - state["tap"] >= tap_every:
                state["tap"] = now
                card = cards[int(state["i"]) % len(cards)]
                state["i"] += 1
                with contextlib.suppress(Exception):  # offline: dispatch never sees it
                    await rig.present(card, 0.5)
            if now - state["door"] >= 60.0:
                state["door"] = now
                await rig.door(True)
                await asyncio.sleep(3.0)
                await rig.door(False)
            if profile == "venue" and now - state["cross"] >= 30.0:
                state["cross"] = now
                await rig.cross("in" if int(state["i"]) % 2 else "out")
            await asyncio.sleep(0.2)

    return act


async def _settle(act: Any, quiet: bool) -> None:
    say(quiet, f"settling {SETTLE_S:g} s")
    await act(time.monotonic() + SETTLE_S)


async def run_profile(
    profile: str, online_s: float, offline_s: float, quiet: bool, batch_s: float, warm: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"batch_s": batch_s}
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("bench.sdwrites needs strace")
    with tempfile.TemporaryDirectory(prefix="bench-sdwrites-") as tmp, Card(Path(tmp)) as card:
        workdir = Path(tmp) / "rig"
        workdir.mkdir()
        total = online_s + offline_s + 6 * SETTLE_S + 600
        setup = RigSetup(
            profile=profile,  # type: ignore[arg-type]
            speed_factor=1.0,
            can_speed=1.0,
            seconds=total,
            health_s=30,
            outbox_dir=card.mount,
            capacity=10_000,
            count_from=("taps",) if profile == "shuttle" else ("beams",),
            extra=SHUTTLE_POSITION if profile == "shuttle" else "",
        )
        rig = Rig(workdir, setup)
        original = rig.render_config
        broker = f"reconnect_max_s = 1.0\nbatch_s = {batch_s:g}\n"

        def config() -> str:
            text = original().replace("beat_s = 0  #", "beat_s = 300  #")
            return text.replace("reconnect_max_s = 1.0\n", broker)

        rig.render_config = config  # type: ignore[method-assign]
        trace_path = workdir / "strace.txt"
        wrapper = workdir / "python-traced"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec {strace} -f --seccomp-bpf -qq -y -s 0 -o {trace_path} "
            f'-e trace={",".join(sorted(_WRITES | _SYNCS))} -- {sys.executable} "$@"\n'
        )
        wrapper.chmod(0o755)
        rig.daemon.python = str(wrapper)
        say(quiet, f"[{profile}] starting the rig, data on {card.device}")
        await rig.start()
        trace = Trace(trace_path, card.mount, rig.daemon.log)
        act = _workload(rig, profile)
        try:
            if warm:
                await _fill_wal(rig, quiet)
            out["wal_bytes_before"] = {
                p.name: p.stat().st_size for p in sorted(card.mount.glob("*-wal"))
            }
            await _settle(act, quiet)
            out["online"] = await _window(
                rig, card, trace, online_s, act, quiet, f"[{profile}] online"
            )
            depth0 = await _depth(rig)
            rig.broker_down()
            await _settle(act, quiet)
            out["offline"] = await _window(
                rig, card, trace, offline_s, act, quiet, f"[{profile}] offline"
            )
            rig.broker_up()
            out["drain"] = await _window(
                rig, card, trace, SETTLE_S, act, quiet, f"[{profile}] drain"
            )
            out["online"]["outbox_depth"] = depth0
            _stop_traced(rig)
            await asyncio.sleep(SETTLE_S)
            b0, _ = card.written()
            await asyncio.sleep(online_s / 2)
            b1, _ = card.written()
            out["idle_card_bytes_per_day"] = _per_day(b1 - b0, online_s / 2)
            out["files_after"] = {
                p.name: p.stat().st_size for p in sorted(card.mount.iterdir()) if p.is_file()
            }
        finally:
            _stop_traced(rig)
            await rig.close()
    return out


async def _fill_wal(rig: Rig, quiet: bool) -> None:
    """Door events, 12 a second (each a synced commit of its own), until both WALs have
    reached their bound and wrap: a node that has run for a while writes over its WAL in
    place, where a fresh one (each start: SQLite deletes it at a clean close) grows, and
    each synced commit of a growing file also journals its new blocks."""
    say(quiet, f"filling the WALs: {WARM_DOOR_EVENTS} door events")
    for i in range(WARM_DOOR_EVENTS):
        await rig.door(i % 2 == 0)
        await asyncio.sleep(1 / 12)
    await rig.door(False)


def _stop_traced(rig: Rig) -> None:
    """SIGTERM to the daemon itself (strace, signalled, would leave it running), then
    strace is reaped as the rig stops a daemon."""
    if not rig.daemon.alive:
        return
    children = Path(f"/proc/{rig.daemon.pid}/task/{rig.daemon.pid}/children")
    with contextlib.suppress(OSError):
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while rig.daemon.alive and time.monotonic() < deadline:
        time.sleep(0.1)
    rig.daemon.stop()


async def _depth(rig: Rig) -> int | None:
    with contextlib.suppress(Exception):
        report = await rig.health(timeout=40)
        return int(report["outbox"]["depth"])
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--profile", action="append", choices=["shuttle", "venue"])
    p.add_argument("--online-s", type=float, default=120.0)
    p.add_argument("--offline-s", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="40 s online, 20 s offline")
    p.add_argument(
        "--fresh-wal",
        action="store_true",
        help="measure with the WALs as a start leaves them (growing), not filled first",
    )
    p.add_argument(
        "--batch-s",
        type=float,
        default=None,
        help="[broker] batch_s (default: the shipped configs': 20 on a shuttle, 0 at a venue)",
    )
    p.add_argument("--json", action="store_true", help="one line of JSON, no progress")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.sdwrites: root only (it loop-mounts a filesystem)", file=sys.stderr)
        return 2
    online, offline = (40.0, 20.0) if args.quick else (args.online_s, args.offline_s)
    out: dict[str, Any] = {}
    for profile in args.profile or ["shuttle", "venue"]:
        batch_s = (
            args.batch_s if args.batch_s is not None else (20.0 if profile == "shuttle" else 0.0)
        )
        out[profile] = asyncio.run(
            run_profile(profile, online, offline, args.json, batch_s, not args.fresh_wal)
        )
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

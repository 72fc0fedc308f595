"""An NMEA GPS receiver on a pseudo-terminal: replays a log, with faults on demand.

The driver under test opens `link`, a symlink to the slave side of a pty, through pyserial
exactly as it opens /dev/ttyACM0 or a udev symlink such as /dev/gps0. The emulator writes
the log's sentences to the master side, epoch by epoch, at the log's own pace divided by
`speed`; with `baud` it also spaces the bytes as a UART at that rate would (in `chunk`-byte
pieces, like a UART FIFO or USB packets), so the driver sees realistic read sizes.

Unplug, as a USB receiver pulled out: the link is removed and the master closed, so the
open slave reads end-of-file (pyserial: "device reports readiness to read but returned no
data") and the path no longer exists for a reopen; replug creates a fresh pty (a new
/dev/pts/N, as a USB device comes back under a new node) and points the link at it, as the
udev rule does for /dev/gps0.

Faults, each a probability per sentence (seeded): `garbage` (binary noise before it),
`bad_checksum` (one character changed), `drop` (not sent), `cut` (first half sent without
line end, then the next sentence). `inject(data)` writes raw bytes before the next sentence.

By hand: `python -m hil.gps.emulator hil/gps/logs/ublox-m8-gn.nmea --speed 1 --link /tmp/gps0`
then point a `gps.nmea-serial` driver at /tmp/gps0. Ctrl-C stops it and removes the link.
"""

import argparse
import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from drivers.gps.nmea import TIMED, BadSentence, parse_sentence
from hil.pty import open_raw_pty, staged_link

_DAY_S = 86_400.0


@dataclass(frozen=True)
class Faults:
    """Probabilities per sentence; `seed` makes a run repeatable."""

    garbage: float = 0.0
    bad_checksum: float = 0.0
    drop: float = 0.0
    cut: float = 0.0
    seed: int | None = None


def epochs(lines: Iterable[bytes], default_s: float = 1.0) -> list[tuple[float, list[bytes]]]:
    """Group log lines into (seconds to the next burst, lines), as the receiver sent them.

    A log with blank lines is cut at them: each block is one burst (a log written from a
    receiver's manual says so where the order alone cannot: a receiver that sends GSA
    first). Otherwise a burst starts at a timed sentence (GGA, RMC, GNS, GLL, ZDA) with a
    new time, or, without time (cold start), with a type the burst already has. The
    interval is the difference of burst times, `default_s` where the log has no time or
    the gap is implausible.
    """
    raw = [line.rstrip(b"\r\n") for line in lines]
    by_blank = any(not line.strip() for line in raw) and any(line.strip() for line in raw)
    groups: list[tuple[float | None, list[bytes]]] = []
    kinds: set[str] = set()
    cut = True
    for line in raw:
        if not line.strip():
            cut = True
            continue
        try:
            s = parse_sentence(line)
        except BadSentence:
            s = None
        timed = s is not None and s.kind in TIMED
        seconds = None if s is None or s.time_us is None else s.time_us / 1e6
        if by_blank:
            if cut or not groups:
                groups.append((seconds if timed else None, []))
                cut = False
            elif timed and groups[-1][0] is None:
                groups[-1] = (seconds, groups[-1][1])
        elif s is not None and timed:
            at = groups[-1][0] if groups else None
            new_time = seconds is not None and seconds != at
            if not groups or new_time or (seconds is None and s.kind in kinds):
                groups.append((seconds, []))
                kinds = set()
            kinds.add(s.kind)
        if not groups:
            groups.append((None, []))
        groups[-1][1].append(line)
    out: list[tuple[float, list[bytes]]] = []
    for i, (at, group) in enumerate(groups):
        nxt = groups[i + 1][0] if i + 1 < len(groups) else None
        gap = default_s
        if at is not None and nxt is not None:
            gap = (nxt - at) % _DAY_S
            if not 0 < gap <= 10:
                gap = default_s
        elif out:
            gap = out[-1][0]  # the last epoch lasts as long as the one before
        out.append((gap, group))
    return out


class NmeaEmulator:
    """A replaying receiver on a pty behind `link`; `start()` runs it in a thread."""

    def __init__(
        self,
        log: Path | Sequence[bytes],
        link: Path,
        *,
        speed: float = 1.0,
        loop: bool = True,
        baud: int | None = None,
        chunk: int = 0,
        faults: Faults = Faults(),
    ) -> None:
        lines = log.read_bytes().splitlines() if isinstance(log, Path) else list(log)
        self.epochs = epochs(lines)
        if not self.epochs:
            raise ValueError(f"no NMEA sentences in {log}")
        self.link = link
        self.speed = speed
        self.loop = loop
        self.baud = baud
        self.chunk = chunk
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.sent = 0  # sentences written whole
        self.lost = 0  # bytes nobody could take (unplugged, or the pty buffer full)
        self.finished = threading.Event()  # a log played once (loop=False) has ended
        self._master: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: list[bytes] = []
        self._switch: list[tuple[float, list[bytes]]] | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------

    def start(self, after_s: float = 0.0) -> "NmeaEmulator":
        """Plug in and replay; `after_s`: wait that long first, so a reader opened right
        after this call sees the log from its first burst (a pty keeps nothing written
        while no one has it open)."""
        self.replug()
        self._thread = threading.Thread(
            target=self._run, args=(after_s,), name="nmea-emulator", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()

    def __enter__(self) -> "NmeaEmulator":
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        """The port vanishes: link removed, master closed, the open slave reads EOF."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            if self._master is not None:
                os.close(self._master)
                self._master = None

    def replug(self) -> None:
        """A fresh pty behind the link, as a USB receiver plugged in again."""
        master, slave, name = open_raw_pty()
        os.close(slave)
        tmp = staged_link(self.link, name)
        with self._lock:
            if self._master is not None:
                os.close(self._master)
            self._master = master
            os.replace(tmp, self.link)

    def inject(self, data: bytes) -> None:
        """Raw bytes (noise, a hostile line) written before the next sentence."""
        with self._lock:
            self._pending.append(data)

    def switch(self, lines: Sequence[bytes]) -> None:
        """From the next epoch on, replay `lines` from the same place: the same route stamped
        an hour off makes the receiver's clock jump when a test says so, not at a set time."""
        new = epochs(list(lines))
        if len(new) != len(self.epochs):
            raise ValueError(f"{len(new)} epochs to switch to, {len(self.epochs)} playing")
        with self._lock:
            self._switch = new

    # -- the replay -----------------------------------------------------------------------

    def _run(self, after_s: float = 0.0) -> None:
        if after_s and self._stop.wait(after_s):
            return
        next_at = time.monotonic()
        while not self._stop.is_set():
            for i in range(len(self.epochs)):
                with self._lock:
                    if self._switch is not None:
                        self.epochs, self._switch = self._switch, None
                gap, lines = self.epochs[i]
                if self.baud and not self.chunk:  # a sentence at a time, at the line rate
                    for line in lines:
                        self._write(self._sentence(line))
                else:  # one write per burst, as a UART streams it: no pause inside
                    self._write(b"".join([self._sentence(line) for line in lines]))
                next_at += gap / self.speed
                delay = next_at - time.monotonic()
                if delay < -1.0:
                    next_at = time.monotonic()  # fell far behind (paused machine): no burst
                if self._stop.wait(max(0.0, delay)):
                    return
            if not self.loop:
                self.finished.set()
                self._stop.wait()
                return

    def _sentence(self, line: bytes) -> bytes:
        """The bytes this sentence puts on the wire, faults and injected data included."""
        with self._lock:
            pending, self._pending = self._pending, []
        out = b"".join(pending)
        f, rng = self.faults, self.rng
        if f.drop and rng.random() < f.drop:
            return out
        if f.garbage and rng.random() < f.garbage:
            out += rng.randbytes(rng.randint(1, 48))
        if f.bad_checksum and rng.random() < f.bad_checksum and len(line) > 6:
            i = rng.randrange(1, len(line) - 3)
            line = line[:i] + bytes([line[i] ^ rng.choice(b"\x01\x02\x04\x08\x10")]) + line[i + 1 :]
        if f.cut and rng.random() < f.cut:
            return out + line[: len(line) // 2]
        self.sent += 1
        return out + line + b"\r\n"

    def _write(self, data: bytes) -> None:
        if not self.baud:
            self._put(data)
            return
        step = self.chunk or len(data)
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            self._put(piece)
            self._stop.wait(len(piece) * 10 / self.baud / self.speed)

    def _put(self, data: bytes) -> None:
        with self._lock:
            if self._master is None:
                self.lost += len(data)
                return
            try:
                written = os.write(self._master, data)
            except OSError:  # buffer full (nobody reads) or no slave side yet
                written = 0
            self.lost += len(data) - written


# -- command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m hil.gps.emulator",
        description="Replay an NMEA log as a GPS receiver on a pty behind --link.",
    )
    ap.add_argument("log", type=Path, help="NMEA log to replay (hil/gps/logs/*.nmea)")
    ap.add_argument("--link", type=Path, default=Path("/tmp/gps0"), help="symlink to the pty")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    ap.add_argument("--once", action="store_true", help="play the log once, then wait")
    ap.add_argument("--baud", type=int, default=None, help="space bytes as a UART would")
    ap.add_argument("--chunk", type=int, default=0, help="bytes per write with --baud")
    for name in ("garbage", "bad-checksum", "drop", "cut"):
        ap.add_argument(f"--{name}", type=float, default=0.0, help="probability per sentence")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--unplug-every", type=float, default=0.0, help="s between unplugs")
    ap.add_argument("--unplug-for", type=float, default=2.0, help="s unplugged each time")
    args = ap.parse_args(argv)
    faults = Faults(args.garbage, args.bad_checksum, args.drop, args.cut, args.seed)
    emu = NmeaEmulator(
        args.log,
        args.link,
        speed=args.speed,
        loop=not args.once,
        baud=args.baud,
        chunk=args.chunk,
        faults=faults,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emu:
        print(f"ready {args.link} -> {os.readlink(args.link)}", flush=True)
        while not stop.is_set():
            if args.unplug_every and not stop.wait(args.unplug_every):
                emu.unplug()
                print("unplugged", flush=True)
                if not stop.wait(args.unplug_for):
                    emu.replug()
                    print(f"plugged {args.link} -> {os.readlink(args.link)}", flush=True)
            else:
                stop.wait(0.5)
    print(f"stopped: {emu.sent} sentences sent, {emu.lost} bytes lost", file=sys.stderr)


if __name__ == "__main__":
    main()

"""An slcan (LAWICEL) USB-CAN adapter on a pseudo-terminal, for the driver's real serial path.

python-can's `slcan` interface opens the pty as it would /dev/ttyACM0 and sends what it
sends to a CANable or a USBtin: `C` (close), `S5`/`S6` (bitrate), an empty line, `O` (or
`L` for listen-only) — twice. The emulator answers like firmware (CR for OK, BEL for an
error) and, once opened, streams received frames as `T` + 8 hex id + DLC + data + CR
(`t` + 3 hex id for 11-bit frames): a candump log paced by its timestamps, a synthetic
FMS bus at a given frame rate, or frames a test injects. Set to `Z1` (`z1=True`, as an
adapter whose EEPROM keeps it, or the `Z1` command), each frame ends in the 4 hex digits of
the milliseconds, modulo a minute, at which it went into the FIFO (off the bus). Like a
real adapter it has a small output FIFO: when the host does not read fast enough (its side
of the pty full, then the FIFO), frames are dropped and counted (`dropped`), never cut in
half. `unplug()` hangs the pty up as a pulled USB cable does; `plug()` brings a new one up
behind the same symlink (as udev's by-id link).

    python -m hil.can.slcan --link /tmp/ttyCAN0 --log config/can/shuttle-day.log --loop
    python -m hil.can.slcan --link /tmp/ttyCAN0 --flood 3450
"""

import argparse
import collections
import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from drivers.can.candump import LogFrame, read_log
from hil.pty import open_raw_pty, staged_link

Frame = tuple[float, int, bytes, bool]
"""(seconds from the start of the stream, identifier, data, extended)."""

BITRATES = {
    "S0": 10_000,
    "S1": 20_000,
    "S2": 50_000,
    "S3": 100_000,
    "S4": 125_000,
    "S5": 250_000,
    "S6": 500_000,
    "S7": 750_000,
    "S8": 1_000_000,
}
FIFO_BYTES = 4096
"""How much the adapter buffers towards the host before it drops frames."""


def encode(can_id: int, data: bytes, extended: bool = True) -> bytes:
    """One frame as an slcan line."""
    if extended:
        return b"T%08X%d%s\r" % (can_id, len(data), data.hex().upper().encode())
    return b"t%03X%d%s\r" % (can_id, len(data), data.hex().upper().encode())


def log_source(path: Path, *, loop: bool = False) -> Iterator[Frame]:
    """Frames of a candump log, timed from its first frame; malformed lines are skipped."""
    offset = 0.0
    while True:
        first: float | None = None
        last = 0.0
        for _, item in read_log(path):
            if not isinstance(item, LogFrame) or item.error or item.remote:
                continue
            if first is None:
                first = item.ts
            last = item.ts - first
            yield offset + last, item.can_id, item.data, item.extended
        if not loop or first is None:
            return
        offset += last + 0.01


def rate_source(frames: list[tuple[int, bytes]], rate: float) -> Iterator[Frame]:
    """`frames` over and over at `rate` frames per second."""
    i = 0
    while True:
        can_id, data = frames[i % len(frames)]
        yield i / rate, can_id, data, True
        i += 1


class SlcanEmulator:
    """The adapter: start() it, point python-can at `.path`, stop() it."""

    def __init__(
        self,
        source: Iterable[Frame] = (),
        *,
        link: Path | None = None,
        speed: float = 1.0,
        z1: bool = False,
    ) -> None:
        self.source = iter(source)
        self.z1 = z1
        self.link = link
        self.speed = speed
        self.commands: list[str] = []  # every command the host sent, in order
        self.transmitted: list[str] = []  # frames the host asked to send
        self.bitrate: int | None = None
        self.mode: str | None = None  # None closed, "O" normal, "L" listen-only
        self.sent = 0
        self.dropped = 0
        self.exhausted = threading.Event()
        self._master = -1
        self._slave = -1
        self._tty = ""
        self._out = bytearray()
        # (line, whether it is a frame the adapter stamps when set to Z1)
        self._inject: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._z0 = time.monotonic()  # the adapter's millisecond counter started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._position = 0.0  # seconds of source streamed before the last close
        self._next: Frame | None = None

    @property
    def path(self) -> str:
        """What to give python-can as channel: the symlink if any, else the pty."""
        return str(self.link) if self.link else self._tty

    # -- life cycle --------------------------------------------------------------------

    def plug(self) -> None:
        """A new pty, as a USB adapter enumerates; the symlink follows it."""
        self._master, self._slave, self._tty = open_raw_pty()
        self.mode = None
        self._out.clear()
        if self.link:
            os.replace(staged_link(self.link, self._tty), self.link)

    def unplug(self) -> None:
        """The cable is pulled: the host's next read fails."""
        with self._lock:
            if self.mode is not None:
                self._position = (time.monotonic() - self._t0) * self.speed
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1
            self.mode = None

    def start(self) -> "SlcanEmulator":
        self.plug()
        self._thread = threading.Thread(target=self._run, name="slcan-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self.unplug()
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def __enter__(self) -> "SlcanEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, frames: Iterable[tuple[int, bytes]], *, extended: bool = True) -> None:
        """Frames to stream as soon as possible (only while the channel is open)."""
        lines = [encode(can_id, data, extended) for can_id, data in frames]
        with self._lock:
            self._inject.extend((line, True) for line in lines)

    def inject_raw(self, line: bytes) -> None:
        """Bytes as the adapter would send them, garbled ones included."""
        with self._lock:
            self._inject.append((line, False))

    def wait_open(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.mode is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- the firmware ------------------------------------------------------------------

    def _command(self, cmd: str) -> bytes:
        self.commands.append(cmd)
        head = cmd[:1]
        if cmd == "":
            return b"\r"
        if cmd == "C":
            if self.mode is not None:  # the stream pauses where it is
                self._position = (time.monotonic() - self._t0) * self.speed
            self.mode = None
            return b"\r"
        if cmd in BITRATES or head == "s":
            if self.mode is not None:
                return b"\a"
            self.bitrate = BITRATES.get(cmd)
            return b"\r"
        if cmd in ("O", "L"):
            if self.mode is not None:
                return b"\a"
            self.mode = cmd
            self._t0 = time.monotonic() - self._position / self.speed
            return b"\r"
        if head in "tTrR" and head:
            if self.mode != "O":
                return b"\a"
            self.transmitted.append(cmd)
            return b"Z\r" if head in "TR" else b"z\r"
        replies = {"V": b"V1013\r", "v": b"vSL01\r", "N": b"NA123\r", "F": b"F00\r"}
        if cmd in replies:
            return replies[cmd]
        if cmd in ("Z0", "Z1"):
            self.z1 = cmd == "Z1"
            return b"\r"
        if head in "Zz" and head:
            return b"\r"
        return b"\a"

    def _due_frames(self) -> list[bytes]:
        if self.mode is None:
            return []
        elapsed = (time.monotonic() - self._t0) * self.speed
        lines: list[bytes] = []
        while len(lines) < 2000:
            if self._next is None:
                try:
                    self._next = next(self.source)
                except StopIteration:
                    self.exhausted.set()
                    break
            ts, can_id, data, extended = self._next
            if ts > elapsed:
                break
            lines.append(self._stamped(encode(can_id, data, extended)))
            self._next = None
        return lines

    def _stamped(self, line: bytes) -> bytes:
        """A frame's line, with the Z1 stamp when set to it."""
        if not self.z1:
            return line
        ms = int((time.monotonic() - self._z0) * 1000) % 60_000
        return b"%s%04X\r" % (line[:-1], ms)

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            master = self._master
            if master < 0:
                time.sleep(0.01)
                continue
            wait_write = [master] if self._out else []
            try:
                readable, _, _ = select.select([master], wait_write, [], 0.002)
            except (OSError, ValueError):  # unplugged under us
                time.sleep(0.01)
                continue
            with self._lock:
                if self._master != master:
                    continue
                if readable:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: no host has the port open at the moment
                        chunk = b""
                    pending += chunk
                    *cmds, pending = pending.split(b"\r")
                    for raw in cmds:
                        self._out += self._command(raw.decode("ascii", "replace"))
                if self.mode is not None:  # injected frames wait for room, never dropped
                    while self._inject:
                        line, frame = self._inject[0]
                        if frame:
                            line = self._stamped(line)
                        if len(self._out) + len(line) > FIFO_BYTES:
                            break
                        self._inject.popleft()
                        self._out += line
                        self.sent += 1
                for line in self._due_frames():
                    if len(self._out) + len(line) > FIFO_BYTES:
                        # the host's buffer first: after this emulator was not scheduled
                        # for a while, a burst of due frames is not a host that is slow
                        self._hand_over(master)
                    if len(self._out) + len(line) > FIFO_BYTES:
                        self.dropped += 1
                    else:
                        self._out += line
                        self.sent += 1
                if self._out:
                    self._hand_over(master)

    def _hand_over(self, master: int) -> None:
        """Write what the host's side of the pty takes now."""
        try:
            n = os.write(master, self._out)
        except BlockingIOError:
            n = 0
        except OSError:
            n = len(self._out)  # nobody listens: the bytes are lost, as on USB
        del self._out[:n]


def main() -> None:
    from hil.can.fms import flood

    ap = argparse.ArgumentParser(description="slcan CAN adapter emulator on a pty")
    ap.add_argument("--link", type=Path, help="symlink to create to the pty")
    ap.add_argument("--log", type=Path, help="candump -L log to stream")
    ap.add_argument("--speed", type=float, default=1.0, help="log seconds per real second")
    ap.add_argument("--loop", action="store_true", help="start the log again at its end")
    ap.add_argument("--flood", type=float, help="synthetic FMS bus at this many frames/s")
    args = ap.parse_args()
    if args.log:
        source: Iterator[Frame] = log_source(args.log, loop=args.loop)
    elif args.flood:
        source = rate_source(flood(2000), args.flood)
    else:
        ap.error("give --log or --flood")
    emulator = SlcanEmulator(source, link=args.link, speed=args.speed).start()
    print(f"slcan adapter on {emulator.path}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(5):
            print(f"sent {emulator.sent} dropped {emulator.dropped}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()

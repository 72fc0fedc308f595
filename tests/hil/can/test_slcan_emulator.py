"""The slcan emulator drops a frame only when the host's side of the pty is full: a burst of
frames due at once (the emulator was not scheduled for a while) is not a slow host."""

import os
import time
from pathlib import Path

from hil.can.slcan import SlcanEmulator

FRAME = (0x18FEF100, bytes(8))


def open_and_read_later(emulator: SlcanEmulator, wait_s: float) -> bytes:
    """Open the adapter as a host would, start it, read nothing for `wait_s`, then all."""
    fd = os.open(emulator.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, b"O\r")
        assert emulator.wait_open()
        time.sleep(wait_s)
        data = b""
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 0.5:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            data += chunk
            idle_since = time.monotonic()
        return data
    finally:
        os.close(fd)


def test_a_burst_the_host_can_buffer_is_not_dropped(tmp_path: Path) -> None:
    n = 300  # ~8 KB: twice the adapter's FIFO, well within the pty's buffer
    emulator = SlcanEmulator([(0.0, *FRAME, True)] * n, link=tmp_path / "can").start()
    try:
        data = open_and_read_later(emulator, 0.3)
    finally:
        emulator.stop()
    assert emulator.dropped == 0
    assert data.count(b"T18FEF100") == n


def test_frames_beyond_what_the_host_buffers_are_dropped_and_counted(tmp_path: Path) -> None:
    n = 3000  # ~81 KB, more than the pty and the FIFO hold
    emulator = SlcanEmulator([(0.0, *FRAME, True)] * n, link=tmp_path / "can").start()
    try:
        data = open_and_read_later(emulator, 0.3)
    finally:
        emulator.stop()
    assert emulator.dropped > 0
    assert emulator.sent + emulator.dropped == n
    assert data.count(b"T18FEF100") == emulator.sent

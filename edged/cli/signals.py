"""`edged run`'s stop signals, kept from the start of the process to its end, and the
last resort that holds the 5 s promise whatever hangs."""

import asyncio
import contextlib
import faulthandler
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

LAST_RESORT_S = 4.7
"""From the first stop signal to a forced exit. The node's own stop takes at most its budget
(`edged.node.SHUTDOWN_BUDGET_S`, 4 s: commit, drain, `offline`) plus the outbox's close;
what still runs at 4.7 s is stuck (a task that swallows every cancel, a thread joined at
exit, a disk that does not answer), and systemd would kill it at 10 s with nothing said."""


class StopSignals:
    """SIGTERM (systemd's stop) and SIGINT (Ctrl-C in the foreground) for the whole of
    `edged run`, not only while a node's loop runs: one that comes during start-up (before
    the loop exists), between two nodes of the restart loop, or while a node stops for a
    `restart`, stops the process with exit 0 instead of killing it where it stands or being
    taken for the restart's own stop. The handler is Python's own (`signal.signal`, kept
    across loops: asyncio's `add_signal_handler` puts the default action back when its loop
    closes); while a node runs it hands the stop to that loop, as asyncio's runner does for
    SIGINT. A second signal stops the same way: the shutdown is bounded anyway.

    The first signal also arms the last resort: a daemon thread that, should the process
    still run `last_resort_s` later, logs where each thread stands and exits at once
    (`os._exit`). The outbox is on disk already (committed at each step, SQLite WAL: a
    forced exit is a `kill -9` as far as it goes, which loses nothing acknowledged) and
    `offline` was said or given up by then."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, last_resort_s: float = LAST_RESORT_S) -> None:
        self.received: int | None = None
        self.last_resort_s = last_resort_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: Callable[[], None] | None = None
        self._armed: threading.Timer | None = None
        self._wakeup: tuple[int, socket.socket, socket.socket] | None = None

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def attach(self, stop: Callable[[], None]) -> None:
        """Call `stop` in the running loop at the next signal, or now if one came already.

        Python runs a signal's handler in the main thread, once that thread runs Python
        code again; a signal taken by another thread (the outbox's, a driver's) while the
        loop sleeps in `epoll_wait` would wait for the loop's next wake-up. The wake-up fd
        (`signal.set_wakeup_fd`, as asyncio's own signal handling sets it) wakes the loop."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = stop
        wake, woken = socket.socketpair()
        for end in (wake, woken):
            end.setblocking(False)
        loop.add_reader(woken.fileno(), _drain, woken)
        self._wakeup = (signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False), wake, woken)
        if self.received is not None:
            stop()

    def detach(self) -> None:
        if self._wakeup is not None and self._loop is not None:
            previous, wake, woken = self._wakeup
            signal.set_wakeup_fd(previous)
            self._loop.remove_reader(woken.fileno())
            wake.close()
            woken.close()
        self._wakeup = None
        self._loop = self._stop = None

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if self._armed is None:
            self._armed = threading.Timer(self.last_resort_s, self._force_exit, args=(signum,))
            self._armed.daemon = True  # the process's normal exit does not wait for it
            self._armed.start()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop)

    def _force_exit(self, signum: int) -> None:
        """Say why and where, without a lock a stuck thread may hold (not `logging`'s),
        and exit."""
        with contextlib.suppress(Exception):  # the exit must happen, whatever stderr does
            os.write(
                2,
                f"edged: still running {self.last_resort_s:g} s after "
                f"{signal.Signals(signum).name}: exiting now; where each thread stood "
                "follows (a bug to report, with this log)\n".encode(),
            )
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            loop = self._loop
            if loop is not None:  # read from this thread: a last look, racy but harmless
                os.write(2, "".join(_await_chains(loop)).encode(errors="replace"))
        os._exit(0)


def _drain(woken: socket.socket) -> None:
    """Read what the wake-up fd was sent (signal numbers): the handler itself acts."""
    with contextlib.suppress(OSError):  # BlockingIOError: all read
        while woken.recv(512):
            pass


def _await_chains(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Each pending task of `loop` and where it awaits, innermost last."""
    lines = []
    for task in list(asyncio.all_tasks(loop)):
        lines.append(f"task {task.get_name()}:\n")
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                lines.append(f"  {coro!r}\n")
                break
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return lines

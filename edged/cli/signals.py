"""`edged run`'s stop signals, kept from the start of the process to its end."""

import asyncio
import contextlib
import signal
from collections.abc import Callable


class StopSignals:
    """SIGTERM (systemd's stop) and SIGINT (Ctrl-C in the foreground) for the whole of
    `edged run`, not only while a node's loop runs: one that comes during start-up (before
    the loop exists), between two nodes of the restart loop, or while a node stops for a
    `restart`, stops the process with exit 0 instead of killing it where it stands or being
    taken for the restart's own stop. The handler is Python's own (`signal.signal`, kept
    across loops: asyncio's `add_signal_handler` puts the default action back when its loop
    closes); while a node runs it hands the stop to that loop, as asyncio's runner does for
    SIGINT. A second signal stops the same way: the shutdown is bounded anyway."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: Callable[[], None] | None = None

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def attach(self, stop: Callable[[], None]) -> None:
        """Call `stop` in the running loop at the next signal, or now if one came already."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        if self.received is not None:
            stop()

    def detach(self) -> None:
        self._loop = self._stop = None

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop)

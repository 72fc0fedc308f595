"""The event loop's default executor, whose threads never hold the process's exit.

`loop.run_in_executor(None, ...)` and `asyncio.to_thread` run blocking calls in the loop's
default executor: aiomqtt's connect (a DNS lookup, a TCP connect to an address that never
answers, a TLS handshake with a server that says nothing: each up to paho's 5 s, per address),
python-can's slcan open (a 2 s sleep), a driver's thread join. A cancel ends the await, not
the call. Then `asyncio.run` ends by joining every thread of that executor without a bound
(`shutdown_default_executor`, Python 3.11), and the interpreter joins a `ThreadPoolExecutor`'s
threads again at exit: SIGTERM while the node connects over a dead cellular link exited after
5 to 10 s, not within the 5 s promised. Here each call runs in a daemon thread of its own,
which neither joins: a call still blocked when the node has stopped is left to the process's
exit (the kernel closes its socket or port), and one that returns later finds its future
cancelled and its result dropped. Calls are few (a connect per session, a device open per
driver start), so a thread each costs nothing that matters."""

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class DaemonThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """One daemon thread per call; `shutdown` waits for none of them (see the module).
    A `ThreadPoolExecutor` only because `loop.set_default_executor` takes nothing else
    (Python 3.11): none of its pool is used."""

    def __init__(self, name: str = "blocking") -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()
        self._shut = False
        self._count = 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> "concurrent.futures.Future[T]":
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            try:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to whoever awaits the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            finally:
                with self._lock:
                    self._running.discard(threading.current_thread())

        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._count += 1
            thread = threading.Thread(target=work, name=f"{self._name}-{self._count}", daemon=True)
            self._running.add(thread)
        thread.start()
        return future

    def running(self) -> list[str]:
        """The calls still running, by thread name (for the log at shutdown)."""
        with self._lock:
            return sorted(t.name for t in self._running)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; join none (`wait` is ignored: that is the point)."""
        with self._lock:
            self._shut = True
        if left := self.running():
            log.debug("left to the process's exit, still blocked: %s", ", ".join(left))

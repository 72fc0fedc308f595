"""The one event bus: drivers, services and the node hand each other typed events here.

Handlers run on the event loop thread, in the order they subscribed, synchronously inside
`emit`: a tap's decision and its relay pulse happen in one turn of the loop, never waiting
for a queue. A handler that raises is counted (`service.{event}.error`) and logged; the
other handlers still run and the emitter never sees the failure, so a broken service
cannot stop a driver or another service.

A library's own thread (python-can's, gpiozero's, a libnfc poll) hands an event over with
`emit_threadsafe`, the one hop onto the loop; the loop is bound when the bus is first used
from it (`bind`, called by the node at start and by each driver's context).

An event type that derives from `Retained` states how things are now (the operating mode,
the occupancy): the bus keeps the last one of each such type and hands it to whoever
subscribes later, as a broker does with a retained message, so the order in which
services are built does not matter.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from core.counters import Counters

log = logging.getLogger(__name__)

Handler = Callable[[Any], None]


class Retained:
    """Base of the events whose latest instance the bus keeps for later subscribers."""

    __slots__ = ()


class Bus:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self._handlers: defaultdict[type, list[Handler]] = defaultdict(list)
        self._watchers: defaultdict[type, list[Handler]] = defaultdict(list)  # acts=False
        self._retained: dict[type, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        """Remember the running loop, for `emit_threadsafe`; nothing outside a loop."""
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    def subscribe(
        self, event_type: type, handler: Handler, *, acts: bool = True
    ) -> Callable[[], None]:
        """Call `handler` with every event of `event_type` (and at once with the retained
        one, if any); returns the way to stop. `acts=False`: it only watches (the update
        manager noting activity), so `has_subscribers` does not count it: a command told
        the lock relay pulsed must mean a relay took the `Unlock`."""
        handlers = self._handlers[event_type]
        handlers.append(handler)
        if not acts:
            self._watchers[event_type].append(handler)
        kept = self._retained.get(event_type)
        if kept is not None:
            self._deliver(handler, kept)

        def unsubscribe() -> None:
            if handler in handlers:
                handlers.remove(handler)
            watchers = self._watchers.get(event_type)
            if not acts and watchers is not None and handler in watchers:
                watchers.remove(handler)

        return unsubscribe

    def emit(self, event: Any) -> None:
        """Hand `event` to every handler of its type, now, on the loop thread."""
        if isinstance(event, Retained):
            self._retained[type(event)] = event
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:
                self._failed(event)

    def emit_threadsafe(self, event: Any) -> None:
        """`emit` from another thread: the event is handed over on the loop."""
        if self._loop is None:
            raise RuntimeError("the bus is not bound to an event loop: call bind() in the loop")
        self._loop.call_soon_threadsafe(self.emit, event)

    def has_subscribers(self, event_type: type) -> bool:
        """Whether a handler that acts on `event_type` is subscribed (watchers aside)."""
        return len(self._handlers.get(event_type, ())) > len(self._watchers.get(event_type, ()))

    def _deliver(self, handler: Handler, event: Any) -> None:
        try:
            handler(event)
        except Exception:
            self._failed(event)

    def _failed(self, event: Any) -> None:
        name = type(event).__name__
        self.counters.inc(f"service.{name.lower()}.error")
        log.exception("a handler failed on %s", name)

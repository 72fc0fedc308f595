"""The one bus: typed events to their handlers, on the loop thread, failures contained."""

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from core.bus import Bus, Retained
from core.counters import Counters


@dataclass(frozen=True, slots=True)
class Ping:
    n: int


@dataclass(frozen=True, slots=True)
class Mode(Retained):
    name: str


def test_handlers_get_events_of_their_type_in_subscription_order() -> None:
    bus = Bus(Counters())
    got: list[tuple[str, Any]] = []
    bus.subscribe(Ping, lambda e: got.append(("a", e)))
    bus.subscribe(Ping, lambda e: got.append(("b", e)))
    bus.subscribe(Mode, lambda e: got.append(("mode", e)))
    bus.emit(Ping(1))
    assert got == [("a", Ping(1)), ("b", Ping(1))]


def test_unsubscribe_stops_delivery_and_has_subscribers_says_so() -> None:
    bus = Bus(Counters())
    got: list[Ping] = []
    stop = bus.subscribe(Ping, got.append)
    assert bus.has_subscribers(Ping) and not bus.has_subscribers(Mode)
    stop()
    stop()  # twice is harmless
    bus.emit(Ping(1))
    assert got == [] and not bus.has_subscribers(Ping)


def test_a_failing_handler_is_counted_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counters = Counters()
    bus = Bus(counters)
    got: list[Ping] = []

    def broken(event: Ping) -> None:
        raise ValueError("bug in a service")

    bus.subscribe(Ping, broken)
    bus.subscribe(Ping, got.append)
    bus.emit(Ping(1))  # does not raise into the emitter (a driver)
    assert got == [Ping(1)]
    assert counters["service.ping.error"] == 1
    assert "a handler failed on Ping" in caplog.text


def test_a_handler_may_unsubscribe_itself_while_the_event_is_delivered() -> None:
    bus = Bus(Counters())
    got: list[str] = []
    stops: list[Any] = []

    def once(event: Ping) -> None:
        got.append("once")
        stops[0]()

    stops.append(bus.subscribe(Ping, once))
    bus.subscribe(Ping, lambda e: got.append("always"))
    bus.emit(Ping(1))
    bus.emit(Ping(2))
    assert got == ["once", "always", "always"]


def test_a_retained_event_reaches_who_subscribes_later_and_plain_ones_do_not() -> None:
    bus = Bus(Counters())
    bus.emit(Mode("school"))
    bus.emit(Mode("out-of-service"))
    bus.emit(Ping(1))
    modes: list[Mode] = []
    pings: list[Ping] = []
    bus.subscribe(Mode, modes.append)
    bus.subscribe(Ping, pings.append)
    assert modes == [Mode("out-of-service")] and pings == []


async def test_emit_threadsafe_delivers_on_the_loop_thread() -> None:
    bus = Bus(Counters())
    bus.bind()
    delivered = asyncio.Event()
    threads: list[int] = []

    def handler(event: Ping) -> None:
        threads.append(threading.get_ident())
        delivered.set()

    bus.subscribe(Ping, handler)
    thread = threading.Thread(target=bus.emit_threadsafe, args=(Ping(1),))
    thread.start()
    thread.join()
    await asyncio.wait_for(delivered.wait(), 1)
    assert threads == [threading.get_ident()]


def test_emit_threadsafe_before_any_loop_says_what_to_do() -> None:
    bus = Bus(Counters())
    bus.bind()  # outside a loop: nothing to bind
    with pytest.raises(RuntimeError, match="bind"):
        bus.emit_threadsafe(Ping(1))


def test_a_handler_that_only_watches_is_not_counted_as_one_that_acts() -> None:
    bus = Bus(Counters())
    got: list[object] = []
    stop = bus.subscribe(Ping, got.append, acts=False)
    assert not bus.has_subscribers(Ping), "a watcher is no lock relay"
    bus.emit(Ping(1))
    assert len(got) == 1, "it still gets the events"
    stop_acting = bus.subscribe(Ping, got.append)
    assert bus.has_subscribers(Ping)
    stop_acting()
    stop()
    assert not bus.has_subscribers(Ping) and bus._watchers[Ping] == []

"""Who may hold what of the kiosk: per peer, in total, the screens' reserve, descriptors."""

import logging
from typing import Any

import pytest

from core.counters import Counters
from edged.kiosk.limits import AcceptErrorFilter, ConnectionLimits, Throttled, raise_fd_limit

SCREEN = "127.0.0.1"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def limits(**kw: Any) -> ConnectionLimits:
    args: dict[str, Any] = {
        "max_connections": 10,
        "per_peer": 3,
        "max_streams": 4,
        "streams_per_peer": 2,
        "screens": frozenset({SCREEN}),
        "counters": Counters(),
        "fd_limit": 10_000,
        "fds": lambda: 50,
    }
    args.update(kw)
    return ConnectionLimits(**args)


def fill(counts: Any, peers: list[str], each: int) -> None:
    for p in peers:
        counts[p] += each


def test_one_peer_gets_at_most_its_share_of_connections() -> None:
    lim = limits()
    fill(lim.connections, ["10.0.0.2"], 3)
    assert lim.refuse_connection("10.0.0.2") == "per_peer"
    assert lim.refuse_connection("10.0.0.3") is None


def test_visitors_together_leave_the_screens_share_free() -> None:
    lim = limits()
    fill(lim.connections, ["10.0.0.2", "10.0.0.3"], 3)
    fill(lim.connections, ["10.0.0.4"], 1)  # 7 of 10: the last 3 are the screen's
    assert lim.refuse_connection("10.0.0.5") == "total"
    assert lim.refuse_connection(SCREEN) is None


def test_nobody_passes_the_total() -> None:
    lim = limits()
    fill(lim.connections, ["10.0.0.2", "10.0.0.3"], 3)
    fill(lim.connections, ["10.0.0.4"], 1)
    fill(lim.connections, [SCREEN], 2)
    fill(lim.connections, ["::1"], 1)  # not a screen here: a visitor past the share
    assert lim.refuse_connection(SCREEN) == "total"


def test_streams_have_their_own_share_and_the_screen_its_reserve() -> None:
    lim = limits()
    fill(lim.streams, ["10.0.0.2"], 2)
    assert lim.refuse_stream("10.0.0.2") == "per_peer"
    assert lim.refuse_stream("10.0.0.3") == "total"  # 2 of 4 taken, 2 kept for the screen
    assert lim.refuse_stream(SCREEN) is None


def test_connections_are_refused_when_descriptors_run_short() -> None:
    open_now = [100]
    clock = Clock()
    lim = limits(fd_limit=1024, fd_reserve=256, fds=lambda: open_now[0], clock=clock)
    assert lim.refuse_connection(SCREEN) is None
    open_now[0] = 800
    clock.t += 1.0  # the count is read at most once a second
    assert lim.refuse_connection(SCREEN) == "descriptors"


def test_a_refusal_is_counted_every_time_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    counters = Counters()
    lim = limits(counters=counters, clock=clock)
    with caplog.at_level(logging.WARNING, "edged.kiosk.limits"):
        for _ in range(500):
            lim.refused("connection", "10.0.0.2", "per_peer")
        clock.t += 10
        lim.refused("connection", "10.0.0.2", "per_peer")
    assert counters["kiosk.refused_connection.per_peer"] == 501
    assert len(caplog.records) == 2
    assert "499 more like it not logged" in caplog.records[1].getMessage()


def test_accept_errors_are_counted_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    counters = Counters()
    asyncio_log = logging.getLogger("asyncio")
    filt = AcceptErrorFilter(counters, clock)
    asyncio_log.addFilter(filt)
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(1000):
                try:
                    raise OSError(24, "Too many open files")
                except OSError:
                    asyncio_log.error("socket.accept() out of system resource", exc_info=True)
            asyncio_log.error("something else")
    finally:
        asyncio_log.removeFilter(filt)
    assert counters["kiosk.accept_error"] == 1000
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "Too many open files" in lines[0] and lines[1] == "something else"
    assert not any(r.exc_info for r in caplog.records if "accept" in r.getMessage())


def test_throttled_keeps_kinds_apart() -> None:
    clock = Clock()
    t = Throttled(clock)
    t.warning("a", "a")
    t.warning("b", "b")
    t.warning("a", "a")
    assert t._quiet == {"a": 1}


def test_the_soft_descriptor_limit_is_raised_towards_what_the_kiosk_needs() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_fd_limit(512) == min(512, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(512, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

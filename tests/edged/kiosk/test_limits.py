"""Who may hold what of the kiosk: per peer, in total, the screens' reserve, descriptors."""

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.counters import Counters
from edged import logs
from edged.kiosk.limits import AcceptErrorFilter, ConnectionLimits, raise_fd_limit
from edged.logs import BURST
from tests.helpers.journal import Journal

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


def test_with_no_screens_no_place_is_kept_and_visitors_have_them_all() -> None:
    # the portal and the feed have no screen: a reserve there was kept for no one
    lim = limits(screens=frozenset())
    fill(lim.connections, ["10.0.0.2", "10.0.0.3", "10.0.0.4"], 3)
    fill(lim.streams, ["10.0.0.2"], 2)
    assert lim.refuse_connection("10.0.0.5") is None  # the 10th of 10
    assert lim.refuse_stream("10.0.0.3") is None  # the 3rd of 4
    fill(lim.connections, ["10.0.0.5"], 1)
    assert lim.refuse_connection(SCREEN) == "total"  # no address is special


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


def said(journal: Journal, text: str) -> list[str]:
    """The journal's lines holding `text`, the flood guard's summaries left out."""
    return [line for line in journal.with_(text) if "more like this" not in line]


def test_a_flood_of_refusals_leaves_its_first_lines_and_its_size_in_the_journal(
    journal: Journal,
) -> None:
    """The kiosk had its own throttle (a line per 10 s) before the log's flood guard: the
    guard never saw the flood, and the last 10 s of one were never said, however many."""
    counters = Counters()
    lim = limits(counters=counters)
    for _ in range(500):
        lim.refused("connection", "10.0.0.2", "per_peer")
    logs.flush()  # the node's stop, or the minute's end
    assert counters["kiosk.refused_connection.per_peer"] == 500
    assert len(said(journal, "connection from 10.0.0.2 refused")) == BURST
    summary = journal.with_("more like this")
    assert len(summary) == 1 and f"{500 - BURST} more like this" in summary[0]


def test_a_flood_of_one_refusal_does_not_hold_back_the_first_of_another(
    journal: Journal,
) -> None:
    lim = limits()
    for _ in range(500):
        lim.refused("connection", "10.0.0.2", "per_peer")
    lim.refused("connection", "10.0.0.3", "total")
    lim.refused("stream", "10.0.0.2", "per_peer")
    assert len(said(journal, "connection from 10.0.0.3 refused (total limit")) == 1
    assert len(said(journal, "stream from 10.0.0.2 refused (per peer limit")) == 1


def test_accept_errors_are_counted_and_logged_without_tracebacks_their_flood_bounded(
    journal: Journal,
) -> None:
    counters = Counters()
    asyncio_log = logging.getLogger("asyncio")
    filt = AcceptErrorFilter(counters)
    asyncio_log.addFilter(filt)
    try:
        for _ in range(1000):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                asyncio_log.error("socket.accept() out of system resource", exc_info=True)
        asyncio_log.error("something else")
    finally:
        asyncio_log.removeFilter(filt)
    logs.flush()
    assert counters["kiosk.accept_error"] == 1000
    lines = said(journal, "accept")
    assert len(lines) == BURST and all("Too many open files" in line for line in lines)
    assert f"{1000 - BURST} more like this" in journal.with_("more like this")[0]
    assert len(journal.with_("something else")) == 1
    assert "Traceback" not in journal.text


def test_the_soft_descriptor_limit_is_raised_towards_what_the_kiosk_needs() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_fd_limit(512) == min(512, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == min(512, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


FILLED = """
import os, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from edged.kiosk.limits import open_fds
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
print(open_fds())
"""


def test_with_no_descriptor_left_to_list_them_all_count_as_open_not_none() -> None:
    # before: listing /proc/self/fd failed with EMFILE and read as 0 open, so the check
    # let connections in for a second at the very moment none were left
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-P", "-c", FILLED],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert int(out.stdout) == 64

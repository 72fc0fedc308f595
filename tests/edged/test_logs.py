"""The log's flood guard (edged/logs.py): the first lines of a problem at once, then a count,
lines that matter always; on a real logger and handler, with the clock moved by the test."""

import ast
import contextlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from core.logs import KEEP, flood_key
from edged import logs
from edged.logs import BURST, INTERVAL_S, FloodGuard
from tests.helpers.journal import Journal, daemon_logging
from tests.helpers.kiosk import Nodes, nodes
from tests.helpers.nodes import ROOT

__all__ = ["nodes"]  # the fixture


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Lines(logging.Handler):
    """What a handler was given to write, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def with_(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def out() -> Lines:
    return Lines()


@pytest.fixture
def guarded(out: Lines, clock: Clock) -> FloodGuard:
    return logs.guard(out, clock=clock)


@pytest.fixture
def log(out: Lines, guarded: FloodGuard) -> Iterator[logging.Logger]:
    """A logger of its own whose lines go to `out` alone."""
    logger = logging.getLogger(f"test.flood.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(out)
    yield logger
    logger.removeHandler(out)


def test_the_first_lines_of_a_flood_go_through_at_once_and_the_rest_are_held(
    log: logging.Logger, out: Lines
) -> None:
    for n in range(500):
        log.warning("bad sentence %d", n)
    assert out.messages == [f"bad sentence {n}" for n in range(BURST)]


def test_a_summary_at_the_interval_end_says_how_many_were_not_logged_and_quotes_the_last(
    log: logging.Logger, out: Lines, clock: Clock, guarded: FloodGuard
) -> None:
    for n in range(500):
        log.warning("bad sentence %d", n)
    clock.t += INTERVAL_S
    guarded.sweep()
    summary = out.records[-1]
    assert summary.getMessage() == (
        f"{500 - BURST} more like this in the last 60 s, not logged; the last: bad sentence 499"
    )
    assert (summary.name, summary.levelno) == (log.name, logging.WARNING)


def test_a_summary_comes_with_the_next_line_of_any_logger_once_the_interval_is_over(
    log: logging.Logger, out: Lines, clock: Clock
) -> None:
    for _ in range(BURST + 3):
        log.error("cannot store a message")
    clock.t += INTERVAL_S + 1
    log.info("something else")
    assert out.messages[-2:] == [
        "3 more like this in the last 61 s, not logged; the last: cannot store a message",
        "something else",
    ]


def test_no_summary_before_the_interval_is_over(
    log: logging.Logger, out: Lines, clock: Clock, guarded: FloodGuard
) -> None:
    for _ in range(BURST + 3):
        log.error("cannot store a message")
    clock.t += INTERVAL_S - 1
    guarded.sweep()
    assert len(out.records) == BURST


def test_a_line_marked_keep_is_never_held_back_during_a_flood_of_it(
    log: logging.Logger, out: Lines
) -> None:
    for n in range(3 * BURST):
        log.warning("bad command %d", n)
        log.warning("PANIC alarm %s raised", f"a{n}", extra=KEEP)
    assert len(out.with_("PANIC alarm")) == 3 * BURST
    assert len(out.with_("bad command")) == BURST


def test_a_flood_key_gives_each_problem_its_own_first_lines(
    log: logging.Logger, out: Lines
) -> None:
    for _ in range(100):
        log.warning("door %s: beam stuck", "front", extra=flood_key("front"))
    log.warning("door %s: beam stuck", "rear", extra=flood_key("rear"))
    assert out.with_("door rear") == ["door rear: beam stuck"]


def test_levels_and_loggers_are_problems_apart(log: logging.Logger, out: Lines) -> None:
    for _ in range(100):
        log.info("poll failed")
    log.error("poll failed")
    logging.getLogger(log.name + ".other").error("poll failed")  # propagates to `out`
    assert [r.levelno for r in out.records[-2:]] == [logging.ERROR, logging.ERROR]


def test_a_flood_that_goes_on_is_one_example_and_one_summary_an_interval(
    log: logging.Logger, out: Lines, clock: Clock, guarded: FloodGuard
) -> None:
    for _ in range(BURST + 1):
        log.warning("bad checksum")
    clock.t += INTERVAL_S
    guarded.sweep()
    written = len(out.records)
    for _ in range(10):  # ten more intervals of a flood
        for _ in range(1000):
            log.warning("bad checksum")
        clock.t += INTERVAL_S
        guarded.sweep()
    assert len(out.records) - written == 2 * 10
    assert out.messages[-1].startswith("999 more like this in the last 60 s")


def test_a_problem_quiet_for_an_interval_has_its_first_lines_logged_again(
    log: logging.Logger, out: Lines, clock: Clock, guarded: FloodGuard
) -> None:
    for _ in range(BURST + 1):
        log.warning("bad checksum")
    clock.t += INTERVAL_S
    guarded.sweep()  # the summary; the next interval would let one through
    clock.t += INTERVAL_S
    guarded.sweep()  # nothing came in it: forgotten
    before = len(out.records)
    for _ in range(BURST):
        log.warning("bad checksum")
    assert len(out.records) - before == BURST


def test_flush_writes_every_pending_summary_at_once(
    log: logging.Logger, out: Lines, guarded: FloodGuard
) -> None:
    for _ in range(BURST + 7):
        log.warning("bad checksum")
    guarded.flush()
    assert out.messages[-1].startswith("7 more like this in the last 0 s")


def test_a_summary_quotes_the_exception_of_the_last_line_held(
    log: logging.Logger, out: Lines, guarded: FloodGuard
) -> None:
    for n in range(BURST + 1):
        try:
            raise ValueError(f"frame {n}")
        except ValueError:
            log.exception("a handler failed on %s", "J1939Signals")
    guarded.flush()
    assert out.messages[-1].endswith(
        "the last: a handler failed on J1939Signals (ValueError: frame 10)"
    )


def test_templates_past_max_keys_share_one_count(out: Lines, clock: Clock) -> None:
    guard = FloodGuard(out, max_keys=3, clock=clock)
    records = [
        logging.LogRecord("x", logging.WARNING, __file__, 1, f"template {n}", (), None)
        for n in range(100)
    ]
    passed = [guard.filter(r) for r in records]
    assert passed.count(True) == 3 + BURST  # three templates, then the shared key's burst


def test_the_guard_of_setup_logging_bounds_what_reaches_the_journal(journal: Journal) -> None:
    log = logging.getLogger("edged.test.flood")
    for n in range(10_000):
        log.warning("bad sentence %d", n)
    said = journal.with_("bad sentence")
    assert len(said) == BURST and said[0].endswith("WARNING edged.test.flood: bad sentence 0")


def test_each_guarded_handler_writes_its_own_summary_once(clock: Clock) -> None:
    a, b = Lines(), Lines()
    logs.guard(a, clock=clock), logs.guard(b, clock=clock)
    logger = logging.getLogger(f"test.flood.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(a)
    logger.addHandler(b)
    for _ in range(BURST + 5):
        logger.warning("bad checksum")
    clock.t += INTERVAL_S
    logs.sweep()
    assert a.messages == b.messages
    assert len(a.with_("more like this")) == 1


async def test_a_node_keeps_a_flood_out_of_its_recent_log_and_counts_it_at_its_stop(
    nodes: Nodes,
) -> None:
    """`diag.dump` sends the node's last log lines: a flood must not push the ones that
    matter out of them, and its count is written before the node goes."""
    node = await nodes.start()
    log = logging.getLogger("edged.test.flood")
    for n in range(100):
        log.warning("bad frame %d", n)
    await nodes.stop(node)
    tail = node.recent_log()
    assert len([line for line in tail if "bad frame" in line]) == BURST + 1
    assert any("90 more like this" in line for line in tail)


async def test_a_flood_is_counted_at_the_stop_even_when_the_outbox_fails_to_close(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary was written after the outbox closed: a close that failed (a disk gone
    at the stop, the fault a mock stands for) lost it, and the flood went unsaid."""
    node = await nodes.start()

    async def fails() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(node.outbox, "close", fails)
    log = logging.getLogger("edged.test.flood")
    for n in range(100):
        log.warning("bad frame %d", n)
    with contextlib.suppress(OSError, ExceptionGroup):
        await nodes.stop(node)
    assert any("90 more like this" in line for line in node.recent_log())


def journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TextIO:
    """A file standing for the journal's stream: JOURNAL_STREAM names it, as systemd does."""
    stream = (tmp_path / "journal").open("w+")
    st = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    return stream


def test_under_systemd_each_line_carries_its_level_as_a_journal_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """journald reads `<N>` (sd-daemon(3)); without it every line was stored as info, and
    `journalctl -p warning` showed none of edged's problems."""
    log = logging.getLogger("edged.test.priority")
    with daemon_logging(stream=journal_stream(tmp_path, monkeypatch)) as journal:
        log.info("connected")
        log.warning("PANIC alarm %s raised", "a1", extra=KEEP)
        try:
            raise ValueError("bad frame")
        except ValueError:
            log.exception("a handler failed")
    assert journal.lines[:2] == [
        "<6>INFO edged.test.priority: connected",
        "<4>WARNING edged.test.priority: PANIC alarm a1 raised",
    ]
    traceback = journal.lines[2:]
    assert traceback[-1] == "<3>ValueError: bad frame"
    assert all(line.startswith("<3>") for line in traceback)


def test_a_stderr_sent_elsewhere_under_a_service_gets_plain_lines_with_their_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process a service starts inherits JOURNAL_STREAM with its stderr sent to a file or
    a pipe: it writes no `<N>` there, and keeps each line's time (systemd.exec(5): compare
    the device and inode)."""
    journal_stream(tmp_path, monkeypatch)
    elsewhere = (tmp_path / "redirected.log").open("w+")
    with daemon_logging(stream=elsewhere) as journal:
        logging.getLogger("edged.test.priority").warning("disk full")
    (line,) = journal.lines
    assert not line.startswith("<") and line.endswith("WARNING edged.test.priority: disk full")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line), line


NEVER_HELD_BACK = {
    "edged/services/panic.py": ["PANIC alarm %s raised", "panic alarm %s acknowledged by %s"],
    "edged/supervisor.py": ["driver %s running", "driver %s failed (%s)", "driver %s cannot run"],
    "edged/update/manager.py": [
        "update to %s refused: %s",
        "the update to %s was rolled back",
        "switching to release %s",
        "release %s staged",
        "update to %s failed",
        "the switch to release %s did not happen",
    ],
    "edged/update/trial.py": ["trial of %s: reached", "trial of %s failed", "release %s confirmed"],
    "edged/outbox/alarms.py": ["the outbox cannot be written", "the outbox can be written again"],
    "edged/sdnotify.py": ["unhealthy, withholding", "healthy again", "the watchdog loop failed"],
}
"""The lines systemd/README.md ("Logs") promises are never held back, by their file."""


@pytest.mark.parametrize("path", sorted(NEVER_HELD_BACK))
def test_the_lines_promised_never_held_back_are_marked_keep(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    calls = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("info", "warning", "error", "exception")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            keep = any(k.arg == "extra" and ast.unparse(k.value) == "KEEP" for k in node.keywords)
            calls[node.args[0].value] = keep
    for start in NEVER_HELD_BACK[path]:
        found = [keep for text, keep in calls.items() if text.startswith(start)]
        assert found, f"{path}: no log call says {start!r}"
        assert all(found), f"{path}: {start!r} is logged without extra=KEEP"

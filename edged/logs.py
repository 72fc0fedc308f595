"""Logging to stderr: under systemd the journal adds the timestamps and reads each line's
priority from its `<N>` prefix; elsewhere the lines carry their time.

Floods are summarised before they reach the journal. journald rate-limits each service (by
default 10,000 lines of a priority in 30 s; past it, it drops the service's lines of that
priority for the rest of the interval: a panic alarm's warning among a flood of warnings),
and a Pi's journal lives on an SD card or in a small RAM buffer. A bad input can make a
line per event: a card reader failing every poll, a dispatch loop sending malformed
commands, a full disk refusing each message. So every handler edged writes to carries a
`FloodGuard`: per message template (logger, level, template, and the `flood_key` a call
may add), the first `BURST` lines of an interval go through at once, the rest are counted,
and one line says how many when the interval ends, with the last of them. Lines marked
`KEEP` (core/logs.py) always go through. The totals are the `health` counters' to keep;
the log is for the first sight of a problem.

The guard costs nothing where nothing is logged: it is a handler's filter, consulted only
for records that passed their logger's level, never on a hot path's silent `log.debug`.
"""

import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from core.logs import KEEP_ATTR, KEY_ATTR

BURST = 10
"""Lines of one template let through per interval before the rest are counted."""
AFTER_FLOOD = 1
"""Lines let through in the interval after one that had lines counted: a current example."""
INTERVAL_S = 60.0
"""How long an interval lasts; a summary line at its end says how many were not logged."""
MAX_KEYS = 1000
"""Templates followed at once; past it, new ones share one key (a bound on memory)."""
SUMMARY_TEXT = 300
"""Characters of the last line a summary quotes."""

Key = tuple[str, int, str, object]
OVERFLOW: Key = ("", 0, "", "overflow")

_guards: "weakref.WeakSet[FloodGuard]" = weakref.WeakSet()


@dataclass
class _Window:
    start: float
    allowance: int
    suppressed: int = 0
    last: logging.LogRecord | None = field(default=None, repr=False)


class FloodGuard(logging.Filter):
    """The filter of one handler: the first lines of each template, then a count.

    A summary goes to the same handler, as a line of the same logger and level as the lines
    it counts: "N more like this in the last 60 s, not logged; the last: ...". It is written
    when the interval ends: at the next line any logger writes, or at the next `sweep`
    (the node calls `sweep` every few seconds, and `flush` at its stop)."""

    def __init__(
        self,
        handler: logging.Handler,
        *,
        burst: int = BURST,
        interval_s: float = INTERVAL_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.burst = burst
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self._windows: dict[Key, _Window] = {}
        self._next_due = math.inf
        self._lock = threading.Lock()  # records come from threads (CAN, NFC, gpiozero)

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        if attrs.get(KEEP_ATTR):
            return True
        msg = record.msg
        key: Key = (
            record.name,
            record.levelno,
            msg if isinstance(msg, str) else type(msg).__name__,
            attrs.get(KEY_ATTR),
        )
        now = self.clock()
        with self._lock:
            due = self._take_due(now, final=False) if now >= self._next_due else []
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= self.max_keys:
                    key = OVERFLOW
                    window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window(now, self.burst)
                    self._next_due = min(self._next_due, now + self.interval_s)
            if window.allowance > 0:
                window.allowance -= 1
                passed = True
            else:
                window.suppressed += 1
                window.last = record
                passed = False
        self._write(due)
        return passed

    def sweep(self) -> None:
        """Write the summaries of the intervals that are over."""
        now = self.clock()
        with self._lock:
            due = self._take_due(now, final=False) if now >= self._next_due else []
        self._write(due)

    def flush(self) -> None:
        """Write every summary now, intervals over or not (the node stops)."""
        with self._lock:
            due = self._take_due(self.clock(), final=True)
        self._write(due)

    def _take_due(self, now: float, *, final: bool) -> list[logging.LogRecord]:
        """Summaries of the intervals over at `now` (all with `final`); a template that
        flooded starts its next interval with `AFTER_FLOOD` lines, a quiet one is forgotten."""
        out: list[logging.LogRecord] = []
        next_due = math.inf
        for key, window in list(self._windows.items()):
            if not final and now - window.start < self.interval_s:
                next_due = min(next_due, window.start + self.interval_s)
                continue
            if window.suppressed and window.last is not None:
                out.append(_summary(window.last, window.suppressed, now - window.start))
                self._windows[key] = _Window(now, AFTER_FLOOD)
                next_due = min(next_due, now + self.interval_s)
            else:
                del self._windows[key]
        self._next_due = next_due
        return out

    def _write(self, summaries: list[logging.LogRecord]) -> None:
        for record in summaries:
            self.handler.handle(record)


def _summary(last: logging.LogRecord, count: int, seconds: float) -> logging.LogRecord:
    """The line that stands for `count` lines not logged, the last of them `last`."""
    try:
        text = last.getMessage()
    except Exception:  # arguments that do not format: the template still says what it was
        text = str(last.msg)
    exc = last.exc_info[1] if last.exc_info else None
    if exc is not None:
        text = f"{text} ({type(exc).__name__}: {exc})"
    if len(text) > SUMMARY_TEXT:
        text = text[: SUMMARY_TEXT - 1] + "…"
    record = logging.LogRecord(
        last.name,
        last.levelno,
        last.pathname,
        last.lineno,
        "%d more like this in the last %.0f s, not logged; the last: %s",
        (count, seconds, text),
        None,
        func=last.funcName,
    )
    record.__dict__[KEEP_ATTR] = True
    record.__dict__[KEY_ATTR] = last.__dict__.get(KEY_ATTR)
    return record


def guard(
    handler: logging.Handler,
    *,
    burst: int = BURST,
    interval_s: float = INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
) -> FloodGuard:
    """Put a `FloodGuard` on `handler` (see the module's docstring); `sweep` reaches it."""
    flood = FloodGuard(handler, burst=burst, interval_s=interval_s, clock=clock)
    handler.addFilter(flood)
    _guards.add(flood)
    return flood


def sweep() -> None:
    """Write the summaries due on every guarded handler (the node calls it every few s)."""
    for flood in list(_guards):
        flood.sweep()


def flush() -> None:
    """Write every pending summary (at stop: a flood's count is not lost with the process)."""
    for flood in list(_guards):
        flood.flush()


SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
"""A Python level as a syslog priority (sd-daemon(3)'s `<N>` prefixes)."""


class JournalFormatter(logging.Formatter):
    """Each line of a record with its level as a `<N>` prefix, which journald reads
    (`SyslogLevelPrefix=`, on by default): without it every line of edged was stored at
    priority info, `journalctl -p warning` showed none of its warnings or errors, and
    journald's rate limit, which keeps a pool per priority, counted an alarm's line in the
    same pool as a flood of routine ones. Every line of a traceback gets its record's."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelno
        priority = next((p for lv, p in SYSLOG_PRIORITY.items() if level >= lv), 7)
        prefix = f"<{priority}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def writes_to_journal(stream: object) -> bool:
    """Whether `stream` is the journal's stream systemd gave this service: JOURNAL_STREAM
    names its device and inode (systemd.exec(5)). The variable alone is not enough: a
    process started by a service inherits it with its stderr sent elsewhere (a file, a
    pipe), where `<N>` prefixes would be noise and the lines would lose their times."""
    named = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in named.split(":"))
        st = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (ValueError, AttributeError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(verbose: bool = False) -> None:
    under_journal = writes_to_journal(sys.stderr)
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    for handler in root.handlers:
        if handler not in before:
            handler.setFormatter(
                JournalFormatter("%(levelname)s %(name)s: %(message)s")
                if under_journal
                else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            guard(handler)
    # aiomqtt logs one line per publish past its pending-call threshold; we bound the window
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)

"""Recent log lines in memory, for `diag.dump`: ops can see what a node said without SSH."""

import logging
import platform
import sqlite3
from collections import deque
from importlib.metadata import PackageNotFoundError, version


class RecentLog(logging.Handler):
    def __init__(self, lines: int = 200) -> None:
        super().__init__(level=logging.INFO)
        self.lines: deque[str] = deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record)[:500])
        except Exception:  # a log line must never break the daemon
            self.handleError(record)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for dist in ("edged", "aiomqtt", "paho-mqtt", "pydantic", "cryptography"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out

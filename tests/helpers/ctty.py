"""A test must not make a terminal the controlling terminal of pytest (a pytest plugin).

Where pytest leads its session without a terminal (started by setsid, systemd-nspawn or a
CI runner; `./dev test` execs it), opening a pty's slave end without O_NOCTTY makes that pty
pytest's controlling terminal; when the test then closes the master, the kernel hangs the
session up and SIGHUP kills the whole run, without a report. From a shell in a terminal
nothing happens, which is how such a test gets in: it was found by `./dev fresh-check`.

So each test's call is watched: a test that took a controlling terminal fails, saying why,
and the terminal is let go (with SIGHUP ignored meanwhile) before its fixtures close it. A
pytest that leads its session also survives a hangup that comes sooner (a test closing the
pty itself): a Python handler (reset at exec, so no child inherits it) says so instead.
"""

import fcntl
import os
import signal
import termios
from collections.abc import Generator
from pathlib import Path

import pytest


def controlling_tty() -> int:
    """The device number of this process's controlling terminal; 0 without one."""
    stat = Path("/proc/self/stat").read_text(encoding="ascii", errors="replace")
    return int(stat.rsplit(")", 1)[1].split()[4])  # state ppid pgrp session tty_nr


def release_controlling_tty() -> None:
    """Give the controlling terminal up; the SIGHUP this sends the session is ignored."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        try:
            fcntl.ioctl(fd, termios.TIOCNOTTY)
        finally:
            os.close(fd)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGHUP, before)


def _hung_up(signum: int, frame: object) -> None:
    os.write(2, b"\npytest: SIGHUP (a test's terminal was hung up) ignored\n")


def pytest_configure(config: pytest.Config) -> None:
    if os.getsid(0) == os.getpid() and not controlling_tty():
        signal.signal(signal.SIGHUP, _hung_up)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    had = controlling_tty()
    try:
        return (yield)
    finally:
        if not had and controlling_tty():
            release_controlling_tty()
            pytest.fail(
                "this test made a terminal the controlling terminal of pytest: open ttys and "
                "ptys with os.O_NOCTTY (pyserial does); where pytest leads its session "
                "(setsid, nspawn, CI) closing it would have killed the run with SIGHUP",
                pytrace=False,
            )

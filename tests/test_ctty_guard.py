"""tests/helpers/ctty.py: a test that gives pytest a controlling terminal fails by name,
where pytest leads its session (as `./dev test` under setsid, nspawn or a CI runner); it
used to kill the whole run with SIGHUP, silently (found by `./dev fresh-check`)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.nodes import ROOT

PYTEST_ARGS = ["-p", "tests.helpers.ctty", "-p", "no:cacheprovider", "-q", "-s", "-rf", "--rootdir"]
PROBE = """
import os

import pytest


@pytest.fixture
def pty_slave():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    yield name
    os.close(master)  # the hangup: SIGHUP to a session whose terminal this pty became


def test_opens_a_pty_without_o_noctty(pty_slave):
    os.close(os.open(pty_slave, os.O_RDWR))


def test_opens_a_pty_with_o_noctty(pty_slave):
    os.close(os.open(pty_slave, os.O_RDWR | os.O_NOCTTY))


def test_closes_the_hung_up_pty_itself():
    master, slave = os.openpty()
    os.close(os.open(os.ttyname(slave), os.O_RDWR))
    os.close(slave)
    os.close(master)


def test_runs_after_them():
    pass
"""


def test_a_test_taking_a_controlling_terminal_fails_and_the_run_goes_on(tmp_path: Path) -> None:
    if shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is missing: ./dev test installs it")
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    r = subprocess.run(
        [
            "setsid",
            "--wait",
            sys.executable,
            "-m",
            "pytest",
            str(probe),
            *PYTEST_ARGS,
            str(tmp_path),
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # a failed test, not a run killed by SIGHUP (129)
    assert "1 failed, 3 passed" in out, out
    assert "FAILED" in out and "test_probe.py::test_opens_a_pty_without_o_noctty" in out
    assert "open ttys and ptys with os.O_NOCTTY" in out
    # the test that hung its own terminal up lost it at once: the run survived the SIGHUP
    assert "SIGHUP (a test's terminal was hung up) ignored" in out

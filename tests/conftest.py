import compileall
import importlib.util
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import ftz
from tests.helpers.broker import Mosquitto
from tests.helpers.journal import Journal, daemon_logging
from tests.helpers.nodes import ROOT

pytest_plugins = ["tests.helpers.ctty"]  # no test may give pytest a controlling terminal

FLUSH_TO_ZERO, FTZ_CULPRIT = ftz.measure()
if FLUSH_TO_ZERO:  # before any test module builds its strategies
    ftz.exclude_subnormals()

# No deadline per example: it measures the machine, not the code (a 4 ms example took 261 ms
# on a loaded 2-core machine; 627 ms under qemu-arm). Time is the benchmarks' to measure.
# `--hypothesis-profile=emulated` (tools/arch_check.sh) is kept as a name for the same.
settings.register_profile("edged", deadline=None)
settings.register_profile("emulated", deadline=None)
settings.load_profile("edged")

NO_PLAYWRIGHT = ("armv7l", "armv6l")
"""Machines Playwright has no build for (pyproject leaves it out): no browser tests there."""
collect_ignore_glob: list[str] = []
if platform.machine() in NO_PLAYWRIGHT and importlib.util.find_spec("playwright") is None:
    collect_ignore_glob.append("e2e/*")


def pytest_report_header() -> list[str]:
    lines = ftz.header(FLUSH_TO_ZERO, FTZ_CULPRIT)
    if collect_ignore_glob:
        lines.append(
            f"tests/e2e: not collected: Playwright has no build for {platform.machine()}, "
            "so the kiosk page's browser tests cannot run on this machine"
        )
    return lines


COMPILED = ("edged", "drivers", "core", "hil", "bench", "tools", "tests/helpers")
"""What the tests' child interpreters import (`edged run`, `edgectl`, the rig's helpers)."""


def pytest_configure(config: pytest.Config) -> None:
    """Their bytecode written once, before any test: with PYTHONDONTWRITEBYTECODE set (as
    on the CI machine here) each child compiled every module it imported again, ~0.15 s of
    each of the suite's many node starts; compiling the lot takes under a second. Python
    checks each .pyc against its source, so an edited file is compiled again as usual."""
    if hasattr(config, "workerinput"):
        return  # xdist: the controller did it before it started the workers
    for package in COMPILED:
        compileall.compile_dir(ROOT / package, quiet=1)


def not_installed(program: str) -> str:
    """What a test says when a program `./dev test` installs is missing."""
    return f"{program} is not installed: run `./dev test`, which installs it with apt"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail(not_installed("mosquitto"))
    m = Mosquitto(tmp_path).start()
    yield m
    m.stop()


@pytest.fixture
def journal() -> Iterator[Journal]:
    """What `edged run` would write to the journal during the test (tests/helpers/journal.py)."""
    with daemon_logging() as j:
        yield j

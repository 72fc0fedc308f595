import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ftz
from tests.helpers.broker import Mosquitto

FLUSH_TO_ZERO, FTZ_CULPRIT = ftz.measure()
if FLUSH_TO_ZERO:  # before any test module builds its strategies
    ftz.exclude_subnormals()


def pytest_report_header() -> list[str]:
    return ftz.header(FLUSH_TO_ZERO, FTZ_CULPRIT)


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

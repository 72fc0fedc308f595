import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.broker import Mosquitto


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

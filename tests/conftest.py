import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.broker import Mosquitto

pytest_plugins = ["tests.helpers.ctty"]  # no test may give pytest a controlling terminal


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: run `make test`, which installs it")
    m = Mosquitto(tmp_path).start()
    yield m
    m.stop()

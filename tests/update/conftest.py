import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.fileserver import FileServer, fleet_ca


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet_ca(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(server_pki: Path) -> Iterator[FileServer]:
    s = FileServer(server_pki / "broker.crt", server_pki / "broker.key").start()
    yield s
    s.stop()


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(1_500_000))
    return path

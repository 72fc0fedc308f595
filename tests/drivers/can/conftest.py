from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _dbc_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tables of test DBCs are cached in a temporary directory, not in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("STATE_DIRECTORY", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture
def cache_dir() -> Path:
    from drivers.can.table import cache_dir

    return cache_dir()

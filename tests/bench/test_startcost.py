"""`bench.startcost` runs the start path of `edged run` under valgrind; its config and its
start path are checked here without valgrind (a count takes ~5 s each)."""

import sys
from pathlib import Path

from bench.startcost import modules_loaded, write_config


def test_the_start_path_loads_its_config_and_builds_every_service(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert modules_loaded([sys.executable, "-OO"], config) > 400  # the drivers' libraries too
    assert (tmp_path / "outbox.sqlite").exists()  # it opened the outbox

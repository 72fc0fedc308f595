"""bench.importcost: each module of the daemon's import set charged once, to its package."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.importcost import package_of

ROOT = Path(__file__).resolve().parents[2]


def replay(modules: list[str]) -> dict[str, Any]:
    """`python -m bench.importcost` on `modules`, in a fresh interpreter: its JSON."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.importcost"],
        input=json.dumps(modules),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_modules_are_charged_to_their_top_level_package() -> None:
    assert package_of("email.utils") == "stdlib"
    assert package_of("_ssl") == "stdlib"
    assert package_of("edged.node") == "edged"
    assert package_of("drivers.can.bus") == "drivers"
    assert package_of("pydantic._internal._fields") == "pydantic"


def test_a_replay_charges_what_it_loaded_and_names_what_would_not_import() -> None:
    modules = ["json.decoder", "json", "no_such_module_here", "sqlite3"]
    r = replay(modules)
    assert r["failed"] == ["no_such_module_here"]
    assert set(r["packages"]) == {"stdlib"}
    assert r["end_mb"] >= r["start_mb"] > 0
    assert abs(sum(r["packages"].values()) - (r["end_mb"] - r["start_mb"])) < 0.1


def test_each_module_is_charged_its_own_body_not_the_modules_it_imported() -> None:
    """`sqlite3` imports `sqlite3.dbapi2`, which loads the `_sqlite3` extension: the
    extension's memory is charged to `_sqlite3`, and the modules add up to the replay."""
    r = replay(["sqlite3"])
    own = r["modules"]
    assert {"sqlite3", "sqlite3.dbapi2", "_sqlite3"} <= set(own)
    assert own["_sqlite3"] > own["sqlite3"]
    assert list(own.values()) == sorted(own.values(), reverse=True)
    assert abs(sum(own.values()) - (r["end_mb"] - r["start_mb"])) < 0.1

"""`python -m hil run SCENARIO --quick` for every scenario, as CI runs the rig.

The scenarios mostly wait (for a bus to reach the market, for an outage to pass), so they
run at the same time, each in its own process with its own broker, emulators and daemon;
each test reads its scenario's JSON report.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hil.scenarios import scenarios
from tests.helpers.nodes import ROOT

NAMES = sorted(scenarios())


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("hil")
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hil",
                "run",
                name,
                "--quick",
                "--json",
                "--keep",
                str(base / name),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in NAMES
    }
    out: dict[str, dict[str, Any]] = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=400)
        try:
            out[name] = json.loads(stdout)
        except ValueError:
            out[name] = {"ok": False, "checks": [], "error": stderr.decode()[-3000:]}
        out[name]["workdir"] = str(base / name)
    return out


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", NAMES)
def test_scenario_passes_on_the_emulated_bench(
    name: str, reports: dict[str, dict[str, Any]]
) -> None:
    report = reports[name]
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    log = Path(report["workdir"]) / "edged.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    assert report["ok"], (
        f"{name} failed: {failed or report.get('error')}\n--- edged.log ---\n{tail}"
    )

"""bench.budget: a short smoke run (a quarter of a simulated hour per phase, one dead zone),
and the pieces it counts with."""

import json
import subprocess
import sys
from pathlib import Path

from bench.budget import setup_bytes, thin_can_log
from hil.proxy import Connection

ROOT = Path(__file__).resolve().parents[2]


def test_the_budget_bench_measures_both_phases_and_loses_no_event(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.budget",
            "--json",
            "--hours",
            "0.25",
            "--dead-every-s",
            "420",
            "--dead-s",
            "60",
            "--phases",
            "baseline,deflate",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=150,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    base, lever = r["phases"]["baseline"], r["phases"]["deflate"]
    for phase in (base, lever):
        assert phase["dead_zones"] >= 1 and phase["reconnects"] >= phase["dead_zones"]
        assert phase["node_exit"] == 0 and phase["undecodable"] == 0
        assert not any(phase["event_seq_gaps"].values()), phase["event_seq_gaps"]
        assert phase["per_topic"]["position"]["messages_per_hour"] > 0
        assert phase["bytes_per_reconnect"] is not None
    assert lever["bytes_per_hour"] < base["bytes_per_hour"]
    assert lever["bytes_per_reconnect"] < base["bytes_per_reconnect"]  # TLS resumed
    assert "health/beat" not in base["per_topic"]
    assert r["baseline_bytes_per_hour"] == base["bytes_per_hour"]


def test_the_thinned_can_log_keeps_every_transport_and_dm1_frame(tmp_path: Path) -> None:
    log = thin_can_log(tmp_path / "can.log").read_text().splitlines()
    shipped = (ROOT / "config" / "can" / "shuttle-day.log").read_text().splitlines()

    def transport(lines: list[str]) -> list[str]:
        return [ln for ln in lines if ln.startswith("(") and ln.split()[2][2:4] in ("EC", "EB")]

    assert transport(log) == transport(shipped) and transport(log)
    assert len(log) < len(shipped) / 4


def test_setup_bytes_stop_at_the_birth_of_each_reconnection() -> None:
    first = Connection(0.0, chunks=[(0.1, True, 500), (0.2, False, 900)], closed=5.0)
    second = Connection(10.0, chunks=[(10.1, True, 300), (10.2, False, 200), (10.9, True, 80)])
    failed = Connection(6.0, chunks=[(6.1, True, 300)], closed=6.2)
    assert setup_bytes([first, failed, second], births=[0.3, 10.5]) == [500]

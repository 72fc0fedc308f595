"""bench.portal: a smoke run with a few phones prints one JSON object of measured numbers."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_run_measures_taps_with_and_without_phones_and_the_portal() -> None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: ./dev test installs it")
    args = ["--json", "--phones", "5", "--taps", "15", "--presentations", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.portal", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = proc.stdout.strip().splitlines()
    got = json.loads(line)
    for key in ("tap_p99_ms", "tap_p99_ms_without_phones", "tap_p99_ms_without_phones_after",
                "puback_p99_ms", "portal_p50_ms", "portal_p99_ms", "live_p99_ms"):  # fmt: skip
        assert isinstance(got[key], float) and got[key] > 0, (key, got)
    assert got["phones_streaming"] == 5 and got["phones"] == 5
    assert got["portal_requests"] > 0 and got["portal_failed"] == 0
    assert got["live_updates"] > 0 and got["missed"] == 0 and got["taps"] == 15

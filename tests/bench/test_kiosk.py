"""bench.kiosk: a tiny run through a real node, broker and Chromium prints measured numbers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.browser import CHROMIUM

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.kiosk", "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_tiny_run_sees_every_announcement_on_screen_and_times_it_against_the_broker() -> None:
    done = run("-n", "3", "--gap", "0.05")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["n"] == 3 and out["shown"] == 3 and out["missed"] == 0
    assert out["delivered"] == 3 and out["replied"] == 3
    for key in ("screen_p50_ms", "screen_p99_ms", "baseline_delivered_p50_ms", "reply_p50_ms"):
        assert isinstance(out[key], float) and 0 < out[key] < 5000, (key, out[key])
    assert out["screen_p50_ms"] <= out["screen_p99_ms"] <= out["screen_max_ms"]
    assert out["node_exit"] == 0


def test_a_run_of_no_announcement_is_refused_with_a_clear_error() -> None:
    done = run("-n", "0")
    assert done.returncode == 2
    assert "-n must be at least 1" in done.stderr


@pytest.mark.parametrize("args", [("--gap", "-1"), ("--timeout", "0")])
def test_a_negative_gap_or_no_timeout_is_refused_with_a_clear_error(args: tuple[str, str]) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert "--gap must be >= 0 and --timeout > 0" in done.stderr

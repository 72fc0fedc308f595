import json
import subprocess
import sys
from pathlib import Path

from hil.nfc import frames
from hil.nfc.frames import Frame
from tests.hil.nfc.test_emulator import FINITE, POLL, Host

ROOT = Path(__file__).resolve().parents[3]


def test_the_command_line_prints_the_connstring_and_serves_the_card() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.nfc", "--uid", "04A1B2C3"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.startswith("ready pn532_uart:/dev/pts/")
        host = Host(line.split(":", 1)[1].strip())
        host.ask(FINITE)
        assert host.ask(POLL) == Frame(frames.CHIP_TFI, bytes.fromhex("4b01010004080404a1b2c3"))
        host.close()
        proc.stdin.write("remove\nstats\n")
        proc.stdin.flush()
        assert '"card": null' in proc.stdout.readline()
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_command_line_measures_put_to_tap_latency_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hil.nfc", "--measure", "5", "--poll-interval", "0.01"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    result = json.loads(out)
    assert result["presentations"] == 5
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]

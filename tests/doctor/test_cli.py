"""`edged doctor` end to end: the exit codes a technician (and a script) relies on."""

import json
import re
import time
from pathlib import Path

from edged.doctor.runner import GRACE_S
from hil.gps.emulator import NmeaEmulator
from tests.doctor.conftest import config, doctor, serial_gps
from tests.helpers.broker import Mosquitto, free_port


def test_a_healthy_node_exits_0(broker: Mosquitto, gps: NmeaEmulator, tmp_path: Path) -> None:
    cfg = config(tmp_path, broker.port, drivers=serial_gps(str(gps.link), name="gnss"))
    started = time.monotonic()
    done = doctor("-c", str(cfg), "--timeout", "3")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"edged doctor: {cfg}"
    assert any(line.split()[:3] == ["ok", "gnss:", "answers"] for line in lines), done.stdout
    assert any(line.split()[:3] == ["ok", "broker:", "mqtt"] for line in lines), done.stdout
    assert "0 failed" in lines[-1]
    assert took < 6, f"took {took:.1f} s"


def test_json_is_a_list_of_checks_with_their_status(broker: Mosquitto, tmp_path: Path) -> None:
    done = doctor("-c", str(config(tmp_path, broker.port)), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(done.stdout)
    assert isinstance(checks, list)
    by_name = {c["name"]: c for c in checks}
    assert by_name["config"]["status"] == "ok"
    assert by_name["broker: mqtt"]["status"] == "ok"
    assert by_name["gps: answers"]["section"] == "drivers"
    assert "simulated" in by_name["gps: answers"]["detail"]
    assert {c["status"] for c in checks} <= {"ok", "warn", "skip"}
    assert all(c["advice"] for c in checks if c["status"] == "warn")


def test_a_broker_that_is_down_exits_1_and_says_so(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = doctor("-c", str(config(tmp_path, port)), "--timeout", "2")
    assert done.returncode == 1, done.stdout
    assert f"connection refused at 127.0.0.1:{port}" in done.stdout
    assert "is mosquitto running" in done.stdout


def test_an_invalid_config_exits_2_lists_its_problems_and_still_checks_the_rest(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        free_port(),
        gps=False,
        outbox="max_bytes = 1",  # below the minimum
        drivers=serial_gps(str(tmp_path / "ttyNONE")) + "baud = 1234\n",
    )
    done = doctor("-c", str(cfg), "--timeout", "1")
    assert done.returncode == 2, done.stdout
    out = " ".join(done.stdout.split())  # unwrapped
    assert "FAIL config" in out
    assert "- outbox.max_bytes:" in out  # the problem, as check-config words it
    assert "drivers[0].options.baud:" in out
    assert "clock" in out  # what does not depend on the config still runs
    assert "connection refused" in out  # [broker] is valid by itself: checked
    assert "ttyNONE does not exist" in out  # so is the driver table: its device is checked


def test_an_unreadable_or_unparsable_config_exits_2(tmp_path: Path) -> None:
    missing = doctor("-c", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "cannot read the file" in missing.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    done = doctor("-c", str(bad), "--json")
    assert done.returncode == 2
    checks = json.loads(done.stdout)
    assert checks[0]["status"] == "fail"
    assert "not valid TOML" in checks[0]["items"][0]


def test_a_silent_device_fails_within_the_timeout(silent_pty: str, tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port(), gps=False, drivers=serial_gps(silent_pty))
    done = doctor("-c", str(cfg), "--timeout", "0.5", "--json")
    assert done.returncode == 1
    answers = next(c for c in json.loads(done.stdout) if c["name"] == "gps: answers")
    assert answers["status"] == "fail"
    assert "no answer within 0.5 s" in answers["detail"]
    assert "baud rate" in answers["advice"]


def test_a_silent_device_ends_the_report_within_the_timeout_and_its_grace(
    silent_pty: str, tmp_path: Path
) -> None:
    """The report's own time, which the technician reads on its last line: the wall time of
    the whole command also holds the interpreter's start, 4.3 s once on a loaded CI."""
    cfg = config(tmp_path, free_port(), gps=False, drivers=serial_gps(silent_pty))
    done = doctor("-c", str(cfg), "--timeout", "0.5")
    assert done.returncode == 1
    said = re.search(r" in (\d+\.\d) s$", done.stdout.rstrip())
    assert said is not None, done.stdout
    assert float(said.group(1)) <= 0.5 + GRACE_S, done.stdout

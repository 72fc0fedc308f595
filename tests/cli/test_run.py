"""`edged run` with a config it cannot use: one clear message and the exit status that
tells systemd not to restart it (RestartPreventExitStatus= in systemd/edged.service)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged.cli.main import EXIT_CONFIG
from edged.config.probation import Probation
from hil.nfc.emulator import Pn532Emulator
from tests.helpers.nodes import ROOT, write_config


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_a_config_naming_a_missing_file_exits_with_the_config_status(tmp_path: Path) -> None:
    """What install.sh used to leave: a copied example whose route file was not there."""
    config = write_config(
        tmp_path,
        1883,
        extra='[[drivers]]\nname = "can"\ndriver = "can.replay"\n[drivers.options]\nlog = "can/missing.log"\n',
    )
    r = run(config)
    assert r.returncode == EXIT_CONFIG == 78, r.stderr
    assert f"no such file: {tmp_path / 'can' / 'missing.log'}" in r.stderr
    assert f"edged: not started: fix {config}" in r.stderr
    assert "systemctl restart edged" in r.stderr


def test_an_invalid_key_exits_with_the_config_status_and_names_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1883, health_s=-1)
    r = run(config)
    assert r.returncode == EXIT_CONFIG, r.stderr
    assert "health.interval_s" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_config_file_that_is_not_there_is_a_config_error_too(tmp_path: Path) -> None:
    r = run(tmp_path / "edged.toml")
    assert r.returncode == EXIT_CONFIG, r.stderr
    assert "Traceback" not in r.stderr


def test_a_config_on_probation_that_cannot_start_is_rolled_back_at_once(tmp_path: Path) -> None:
    """edged/config/probation.py: a typo pushed by `config.set` must not cost a trip to the
    bus. A config that validates but whose node cannot start (here its state store's
    directory is a file) never reaches the probation's watch: each start used to exit 1,
    systemd started it again (Restart=always), and the `.pending` marker stayed for ever."""
    config = write_config(tmp_path, 1)  # no broker: the rolled-back node only has to run
    previous = config.read_text()
    config.with_name(config.name + ".previous").write_text(previous)
    (tmp_path / "a-file").touch()
    broken = previous.replace(
        str(tmp_path / "shuttle-07-outbox.sqlite"), str(tmp_path / "a-file" / "outbox.sqlite")
    )
    config.write_text(broken)
    pending = config.with_name(config.name + ".pending")
    pending.write_text("on probation\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while pending.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the rolled-back node starts, or the process exits
        assert proc.poll() is None, proc.communicate()[1]
        assert config.read_text() == previous and not pending.exists()
        # what was taken out (pushed, or edited by a technician on the device) is kept
        assert config.with_name(config.name + ".rolled-back").read_text() == broken
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_config_on_probation_that_keeps_crashing_is_rolled_back_when_its_time_is_up(
    tmp_path: Path,
) -> None:
    """A config that makes the node die before it reaches the broker (here SIGKILL, as the
    OOM killer or the unit's watchdog would) is started again by systemd. Each start used to
    begin `rollback_after_s` anew, so a node dying every 3 s under a 5 s probation kept the
    bad config for ever; the time is now counted across the starts of one boot."""
    config = write_config(tmp_path, 1, extra="[remote]\nrollback_after_s = 5\n")
    previous = config.read_text()
    Probation(config).begin(previous + "# pushed by config.set\n")  # as config.set does
    starts = 0
    while config.read_text() != previous and starts < 4:
        starts += 1
        log = tmp_path / f"start{starts}.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edged", "run", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=ROOT,
            )
        # up and waiting for a broker that is not there, then killed: not after a fixed
        # time, which a loaded machine's start (imports, config) could use up before the
        # node even looked at its probation (a CI run beside other work: never rolled back)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if "running as" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
        time.sleep(2.0)
        proc.kill()
        proc.wait(timeout=30)
    assert config.read_text() == previous, f"still on probation after {starts} starts"
    assert not config.with_name(config.name + ".pending").exists()
    assert starts <= 3


def test_a_config_on_probation_stopped_on_purpose_is_not_rolled_back_for_the_time_stopped(
    tmp_path: Path,
) -> None:
    """`systemctl stop` (SIGTERM) during a 5 s probation, 3 s in, and a start 4 s later:
    the node still has its last 2 s to reach the broker, as the time it was stopped is no
    time the config failed in. Counted as a crash's, it was rolled back at the start."""
    config = write_config(tmp_path, 1, extra="[remote]\nrollback_after_s = 5\n")
    previous = config.read_text()
    Probation(config).begin(previous + "# pushed by config.set\n")
    pending = config.with_name(config.name + ".pending")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )

    proc = start()
    time.sleep(3.0)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    time.sleep(4.0)
    proc = start()
    try:
        time.sleep(1.5)  # a rollback at the start happens before the node is built
        assert pending.exists(), "rolled back for the time it was stopped"
        deadline = time.monotonic() + 20
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert config.read_text() == previous, "never rolled back"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WATCH_THREADS_AND_ENVIRONMENT = """
import json, os, signal, sys, threading

starts, writes = [], []
thread_start, putenv = threading.Thread.start, os.putenv


def start(self, *args, **kwargs):
    starts.append([self.name, os.environ.get("LIBNFC_LOG_LEVEL")])
    thread_start(self, *args, **kwargs)
    if self.name.startswith("nfc-"):  # the reader's thread runs: the node may stop
        os.kill(os.getpid(), signal.SIGTERM)


def watched_putenv(key, value):
    writes.append([os.fsdecode(key), threading.active_count()])
    putenv(key, value)


threading.Thread.start, os.putenv = start, watched_putenv
signal.setitimer(signal.ITIMER_REAL, 30)  # should the reader never start: SIGALRM ends it
from edged.cli.main import main

main(["run", "-c", sys.argv[1]])
print(json.dumps({"starts": starts, "writes": writes}))
"""


@pytest.mark.parametrize(("operators", "level"), [(None, "0"), ("1", "1")])
def test_libnfc_log_level_is_in_place_before_any_thread_starts_and_an_operators_wins(
    tmp_path: Path, operators: str | None, level: str
) -> None:
    """glibc's setenv is not thread-safe against a getenv in another thread (libnfc's
    nfc_init, localtime's TZ): the NFC driver set LIBNFC_LOG_LEVEL when the reader first
    started, with the node's threads running. `edged run` as systemd starts it, watched:
    every thread it starts, the reader's among them, finds the level set; it is written
    only while the main thread is alone, and not at all when the operator set it."""
    env = {k: v for k, v in os.environ.items() if k != "LIBNFC_LOG_LEVEL"}
    if operators is not None:
        env["LIBNFC_LOG_LEVEL"] = operators
    with Pn532Emulator(tmp_path / "nfc0") as emu:
        config = write_config(
            tmp_path,
            1,  # no broker: the node only has to start its reader
            gps=False,
            extra=f'[[drivers]]\nname = "reader"\ndriver = "nfc.libnfc"\n'
            f'[drivers.options]\nconnstring = "{emu.connstring}"\n',
        )
        r = subprocess.run(
            [sys.executable, "-c", WATCH_THREADS_AND_ENVIRONMENT, str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert any(name.startswith("nfc-") for name, _ in seen["starts"]), seen
    assert all(value == level for _, value in seen["starts"]), seen["starts"]
    libnfc_writes = [threads for key, threads in seen["writes"] if key == "LIBNFC_LOG_LEVEL"]
    assert libnfc_writes == ([1] if operators is None else [])

"""The daemon under a systemd-like supervisor: READY, WATCHDOG, STATUS and STOPPING."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT, write_config


def receive_until(
    sock: socket.socket, predicate: Callable[[list[str]], bool], timeout: float
) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got += sock.recv(4096).decode().splitlines()
        except TimeoutError:
            break
        if predicate(got):
            break
    return got


def test_ready_watchdog_status_and_stopping_reach_systemd(
    broker: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(path),
        "WATCHDOG_USEC": "2000000",  # a 2 s watchdog: pings every second
        "PYTHONUNBUFFERED": "1",
    }
    config = write_config(tmp_path, broker.port)
    with (tmp_path / "node.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "-c", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        seen = receive_until(
            sock,
            lambda g: (
                sum(x == "WATCHDOG=1" for x in g) >= 3 and any("drivers running" in x for x in g)
            ),
            15,
        )
        assert "READY=1" in seen
        assert seen.count("WATCHDOG=1") >= 3
        status = [x for x in seen if x.startswith("STATUS=") and "drivers running" in x]
        assert status and "1/1 drivers running" in status[-1]
        proc.send_signal(signal.SIGTERM)
        after = receive_until(sock, lambda g: "STOPPING=1" in g, 5)
        assert "STOPPING=1" in after
        assert proc.wait(8) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()

"""The daemon as systemd/edged.service runs it: `python3 -I -OO launcher.py`, which runs the
release with -OO (no docstrings, no asserts). It must still come online and answer."""

import json
import time
from pathlib import Path

from tests.helpers.broker import Mosquitto
from tests.helpers.commands import births, reply_to
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import write_config
from tests.helpers.releases import first_release, make_root
from tests.helpers.service import Service

FLEET, NODE = "test", "shuttle-07"
BASE = f"rnst/v1/{FLEET}/{NODE}"


def interpreter_flags(pid: int) -> list[str]:
    """The options before `-m` on a process's command line."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    return argv[1 : argv.index("-m")]


async def test_the_units_daemon_runs_under_OO_comes_online_and_answers_a_ping(
    broker: Mosquitto, tmp_path: Path
) -> None:
    root = make_root(tmp_path / "root")
    first_release(root, "0.1.0")
    write_config(root.data, broker.port, node=NODE, fleet=FLEET).replace(root.config)
    service = Service(root.path, tmp_path / "service.log")
    c = Collector(broker.port, topic=f"{BASE}/#", client_id=f"ops-{time.monotonic_ns()}")
    await c.__aenter__()
    try:
        service.start()
        await c.wait_for(lambda: bool(births(c)), 30, "the node's birth")
        pid = service.pid
        assert pid is not None
        assert interpreter_flags(pid) == ["-OO", "-P"]  # the launcher passed its -OO on
        await publish(broker.port, f"{BASE}/cmd/ping", json.dumps({"id": "oo-1"}).encode())
        await c.wait_for(lambda: reply_to(c, "oo-1") is not None, 10, "the reply to ping")
        reply = reply_to(c, "oo-1")
        assert reply is not None and reply["ok"] is True and reply["result"]["pong"] is True
    finally:
        await service.stop()
        await c.__aexit__(None, None, None)
    (run,) = service.runs
    assert (run.code, run.status) == ("exited", "0"), service.log.read_text()[-2000:]

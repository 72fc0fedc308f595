"""The daemon as systemd/edged.service runs it: `python3 -I -OO launcher.py`, which runs the
release with -OO (no docstrings, no asserts). It must still come online and answer."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.broker import Mosquitto
from tests.helpers.commands import births, reply_to
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import ROOT, write_config
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


@pytest.mark.parametrize(
    ("args", "says"),
    [(["--help"], "check-config"), (["run", "--help"], "--config"), (["--version"], "edged "),
     (["check-config", str(ROOT / "config/shuttle.toml")], ": ok")],
)  # fmt: skip
def test_the_cli_works_under_OO_where_its_descriptions_are_gone(args: list[str], says: str) -> None:
    """argparse's `description=__doc__` is None under -OO: usage and options still show."""
    r = subprocess.run(
        [sys.executable, "-OO", "-m", "edged", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    assert says in r.stdout


def test_every_module_of_edged_and_its_drivers_imports_under_OO() -> None:
    """An import-time use of a docstring (`__doc__ + ...`) would fail only under -OO."""
    code = (
        "import importlib, pkgutil, sys, edged, drivers, core\n"
        "assert sys.flags.optimize == 2 or sys.exit('not -OO')\n"
        "names = [m.name for p in (edged, drivers, core)\n"
        "         for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    r = subprocess.run(
        [sys.executable, "-OO", "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout) > 200

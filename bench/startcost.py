"""The CPU `edged run` spends to start, counted in instructions: the same count on a busy
machine as on a quiet one.

    python -m bench.startcost --json                  # every driver, the kiosk, access control
    python -m bench.startcost --json --config FILE    # a node's own config

Start-up CPU in seconds (`bench.footprint`'s `startup_cpu_s`, `bench.pizero`) moves by
±20 % with what else runs on this VM; the instructions an interpreter executes do not (the
hash seed is fixed, the bytecode compiled first as install.sh has it), so a change of a few
per cent of the start shows here where the seconds cannot show it. Each figure is one run
of valgrind's cachegrind without cache simulation (~5 s) with the unit's interpreter flags
(`-OO`, bench/unit.py); on a Pi Zero 2 W's in-order core the start's CPU follows the count
more closely than on this one.

Prints one JSON object, in millions of instructions:
- bare_python_m: `python -c pass`, the floor;
- imports_m: `edged.cli.main`, `edged.config` and `edged.node` imported, as `edged run` does
  before it reads the config;
- start_m: the start path up to the node running: those imports, the config read and
  validated (its drivers' modules and their options), `Node(config)`, each driver's factory,
  the outbox opened (its `quick_check`) and the services built (the kiosk's server and models
  imported); what it leaves out is the loop's own work (the drivers opening their devices,
  the uplink's connection), a few per cent of a start;
- modules: how many modules the start path loaded; config: the config measured (`default`:
  the footprint rig's, every driver and service on, with mock GPIO).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.unit import compile_as_installed, unit_interpreter_flags
from hil.rig.daemon import compile_bytecode

ROOT = Path(__file__).resolve().parents[1]

START = r"""
import asyncio, pathlib, sys
import edged.cli.main
from edged import startgc
startgc.hold_full_collections()  # as `edged run` does before its imports
from edged.config import load_config
from edged.node import Node
if sys.argv[1] == "start":
    from edged.supervisor import driver_factory
    path = pathlib.Path(sys.argv[2])
    config = load_config(path)
    node = Node(config, config_path=path)
    for d in config.drivers:
        driver_factory(d)

    async def services():
        await node.outbox.open()
        try:
            node._start_services()
        finally:
            await node.outbox.close()

    asyncio.run(services())
    print("modules", len(sys.modules), file=sys.stderr)
"""

CONFIG = """
[node]
fleet = "bench"
id = "shuttle-1"
profile = "shuttle"

[broker]
host = "127.0.0.1"
port = 1883

[outbox]
path = "{tmp}/outbox.sqlite"

[clock]
trust_system_clock = true

[[security.keys]]
id = "dispatch"
public_key = "nxc8Q/PGKsK/P7M9oTt/PuuZNa5BFuN5+AKQHalRnUo="
scopes = ["read", "operate", "door", "access", "config"]

[services.kiosk]
enabled = true

[services.access]
enabled = true
secret_file = "{tmp}/fleet.secret"
lists_public_key = "qrBfq8FHiskdEK5+cJYE9SEKuOo2Tx2oJDlTuqp14mI="

[[drivers]]
name = "reader"
driver = "nfc.libnfc"
[drivers.options]
connstring = "pn532_uart:{tmp}/nfc0"

[[drivers]]
name = "gpio"
driver = "gpio.gpiozero"
[drivers.options]
pin_factory = "mock"
mock_control = "{tmp}/gpio.sock"
lock = {{ pin = 22 }}
green = {{ pin = 23 }}
red = {{ pin = 24 }}
buzzer = {{ pin = 25 }}
panic = {{ pin = 27, hold_s = 0.5 }}
doors = [{{ name = "door", pin = 17 }}]
beams = [{{ door = "door", outer = 5, inner = 6 }}]

[[drivers]]
name = "gps"
driver = "gps.nmea-serial"
[drivers.options]
port = "{tmp}/gps0"

[[drivers]]
name = "can"
driver = "can.bus"
[drivers.options]
interface = "slcan"
channel = "{tmp}/can0"
bitrate = 250000
"""
"""The footprint rig's node (hil/rig): every driver and service on, mock GPIO."""

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
VALGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null")


def instructions_m(argv: list[str], cwd: Path) -> float:
    """Millions of instructions `argv` executes, counted by cachegrind."""
    done = subprocess.run(
        [*VALGRIND, *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return round(int(found.group(1).replace(",", "")) / 1e6, 1)


def write_config(tmp: Path) -> Path:
    """The default config in `tmp`, with the fleet secret its access control reads."""
    (tmp / "fleet.secret").write_bytes(os.urandom(32).hex().encode())
    os.chmod(tmp / "fleet.secret", 0o600)
    config = tmp / "edged.toml"
    config.write_text(CONFIG.format(tmp=tmp))
    return config


def modules_loaded(python: list[str], config: Path) -> int:
    """How many modules the start path loads (run once without valgrind)."""
    done = subprocess.run(
        [*python, "-c", START, "start", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stderr.split("modules")[-1].split()[0])


def measure(config: Path | None, flags: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"interpreter_flags": flags, "config": str(config or "default")}
    out["bytecode_compiled"] = compile_bytecode() and compile_as_installed(flags)
    python = [sys.executable, *flags]
    with tempfile.TemporaryDirectory(prefix="bench-startcost-") as tmp:
        config = config or write_config(Path(tmp))
        out["bare_python_m"] = instructions_m([*python, "-c", "pass"], ROOT)
        out["imports_m"] = instructions_m([*python, "-c", START, "imports"], ROOT)
        out["start_m"] = instructions_m([*python, "-c", START, "start", str(config)], ROOT)
        out["modules"] = modules_loaded(python, config)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startcost", description=__doc__)
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    p.add_argument("--config", type=Path, help="a node's config (default: the rig's)")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench.startcost needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    result = measure(args.config, unit_interpreter_flags())
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

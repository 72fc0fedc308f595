"""What the daemon costs with every driver running on the emulators at field rates.

    python -m bench.footprint --json [--quick]

The daemon is `edged run` in its own process (as systemd starts it) with its real drivers:
`gps.nmea-serial` on a pty at 1 Hz, `can.bus` on an emulated slcan adapter carrying a
saturated 250 kbit/s bus (1,700 frames/s), `nfc.libnfc` polling a PN532 emulated on a pty
with a card every 10 s, `gpio.gpiozero` on mock pins, all services on, a real Mosquitto.
The emulators run in this process, so their CPU is not the daemon's.

Prints one JSON object:
- startup_s: from `edged run` to dispatch receiving `state: online` (median of 3 starts);
- rss_mb: the daemon's resident memory once steady (the largest sample);
- cpu_pct: the daemon's CPU, % of one core, over the measuring window;
- baseline_python_startup_s, baseline_python_rss_mb: a bare `python -c` in the same run,
  and baseline_imports_rss_mb: a process that only imports what the daemon imports — the
  floor that code changes alone cannot go under;
- startup_cpu_s: the CPU the daemon used to get online (median of the 3 starts);
- imports: for each library the daemon may load, whether `edged run` loaded it with this
  config and how long that took in it (`-X importtime` of a fourth start, not timed),
  and what it costs imported alone in a fresh interpreter (CPU ms, MB over bare Python);
  imports_edged_ms, imports_total_ms, imports_modules: edged's own modules' import time,
  everything's, and how many modules that start loaded;
- the aims of issue #19 (startup ≤ 2 s, RSS ≤ 48 MB, CPU ≤ 5 %) and an `_ok` flag for each;
- kiosk: whether the kiosk page ran too (`--kiosk`; the aim is for every driver and it);
- signature_checked: the measured daemon has checked a signed `access.update` (lists and
  command signatures) before the window, as a node in service has within minutes;
- rss_anon_mb, rss_file_mb: the steady RSS split into heaps and file-backed pages (code);
- imports_in_the_daemons_set_mb: each top-level package's cost in the daemon's own import
  set, in the order `edged run` loaded it (`bench.importcost`), imports_replayed_rss_mb
  that replay's end, rss_over_imports_mb what start-up and the drivers add to it;
  imports_top_modules_mb: the costliest modules of that replay, each charged only what its
  own body took (what making it lazy could give back);
- unit_environment: the daemon runs with the Environment= of systemd/edged.service;
  interpreter_flags: and with the interpreter flags its ExecStart gives it (`-OO`, passed on
  by the launcher; `--flags ''` for none), the bare-Python baselines and the import replay
  too, with the bytecode for them compiled first as install.sh does (.opt-2.pyc);
- probe (`--probe`): one more start with tracemalloc and bench/memprobe: Python's heap vs
  RSS, malloc in use and free, its arenas, and what malloc_trim(0) and gc.freeze() give.

The checkout's bytecode is compiled first, as `systemd/install.sh` has pip do for a node.
"""

import argparse
import asyncio
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import say
from bench.memory import resident_split
from bench.unit import compile_as_installed, unit_environment, unit_interpreter_flags
from hil.proc import proc_status_mb
from hil.rig.daemon import compile_bytecode
from hil.rig.rig import Cards, Rig, RigSetup

AIMS = {"startup_s": 2.0, "rss_mb": 48.0, "cpu_pct": 5.0}
CAN_FPS = 1700
TAP_EVERY_S = 10.0
IMPORTS = (
    "import edged.node, edged.cli.main, drivers.gps.serial, drivers.can.bus, "
    "drivers.nfc.libnfc, drivers.gpio.board, pynfc, gpiozero"
)
LIBRARIES = {
    "pydantic": "pydantic",
    "aiomqtt": "aiomqtt",
    "paho": "paho.mqtt.client",
    "can": "can",
    "cantools": "cantools",
    "cryptography": "cryptography.hazmat.primitives.asymmetric.ed25519",
    "gpiozero": "gpiozero",
    "pynfc": "pynfc",
    "serial": "serial",
    "aiohttp": "aiohttp",  # edgectl feed only since the kiosk runs on h11: never loaded here
    "h11": "h11",  # the kiosk's and the portal's HTTP (edged/web)
    "rich": "rich.console",
}
"""What `edged run` may import (the big ones, and those only some configs need): the
package, and the module of it that edged uses, imported alone."""
PROBE = Path(__file__).resolve().parent / "memprobe"
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _frames_sent(workdir: Path) -> int:
    """The slcan emulator's own count, from its log ("sent N dropped M" every 5 s)."""
    lines = (workdir / "slcan.log").read_text().splitlines()
    counts = [int(line.split()[1]) for line in lines if line.startswith("sent ")]
    return counts[-1] if counts else 0


def _python_baseline(code: str, flags: list[str]) -> tuple[float, float]:
    """(seconds to run `code` then exit, peak RSS MB) of a fresh interpreter."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *flags, "-c", code + "; import time; time.sleep(0.3)"],
        cwd=Path(__file__).resolve().parents[1],
    )
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, proc_status_mb(proc.pid, "VmRSS") or 0.0)
        time.sleep(0.02)
    return time.monotonic() - t0 - 0.3, peak


def _alone(module: str, bare_mb: float, flags: list[str]) -> dict[str, float]:
    """CPU (ms) and peak RSS over bare Python (MB) of importing `module` alone; best of 3.
    (VmHWM, not ru_maxrss: Linux keeps the latter across exec, from this big process.)"""
    code = (
        f"import time; t = time.process_time(); import {module}; c = time.process_time() - t; "
        "print(c, [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    runs = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, *flags, "-c", code],
            capture_output=True,
            text=True,
            cwd=_root(),
            check=True,
        )
        cpu_s, rss_kb = done.stdout.split()
        runs.append((float(cpu_s) * 1000, int(rss_kb) / 1024 - bare_mb))
    return {
        "alone_cpu_ms": round(min(r[0] for r in runs), 1),
        "alone_mb": round(min(r[1] for r in runs), 1),
    }


def _import_breakdown(modules: list[str], flags: list[str]) -> dict[str, Any]:
    """`bench.importcost` on the daemon's own modules, in the order it loaded them."""
    done = subprocess.run(
        [sys.executable, *flags, "-m", "bench.importcost"],
        input=json.dumps(modules),
        capture_output=True,
        text=True,
        cwd=_root(),
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _probe_the_daemon(rig: Rig, settle_s: float) -> dict[str, Any]:
    """Start the daemon once more with `bench/memprobe` and tracemalloc (not timed); once
    steady, read what its heaps hold and what malloc_trim and gc.freeze would give."""
    rig.daemon.stop()
    out = Path(rig.workdir) / "memprobe.json"
    env = dict(rig.daemon.env)
    rig.daemon.env = {
        **env,
        "PYTHONPATH": str(PROBE),
        "EDGED_MEMPROBE": str(out),
        "EDGED_MEMPROBE_ONLY": "edged",  # the daemon, not what it may start
        "PYTHONTRACEMALLOC": "1",
    }
    before = rig.daemon.log.stat().st_size
    try:
        await rig.start_daemon()
    finally:
        rig.daemon.env = env
    await asyncio.sleep(settle_s)
    Path(str(out) + ".go").touch()
    result: dict[str, Any] = {}
    for _ in range(300):  # the probe writes each stage; gc.freeze's is the last, 10 s on
        if out.exists():
            result = json.loads(out.read_text())
            if "after_gc_freeze_10s" in result:
                break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"bench/memprobe wrote only {sorted(result)}; see {rig.daemon.log}")
    with rig.daemon.log.open(errors="replace") as f:
        f.seek(before)
        result["malloc_arenas"] = sum(1 for line in f if re.match(r"Arena \d+:", line))
    rig.daemon.stop()
    await rig.start_daemon()
    return result


def _root() -> Path:
    return Path(__file__).resolve().parents[1]


def _import_times(log_text: str) -> dict[str, tuple[float, float]]:
    """(self, cumulative) import time (ms) of each module `-X importtime` listed."""
    out: dict[str, tuple[float, float]] = {}
    for line in log_text.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and m.group(4) not in out:
            out[m.group(4)] = (int(m.group(1)) / 1000, int(m.group(2)) / 1000)
    return out


async def _imports_of_the_daemon(rig: Rig) -> dict[str, tuple[float, float]]:
    """Start the daemon once more with `-X importtime` (not timed) and read its log."""
    before = rig.daemon.log.stat().st_size
    rig.daemon.stop()
    env = dict(rig.daemon.env)
    rig.daemon.env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    try:
        await rig.start_daemon()
    finally:
        rig.daemon.env = env
    await asyncio.sleep(3)  # the drivers' own imports, as they start
    with rig.daemon.log.open(errors="replace") as f:
        f.seek(before)
        return _import_times(f.read())


async def measure(
    quick: bool,
    quiet: bool,
    kiosk: bool = False,
    probe: bool = False,
    flags: list[str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"kiosk": kiosk}
    flags = unit_interpreter_flags() if flags is None else flags
    out["interpreter_flags"] = flags
    out["bytecode_compiled"] = compile_bytecode() and compile_as_installed(flags)
    starts, rss_base = zip(*(_python_baseline("pass", flags) for _ in range(3)), strict=True)
    out["baseline_python_startup_s"] = round(statistics.median(starts), 3)
    out["baseline_python_rss_mb"] = round(max(rss_base), 1)
    out["baseline_imports_rss_mb"] = round(_python_baseline(IMPORTS, flags)[1], 1)
    window = 20.0 if quick else 60.0
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        setup = RigSetup(
            profile="shuttle",
            speed_factor=1.0,
            seconds=window + 120,
            health_s=30,
            can_fps=CAN_FPS,
            kiosk=kiosk,
        )
        rig = Rig(Path(tmp), setup)
        rig.daemon.env = unit_environment()
        rig.daemon.flags = flags
        out["unit_environment"] = rig.daemon.env
        say(quiet, "starting the rig")
        await rig.start()
        try:
            startups, startup_cpu = [rig.startup_s], [rig.startup_cpu_s]
            for _ in range(2):
                rig.daemon.stop()
                t0 = time.monotonic()
                await rig.start_daemon()
                startups.append(time.monotonic() - t0)
                startup_cpu.append(rig.startup_cpu_s)
            out["startup_s"] = round(statistics.median(startups), 2)
            out["startups_s"] = [round(s, 2) for s in startups]
            out["startup_cpu_s"] = round(statistics.median(startup_cpu), 2)
            loaded = await _imports_of_the_daemon(rig)
            if probe:
                out["probe"] = await _probe_the_daemon(rig, 20.0)
            # a node in service checks signatures (commands, lists, bundles) within minutes
            # of a start: so has the measured one (cryptography was ~9 MB of it until #19)
            await rig.load_lists()
            out["signature_checked"] = True
            say(quiet, f"warming up, then measuring {window:g} s")
            await asyncio.sleep(10)
            cpu0, t0, sent0 = rig.daemon.cpu_s(), time.monotonic(), _frames_sent(Path(tmp))
            rss: list[float] = []
            taps = 0
            while time.monotonic() - t0 < window:
                rig.nfc.put([Cards.RESIDENT, Cards.SENIOR, Cards.STAFF][taps % 3])
                await asyncio.sleep(0.5)
                rig.nfc.remove()
                taps += 1
                for _ in range(int(TAP_EVERY_S - 0.5)):
                    rss.append(rig.daemon.rss_mb())
                    await asyncio.sleep(1.0)
            wall = time.monotonic() - t0
            out["cpu_pct"] = round(100 * (rig.daemon.cpu_s() - cpu0) / wall, 1)
            out["rss_mb"] = round(max(rss), 1)
            out["rss_first_mb"] = round(rss[0], 1)
            out.update(resident_split(rig.daemon.pid) or {})
            out["taps"] = taps
            out["taps_at_dispatch"] = len(rig.on("events/tap"))
            out["can_fps"] = CAN_FPS
            await asyncio.sleep(5.5)  # the emulator's next count
            out["can_fps_measured"] = round((_frames_sent(Path(tmp)) - sent0) / (wall + 5.5))
            out["window_s"] = round(wall, 1)
        finally:
            await rig.close()
    bare = out["baseline_python_rss_mb"]
    out["imports"] = {
        lib: {
            "loaded": lib in loaded,
            "import_ms": round(loaded[lib][1], 1) if lib in loaded else None,
            **_alone(module, bare, flags),
        }
        for lib, module in LIBRARIES.items()
    }
    breakdown = _import_breakdown(list(loaded), flags)
    out["imports_replayed_rss_mb"] = breakdown["end_mb"]
    out["imports_in_the_daemons_set_mb"] = breakdown["packages"]
    out["imports_top_modules_mb"] = breakdown["modules"]
    out["imports_replay_failed"] = breakdown["failed"]
    out["rss_over_imports_mb"] = round(out["rss_mb"] - breakdown["end_mb"], 1)
    own = [t for name, (t, _) in loaded.items() if name.split(".")[0] in ("edged", "drivers")]
    out["imports_edged_ms"] = round(sum(own), 1)
    out["imports_total_ms"] = round(sum(t for t, _ in loaded.values()), 1)
    out["imports_modules"] = len(loaded)
    out["aims"] = AIMS
    for key, aim in AIMS.items():
        out[f"{key}_ok"] = out[key] <= aim
    out["cores"] = os.cpu_count()
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    p.add_argument("--json", action="store_true", help="print only the JSON object")
    p.add_argument("--quick", action="store_true", help="a 20 s window instead of 60 s")
    p.add_argument("--kiosk", action="store_true", help="the kiosk page runs too")
    p.add_argument(
        "--probe",
        action="store_true",
        help="one more start with tracemalloc and bench/memprobe: heap vs RSS, malloc arenas",
    )
    p.add_argument(
        "--flags",
        type=shlex.split,
        help="the daemon's interpreter flags, e.g. '' for none (default: the unit's, as the "
        "launcher passes them on: -OO)",
    )
    args = p.parse_args(argv)
    result = asyncio.run(
        measure(args.quick, quiet=args.json, kiosk=args.kiosk, probe=args.probe, flags=args.flags)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

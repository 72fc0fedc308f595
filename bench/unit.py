"""What systemd/edged.service gives the daemon, for benchmarks that start it "as systemd
starts it": read from the unit file, so a change of the unit is what the benchmark measures."""

import compileall
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from edged.release.launcher import optimize_flags
from edged.update.install import NOT_RUN

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "edged.service"


def unit_environment(unit: Path = UNIT) -> dict[str, str]:
    """The Environment= assignments of the unit's [Service] section, in order (a later one
    wins, as in systemd). Quoted values are unquoted as systemd does (shell-like words)."""
    env: dict[str, str] = {}
    section = ""
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith("Environment="):
            for word in shlex.split(line.partition("=")[2]):
                key, sep, value = word.partition("=")
                if sep:
                    env[key] = value
    return env


def unit_interpreter_flags(unit: Path = UNIT) -> list[str]:
    """The interpreter flags the unit's daemon runs with: ExecStart runs the launcher as
    `python3 FLAGS launcher.py`, and the launcher runs the release with its own optimisation
    level (`optimize_flags` in edged/release/launcher.py) and `-P`; that level is read by
    asking an interpreter given those flags, so any spelling (`-OO`, `-O -O`) counts."""
    section, line = "", ""
    for raw in unit.read_text(encoding="utf-8").splitlines():
        text = raw.strip()
        if text.startswith("["):
            section = text
        elif section == "[Service]" and text.startswith("ExecStart="):
            line = text.partition("=")[2].lstrip("-@+!:")
    words = shlex.split(line)[1:]
    flags = words[: next((i for i, w in enumerate(words) if not w.startswith("-")), len(words))]
    level = subprocess.run(
        [sys.executable, *flags, "-c", "import sys; print(sys.flags.optimize)"],
        capture_output=True, text=True, check=True, env={"PATH": os.environ.get("PATH", "")},
    ).stdout  # fmt: skip
    return optimize_flags(int(level))


STDLIB_SKIP = re.compile(r"/(site-packages|dist-packages|test|idlelib|tkinter|turtledemo|lib2to3)/")
"""What systemd/install.sh does not compile in the standard library (never imported)."""


def compile_as_installed(flags: list[str]) -> bool:
    """The bytecode a node's install has for a daemon started with `flags`: under -O/-OO the
    .opt-N.pyc of the checkout's packages, the venv and the standard library (install.sh
    compiles them; PYTHONDONTWRITEBYTECODE keeps the daemon from writing any, so without
    this every start would compile every module). True when every file compiled."""
    level = sum(w.count("O") for w in flags if re.fullmatch(r"-O+", w))
    if level == 0:
        return True
    venv = re.compile(NOT_RUN)
    dirs = [(ROOT / p, venv) for p in ("edged", "drivers", "core")]
    dirs += [(Path(sysconfig.get_path("purelib")), venv)]
    dirs += [(Path(sysconfig.get_path("stdlib")), STDLIB_SKIP)]
    return all(
        compileall.compile_dir(d, quiet=1, optimize=level, rx=rx, workers=0)
        for d, rx in dirs
        if d.is_dir()
    )

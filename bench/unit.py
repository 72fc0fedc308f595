"""What systemd/edged.service gives the daemon, for benchmarks that start it "as systemd
starts it": read from the unit file, so a change of the unit is what the benchmark measures."""

import shlex
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edged.service"


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

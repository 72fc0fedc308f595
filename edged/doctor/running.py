"""Is an `edged run` already using this config? Then its devices are busy, not broken.

A technician often runs the doctor on a node whose service is up: probing the GPS port
then fails with "in use", which says nothing about the GPS. Found through /proc: an
`edged run -c FILE` (or `python -m edged run ...`) process whose FILE is this config.
"""

import os
from pathlib import Path


def daemons_using(config: Path, proc: Path = Path("/proc")) -> list[int]:
    """Pids of `edged run` processes started with this config file (never this process)."""
    try:
        target = config.stat()
    except OSError:
        return []
    found = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        file = _config_arg([a.decode(errors="replace") for a in argv if a])
        if file is None:
            continue
        path = Path(file)
        if not path.is_absolute():
            try:
                path = Path(os.readlink(entry / "cwd")) / path
            except OSError:
                continue
        try:
            st = path.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry.name))
    return sorted(found)


def _config_arg(argv: list[str]) -> str | None:
    """FILE from `... edged run -c FILE` / `--config FILE` / `--config=FILE`."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) != "edged":  # the entry point, or `python -m edged`
            continue
        rest = argv[i + 1 :]
        if "run" not in rest:
            return None
        rest = rest[rest.index("run") + 1 :]
        for j, opt in enumerate(rest):
            if opt in ("-c", "--config") and j + 1 < len(rest):
                return rest[j + 1]
            if opt.startswith("--config="):
                return opt.partition("=")[2]
        return None
    return None

"""`edged wifi apply`: the hotspot's files and services from `[wifi]` of the config."""

import os
import sys
from pathlib import Path

from core.errors import ConfigError


def wifi_apply(config_path: Path, *, dry_run: bool, root: Path | None) -> int:
    """0: applied (or nothing to do); 1: a tool refused a file or a step failed;
    2: the config cannot be used."""
    from edged.config import load_config
    from edged.wifi.apply import apply_plan
    from edged.wifi.backend import choose_backend
    from edged.wifi.plan import build_plan
    from edged.wifi.render.networkmanager import NotSupported

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if root is None and not dry_run and os.geteuid() != 0:
        print(
            "edged wifi apply writes /etc and starts services: run it as root "
            "(sudo edged wifi apply …), or see what it would do with --dry-run",
            file=sys.stderr,
        )
        return 1
    backend = choose_backend(config.wifi)
    try:
        plan = build_plan(config, backend, source=str(config_path.absolute()))
    except NotSupported as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return 2
    what = f"hotspot on {config.wifi.interface} with {backend}" if backend else "hotspot off"
    print(f"edged wifi apply: {what} ({config_path})")
    outcome = apply_plan(plan, root=root, dry_run=dry_run)
    for line in outcome.lines:
        print(f"  {line}")
    return 0 if outcome.ok else 1

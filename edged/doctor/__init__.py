"""`edged doctor`: is this machine ready to run its node? Config, devices, broker, clock, disk.

For the technician fitting a Pi in a bus: every check says ok, warn or FAIL and, when not
ok, what to do. Exit 0 when nothing failed, 1 when something did, 2 when the config file
cannot be used (as `edged check-config`).
"""

import asyncio
import logging
import sys
from pathlib import Path

from edged.doctor.check import Check, Status
from edged.doctor.render import as_json, text
from edged.doctor.runner import Report, run_checks

DEFAULT_CONFIG = Path("/etc/edged/edged.toml")
DEFAULT_TIMEOUT_S = 5.0

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_TIMEOUT_S",
    "Check",
    "Report",
    "Status",
    "doctor",
    "run_checks",
]


def doctor(
    config: Path = DEFAULT_CONFIG,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    json: bool = False,
    verbose: bool = False,
) -> int:
    """Run the checks, print the report, return the exit code."""
    if not timeout > 0:
        print("edged doctor: --timeout must be more than 0 seconds", file=sys.stderr)
        return 2
    if verbose:
        from edged.logs import setup_logging

        setup_logging(True)
    else:  # drivers log what the report says; their warnings still reach the probe
        logging.getLogger().addHandler(logging.NullHandler())
    report = asyncio.run(run_checks(config, timeout))
    if json:
        print(as_json(report.checks))
    else:
        print(text(report.checks, f"edged doctor: {config}", report.elapsed_s))
    return report.exit_code

"""The rig's unsynced clock: a child where adjtimex(2) is refused sees no synced clock."""

import subprocess
import sys
from collections.abc import Callable

import pytest

from hil.unsynced import UnsyncedUnavailable, check_supported, refuse_adjtimex

PROBE = (
    "import time; from edged.clock import Clock, kernel_clock_synced; "
    "print(kernel_clock_synced(), Clock(trust_system_clock=False).source.value, "
    "time.time() > 0)"
)


def probe(preexec: Callable[[], None] | None = None) -> str:
    r = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, preexec_fn=preexec
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_with_adjtimex_refused_the_node_clock_is_unsynced_and_the_rest_works() -> None:
    try:
        check_supported()
    except UnsyncedUnavailable as exc:
        pytest.skip(str(exc))
    assert probe(refuse_adjtimex) == "None unsynced True"


def test_without_the_filter_the_kernel_is_asked() -> None:
    assert probe().split()[0] in ("True", "False")

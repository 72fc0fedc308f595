"""hil.cgroup holds one process to a share of a core and a memory cap (bench.pizero's Pi Zero),
and leaves nothing behind."""

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hil.cgroup import Cgroup, CgroupError, Limits
from hil.proc import proc_cpu_s


@pytest.fixture
def limited(request: pytest.FixtureRequest) -> Iterator[Cgroup]:
    limits: Limits = request.param
    group = Cgroup(f"edged-test-{time.monotonic_ns()}", limits)
    try:
        group.__enter__()
    except CgroupError as exc:
        pytest.skip(f"no cgroups here: {exc}")
    try:
        yield group
    finally:
        group.__exit__(None, None, None)


def start_in(group: Cgroup, code: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [sys.executable, "-c", code], preexec_fn=lambda: group.join(__import__("os").getpid())
    )


@pytest.mark.parametrize("limited", [Limits(cpu=0.1, memory_mb=256)], indirect=True)
def test_a_busy_process_gets_its_share_of_a_core_and_no_more(limited: Cgroup) -> None:
    proc = start_in(
        limited, "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5: pass"
    )
    try:
        time.sleep(0.5)  # past the interpreter's start
        cpu0, t0 = proc_cpu_s(proc.pid) or 0.0, time.monotonic()
        time.sleep(0.8)
        share = ((proc_cpu_s(proc.pid) or 0.0) - cpu0) / (time.monotonic() - t0)
    finally:
        proc.wait(10)
    assert 0.03 < share < 0.2, f"{share:.2f} of a core under a 0.1 quota"
    assert limited.stats()["nr_throttled"] > 0


@pytest.mark.parametrize("limited", [Limits(cpu=0.1, memory_mb=256)], indirect=True)
def test_a_new_period_keeps_the_share_of_a_process_already_in_the_group(limited: Cgroup) -> None:
    proc = start_in(
        limited, "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 2.5: pass"
    )
    try:
        time.sleep(0.3)
        limited.set_period(100_000)  # the kernel's default period
        periods0 = limited.stats()["nr_periods"]
        cpu0, t0 = proc_cpu_s(proc.pid) or 0.0, time.monotonic()
        time.sleep(1.0)
        share = ((proc_cpu_s(proc.pid) or 0.0) - cpu0) / (time.monotonic() - t0)
        periods = limited.stats()["nr_periods"] - periods0
    finally:
        proc.wait(10)
    assert limited.limits.period_us == 100_000 and limited.limits.quota_us == 10_000
    assert 0.03 < share < 0.2, f"{share:.2f} of a core under a 0.1 quota"
    assert 5 <= periods <= 15, f"{periods} periods in 1 s: not 100 ms ones"


@pytest.mark.parametrize("limited", [Limits(cpu=1.0, memory_mb=64)], indirect=True)
def test_a_process_past_its_memory_cap_is_killed_and_counted(limited: Cgroup) -> None:
    proc = start_in(limited, "x = bytearray(200 << 20)\nx[::4096] = b'1' * len(x[::4096])")
    assert proc.wait(20) == -9
    assert limited.stats()["oom_kills"] >= 1


@pytest.mark.parametrize("limited", [Limits(cpu=0.5, memory_mb=64)], indirect=True)
def test_the_groups_are_removed_at_the_end(limited: Cgroup) -> None:
    dirs = list(limited.dirs.values())
    assert all(d.is_dir() for d in dirs)
    limited.remove()
    assert not any(d.exists() for d in dirs)

"""A slower, smaller machine for one process: a cgroup with a CPU quota and a memory cap.

`bench.pizero` runs `edged run` in one to play a Raspberry Pi Zero 2 W (a core five to six
times slower than one of a desktop VM, 512 MB shared with the OS) while the emulators and
the broker keep the full machine. Both cgroup versions are handled: v1 (the `cpu` and
`memory` hierarchies, `cpu.cfs_quota_us`, `memory.limit_in_bytes`) and v2 (`cpu.max`,
`memory.max`). The new groups are made under the ones this process is in (read from
`/proc/self/cgroup`), so whatever limits a supervisor set around us still hold, and are
removed at the end. Needs root (or a delegated cgroup).

The quota is given over a short period (10 ms by default, not the kernel's 100 ms): a Pi is
slow all the time, while a quota of 1/6 over 100 ms lets the process run at full speed for
17 ms and then stops it for 83 ms, which is no Pi's behaviour and adds that stop to every
latency measured.
"""

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class CgroupError(Exception):
    pass


@dataclass(frozen=True)
class Limits:
    cpu: float  # cores: 1/6 is a sixth of one core
    memory_mb: int
    period_us: int = 10_000

    @property
    def quota_us(self) -> int:
        return max(1000, round(self.cpu * self.period_us))  # the kernel's floor is 1 ms


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path ("" for the v2 unified hierarchy)."""
    out: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


class Cgroup:
    """One process group under `limits`; use as a context manager (created, then removed)."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.version = 1 if (ROOT / "cpu" / "cpu.cfs_quota_us").exists() else 2
        self.dirs: dict[str, Path] = {}

    def __enter__(self) -> "Cgroup":
        try:
            self._create()
        except OSError as exc:
            self.remove()
            raise CgroupError(
                f"cannot make a cgroup for the limits ({exc}): run as root on a machine with "
                "the cpu and memory controllers (cgroup v1, or v2 with them delegated)"
            ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _create(self) -> None:
        own, lim = _own_paths(), self.limits
        if self.version == 1:
            for controller in ("cpu", "memory"):
                parent = ROOT / controller / own.get(controller, "/").lstrip("/")
                path = parent / self.name
                path.mkdir()
                self.dirs[controller] = path
            cpu, mem = self.dirs["cpu"], self.dirs["memory"]
            (cpu / "cpu.cfs_period_us").write_text(str(lim.period_us))
            (cpu / "cpu.cfs_quota_us").write_text(str(lim.quota_us))
            (mem / "memory.limit_in_bytes").write_text(str(lim.memory_mb << 20))
            memsw = mem / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swapping around the cap
                memsw.write_text(str(lim.memory_mb << 20))
            return
        parent = ROOT / own.get("", "/").lstrip("/")
        wanted = {"cpu", "memory"}
        if not wanted <= set((parent / "cgroup.controllers").read_text().split()):
            raise OSError(f"{parent} does not offer the cpu and memory controllers")
        (parent / "cgroup.subtree_control").write_text("+cpu +memory")
        path = parent / self.name
        path.mkdir()
        self.dirs["cpu"] = self.dirs["memory"] = path
        (path / "cpu.max").write_text(f"{lim.quota_us} {lim.period_us}")
        (path / "memory.max").write_text(str(lim.memory_mb << 20))
        swap = path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")

    def set_period(self, period_us: int) -> None:
        """The same share of a core over another period, for what is in the group now."""
        self.limits = lim = replace(self.limits, period_us=period_us)
        cpu = self.dirs["cpu"]
        if self.version == 1:  # unlimited for the instant between the two writes
            (cpu / "cpu.cfs_quota_us").write_text("-1")
            (cpu / "cpu.cfs_period_us").write_text(str(lim.period_us))
            (cpu / "cpu.cfs_quota_us").write_text(str(lim.quota_us))
        else:
            (cpu / "cpu.max").write_text(f"{lim.quota_us} {lim.period_us}")

    def join(self, pid: int) -> None:
        """Move `pid` in (from a child between fork and exec, or from outside)."""
        for path in set(self.dirs.values()):
            (path / "cgroup.procs").write_text(str(pid))

    def stats(self) -> dict[str, int]:
        """Throttling and memory figures (cumulative since the group was made)."""
        out: dict[str, int] = {}
        cpu, mem = self.dirs.get("cpu"), self.dirs.get("memory")
        if cpu is not None:
            for line in _read(cpu / "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key in ("nr_periods", "nr_throttled"):
                    out[key] = int(value)
                elif key == "throttled_time":  # v1, ns
                    out["throttled_us"] = int(value) // 1000
                elif key == "throttled_usec":  # v2
                    out["throttled_us"] = int(value)
        if mem is not None:
            if self.version == 1:
                peak = _read(mem / "memory.max_usage_in_bytes")
                events = _read(mem / "memory.oom_control")
                out["memory_failcnt"] = int(_read(mem / "memory.failcnt") or 0)
            else:
                peak = _read(mem / "memory.peak")
                events = _read(mem / "memory.events")
            if peak:
                out["memory_peak_bytes"] = int(peak)
            for line in events.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    out["oom_kills"] = int(value)
        return out

    def remove(self) -> None:
        """Remove the groups (once their processes have exited)."""
        for path in set(self.dirs.values()):
            with contextlib.suppress(OSError):
                leftover = _read(path / "cgroup.procs").split()
                parent_procs = path.parent / "cgroup.procs"
                for pid in leftover:  # a process still in it goes back to the parent
                    with contextlib.suppress(OSError):
                        parent_procs.write_text(pid)
                os.rmdir(path)
        self.dirs.clear()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""

"""What a process costs, read from /proc: the rig, the soak and the benchmarks use it."""

import os

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_status_mb(pid: int, key: str = "VmHWM") -> float | None:
    """A memory line of /proc/<pid>/status in MB (VmHWM: peak RSS; VmRSS: RSS now)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_s(pid: int | str) -> float | None:
    """User + system CPU seconds used so far by a process (its threads included)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def thread_cpu_s(pid: int, tid: int) -> float | None:
    """User + system CPU seconds used so far by one thread of a process."""
    return proc_cpu_s(f"{pid}/task/{tid}")


def proc_fds(pid: int) -> int | None:
    """Open file descriptors of a process."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None

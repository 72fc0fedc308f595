"""The daemon under test as its own process, as systemd starts it — and kills it."""

import compileall
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from hil.cgroup import Cgroup
from hil.proc import proc_cpu_s, proc_fds, proc_status_mb

ROOT = Path(__file__).resolve().parents[2]


def compile_bytecode() -> bool:
    """Compile the checkout's bytecode, as `systemd/install.sh` has pip do for a node (whose
    venv is read-only at run time): a benchmark's start-up then times what a node's does,
    not the compiling of ~100 modules a `PYTHONDONTWRITEBYTECODE` checkout would redo at
    every start. True when every file compiled."""
    return all(
        compileall.compile_dir(ROOT / package, quiet=1, workers=1)
        for package in ("edged", "drivers")
    )


class Daemon:
    """`edged run -c CONFIG`; its output goes to `log`; `/proc` says what it costs."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        python: str = sys.executable,
        nofile: int | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.python = python
        self.nofile = nofile  # LimitNOFILE, as the unit sets it
        self.unsynced = False  # the kernel cannot say the clock is synced (hil.unsynced)
        self.cgroup: Cgroup | None = None  # a smaller machine (hil.cgroup): bench.pizero
        self.env: dict[str, str] = {}  # on top of this process's environment
        self.flags: list[str] = []  # the interpreter's, e.g. the unit's -OO (bench.unit)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _as_started(self) -> None:
        """In the child, before edged runs: what systemd (or a cold Pi) would give it."""
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        if self.cgroup is not None:
            self.cgroup.join(os.getpid())
        if self.unsynced:
            from hil.unsynced import refuse_adjtimex

            refuse_adjtimex()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [self.python, *self.flags, "-m", "edged", "run", "-c", str(self.config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=self._as_started,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the daemon was not started")
        return self.proc.pid

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, as systemd stops it; killed if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill9(self) -> None:
        """A power cut, as far as the daemon can tell: no signal handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    # -- what it costs, from /proc -------------------------------------------------------

    def rss_mb(self) -> float:
        rss = proc_status_mb(self.pid, "VmRSS")
        if rss is None:
            raise RuntimeError(f"the daemon (pid {self.pid}) is gone")
        return rss

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far."""
        return proc_cpu_s(self.pid) or 0.0

    def fds(self) -> int:
        return proc_fds(self.pid) or 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

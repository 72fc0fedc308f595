"""systemd's part, played for the tests where systemd cannot run: the unit's own ExecStart
and ExecStopPost, restarted as `Restart=always` does, with its watchdog and notify socket.

The command lines come from systemd/edged.service with its paths moved under a temporary
root (`/opt/edged` -> ROOT/opt/edged, `/etc/edged` -> ROOT/etc/edged) and /usr/bin/python3 as
the Python that made the release venvs. Like systemd it:

- gives the process a notification socket ($NOTIFY_SOCKET) and $WATCHDOG_USEC, and reads
  READY=1, STATUS= and WATCHDOG=1 from it;
- kills it with SIGABRT when no WATCHDOG=1 came for WatchdogSec (SERVICE_RESULT=watchdog);
- kills what is left of its process group when the main process ends (KillMode=control-group);
- runs ExecStopPost with $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS;
- does not restart after an exit status in RestartPreventExitStatus=;
- restarts after RestartSec (shortened for the tests).

`power_cut()` kills everything without ExecStopPost, as losing power does.
"""

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.nodes import ROOT
from tests.systemd.test_unit import parse_unit

UNIT = ROOT / "systemd" / "edged.service"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


@dataclass
class Run:
    pid: int
    started: float
    ended: float | None = None
    result: str = ""
    code: str = ""
    status: str = ""
    ready: bool = False
    wall: tuple[float, float] = (0.0, 0.0)  # time.time() at start and end


@dataclass
class Service:
    root: Path
    log: Path
    restart_s: float = 0.3
    watchdog_s: float | None = None  # default: the unit's WatchdogSec
    env: dict[str, str] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    stopped_for_good: str | None = None

    def __post_init__(self) -> None:
        values = parse_unit(UNIT.read_text())["Service"]
        self.exec_start = self._argv(values["ExecStart"][-1])
        self.exec_stop_post = [self._argv(v) for v in values.get("ExecStopPost", [])]
        self.prevent = set(" ".join(values.get("RestartPreventExitStatus", [])).split())
        if self.watchdog_s is None:
            self.watchdog_s = float(values["WatchdogSec"][-1].rstrip("s"))
        self.unit_env = dict(
            v.split("=", 1) for value in values.get("Environment", []) for v in shlex.split(value)
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._power_cut = False
        self._sock_dir = self.root / "run"
        self._sock_dir.mkdir(parents=True, exist_ok=True)

    def _argv(self, line: str) -> list[str]:
        out = []
        for word in shlex.split(line.lstrip("-@+!")):
            if word == "/usr/bin/python3":
                word = BASE_PYTHON
            for prefix in ("/opt/edged", "/etc/edged", "/var/lib/edged"):
                if word == prefix or word.startswith(prefix + "/"):
                    word = str(self.root) + word
            out.append(word)
        return out

    # -- control ------------------------------------------------------------------------

    def start(self) -> "Service":
        self._task = asyncio.create_task(self._loop(), name="service-loop")
        return self

    async def stop(self, timeout: float = 10.0) -> None:
        """`systemctl stop`: SIGTERM, SIGKILL after TimeoutStopSec, ExecStopPost, no restart."""
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._kill_group(signal.SIGKILL)
                await self._task

    def kill9(self) -> None:
        """The main process killed (-9): systemd sees it die, runs ExecStopPost, restarts."""
        if self._proc is not None and self._proc.returncode is None:
            os.kill(self._proc.pid, signal.SIGKILL)

    def power_cut(self) -> None:
        """Everything gone at once, ExecStopPost never runs; the next start is a boot."""
        self._power_cut = True
        self._kill_group(signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None or self._proc.returncode is not None else self._proc.pid

    async def wait_runs(self, n: int, timeout: float) -> None:
        """Until the service has been started `n` times (counting the first)."""
        async with asyncio.timeout(timeout):
            while len(self.runs) < n:
                await asyncio.sleep(0.05)

    # -- the loop ---------------------------------------------------------------------------

    def _kill_group(self, sig: int) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def _environment(self, sock: Path) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "NOTIFY_SOCKET": str(sock),
            "INVOCATION_ID": os.urandom(16).hex(),
        }
        if self.watchdog_s:
            env["WATCHDOG_USEC"] = str(int(self.watchdog_s * 1e6))
        return env | self.unit_env | self.env

    async def _loop(self) -> None:
        n = 0
        while not self._stopping:
            n += 1
            sock_path = self._sock_dir / f"notify-{n}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(sock_path))
            sock.setblocking(False)
            try:
                run = await self._one_run(sock, self._environment(sock_path))
            finally:
                sock.close()
                sock_path.unlink(missing_ok=True)
            if not self._power_cut:
                await self._stop_post(run)
            self._power_cut = False
            if run.code == "exited" and run.status in self.prevent:
                self.stopped_for_good = f"exit status {run.status} (RestartPreventExitStatus)"
                return
            if not self._stopping:
                await asyncio.sleep(self.restart_s)

    async def _one_run(self, sock: socket.socket, env: dict[str, str]) -> Run:
        with self.log.open("ab") as out:
            out.write(f"--- start {len(self.runs) + 1}: {shlex.join(self.exec_start)}\n".encode())
            self._proc = await asyncio.create_subprocess_exec(
                *self.exec_start,
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                cwd=str(self.root),
            )
        proc = self._proc
        run = Run(proc.pid, time.monotonic(), wall=(time.time(), 0.0))
        self.runs.append(run)
        last_ping = time.monotonic()
        watchdog = False
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while not waiter.done():
                await asyncio.wait([waiter], timeout=0.05)
                while True:
                    try:
                        data = sock.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        break
                    for line in data.decode(errors="replace").splitlines():
                        if line == "WATCHDOG=1":
                            last_ping = time.monotonic()
                        elif line == "READY=1":
                            run.ready = True
                            last_ping = time.monotonic()
                        elif line.startswith("STATUS="):
                            self.statuses.append(line[7:])
                if (
                    self.watchdog_s
                    and not waiter.done()
                    and time.monotonic() - last_ping > self.watchdog_s
                ):
                    watchdog = True
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGABRT)
                    await asyncio.wait([waiter], timeout=5)
                    if not waiter.done():
                        self._kill_group(signal.SIGKILL)
        finally:
            await waiter
        rc = proc.returncode
        assert rc is not None
        self._kill_group(signal.SIGKILL)  # KillMode=control-group: the children too
        run.ended = time.monotonic()
        run.wall = (run.wall[0], time.time())
        if rc >= 0:
            run.code, run.status = "exited", str(rc)
            run.result = "success" if rc == 0 else "exit-code"
        else:
            run.code, run.status = "killed", signal.Signals(-rc).name.removeprefix("SIG")
            run.result = "signal"
        if watchdog:
            run.result = "watchdog"
        return run

    async def _stop_post(self, run: Run) -> None:
        env = self._environment(self._sock_dir / "none") | {
            "SERVICE_RESULT": run.result,
            "EXIT_CODE": run.code,
            "EXIT_STATUS": run.status,
        }
        for argv in self.exec_stop_post:
            with self.log.open("ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
                )
                await proc.wait()

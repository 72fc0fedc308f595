"""A real Mosquitto on a free loopback port: the tests, the benchmarks and the rig use it.

Facts checked here: with a config file `-p` is ignored, so the listener is written into
the generated config; started as root it drops to user `mosquitto` unless told `user root`;
the default `max_queued_messages` drops QoS 1 messages to a slow subscriber; a SIGTERM
right after start is sometimes ignored, so stop is terminate, wait, then kill."""

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

_GIVEN: set[int] = set()
_LOWEST = 10_000


def _ephemeral_floor() -> int:
    """Where the kernel's ephemeral ports begin (every outgoing connection takes one)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free now, never one this process was given before, and below the kernel's
    ephemeral range where it can: a port from `bind(0)` is an ephemeral one, which any
    process's next outgoing connection may take before the server meant for it binds it
    (seen with two test workers: "Address already in use"). Below the range only another
    server can take it, and each caller starts its search at a random place."""
    top = _ephemeral_floor()
    if top - _LOWEST >= 1_000:
        start = random.randrange(_LOWEST, top)
        for i in range(top - _LOWEST):
            port = _LOWEST + (start - _LOWEST + i) % (top - _LOWEST)
            if port not in _GIVEN and _bindable(port):
                _GIVEN.add(port)
                return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


class Mosquitto:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        extra: str = "",
        max_queued: int = 1_000_000,
    ) -> None:
        self.max_queued = max_queued
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"max_queued_messages {self.max_queued}\n"
            "max_inflight_messages 0\n"
            "user root\n"
            f"{self.extra}\n"
        )
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [exe, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_listening(self.proc, [self.port], self.log)
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stop(self) -> None:
        """Terminate, wait, then kill: a SIGTERM right after start is sometimes ignored."""
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


def wait_listening(
    proc: "subprocess.Popen[bytes]", ports: list[int], log: Path, timeout: float = 5.0
) -> None:
    """Until `proc` accepts connections on every port of `ports` (RuntimeError if it exits
    or does not within `timeout`; the end of its log says why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for port in ports:
                if not listens(proc.pid, port):  # not another process's listener on it
                    raise OSError(f"{proc.pid} does not listen on {port} yet")
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen within {timeout:g} s: see {log}")


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (from /proc; True where
    /proc cannot tell, and the connection alone decides)."""
    inodes = set()
    try:
        for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):  # in its namespace
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
        fds = Path(f"/proc/{pid}/fd")
        return any(os.readlink(fd) in inodes for fd in fds.iterdir())
    except FileNotFoundError:
        return False  # the process is gone (or its fd went meanwhile)
    except (OSError, ValueError, IndexError):
        return True


def stop_process(proc: "subprocess.Popen[bytes]") -> None:
    """Terminate, wait, then kill."""
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=3)

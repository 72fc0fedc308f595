"""A real Mosquitto on a free loopback port: the tests, the benchmarks and the rig use it.

Facts checked here: with a config file `-p` is ignored, so the listener is written into
the generated config; started as root it drops to user `mosquitto` unless told `user root`;
the default `max_queued_messages` drops QoS 1 messages to a slow subscriber; a SIGTERM
right after start is sometimes ignored, so stop is terminate, wait, then kill."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now, and never one this process was given before: the kernel may hand a
    port just closed out again, and two servers of one test would then share it."""
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
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen within {timeout:g} s: see {log}")


def stop_process(proc: "subprocess.Popen[bytes]") -> None:
    """Terminate, wait, then kill."""
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=3)

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from hil.fleetbroker import FleetBroker
from tests.helpers.nodes import ROOT


class Proc:
    """A child process whose stdout lines the test can await."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("a") as log:
            async for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                log.write(line + "\n")
                self.lines.append(line)

    async def wait_line(self, text: str, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.lines:
                if self.proc.returncode is not None:
                    raise AssertionError(f"process exited: see {self.log}")
                await asyncio.sleep(0.02)

    async def wait_containing(self, text: str, timeout: float = 15) -> None:
        """Until a line holds `text` (a log line, its time stamp unknown)."""
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.lines):
                if self.proc.returncode is not None:
                    raise AssertionError(f"process exited: see {self.log}")
                await asyncio.sleep(0.02)

    def durable(self, before: float | None = None) -> set[int]:
        """Events the node reported on disk; `before`: only those reported before that
        instant (`time.monotonic()`, the instant a power cut began)."""
        return {
            int(line.split()[1])
            for line in self.lines
            if line.startswith("durable ") and (before is None or float(line.split()[2]) < before)
        }

    def acted(self) -> set[int]:
        """Taps whose relay the node would have moved (burst node `--taps`)."""
        return {int(line.split()[1]) for line in self.lines if line.startswith("acted ")}

    def kill9(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 8) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await asyncio.wait_for(self._reader, 5)
        return code


Spawner = Callable[..., "asyncio.Future[Proc]"]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Start `edged run` (or the burst helper) as a child; all are stopped at the end."""
    procs: list[Proc] = []

    async def start(config: Path, *extra: str, burst: bool = False, module: str = "edged") -> Proc:
        """`module` other than edged: a helper that runs `edged run` with a fault in it."""
        module = "tests.helpers.burst_node" if burst else module
        argv = [sys.executable, "-m", module]
        argv += [str(config), *extra] if burst else ["run", "-c", str(config), *extra]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        p = Proc(proc, tmp_path / f"proc-{len(procs)}.log")
        procs.append(p)
        return p

    yield start
    for p in procs:
        await p.stop()


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetBroker]:
    """The shipped broker config with mutual TLS, for the one node `test/shuttle-07` and a
    `dispatch` client (a module needing other nodes defines its own `fleet`)."""
    broker = FleetBroker([("test", "shuttle-07")], ["dispatch"]).start()
    yield broker
    broker.cleanup()

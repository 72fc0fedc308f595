"""`edged run`'s stop signals (edged.cli.signals), in a fresh interpreter each: signal
handlers are the process's."""

import subprocess
import sys
import textwrap

from tests.helpers.nodes import ROOT

TAKEN_BY_ANOTHER_THREAD = """
import asyncio, signal, threading, time
from edged.cli.signals import StopSignals

signals = StopSignals(last_resort_s=30)
signals.install()

async def main() -> None:
    stopped = asyncio.Event()
    signals.attach(stopped.set)
    ready = threading.Event()
    other = threading.Thread(target=lambda: (ready.set(), time.sleep(10)), daemon=True)
    other.start()
    ready.wait()
    await asyncio.sleep(0.2)  # the loop sleeps in epoll_wait until its 3 s timer
    sent = time.monotonic()
    signal.pthread_kill(other.ident, signal.SIGTERM)  # taken by that thread, not the main one
    try:
        async with asyncio.timeout(3):
            await stopped.wait()
        print(f"stopped {time.monotonic() - sent:.3f}")
    except TimeoutError:
        print("not stopped")
    signals.detach()
    print("wakeup fd after detach", signal.set_wakeup_fd(-1))

asyncio.run(main())
"""


def run_fresh(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_signal_another_thread_takes_wakes_the_sleeping_loop_at_once() -> None:
    stopped, after = run_fresh(TAKEN_BY_ANOTHER_THREAD)
    assert stopped.startswith("stopped "), stopped
    assert float(stopped.split()[1]) < 1.0
    assert after == "wakeup fd after detach -1"  # the one before attach is back

"""DaemonThreadExecutor: a blocking call still running when the loop ends holds neither
`asyncio.run` nor the interpreter's exit."""

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from core.threads import DaemonThreadExecutor


def test_results_and_errors_come_back_through_the_loop() -> None:
    async def main() -> tuple[int, str]:
        asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
        value = await asyncio.to_thread(sum, [1, 2, 3])
        try:
            await asyncio.to_thread(int, "x")
        except ValueError as exc:
            return value, str(exc)
        raise AssertionError("the error was lost")

    value, error = asyncio.run(main())
    assert value == 6
    assert "invalid literal" in error


def test_asyncio_run_ends_while_a_cancelled_call_still_blocks() -> None:
    release = threading.Event()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
        blocked = asyncio.create_task(asyncio.to_thread(release.wait, 30))
        await asyncio.sleep(0.1)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked

    started = time.monotonic()
    try:
        asyncio.run(main())  # joins the default executor's threads at its end
        elapsed = time.monotonic() - started
    finally:
        release.set()  # the thread ends with the test
    assert elapsed < 2.0, f"asyncio.run waited {elapsed:.1f} s for the blocked call"


def test_the_process_exits_while_a_call_still_blocks() -> None:
    """The interpreter joins a ThreadPoolExecutor's threads at exit; not these."""
    script = textwrap.dedent(
        """
        import asyncio, time
        from core.threads import DaemonThreadExecutor

        async def main():
            asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
            blocked = asyncio.create_task(asyncio.to_thread(time.sleep, 60))
            await asyncio.sleep(0.1)
            blocked.cancel()

        asyncio.run(main())
        print("done", flush=True)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert elapsed < 5.0, f"the process took {elapsed:.1f} s to exit"


def test_no_call_is_taken_after_shutdown() -> None:
    executor = DaemonThreadExecutor()
    assert executor.submit(pow, 2, 10).result(timeout=5) == 1024
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 10)


def test_shutdown_joins_none_of_the_running_calls() -> None:
    executor = DaemonThreadExecutor()
    release = threading.Event()
    future = executor.submit(release.wait, 30)
    try:
        assert len(executor.running()) == 1
        started = time.monotonic()
        executor.shutdown(wait=True)
        assert time.monotonic() - started < 0.5
        assert not future.done()
    finally:
        release.set()
    assert future.result(timeout=5) is True
    deadline = time.monotonic() + 5
    while executor.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert executor.running() == []

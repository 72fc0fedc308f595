"""Running a system tool (nft, iw, nmcli) from the event loop, bounded in time, and never
leaving a child behind: a timeout or a cancelled task kills and reaps it."""

import asyncio
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Ran:
    code: int
    out: bytes
    err: bytes


def find(name: str) -> str | None:
    """On PATH, or in the sbin directories a user's PATH often lacks."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


async def run_tool(*argv: str, stdin: bytes | None = None, timeout_s: float = 10.0) -> Ran | None:
    """The tool's exit code and output; None when it cannot be started. TimeoutError when it
    does not finish in time (it is killed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:  # timed out, or the daemon is stopping
            proc.kill()
            await proc.wait()
    return Ran(proc.returncode or 0, out, err)

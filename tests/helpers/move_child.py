"""A node started in a child process that SIGKILLs itself at one step of a state store
move (tests/edged/outbox/test_move_kills.py): a death at that instant, as the kernel's
OOM killer or the watchdog deals it, with nothing of Python's clean-up run.

Usage: python -m tests.helpers.move_child CONFIG STEP, STEP one of:
`copying` (the copy written, not yet synced nor noted as the one to rename),
`copied` (the copy synced, not renamed into place),
`renamed` (in place, the note not yet naming it), `noted` (the note names it, the old
store not yet removed). Exits 0 if the step never came (the node became ready)."""

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from edged.config import load_config
from edged.node import Node
from edged.outbox import moves


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(step: str, note: Path, configured: Path) -> None:
    replace, write, remove, fsync = os.replace, moves.replace_atomically, moves._remove, os.fsync

    def syncing(fd: int) -> None:
        if step == "copying" and os.readlink(f"/proc/self/fd/{fd}").endswith(".carried"):
            die()
        fsync(fd)

    def replacing(src: Any, dst: Any) -> None:
        if step == "copied" and Path(src).name.endswith(".carried"):
            die()
        replace(src, dst)

    def noting(path: Path, *args: Any, **kwargs: Any) -> None:
        text = args[0] if isinstance(args[0], str) else ""
        if step == "renamed" and path == note and text.startswith(f"{configured}\n"):
            die()
        write(path, *args, **kwargs)

    def removing(store: Path) -> None:
        if step == "noted":
            die()
        remove(store)

    moves.os.replace = replacing  # type: ignore[assignment]
    moves.os.fsync = syncing  # type: ignore[assignment]
    moves.replace_atomically = noting  # type: ignore[assignment]
    moves._remove = removing  # type: ignore[assignment]


async def main(cfg: Path, step: str) -> None:
    config = load_config(cfg)
    arm(step, moves.note_of(cfg), Path(config.outbox.state_file).absolute())
    node = Node(config, config_path=cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    await asyncio.wait_for(node.ready.wait(), 10)
    stop.set()
    await task


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))

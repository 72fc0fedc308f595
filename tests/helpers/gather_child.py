"""The real outbox in a process of its own, for what the commits' gathering (SD wear) may do
to a process: freeze its loop, or hold what a kill -9 then loses. Prints one line per step;
the test reads them, kills the process or waits for it to end.

    python -m tests.helpers.gather_child OUTBOX_PATH relink
        the link goes down and comes back with nothing to commit; prints `turned` once a
        door put after it is stored (a loop that no longer turns prints nothing)
    python -m tests.helpers.gather_child OUTBOX_PATH state
        the link is down, a position gathering; a service sets state (a panic button let
        go); prints `set` 0.3 s later (the shipped flush_interval_ms is 20), then waits to
        be killed
"""

import asyncio
import sys
from pathlib import Path

from edged.clock import Clock
from edged.config.models import OutboxConfig
from edged.outbox import Outbox, PutResult
from tests.edged.outbox.test_store import door, position


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(path: Path, scenario: str) -> None:
    box = Outbox(OutboxConfig(path=path, flush_interval_ms=0), Clock())
    await box.open()
    writer = asyncio.create_task(box.run_writer())
    box.set_linked(False)
    await asyncio.sleep(0.05)
    if scenario == "relink":
        box.set_linked(True)
        await asyncio.sleep(0.2)
        if await box.put(door(1)) is PutResult.STORED:
            say("turned")
    elif scenario == "state":
        box.put_nowait(position(1))
        await asyncio.sleep(0.05)
        box.set_state("panic.held", {"alarm_id": "a1"})
        await asyncio.sleep(0.3)
        say("set")
        await asyncio.sleep(60)
    writer.cancel()
    await box.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))

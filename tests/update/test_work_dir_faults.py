"""The update work dir on a bad disk: the update waits, the node runs on.

`UpdateManager.run` is a task of the node's task group: an exception out of it stops the
whole node (doors, taps, the uplink), and at the next start the same disk does the same.
Real parts: a tmpfs remounted read-only, a directory where `job.json` should be."""

import asyncio
import logging
from pathlib import Path

import pytest

from edged.update.job import JOB, WORK, Job, WorkDir
from tests.helpers.disk import mounted_tmpfs, read_only
from tests.update.test_manager import GOOD, manager


async def still_running(run: "asyncio.Task[None]") -> None:
    await asyncio.sleep(0.3)
    assert not run.done(), run.exception() if run.done() else None
    run.cancel()


def staged(root: Path, state: str) -> None:
    WorkDir(root).save(
        Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=1, sha256="a" * 64, switch="parked",
            state=state)
    )  # fmt: skip


async def test_a_directory_in_place_of_the_job_does_not_stop_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = manager(tmp_path)
    (tmp_path / "releases" / WORK / JOB).mkdir(parents=True)
    with caplog.at_level(logging.ERROR):
        await still_running(asyncio.create_task(m.run()))
    assert any(JOB in r.getMessage() for r in caplog.records), "the log says which file"


@pytest.mark.parametrize("state", ["switching", "staged"])
async def test_a_read_only_disk_under_the_work_dir_does_not_stop_the_node(
    tmp_path: Path, state: str, caplog: pytest.LogCaptureFixture
) -> None:
    with mounted_tmpfs(tmp_path / "releases", "4m") as root:
        staged(root, state)
        (root / "0.9.9").mkdir()  # an old release the start sweeps away
        m = manager(tmp_path)
        with read_only(root), caplog.at_level(logging.ERROR):
            await still_running(asyncio.create_task(m.run()))
    assert any("read-only" in r.getMessage().lower() for r in caplog.records)

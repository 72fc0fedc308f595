"""Commands that meet the update's own work: a start still loading the job on disk, a
cancel while the wheels are being written. Each race here ended with two pipelines on
one job, or files written after the job was said to be gone."""

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from edged.update.job import Job, WorkDir
from edged.update.manager import UpdateManager
from tests.update.test_manager import GOOD, manager


def _slow_rmtree(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """A release of some thousand files on an SD card takes seconds to delete."""
    real = shutil.rmtree

    def slow(path: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(seconds)
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", slow)


async def test_an_update_apply_during_the_start_s_sweep_runs_one_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command kept by the broker arrives as the node connects, while the start still
    deletes an old release: the job it saves was then read back by the start and begun a
    second time (two downloads into one .part, two installs into one directory), and the
    job the node had on disk was neither resumed nor said to be replaced."""
    root = tmp_path / "releases"
    root.mkdir()
    (root / "0.0.5" / "venv").mkdir(parents=True)  # an old release: the start sweeps it
    old = Job(id="old", version="0.1.5", url=str(GOOD["url"]), size=1, sha256="b" * 64,
              switch="parked")  # fmt: skip
    WorkDir(root).save(old)  # a download under way before the restart
    began: list[str] = []

    async def install(self: UpdateManager, job: Job) -> None:
        began.append(job.id)
        await asyncio.Event().wait()

    monkeypatch.setattr(UpdateManager, "_install", install)
    _slow_rmtree(monkeypatch, 0.4)
    m = manager(tmp_path)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(0.1)  # the start is deleting 0.0.5
        reply = await m.command_apply(GOOD)
        await asyncio.sleep(0.6)  # the start has read the job on disk and gone on
        assert began.count(reply["id"]) == 1, f"pipelines begun: {began}"
        assert "old" not in began[began.index(reply["id"]) :], began
        job = WorkDir(root).job()
        assert job is not None and job.id == reply["id"]
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        if m._pipeline is not None:
            m._pipeline.cancel()


async def test_an_update_cancel_during_the_start_s_sweep_cancels_the_job_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """...and an `update.cancel` in that moment was `no_update`, though the node resumed
    the job it had on disk right after."""
    root = tmp_path / "releases"
    root.mkdir()
    (root / "0.0.5" / "venv").mkdir(parents=True)
    WorkDir(root).save(Job(id="old", version="0.2.0", url=str(GOOD["url"]), size=1,
                           sha256="b" * 64, switch="parked"))  # fmt: skip

    async def install(self: UpdateManager, job: Job) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(UpdateManager, "_install", install)
    _slow_rmtree(monkeypatch, 0.4)
    m = manager(tmp_path)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(0.1)
        assert await m.command_cancel({}) == {"cancelled": "0.2.0"}
        job = WorkDir(root).job()
        assert job is not None and (job.state, job.code) == ("failed", "cancelled")
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run

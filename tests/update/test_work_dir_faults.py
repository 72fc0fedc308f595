"""The update work dir on a bad disk: the update waits, the node runs on.

`UpdateManager.run` is a task of the node's task group: an exception out of it stops the
whole node (doors, taps, the uplink), and at the next start the same disk does the same.
Real parts: a tmpfs remounted read-only, a directory where `job.json` should be."""

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edged.config.update import UpdateConfig
from edged.payloads import UpdateStatus
from edged.update.job import JOB, WORK, Job, WorkDir
from edged.update.manager import MAX_INSTALLS, MAX_SWITCHES, UpdateManager, boot_id
from tests.helpers.disk import fill, mounted_tmpfs, read_only
from tests.helpers.fileserver import FileServer
from tests.release.support import make_bundle
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


def recording(
    m: UpdateManager, then: Callable[[UpdateStatus], object] = lambda _: None
) -> list[UpdateStatus]:
    """What the manager says on `update`, kept (the test host's publish answers at once);
    `then` does what the node's outbox does with it: it writes to the disk."""
    said: list[UpdateStatus] = []
    publish = m.host.publish

    def keep(body: UpdateStatus) -> "asyncio.Future[Any]":
        said.append(body)
        then(body)
        return publish(body)

    m.host.publish = keep
    return said


async def failed(said: list[UpdateStatus], run: "asyncio.Task[None]") -> UpdateStatus:
    for _ in range(200):
        done = [s for s in said if s.state == "failed"]
        if done:
            return done[0]
        assert not run.done(), run.exception() if run.done() else None
        await asyncio.sleep(0.05)
    raise AssertionError(f"no `failed` said: {[s.state for s in said]}")


async def run_until_failed(
    m: UpdateManager, said: list[UpdateStatus], args: dict[str, Any] | None = None
) -> UpdateStatus:
    """Run the manager (sent `update.apply` with `args` first, if given) until it says
    `failed`, and stop it."""
    run = asyncio.create_task(m.run())
    try:
        if args is not None:
            await asyncio.sleep(0)
            await m.command_apply(args)
        return await failed(said, run)
    finally:
        run.cancel()


async def test_a_disk_filled_up_mid_download_gets_its_room_back_and_says_no_space(
    tmp_path: Path, server: FileServer, server_pki: Path, blob: Path
) -> None:
    """A job taken when there was room, resumed after a restart; meanwhile the outbox of
    days offline took the disk, and the bundle's bytes fill the rest. The job must fail
    `no_space` and its files go, "so the node gets its room back" (download.py): recording
    the failure first, on the full disk, raised ENOSPC and left the .part in place."""
    with mounted_tmpfs(tmp_path / "releases", "1m") as root:
        digest = hashlib.sha256(blob.read_bytes()).hexdigest()
        WorkDir(root).save(
            Job(id="j", version="0.2.0", url=server.serve("b", blob), size=blob.stat().st_size,
                sha256=digest, switch="now")
        )  # fmt: skip
        m = manager(tmp_path)
        m.host.ca_file = server_pki / "ca.crt"
        said = recording(m)
        status = await run_until_failed(m, said)
        assert status.code == "no_space", status
        assert not list((root / WORK).glob("*.part")), "the bundle's bytes are still there"
        job = WorkDir(root).job()
        assert job is not None and job.state == "failed" and job.code == "no_space"


def downloaded(tmp_path: Path, work: WorkDir) -> Job:
    """A job whose bundle was downloaded before a restart: the next start verifies it, then
    installs it."""
    bundle = make_bundle(tmp_path / "b.bundle")
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    job = Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=bundle.stat().st_size,
              sha256=digest, switch="now", state="verifying")  # fmt: skip
    work.save(job)
    work.bundle(job).write_bytes(bundle.read_bytes())
    return job


async def gone(path: Path) -> None:
    """Up to 5 s for `path` to go: the half release is removed beside the loop, after the
    failure is said. The caller asserts that it went."""
    for _ in range(100):
        if not path.exists():
            return
        await asyncio.sleep(0.05)


async def test_a_disk_filled_up_mid_install_is_no_space_and_the_half_release_goes(
    tmp_path: Path,
) -> None:
    """The space was checked after the verification; the outbox (here: its `installing`
    message) took the rest before the wheels were written. Like a full disk mid-download
    (download.py), the job must fail `no_space` and give the room back: it failed
    `internal` with an OSError traceback and left the half-written release on the full
    disk until the next start."""
    with mounted_tmpfs(tmp_path / "releases", "1m") as root:
        work = WorkDir(root)
        work.ensure()
        job = downloaded(tmp_path, work)
        m = manager(tmp_path)
        said = recording(m, lambda s: s.state == "installing" and fill(root, "outbox"))
        run = asyncio.create_task(m.run())
        try:
            status = await failed(said, run)
            await gone(root / "0.2.0")
        finally:
            run.cancel()
        assert status.code == "no_space", status
        assert not (root / "0.2.0").exists(), "the half-written release is still there"
        assert not work.bundle(job).exists()


async def test_a_switch_that_never_happens_is_tried_three_times_then_fails(tmp_path: Path) -> None:
    """Each start after a switch that did not happen (a cut before `current`, or a switch
    that failed: the config copy on a full disk) staged the job again, so a switch that
    fails every time stopped and restarted the node at every parked moment, for ever."""
    root = tmp_path / "releases"
    root.mkdir()
    states, said = [], []
    for _ in range(MAX_SWITCHES):
        staged(root, "switching") if not states else _switching_again(root)
        job = WorkDir(root).job()
        assert job is not None
        WorkDir(root).bundle(job).write_bytes(b"the bundle")  # what a failed job gives back
        m = manager(tmp_path)
        m.config = UpdateConfig(min_free_mb=0, enabled=False)  # the job waits: no moment comes
        said = recording(m)
        await still_running(asyncio.create_task(m.run()))
        job = WorkDir(root).job()
        assert job is not None
        states.append((job.state, job.switches))
    assert states == [("staged", 1), ("staged", 2), ("failed", 3)]
    assert job.code == "install_failed" and "did not happen 3 times" in (job.reason or "")
    assert [s.state for s in said] == ["failed"] and said[0].code == "install_failed"
    assert not WorkDir(root).bundle(job).exists()


def _switching_again(root: Path) -> None:
    job = WorkDir(root).job()
    assert job is not None
    job.state = "switching"  # staged, then the moment came and the switch began again
    WorkDir(root).save(job)


def test_a_job_whose_switch_count_is_not_a_number_is_unreadable(tmp_path: Path) -> None:
    assert Job.from_json({"id": "j", "version": "0.2.0", "url": "u", "size": 1, "sha256": "a",
                          "switch": "parked", "switches": "3"}) is None  # fmt: skip


@pytest.mark.parametrize("fault", ["the venv interpreter is gone", "a step runs past its limit"])
async def test_an_install_that_fails_otherwise_than_by_a_full_disk_removes_the_half_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """Any failure mid-install must take away what it wrote, as a full disk does: an
    OSError or a timeout failed `internal` and left the wheels on the disk (the release
    was removed only at the next start of edged)."""
    import edged.update.install as install_module

    m = manager(tmp_path)
    if fault == "the venv interpreter is gone":  # [update] python names what apt removed
        m.python = tmp_path / "gone" / "python3"
    else:  # `python -m venv` on a card slow to the point of failing: killed at its limit
        monkeypatch.setattr(install_module, "CHECK_TIMEOUT_S", 0.001)
    root = tmp_path / "releases"
    work = WorkDir(root)
    job = downloaded(tmp_path, work)
    wrote: list[bool] = []
    said = recording(m, lambda s: s.state == "failed" and wrote.append((root / "0.2.0").exists()))
    run = asyncio.create_task(m.run())
    try:
        status = await failed(said, run)
        await gone(root / "0.2.0")
    finally:
        run.cancel()
    assert wrote == [True], "the install stopped before it wrote anything: not this fault"
    assert not (root / "0.2.0").exists(), "the half-written release is still there"
    assert not work.bundle(job).exists()
    assert status.code == "install_failed", status
    assert "0.2.0" in (status.reason or "") and "send update.apply again" in (status.reason or "")


RESUME_ONCE = """
import asyncio, sys
from pathlib import Path
from tests.update.test_manager import manager

async def main() -> None:
    task = asyncio.create_task(manager(Path(sys.argv[1])).run())
    await asyncio.sleep(1.5)
    task.cancel()

asyncio.run(main())
"""


def start_of_edged(tmp_path: Path) -> int:
    """One start of the node's update manager in a process of its own, which the test's
    crash point kills (SIGKILL, as the kernel's OOM killer in edged's cgroup does) the
    moment it begins to verify the bundle; its exit status."""
    env = {**os.environ, "EDGED_TEST_CRASH_AT": "verifying",
           "PYTHONPATH": str(Path(__file__).parents[2])}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-P", "-c", RESUME_ONCE, str(tmp_path)], env=env, timeout=60
    ).returncode


def test_an_install_that_kills_edged_each_time_fails_after_three_starts(tmp_path: Path) -> None:
    """A verification or install that kills edged (out of memory in its cgroup: pip and
    compileall run in it too) was resumed at every start, so it killed the node again,
    start after start, for ever: doors, taps and the uplink down each time."""
    root = tmp_path / "releases"
    root.mkdir()
    staged(root, "downloading")
    job = WorkDir(root).job()
    assert job is not None
    WorkDir(root).bundle(job).write_bytes(b"the bundle, downloaded whole")
    deaths = [start_of_edged(tmp_path) for _ in range(MAX_INSTALLS)]
    assert deaths == [-signal.SIGKILL] * MAX_INSTALLS
    assert start_of_edged(tmp_path) == 0, "the next start lives"
    job = WorkDir(root).job()
    assert job is not None
    assert (job.state, job.code, job.installs) == ("failed", "install_failed", MAX_INSTALLS)
    assert f"stopped {MAX_INSTALLS} times" in (job.reason or "")
    assert not WorkDir(root).bundle(job).exists(), "its files went"


async def test_a_clean_stop_during_an_install_is_not_counted_against_it(tmp_path: Path) -> None:
    """systemctl restart while pip runs: the node stops cleanly and the next start installs
    again; only an install that edged did not live through counts (MAX_INSTALLS)."""
    root = tmp_path / "releases"
    root.mkdir()
    bundle = make_bundle(tmp_path / "b.bundle")
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    job = Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=bundle.stat().st_size,
              sha256=digest, switch="parked")  # fmt: skip
    WorkDir(root).save(job)
    bundle.replace(WorkDir(root).bundle(job))
    m = manager(tmp_path)
    run = asyncio.create_task(m.run())
    for _ in range(200):  # until the install is under way: its venv is being made
        if (root / "0.2.0").exists():
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the install did not begin")
    run.cancel()  # the node stops; its loop then lets the pipeline end (as asyncio.run does)
    with contextlib.suppress(asyncio.CancelledError):
        await run
    assert m._pipeline is not None
    await asyncio.wait([m._pipeline], timeout=30)
    job = WorkDir(root).job()
    assert job is not None and (job.state, job.installs) == ("installing", 0)


def test_installs_cut_short_in_an_earlier_boot_are_not_counted(tmp_path: Path) -> None:
    """A vehicle's gateway may lose its power with the ignition: installs ended by power
    cuts, each in its boot, are not an install that kills edged, and are begun again."""
    root = tmp_path / "releases"
    root.mkdir()
    staged(root, "installing")
    job = WorkDir(root).job()
    assert job is not None
    job.installs, job.install_boot = MAX_INSTALLS, "the boot before the last power cut"
    WorkDir(root).save(job)
    WorkDir(root).bundle(job).write_bytes(b"the bundle, downloaded whole")
    assert start_of_edged(tmp_path) == -signal.SIGKILL, "the install was begun again"
    job = WorkDir(root).job()
    assert job is not None and (job.state, job.installs) == ("verifying", 1)
    assert job.install_boot == boot_id()

"""Commands that meet the update's own work: a start still loading the job on disk, a
cancel while the wheels are being written. Each race here ended with two pipelines on
one job, or files written after the job was said to be gone."""

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from edged.errors import CommandError
from edged.release.bundle import verify_bundle
from edged.release.launcher import ReleaseTree
from edged.release.platforms import this_machine
from edged.update.job import Job, WorkDir
from edged.update.manager import UpdateManager
from tests.helpers.fileserver import FileServer
from tests.release.support import KEYS, make_bundle
from tests.update.test_download import apply_args
from tests.update.test_manager import GOOD, manager
from tests.update.test_work_dir_faults import recording


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


def staged_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Release 0.2.0 installed from a signed bundle and its job staged for `parked`, as
    update.apply leaves them; the release's own start (`check_release`) is not run."""
    import edged.update.install as install_module

    async def starts(*args: Any) -> None:
        return None

    monkeypatch.setattr(install_module, "check_release", starts)
    root = tmp_path / "releases"
    root.mkdir(exist_ok=True)
    tree = ReleaseTree(root)
    bundle = verify_bundle(make_bundle(tmp_path / "b.bundle"), KEYS, version="0.2.0",
                           target=this_machine())  # fmt: skip
    tree.python("0.2.0").parent.mkdir(parents=True)
    tree.python("0.2.0").write_text("")
    digest = hashlib.sha256(bundle.raw_manifest).hexdigest()
    (tree.path("0.2.0") / "release.json").write_text(json.dumps({"manifest_sha256": digest}))
    job = Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=1, sha256="a" * 64,
              switch="parked", state="staged", kid=bundle.kid)  # fmt: skip
    job.signed(bundle.raw_manifest, bundle.raw_signature)
    WorkDir(root).save(job)


async def test_update_apply_of_the_staged_bundle_with_switch_now_switches_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bus staged for `parked` drives all day (ignition on); dispatch sends the same
    bundle again with `switch: now`. The node answered `accepted` with the job's id and
    went on waiting for the ignition: the `switch` asked was dropped without a word, and
    only update.cancel and a second download would have done what was asked."""
    staged_bundle(tmp_path, monkeypatch)
    m = manager(tmp_path)
    stops: list[int] = []
    m.host.stop = stops.append
    m.host.waiting_for = lambda: ["ignition on"]
    run = asyncio.create_task(m.run())
    try:
        for _ in range(100):
            if m.status.waiting_for:
                break
            await asyncio.sleep(0.05)
        assert m.status.waiting_for == ["ignition on"], m.status
        again = GOOD | {"version": "0.2.0", "size": 1, "sha256": "a" * 64, "switch": "now"}
        reply = await m.command_apply(again)
        assert reply["id"] == "j"
        for _ in range(60):
            if stops:
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert stops == [0], m.status
    job = WorkDir(tmp_path / "releases").job()
    assert job is not None and job.switch == "now"


async def test_update_apply_of_the_same_bundle_at_another_url_downloads_from_there(
    tmp_path: Path, server: FileServer, server_pki: Path, blob: Path
) -> None:
    """The file server named first is gone (a mirror taken down): the node retries it for
    as long as the job lasts. The same bundle sent again at another url was answered
    `accepted` and the node went on retrying the dead one."""
    m = manager(tmp_path)
    m.host.ca_file = server_pki / "ca.crt"
    said = recording(m)
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: `cannot reach`, retried
    args = apply_args(f"https://127.0.0.1:{port}/b", blob)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(0)
        first = await m.command_apply(args)
        await asyncio.sleep(0.3)
        again = await m.command_apply(args | {"url": server.serve("b", blob)})
        assert again["id"] == first["id"]
        for _ in range(60):  # the bundle whole, then its check (random bytes: bad_bundle)
            if "verifying" in [s.state for s in said]:
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert "verifying" in [s.state for s in said], said[-1]


async def test_a_cancelled_download_waiting_for_its_head_leaves_the_next_one_whole(
    tmp_path: Path, server: FileServer, server_pki: Path
) -> None:
    """update.cancel, then the same bundle sent again: the cancelled download's thread
    was still waiting for its server's head (a slow server, or one on the path that holds
    it). When the head came it opened the `.part` the new download was writing and cut it
    to where its own had started, before it looked whether it was cancelled: the new
    download's bytes were gone under it, and the update failed `hash_mismatch`."""
    blob = tmp_path / "small.bin"
    blob.write_bytes(os.urandom(150_000))
    m = manager(tmp_path)
    m.host.ca_file = server_pki / "ca.crt"
    said = recording(m)
    # the head trickled over ~0.7 s, then the file at once; the second server takes ~1 s
    slow = server.serve("slow", blob, rate=60, chunk=20, slow_head=1, fast_first=10**6)
    fast = server.serve("fast", blob, rate=150_000, chunk=15_000, fast_first=1)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(0)
        await m.command_apply(apply_args(slow, blob))
        await asyncio.sleep(0.2)  # connected, asked, waiting for the head
        await m.command_cancel({})
        await m.command_apply(apply_args(fast, blob))
        for _ in range(60):  # the bundle whole, then its check (random bytes: bad_bundle)
            if {"verifying", "failed"} & {s.state for s in said[3:]}:
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    after = [(s.state, s.code) for s in said if s.state in ("verifying", "failed")]
    assert after[:2] == [("failed", "cancelled"), ("verifying", None)], after


async def test_a_cancelled_install_writes_no_wheel_after_its_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """update.cancel, a replacing update.apply or a config.set (the node restarts in its
    process) cancel an install while its wheels are written: the thread writing them went
    on, into a release directory the manager was removing, or that the install begun next
    had made again (a wheel cut under the pip reading it)."""
    import edged.release.bundle as bundle_module
    import edged.update.install as install_module

    bundle = verify_bundle(make_bundle(tmp_path / "b.bundle"), KEYS, version="0.2.0",
                           target=this_machine())  # fmt: skip
    tree = ReleaseTree(tmp_path / "releases")
    tree.root.mkdir()
    real_open = bundle_module._open

    class Slow:  # an SD card: each wheel takes a while
        def __init__(self, f: Any) -> None:
            self.f = f

        def read(self, n: int = -1) -> bytes:
            time.sleep(0.15)
            return bytes(self.f.read(n))

        def __enter__(self) -> "Slow":
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    monkeypatch.setattr(bundle_module, "_open", lambda tar, m: Slow(real_open(tar, m)))
    task = asyncio.create_task(install_module.install(tree, bundle, Path("/usr/bin/python3"), None))
    wheels = tree.path("0.2.0") / "wheels"
    for _ in range(100):
        if wheels.is_dir() and any(wheels.iterdir()):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    written = sorted(p.name for p in wheels.iterdir())
    await asyncio.sleep(0.8)  # the rest of the wheels, had the thread gone on
    assert sorted(p.name for p in wheels.iterdir()) == written


async def test_update_apply_waiting_for_the_start_is_answered_when_the_node_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node stops (SIGTERM, a switch) while its start still deletes an old release and
    an update.apply waits for the job on disk to be loaded: the start never loaded it, and
    the command waited until the stop's time for commands ran out, taken from the drain's
    (or, run after the manager's task ended, began a pipeline nothing would stop)."""
    root = tmp_path / "releases"
    root.mkdir()
    (root / "0.0.5" / "venv").mkdir(parents=True)
    WorkDir(root).save(Job(id="old", version="0.2.0", url=str(GOOD["url"]), size=1,
                           sha256="b" * 64, switch="parked"))  # fmt: skip
    _slow_rmtree(monkeypatch, 0.4)
    m = manager(tmp_path)
    run = asyncio.create_task(m.run())
    await asyncio.sleep(0.1)  # the start is deleting 0.0.5
    apply = asyncio.create_task(m.command_apply(GOOD))
    await asyncio.sleep(0.05)
    run.cancel()  # the node stops
    with contextlib.suppress(asyncio.CancelledError):
        await run
    try:
        async with asyncio.timeout(1.0):
            with pytest.raises(CommandError) as info:
                await apply
    finally:
        apply.cancel()
    assert info.value.code == "busy"
    assert m._pipeline is None
    job = WorkDir(root).job()
    assert job is not None and job.id == "old", job  # resumed at the next start


async def test_update_apply_does_not_wait_for_the_outbox_to_store_the_last_trial_s_report(
    tmp_path: Path,
) -> None:
    """The start says how the last trial ended and waited for the outbox to store it before
    it loaded the job on disk: update.apply and update.cancel waited with it, holding the
    update lane, for as long as the store took (for ever if it never completes)."""
    root = tmp_path / "releases"
    root.mkdir()
    (root / "outcome.json").write_text(json.dumps(
        {"v": 1, "trial": "t", "update_id": "u", "version": "0.1.0", "previous": "0.0.9",
         "result": "confirmed", "code": None, "reason": "came online"}))  # fmt: skip
    m = manager(tmp_path)
    never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    m.host.publish = lambda body: never
    run = asyncio.create_task(m.run())
    await asyncio.sleep(0.05)  # the start is under way
    try:
        async with asyncio.timeout(1.0):
            reply = await m.command_apply(GOOD)
        assert reply["accepted"]
        assert not json.loads((root / "outcome.json").read_text()).get("reported")
        never.set_result(None)  # stored at last: said once, not again at the next start
        for _ in range(50):
            if json.loads((root / "outcome.json").read_text()).get("reported"):
                break
            await asyncio.sleep(0.01)
        assert json.loads((root / "outcome.json").read_text())["reported"] is True
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


def test_a_download_thread_that_ends_after_its_loop_closed_ends_quietly() -> None:
    """The download's thread is a daemon the loop does not wait for: one that ended after
    its node's loop had closed (an in-process restart, a stop mid-download) died with
    `RuntimeError: Event loop is closed` in the journal, a traceback about nothing."""
    import threading

    from edged.update.manager import in_daemon_thread

    go, died = threading.Event(), []
    hook = threading.excepthook
    threading.excepthook = lambda args: died.append(args.exc_value)
    try:
        loop = asyncio.new_event_loop()
        task = loop.create_task(in_daemon_thread(go.wait, 5.0))
        loop.run_until_complete(asyncio.sleep(0.01))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()
        thread = next(t for t in threading.enumerate() if t.name == "update.download")
        go.set()
        thread.join(2.0)
    finally:
        threading.excepthook = hook
    assert died == []


async def test_the_same_bundle_at_another_url_without_a_switch_keeps_the_switch_asked_before(
    tmp_path: Path,
) -> None:
    """Dispatch asked `switch: now`, then sent the same bundle again at a new url (its
    mirror moved) saying nothing of the switch: the job took the config's `parked` in its
    place, and the bus it was meant to switch at once waited for the ignition."""
    m = manager(tmp_path)
    assert m.config.switch == "parked"
    m.job = Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=1000,
                sha256=str(GOOD["sha256"]), switch="now", state="staged")  # fmt: skip
    reply = await m.command_apply(GOOD | {"url": "https://mirror.test/b.bundle"})
    assert reply["id"] == "j"
    assert (m.job.url, m.job.switch) == ("https://mirror.test/b.bundle", "now")
    on_disk = WorkDir(tmp_path / "releases").job()
    assert on_disk is not None and on_disk.switch == "now"

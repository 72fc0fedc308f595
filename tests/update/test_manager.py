"""The update manager's refusals that need no download: arguments, versions, data formats,
the launcher's absence, and the `update` scope that is never taken unsigned."""

import asyncio
import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.counters import Counters
from edged.clock import Clock
from edged.commands.authorize import Authorizer
from edged.commands.router import CommandRouter, IncomingCommand
from edged.commands.spec import CommandSpec
from edged.config.security import KeyConfig, SecurityConfig
from edged.config.update import UpdateConfig
from edged.errors import CommandError
from edged.release.bundle import verify_bundle
from edged.release.launcher import ReleaseTree
from edged.release.manifest import SchemaInfo
from edged.release.platforms import this_machine
from edged.security.signing import public_key_text
from edged.update.manager import Host, UpdateManager, release_key
from edged.update.trial import Checks
from tests.release.support import KEY, KEYS, make_bundle, manifest_for, wheels

GOOD = {"version": "0.2.0", "url": "https://files.test/b.bundle", "size": 1000, "sha256": "a" * 64}


def host(tmp_path: Path, stamps: dict[str, tuple[int, int]] | None = None) -> Host:
    async def readable() -> bool:
        return True

    published: list[Any] = []

    def publish(body: Any) -> "asyncio.Future[Any]":
        published.append(body)
        future: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
        future.set_result(None)
        return future

    return Host(
        publish=publish,
        keys=lambda: KEYS,
        checks=Checks(lambda: True, lambda: [], readable),
        waiting_for=lambda: [],
        stop=lambda code: None,
        config_path=None,
        data_file=tmp_path / "outbox.sqlite",
        data_stamps=lambda: stamps or {"outbox": (1, 1), "state": (1, 1)},
        ca_file=None,
    )


def manager(
    tmp_path: Path, *, releases: bool = True, running: str = "0.1.0", **stamps: Any
) -> UpdateManager:
    root = tmp_path / "releases"
    root.mkdir(exist_ok=True)
    return UpdateManager(
        host(tmp_path, stamps.get("stamps")), UpdateConfig(min_free_mb=0),
        releases=root if releases else None, running=running, trial_id=None, python=Path("/usr/bin/python3"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"version": "../../etc"}, "bad_args"),
        ({"version": "current", "allow_downgrade": True}, "bad_args"),  # a link of the tree
        ({"version": "trial.json", "allow_downgrade": True}, "bad_args"),  # a record of it
        ({"url": "http://files.test/b.bundle"}, "bad_args"),
        ({"url": "https://user:pw@files.test/b"}, "bad_args"),
        ({"size": 0}, "bad_args"),
        ({"size": True}, "bad_args"),
        ({"size": 10**12}, "bad_args"),
        ({"sha256": "A" * 64}, "bad_args"),
        ({"switch": "whenever"}, "bad_args"),
        ({"allow_downgrade": "yes"}, "bad_args"),
        ({"version": "0.1.0"}, "already_running"),
        ({"version": "0.0.9"}, "downgrade"),
        ({"version": "0.1.0rc1"}, "downgrade"),  # the running release's own candidate
        ({"version": "0.1.0.dev3"}, "downgrade"),
        ({"extra": 1}, "bad_args"),
    ],
)
async def test_update_apply_refuses_bad_arguments_before_doing_anything(
    tmp_path: Path, change: dict[str, Any], code: str
) -> None:
    m = manager(tmp_path)
    with pytest.raises(CommandError) as info:
        await m.command_apply(GOOD | change)
    assert info.value.code == code
    assert not (tmp_path / "releases" / ".update").exists()


async def test_a_downgrade_goes_through_when_asked_for(tmp_path: Path) -> None:
    m = manager(tmp_path)
    job = m._job_from(GOOD | {"version": "0.0.9", "allow_downgrade": True})
    assert job.version == "0.0.9"


async def test_a_node_not_started_by_the_launcher_says_it_cannot_update(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as info:
        await manager(tmp_path, releases=False).command_apply(GOOD)
    assert info.value.code == "not_supported" and "launcher" in info.value.message


def test_release_order_is_numeric() -> None:
    assert release_key("0.10.0") > release_key("0.9.9") > release_key("0.9") > release_key("x")


async def verified(tmp_path: Path, **schemas: SchemaInfo) -> Any:
    files = wheels(tmp_path / "w")
    base = manifest_for(files)
    manifest = manifest_for(files, schemas={**base.schemas, **schemas})
    path = make_bundle(tmp_path / "b.bundle", manifest=manifest)
    return verify_bundle(path, KEYS, version="0.2.0", target=this_machine())


async def test_a_release_that_cannot_read_the_data_on_disk_is_refused(tmp_path: Path) -> None:
    bundle = await verified(tmp_path, state=SchemaInfo(version=3, compat=1, reads_from=2))
    with pytest.raises(CommandError) as info:
        manager(tmp_path)._check_data(bundle)
    assert info.value.code == "incompatible_data" and "intermediate release" in info.value.message


async def test_a_release_whose_data_this_one_could_not_read_back_is_refused(tmp_path: Path) -> None:
    bundle = await verified(tmp_path, outbox=SchemaInfo(version=3, compat=2, reads_from=1))
    with pytest.raises(CommandError) as info:
        manager(tmp_path)._check_data(bundle)
    assert info.value.code == "incompatible_data" and "after a rollback" in info.value.message


async def test_a_downgrade_to_a_release_that_cannot_read_the_data_on_disk_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This release writes outbox format 3, readable from 2 on (a contraction done in two
    releases); a release of format 1 (allow_downgrade) refuses that file at its start
    (`open_stores`: compat above its version), so its trial crashes and is rolled back,
    after the whole download and install. It is refused before, as the docs promise for
    a release that cannot read the data on disk."""
    import edged.update.manager as manager_module
    from edged.release.schemas import Schema

    monkeypatch.setitem(manager_module.SCHEMAS, "outbox", Schema("outbox", 3, 2, 0))
    bundle = await verified(tmp_path, outbox=SchemaInfo(version=1, compat=1, reads_from=0))
    m = manager(tmp_path, running="0.3.0", stamps={"outbox": (3, 2), "state": (1, 1)})
    with pytest.raises(CommandError) as info:
        m._check_data(bundle)
    assert info.value.code == "incompatible_data" and "format 3" in info.value.message


async def test_an_additive_change_of_format_is_taken(tmp_path: Path) -> None:
    bundle = await verified(tmp_path, outbox=SchemaInfo(version=2, compat=1, reads_from=0))
    manager(tmp_path)._check_data(bundle)


async def test_an_update_that_does_not_fit_on_the_disk_is_refused(tmp_path: Path) -> None:
    m = UpdateManager(
        host(tmp_path), UpdateConfig(min_free_mb=10**9), releases=tmp_path, running="0.1.0",
        trial_id=None, python=Path("/usr/bin/python3"),
    )  # fmt: skip
    with pytest.raises(CommandError) as info:
        await m.command_apply(GOOD)
    assert info.value.code == "no_space" and "MB free" in info.value.message


async def test_update_apply_is_refused_while_a_release_is_on_trial(tmp_path: Path) -> None:
    from edged.release.launcher import Trial

    m = manager(tmp_path)
    tree = ReleaseTree(tmp_path / "releases")
    tree.save_trial(Trial(id="t", version="0.1.0", previous="0.0.9", trial_s=60, kill_after_s=75))
    with pytest.raises(CommandError) as info:
        await m.command_apply(GOOD)
    assert info.value.code == "busy"


def test_stable_s_must_fit_in_the_trial() -> None:
    with pytest.raises(ValidationError, match="stable_s"):
        UpdateConfig(trial_s=10, stable_s=10)


async def test_update_commands_are_refused_unsigned_whatever_signed_commands_says() -> None:
    config = SecurityConfig(
        signed_commands=[],
        keys=[
            KeyConfig(id="release", public_key=public_key_text(KEY.public_key()), scopes=["update"])
        ],
    )
    state: dict[str, Any] = {}
    router = CommandRouter(
        Counters(),
        authorizer=Authorizer(
            config, Clock(trust_system_clock=True), get_state=state.get, set_state=state.__setitem__
        ),
    )
    ran: list[Any] = []

    async def apply(args: dict[str, Any]) -> dict[str, Any]:
        ran.append(args)
        return {}

    router.add(CommandSpec("update.apply", apply, scope="update"))
    doc = {"id": "u1", "args": GOOD}
    out = await router.handle(
        IncomingCommand(
            "update.apply", json.dumps(doc).encode(), topic="rnst/v1/f/n/cmd/update.apply"
        )
    )
    assert out.reply.error is not None and out.reply.error.code == "unsigned" and ran == []


async def test_update_cancel_removes_the_staged_release(tmp_path: Path) -> None:
    from edged.update.job import Job, WorkDir

    m = manager(tmp_path)
    root = tmp_path / "releases"
    staged = root / "0.2.0"
    (staged / "venv/bin").mkdir(parents=True)
    (staged / "release.json").write_text("{}")
    m.job = Job(id="j", version="0.2.0", url=GOOD["url"], size=1, sha256="a" * 64, switch="parked",
                state="staged")  # fmt: skip
    WorkDir(root).save(m.job)
    assert (await m.command_cancel({})) == {"cancelled": "0.2.0"}
    assert not staged.exists() and m.status.state == "failed" and m.status.code == "cancelled"
    with pytest.raises(CommandError) as info:
        await m.command_cancel({})
    assert info.value.code == "no_update"


async def test_a_stop_while_update_cancel_waits_for_the_pipeline_is_not_swallowed(
    tmp_path: Path,
) -> None:
    """`update.cancel` waits for the pipeline it cancelled; a cancel of its own meanwhile
    (the node stopping) must end it, not be taken for the pipeline's."""
    from edged.update.job import Job

    m = manager(tmp_path)
    m.job = Job(id="j", version="0.2.0", url=GOOD["url"], size=1, sha256="a" * 64, switch="parked",
                state="downloading")  # fmt: skip

    async def pipeline_slow_to_end() -> None:  # a download ending its thread's work
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.3)

    m._pipeline = asyncio.create_task(pipeline_slow_to_end())
    await asyncio.sleep(0)
    cancelling = asyncio.create_task(m.command_cancel({}))
    await asyncio.sleep(0.05)  # it waits for the pipeline to end
    cancelling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelling


async def _longest_stall(work: "asyncio.Future[Any] | asyncio.Task[Any]", seconds: float) -> float:
    """The longest the loop went without running a 10 ms ticker while `work` ran."""
    longest, last = 0.0, asyncio.get_running_loop().time()
    end = last + seconds
    while not work.done() and last < end:
        await asyncio.sleep(0.01)
        now = asyncio.get_running_loop().time()
        longest, last = max(longest, now - last), now
    return longest


def _slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting a release of some thousand files on an SD card takes seconds."""
    import shutil

    real = shutil.rmtree

    def slow_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.4)
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", slow_rmtree)


async def test_removing_old_releases_at_start_leaves_the_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taps are decided on the loop: deleting releases must happen beside it."""
    m = manager(tmp_path)
    tree = ReleaseTree(tmp_path / "releases")
    for version in ("0.0.7", "0.0.8", "0.1.0"):
        (tree.path(version) / "venv").mkdir(parents=True)
    tree.point("current", "0.1.0")
    _slow_disk(monkeypatch)
    task = asyncio.create_task(m.run())
    try:
        stall = await _longest_stall(task, 1.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not tree.path("0.0.7").exists() and not tree.path("0.0.8").exists()
    assert tree.path("0.1.0").is_dir()
    assert stall < 0.2, f"the loop stood still {stall:.2f} s"


async def test_unpacking_a_bundle_leaves_the_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wheels (~20 MB on a real bundle) are hashed and written beside the loop, and a
    half install is removed beside it too."""
    import edged.release.bundle as bundle_module
    import edged.update.install as install_module

    bundle = verify_bundle(make_bundle(tmp_path / "b.bundle"), KEYS, version="0.2.0",
                           target=this_machine())  # fmt: skip
    tree = ReleaseTree(tmp_path / "releases")
    (tree.path("0.2.0") / "venv").mkdir(parents=True)  # a half install, cut short
    real = bundle_module.extract_wheels

    def slow_extract(*args: Any) -> Any:
        time.sleep(0.4)
        return real(*args)

    async def ran(*argv: str, env: Any = None, limit_s: float) -> tuple[int, str]:
        return 0, ""

    async def checked(*args: Any) -> None:
        return None

    monkeypatch.setattr(bundle_module, "extract_wheels", slow_extract)
    monkeypatch.setattr(install_module, "run", ran)
    monkeypatch.setattr(install_module, "check_release", checked)
    _slow_disk(monkeypatch)
    task = asyncio.create_task(install_module.install(tree, bundle, Path("/usr/bin/python3"), None))
    stall = await _longest_stall(task, 5)
    assert (await task) == tree.path("0.2.0")
    assert (tree.path("0.2.0") / "release.json").is_file()
    assert not (tree.path("0.2.0") / "wheels").exists()
    assert stall < 0.2, f"the loop stood still {stall:.2f} s"


def _installed(tree: ReleaseTree, version: str, raw_manifest: bytes) -> None:
    python = tree.python(version)
    python.parent.mkdir(parents=True)
    python.write_text("")
    record = {"version": version, "manifest_sha256": hashlib.sha256(raw_manifest).hexdigest()}
    (tree.path(version) / "release.json").write_text(json.dumps(record))


@pytest.mark.parametrize("same_bundle", [True, False])
async def test_an_update_back_to_the_previous_release_neither_deletes_it_nor_fails_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_bundle: bool
) -> None:
    """update.apply of the release `previous` names (allow_downgrade): it was an `internal`
    ValueError after the whole download. The same bundle is taken as installed; another
    bundle of that version is refused `in_use`, and the fallback is left as it is."""
    import edged.update.install as install_module

    async def checked(*args: Any) -> None:
        return None

    monkeypatch.setattr(install_module, "check_release", checked)
    bundle = verify_bundle(make_bundle(tmp_path / "b.bundle"), KEYS, version="0.2.0",
                           target=this_machine())  # fmt: skip
    tree = ReleaseTree(tmp_path / "releases")
    tree.root.mkdir()
    _installed(tree, "0.2.0", bundle.raw_manifest if same_bundle else b"another manifest")
    _installed(tree, "0.3.0", b"the running one")
    tree.point("current", "0.3.0")
    tree.point("previous", "0.2.0")
    python = Path("/usr/bin/python3")
    if same_bundle:
        assert await install_module.install(tree, bundle, python, None) == tree.path("0.2.0")
    else:
        with pytest.raises(CommandError) as info:
            await install_module.install(tree, bundle, python, None)
        assert info.value.code == "in_use"
    assert tree.complete("0.2.0") and tree.link("previous") == "0.2.0"

"""A staged release waits for its moment (hours, a night, a restart): the key that signed it
may be revoked meanwhile, after it leaked. At the switch the release's signed manifest is
checked again with the keys of the config in force; one they no longer trust for `update`
is removed, not switched to.

Real parts: a release that starts (`tests.helpers.releases.fake_release`: `edged
--version` says 0.2.0), a bundle signed by the test update key, the manager's own run."""

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from edged.release.bundle import Keys, verify_bundle
from edged.release.launcher import ReleaseTree
from edged.release.platforms import this_machine
from edged.update.job import Job, WorkDir
from edged.update.manager import UpdateManager
from tests.helpers.releases import fake_release
from tests.release.support import KEY, KEYS, make_bundle
from tests.update.test_manager import GOOD, manager
from tests.update.test_work_dir_faults import failed, recording

REVOKED: Keys = {"ops": KEYS["ops"]}  # the update key taken out of [[security.keys]]
DESCOPED: Keys = {"release": (KEY.public_key(), frozenset({"read"})), "ops": KEYS["ops"]}


def staged(tmp_path: Path, switch: str = "now", *, record: bool = True) -> Job:
    """Release 0.2.0 installed from a bundle signed by the update key and its job staged,
    as `update.apply` leaves them (release.json names the manifest's SHA-256, the job
    keeps the signed manifest)."""
    root = tmp_path / "releases"
    root.mkdir(exist_ok=True)
    tree = ReleaseTree(root)
    bundle = verify_bundle(make_bundle(tmp_path / "b.bundle"), KEYS, version="0.2.0",
                           target=this_machine())  # fmt: skip
    fake_release(tree, "0.2.0")
    info = tree.path("0.2.0") / "release.json"
    digest = hashlib.sha256(bundle.raw_manifest).hexdigest()
    info.write_text(json.dumps(json.loads(info.read_text()) | {"manifest_sha256": digest}))
    job = Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=1, sha256="a" * 64,
              switch=switch, state="staged", kid=bundle.kid)  # fmt: skip
    if record:
        job.signed(bundle.raw_manifest, bundle.raw_signature)
    WorkDir(root).save(job)
    return job


def node(tmp_path: Path, keys: Keys) -> tuple[UpdateManager, list[int], dict[str, Keys]]:
    """The manager with the keys of the config in force (changeable), and its stops."""
    m = manager(tmp_path)
    stops: list[int] = []
    current = {"keys": keys}
    m.host.stop = stops.append
    m.host.keys = lambda: current["keys"]
    return m, stops, current


async def gone(path: Path) -> bool:
    for _ in range(100):  # the release is removed beside the loop
        if not path.exists():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_staged_release_whose_key_is_still_trusted_switches(tmp_path: Path) -> None:
    """The control: the same staged release, the key unchanged, is switched to."""
    staged(tmp_path)
    m, stops, _ = node(tmp_path, KEYS)
    said = recording(m)
    run = asyncio.create_task(m.run())
    try:
        for _ in range(200):
            if stops:
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
    assert stops == [0] and said[-1].state == "switching", [s.state for s in said]


@pytest.mark.parametrize(
    ("keys", "record", "code"),
    [(REVOKED, True, "bad_signature"), (DESCOPED, True, "forbidden"),
     (KEYS, False, "bad_signature")],
    ids=["key removed", "key without update", "staged with no signature on record"],
)  # fmt: skip
async def test_a_staged_release_whose_key_was_revoked_while_the_node_was_down_is_removed(
    tmp_path: Path, keys: Keys, record: bool, code: str
) -> None:
    """The node restarts on a config whose keys no longer trust the staged release's
    signer: it switched to it all the same (the signature was checked once, at download)."""
    staged(tmp_path, record=record)
    m, stops, _ = node(tmp_path, keys)
    said = recording(m)
    run = asyncio.create_task(m.run())
    try:
        status = await failed(said, run)
        removed = await gone(tmp_path / "releases" / "0.2.0")
    finally:
        run.cancel()
    assert stops == [] and "switching" not in [s.state for s in said]
    assert status.code == code, status
    assert "send update.apply" in (status.reason or ""), status.reason
    assert removed, "the untrusted release is still on the disk"
    job = WorkDir(tmp_path / "releases").job()
    assert job is not None and job.state == "failed" and job.code == code


async def test_a_key_revoked_while_the_release_waits_for_its_moment_stops_the_switch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Revoked while the bus drives (`parked` not yet): checked again when the moment
    comes, not only at a start."""
    staged(tmp_path, switch="parked")
    m, stops, current = node(tmp_path, KEYS)
    moving = ["ignition on"]
    m.host.waiting_for = lambda: list(moving)
    said = recording(m)
    run = asyncio.create_task(m.run())
    try:
        for _ in range(100):
            if any(s.waiting_for for s in said):
                break
            await asyncio.sleep(0.05)
        assert any(s.waiting_for == ["ignition on"] for s in said), said
        current["keys"] = REVOKED
        moving.clear()  # parked: the moment comes
        status = await failed(said, run)
        removed = await gone(tmp_path / "releases" / "0.2.0")
    finally:
        run.cancel()
    assert stops == [] and status.code == "bad_signature", status
    assert removed
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "no longer trusted" in logged and "send update.apply" in logged


def test_a_job_whose_signed_manifest_is_not_text_is_unreadable() -> None:
    job: dict[str, Any] = {"id": "j", "version": "0.2.0", "url": "u", "size": 1,
                           "sha256": "a", "switch": "parked", "manifest": 3}  # fmt: skip
    assert Job.from_json(job) is None

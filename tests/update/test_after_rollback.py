"""What the release rolled back to makes of the update that failed: said once, with the
update's id, and never switched to again.

Real parts: the launcher's own decisions on a release tree (`ReleaseTree.choose`, as
systemd's ExecStart runs it), then the manager of the release it went back to."""

import asyncio
import contextlib
from pathlib import Path

import pytest

from edged.release.launcher import TRIAL, ReleaseTree, Trial
from edged.update.job import Job, WorkDir
from tests.release.test_launcher import release
from tests.update.test_manager import GOOD, manager
from tests.update.test_work_dir_faults import recording


@pytest.mark.parametrize("state", ["switching", "trial"])
async def test_an_unreadable_trial_record_fails_the_update_it_was_the_trial_of(
    tmp_path: Path, state: str
) -> None:
    """The launcher goes back to `previous` when trial.json is damaged, with an outcome
    that cannot name the update (`unreadable_trial`). The release it went back to took
    the job, still `switching` on disk, for a switch cut short: staged again, the release
    it had just rolled back from downloaded, installed and switched to once more (three
    times), and the job never said `rolled_back`."""
    root = tmp_path / "releases"
    root.mkdir()
    tree = ReleaseTree(root)
    release(tree, "0.1.0")
    release(tree, "0.2.0")
    tree.point("current", "0.1.0")
    job = Job(id="j", version="0.2.0", url=str(GOOD["url"]), size=1, sha256="a" * 64,
              switch="now", state=state)  # fmt: skip
    WorkDir(root).save(job)
    tree.begin_trial(Trial(id="t", version="0.2.0", previous="0.1.0", trial_s=60,
                           kill_after_s=75, update_id="j"))  # fmt: skip
    (root / TRIAL).write_bytes(b"\x00 a damaged card")
    assert tree.choose() == ("0.1.0", None)  # the launcher went back

    m = manager(tmp_path, running="0.1.0")
    said = recording(m)
    run = asyncio.create_task(m.run())
    try:
        await asyncio.sleep(0.5)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    states = [s.state for s in said]
    assert not {"downloading", "verifying", "installing", "staged"} & set(states), states
    saved = WorkDir(root).job()
    assert saved is not None and (saved.state, saved.code) == ("rolled_back", "unreadable_trial")
    assert any(s.state == "rolled_back" and s.id == "j" for s in said), said

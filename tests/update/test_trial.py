"""The release on trial judges its own time: a wall clock that jumps at boot (a Pi has no
real-time clock: fake-hwclock, then NTP) must not fail a release that comes online."""

import time
from pathlib import Path

import pytest

from edged.release.launcher import CURRENT, ReleaseTree, Trial, now_ms
from edged.update.trial import Checks, TrialWatch
from tests.release.test_launcher import release


async def _readable() -> bool:
    return True


def _watch(tree: ReleaseTree, trial: Trial, outcome: list[str]) -> TrialWatch:
    async def confirmed(_: Trial) -> None:
        outcome.append("confirmed")

    return TrialWatch(
        tree, trial, Checks(lambda: True, lambda: [], _readable), stable_s=0.2,
        on_confirmed=confirmed, on_failed=lambda why: outcome.append(f"failed: {why}"),
        poll_s=0.05,
    )  # fmt: skip


@pytest.fixture
def on_trial(tmp_path: Path) -> tuple[ReleaseTree, Trial]:
    tree = ReleaseTree(tmp_path / "releases")
    tree.root.mkdir()
    release(tree, "1.0")
    release(tree, "2.0")
    tree.point(CURRENT, "1.0")
    tree.begin_trial(Trial(id="t1", version="2.0", previous="1.0", trial_s=5, kill_after_s=20))
    version, trial = tree.choose()
    assert version == "2.0" and trial is not None
    return tree, trial


@pytest.mark.parametrize("jump_s", [10 * 3600, 60, -3600])
async def test_a_clock_jump_between_the_launcher_and_the_trial_fails_nothing(
    on_trial: tuple[ReleaseTree, Trial], jump_s: int
) -> None:
    tree, trial = on_trial
    # what the launcher wrote, read after the wall clock moved by jump_s
    trial.attempt_started -= jump_s * 1000
    trial.started -= jump_s * 1000
    outcome: list[str] = []
    watch = _watch(tree, trial, outcome)
    assert 4 < watch.deadline_s <= 5
    await watch.run()
    assert outcome == ["confirmed"]


async def test_a_trial_from_a_launcher_without_the_monotonic_time_uses_a_sane_wall_clock(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    tree, trial = on_trial
    trial.attempt_monotonic = 0.0
    trial.attempt_started = now_ms() - 3000  # the release took 3 s to get here
    assert 1.5 < _watch(tree, trial, []).deadline_s <= 2
    trial.attempt_started = now_ms() + 3_600_000  # the clock went back an hour since
    assert 4.5 < _watch(tree, trial, []).deadline_s <= 5


def test_the_launcher_notes_the_monotonic_time_of_each_attempt(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    tree, _ = on_trial
    on_disk = tree.trial()
    assert on_disk is not None
    assert 0 < time.monotonic() - on_disk.attempt_monotonic < 5

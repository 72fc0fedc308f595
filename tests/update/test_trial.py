"""The release on trial judges its own time: a wall clock that jumps at boot (a Pi has no
real-time clock: fake-hwclock, then NTP) must not fail a release that comes online."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.driver import DriverContext, DriverOptions
from edged.config.models import SupervisorConfig
from edged.release.launcher import CURRENT, ReleaseTree, Trial, now_ms
from edged.update.trial import Checks, TrialWatch, record_asked_stop, required
from tests.helpers.drivers import Recorder, wait_until
from tests.helpers.nodes import ROOT, write_config
from tests.release.support import KEYS
from tests.release.test_launcher import release
from tests.update.test_revoked_keys import node, staged


async def _readable() -> bool:
    return True


def _watch(
    tree: ReleaseTree,
    trial: Trial,
    outcome: list[str],
    drivers: list[tuple[str, str]] | None = None,
) -> TrialWatch:
    """The trial's watch, connected and the outbox readable; `drivers`: (name, state)."""

    async def confirmed(_: Trial) -> None:
        outcome.append("confirmed")

    return TrialWatch(
        tree, trial, Checks(lambda: True, lambda: drivers or [], _readable), stable_s=0.2,
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


async def test_a_driver_that_did_not_run_before_the_switch_does_not_fail_the_trial(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    """An unplugged reader (its driver in backoff in the release that switched) rolled back
    every update: the new release was waited for on a reader no release could open."""
    tree, trial = on_trial
    trial.drivers_before = {"gps": "running", "reader": "backoff"}
    outcome: list[str] = []
    await _watch(tree, trial, outcome, [("gps", "running"), ("reader", "backoff")]).run()
    assert outcome == ["confirmed"]


async def test_a_driver_that_ran_before_the_switch_must_run_on_trial(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    tree, trial = on_trial
    trial.trial_s = 1.0
    trial.drivers_before = {"gps": "running", "reader": "backoff"}
    outcome: list[str] = []
    await _watch(tree, trial, outcome, [("gps", "failed"), ("reader", "running")]).run()
    assert len(outcome) == 1 and outcome[0].startswith("failed: "), outcome
    assert "driver gps failed" in outcome[0] and "reader" not in outcome[0]


async def test_a_driver_starting_at_the_switch_must_run_on_trial(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    """`starting` at the switch is a driver opening its device (a slow open, a reader
    reopened after one failure), not one whose device is missing: a release that breaks it
    was confirmed, the trial waiting only for the drivers `running` at that instant."""
    tree, trial = on_trial
    trial.trial_s = 1.0
    trial.drivers_before = {"gps": "running", "reader": "starting"}
    outcome: list[str] = []
    await _watch(tree, trial, outcome, [("gps", "running"), ("reader", "backoff")]).run()
    assert len(outcome) == 1 and "driver reader backoff" in outcome[0], outcome


async def test_a_driver_configured_after_the_switch_is_not_waited_for(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    """A `config.set` during the trial adds a driver: nothing says it could run before."""
    tree, trial = on_trial
    trial.drivers_before = {"gps": "running"}
    outcome: list[str] = []
    await _watch(tree, trial, outcome, [("gps", "running"), ("can", "backoff")]).run()
    assert outcome == ["confirmed"]


class _ComesBack:
    """Runs, fails once (a USB hiccup), then takes its time to open again."""

    Options = DriverOptions
    starts = 0

    async def run(self, ctx: DriverContext) -> None:
        _ComesBack.starts += 1
        if _ComesBack.starts == 1:
            ctx.ready()
            await asyncio.sleep(0.01)
            raise OSError(5, "Input/output error")
        await asyncio.Event().wait()


class _Missing:
    """Its device is not there: fails twice at once, then waits its silence out, never up."""

    Options = DriverOptions
    starts = 0

    async def run(self, ctx: DriverContext) -> None:
        _Missing.starts += 1
        if _Missing.starts <= 2:
            raise OSError(2, "No such file or directory")
        await asyncio.Event().wait()


class _Slow:
    """Its first open takes seconds."""

    Options = DriverOptions

    async def run(self, ctx: DriverContext) -> None:
        await asyncio.Event().wait()


async def test_the_switch_notes_a_driver_coming_back_as_starting_and_a_missing_one_failing() -> (
    None
):
    """All three are `starting` when the switch comes: the one coming back and the slow one
    are waited for on trial; the one retrying a missing device is noted `backoff`, as it is
    between its retries."""
    _ComesBack.starts = _Missing.starts = 0
    sup = Recorder().supervisor(
        SupervisorConfig(backoff_initial_s=0.01, backoff_max_s=0.02, stable_after_s=10)
    )
    drivers = {"reader": _ComesBack, "gps": _Missing, "can": _Slow}
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(sup.supervise(n, "test", cls)) for n, cls in drivers.items()]
        await wait_until(lambda: _ComesBack.starts == 2 and _Missing.starts == 3, 5, "restarts")
        states = {s.name: s.state for s in sup.statuses()}
        noted = sup.states_at_switch()
        for t in tasks:
            t.cancel()
    assert states == {"reader": "starting", "gps": "starting", "can": "starting"}
    assert noted == {"reader": "starting", "gps": "backoff", "can": "starting"}
    trial = Trial(id="t", version="2.0", previous="1.0", trial_s=5, kill_after_s=20,
                  drivers_before=noted)  # fmt: skip
    assert required(trial, [(n, "running") for n in drivers]) == [
        ("reader", "running"), ("can", "running"),
    ]  # fmt: skip


async def test_a_trial_that_did_not_note_the_drivers_wants_every_one_running(
    on_trial: tuple[ReleaseTree, Trial],
) -> None:
    tree, trial = on_trial
    trial.trial_s = 1.0
    assert trial.drivers_before is None  # a switch by a release from before the field
    outcome: list[str] = []
    await _watch(tree, trial, outcome, [("gps", "running"), ("reader", "backoff")]).run()
    assert len(outcome) == 1 and "driver reader backoff" in outcome[0], outcome


def _env_of(monkeypatch: pytest.MonkeyPatch, tree: ReleaseTree, trial_id: str) -> None:
    monkeypatch.setenv("EDGED_TRIAL", trial_id)
    monkeypatch.setenv("EDGED_RELEASES", str(tree.root))


def test_a_stop_asked_of_the_release_on_trial_is_written_for_the_launcher(
    on_trial: tuple[ReleaseTree, Trial], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree, _ = on_trial
    _env_of(monkeypatch, tree, "t1")
    record_asked_stop()
    record_asked_stop()  # twice in one attempt: noted once
    on_disk = tree.trial()
    assert on_disk is not None and on_disk.asked_stops == [1]


@pytest.mark.parametrize("case", ["another trial", "failure recorded", "confirmed", "no trial"])
def test_a_stop_asked_is_written_only_for_this_trial_still_on(
    on_trial: tuple[ReleaseTree, Trial], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    tree, trial = on_trial
    _env_of(monkeypatch, tree, "t0" if case == "another trial" else "t1")
    if case == "failure recorded":  # it gave up: its exit 75 is the verdict
        trial.failure, trial.failure_code = "did not come online", "not_online"
        tree.save_trial(trial)
    if case == "confirmed":
        tree.confirm(trial)
    if case == "no trial":
        monkeypatch.delenv("EDGED_TRIAL")
    record_asked_stop()
    on_disk = tree.trial()
    assert on_disk is None or on_disk.asked_stops == []


def test_a_stop_asked_with_an_unwritable_record_is_logged_not_raised(
    on_trial: tuple[ReleaseTree, Trial], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    tree, _ = on_trial
    _env_of(monkeypatch, tree, "t1")
    (tree.root / "trial.json").write_text("{not json")
    record_asked_stop()
    assert "cannot record that the trial was asked to stop" in caplog.text


async def test_the_switch_notes_which_drivers_ran_for_the_trial(tmp_path: Path) -> None:
    """What the release that switches saw run is what its successor is judged on."""
    staged(tmp_path, "now")
    m, stops, _ = node(tmp_path, KEYS)
    m.host.checks.drivers = lambda: [("gps", "running"), ("reader", "backoff")]
    run = asyncio.create_task(m.run())
    try:
        for _ in range(200):
            if stops:
                break
            await asyncio.sleep(0.05)
    finally:
        run.cancel()
    assert stops == [0]
    m.finish_switch()
    trial = ReleaseTree(tmp_path / "releases").trial()
    assert trial is not None and trial.version == "0.2.0"
    assert trial.drivers_before == {"gps": "running", "reader": "backoff"}


def test_edged_run_on_trial_stopped_by_systemd_writes_the_asked_stop(tmp_path: Path) -> None:
    """The whole path: `edged run` as the launcher starts a release on trial (no broker to
    confirm on), SIGTERM as `systemctl stop` or a shutdown sends it, then ExecStopPost: the
    start is not counted, and the trial goes on at the next one."""
    tree = ReleaseTree(tmp_path / "releases")
    tree.root.mkdir()
    release(tree, "1.0")
    release(tree, "2.0")
    tree.point(CURRENT, "1.0")
    tree.begin_trial(Trial(id="t1", version="2.0", previous="1.0", trial_s=60,
                           kill_after_s=75, max_attempts=1))  # fmt: skip
    tree.choose()
    config = write_config(tmp_path, 1, gps=False)  # no broker: it cannot confirm
    env = os.environ | {"EDGED_TRIAL": "t1", "EDGED_RELEASES": str(tree.root),
                        "EDGED_RELEASE": "2.0"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the trial's watch has noted its start
            on_disk = tree.trial()
            if on_disk is not None and "running" in on_disk.reached:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    on_disk = tree.trial()
    assert on_disk is not None and on_disk.asked_stops == [1]
    tree.record_stop({"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"})
    assert tree.choose()[0] == "2.0", "the one start it had was held against it"

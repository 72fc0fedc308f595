"""The launcher's decisions on a real release tree, including a power cut between any two
of its durable steps, and the launcher file run as systemd runs it (`python3 -I`)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edged.release import launcher as launcher_module
from edged.release.launcher import (
    CURRENT,
    MAX_ASKED_STOPS,
    OUTCOME,
    PREVIOUS,
    TRIAL,
    ReleaseTree,
    Trial,
    describe_end,
    sha256_file,
)
from tests.helpers.disk import mounted_tmpfs, read_only

LAUNCHER = Path(launcher_module.__file__)


def release(tree: ReleaseTree, version: str, *, complete: bool = True) -> None:
    python = tree.python(version)
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$0 $*"\n')
    python.chmod(0o755)
    if complete:
        (tree.path(version) / "release.json").write_text(json.dumps({"version": version}))


def two_releases(where: Path) -> ReleaseTree:
    """Releases 1.0 and 2.0 under `where`, 1.0 current."""
    t = ReleaseTree(where / "releases")
    t.root.mkdir()
    release(t, "1.0")
    release(t, "2.0")
    t.point(CURRENT, "1.0")
    return t


@pytest.fixture
def tree(tmp_path: Path) -> ReleaseTree:
    return two_releases(tmp_path)


def trial_of(version: str = "2.0", previous: str = "1.0", **kw: object) -> Trial:
    return Trial(id="t1", version=version, previous=previous, trial_s=60, kill_after_s=75,
                 **kw)  # type: ignore[arg-type]  # fmt: skip


def test_without_a_trial_current_is_started(tree: ReleaseTree) -> None:
    assert tree.choose() == ("1.0", None)


def test_a_trial_start_is_counted_on_disk_before_the_release_runs(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of())
    version, trial = tree.choose()
    assert version == "2.0" and trial is not None and trial.attempts == 1
    on_disk = tree.trial()
    assert on_disk is not None and on_disk.attempts == 1 and on_disk.attempt_started > 0
    assert tree.link(PREVIOUS) == "1.0" and tree.link(CURRENT) == "2.0"


def test_attempts_used_up_without_a_recorded_end_roll_back(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of(max_attempts=2))
    assert tree.choose()[0] == "2.0"
    assert tree.choose()[0] == "2.0"  # a power cut during the first attempt: one more
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["result"] == "rolled_back"
    assert outcome["code"] == "no_exit" and "2 time(s)" in outcome["reason"]
    assert tree.trial() is None and tree.link(CURRENT) == "1.0"


@pytest.mark.parametrize(
    ("env", "code", "words"),
    [
        ({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "1"},
         "crashed", "crashed at start"),
        ({"SERVICE_RESULT": "watchdog", "EXIT_CODE": "killed", "EXIT_STATUS": "ABRT"},
         "hung", "watchdog"),
        ({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "ALRM"},
         "not_online", "within 60 s"),
        ({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "78"},
         "config_rejected", "config"),
        ({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"},
         "killed", "signal KILL"),
        ({"SERVICE_RESULT": "timeout", "EXIT_CODE": "killed", "EXIT_STATUS": "TERM"},
         "start_timeout", "TimeoutStartSec"),
    ],
)  # fmt: skip
def test_a_failed_attempt_is_rolled_back_at_once_with_its_reason(
    tree: ReleaseTree, env: dict[str, str], code: str, words: str
) -> None:
    tree.begin_trial(trial_of(max_attempts=3))
    tree.choose()
    tree.record_stop(env)
    outcome = tree.outcome()
    assert outcome is not None and outcome["result"] == "rolled_back", outcome
    assert outcome["code"] == code and words in outcome["reason"]
    assert tree.link(CURRENT) == "1.0" and tree.trial() is None
    assert tree.choose() == ("1.0", None)


def test_a_clean_stop_during_the_trial_is_recorded_not_judged(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of(max_attempts=2))
    tree.choose()
    tree.record_stop({"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"})
    trial = tree.trial()
    assert trial is not None and trial.exits[-1]["result"] == "success"
    assert tree.choose()[0] == "2.0"


def test_a_trial_ended_by_clean_stops_is_not_called_a_crash(tree: ReleaseTree) -> None:
    """Each attempt stopped cleanly (a shutdown when the ignition goes off, systemctl
    restart): the attempts are used up and the release goes back, as after power cuts, but
    the reason said `crashed at start (exit status 0)`, sending whoever reads the rollout's
    STOPPED line after a crash that never was."""
    tree.begin_trial(trial_of(max_attempts=2))
    for _ in range(2):
        tree.choose()
        tree.record_stop({"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"})
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["result"] == "rolled_back"
    assert outcome["code"] == "stopped" and "crash" not in outcome["reason"], outcome
    assert "stopped cleanly" in outcome["reason"]


def test_the_stop_of_the_release_that_switched_is_not_a_trial_attempt(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of())
    tree.record_stop({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "1"})
    trial = tree.trial()
    assert trial is not None and trial.exits == [] and tree.link(CURRENT) == "2.0"


def test_a_failure_written_by_the_release_is_the_reason(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of())
    _, trial = tree.choose()
    assert trial is not None
    trial.failure, trial.failure_code = "did not come online: no broker", "not_online"
    tree.save_trial(trial)
    tree.record_stop({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "75"})
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "not_online"
    assert outcome["reason"] == "did not come online: no broker"


def test_confirm_keeps_the_new_release_and_the_old_as_fallback(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of())
    _, trial = tree.choose()
    assert trial is not None
    tree.confirm(trial)
    assert tree.choose() == ("2.0", None)
    assert tree.link(PREVIOUS) == "1.0"
    outcome = tree.outcome()
    assert outcome is not None and outcome["result"] == "confirmed"


def test_an_unreadable_trial_record_goes_back_to_the_previous_release(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of())
    (tree.root / TRIAL).write_bytes(b"\x00garbage{")
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "unreadable_trial"


def test_a_trial_of_an_incomplete_release_is_rolled_back(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of())
    (tree.path("2.0") / "release.json").unlink()
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "incomplete"


def test_current_naming_an_incomplete_release_falls_back_to_previous(tree: ReleaseTree) -> None:
    release(tree, "3.0", complete=False)
    tree.point(PREVIOUS, "2.0")
    tree.point(CURRENT, "3.0")
    assert tree.choose() == ("2.0", None)
    assert tree.link(CURRENT) == "2.0"


@pytest.mark.parametrize("gone", ["deleted", "incomplete"])
def test_a_rollback_to_a_release_that_is_gone_does_not_start_the_failed_one(
    tree: ReleaseTree, gone: str
) -> None:
    """`previous` deleted (or damaged) under the trial: the fallback is another release that
    worked, not the newest install, which is the release that just failed."""
    release(tree, "0.9")
    os.utime(tree.path("0.9") / "release.json", (1, 1))  # installed before 1.0 and 2.0
    tree.begin_trial(trial_of(max_attempts=3))
    tree.choose()
    if gone == "deleted":
        shutil.rmtree(tree.path("1.0"))
    else:
        (tree.path("1.0") / "release.json").unlink()
    tree.record_stop({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "1"})
    assert tree.choose() == ("0.9", None)
    assert tree.link(CURRENT) == "0.9"


def test_the_failed_release_is_started_only_when_no_other_is_left(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of(max_attempts=3))
    tree.choose()
    shutil.rmtree(tree.path("1.0"))
    tree.record_stop({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "1"})
    assert tree.choose() == ("2.0", None)


def test_leftover_temporary_files_change_nothing(tree: ReleaseTree) -> None:
    os.symlink("2.0", tree.root / ".current.tmp-999")
    (tree.root / ".trial.json.tmp-999").write_text("{")
    assert tree.choose() == ("1.0", None)


def test_a_rollback_puts_back_the_config_the_trial_changed(
    tree: ReleaseTree, tmp_path: Path
) -> None:
    config = tmp_path / "edged.toml"
    config.write_text("before = 1\n")
    copy = tmp_path / "copy.toml"
    shutil.copy(config, copy)
    pending = tmp_path / "edged.toml.pending"
    tree.begin_trial(
        trial_of(config={"path": str(config), "copy": str(copy), "sha256": sha256_file(config)})
    )
    tree.choose()
    config.write_text("after = 2\n")  # config.set during the trial
    pending.write_text("on probation\n")
    tree.record_stop({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "SEGV"})
    assert config.read_text() == "before = 1\n"
    assert (tmp_path / "edged.toml.rolled-back").read_text() == "after = 2\n"
    assert not pending.exists()


def test_a_rollback_after_a_power_cut_emptied_the_config_copy_keeps_the_config(
    tree: ReleaseTree, tmp_path: Path
) -> None:
    """The switch happens parked, ignition off: the power may go seconds later. The copy
    of the config made at the switch was not fsync'd (shutil.copy2) while trial.json and
    `current`, which name it, were: ext4 then leaves it empty after the cut. A config.set
    during the trial, a failure, and the rollback wrote that empty copy over the config:
    the release that worked no longer starts. The copy is taken only when it is what was
    copied (its SHA-256 is in trial.json); else the config stays as it is. Source: the
    atomic-rename-and-fsync rule of the launcher's own docstring; ext4's delayed
    allocation (a new file's data is written up to `commit` seconds after its name)."""
    config = tmp_path / "edged.toml"
    config.write_text("before = 1\n")
    copy = tmp_path / "copy.toml"
    copy.write_bytes(b"")  # what the power cut left of the copy
    tree.begin_trial(
        trial_of(config={"path": str(config), "copy": str(copy), "sha256": sha256_file(config)})
    )
    tree.choose()
    config.write_text("after = 2\n")  # config.set during the trial
    tree.record_stop({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "SEGV"})
    assert tree.link("current") == "1.0"
    assert config.read_text() == "after = 2\n"


def test_a_rollback_leaves_an_unchanged_config_alone(tree: ReleaseTree, tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    config.write_text("same = 1\n")
    stat = config.stat()
    copy = tmp_path / "copy.toml"
    shutil.copy(config, copy)
    tree.begin_trial(
        trial_of(config={"path": str(config), "copy": str(copy), "sha256": sha256_file(config)})
    )
    tree.choose()
    tree.record_stop({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "SEGV"})
    assert config.stat().st_ino == stat.st_ino and config.read_text() == "same = 1\n"


# -- a power cut between any two durable steps -------------------------------------------


class PowerCut(Exception):
    pass


def cut_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> Callable[[], int]:
    """Every durable step (a link swap, a record written or removed) counts; the power goes
    after `steps` of them. Returns how many steps ran."""
    done = [0]
    for name in ("point", "write", "remove"):
        original = getattr(ReleaseTree, name)

        def step(
            self: ReleaseTree, *args: object, _original: Callable[..., None] = original
        ) -> None:
            if done[0] >= steps:
                raise PowerCut
            _original(self, *args)
            done[0] += 1

        monkeypatch.setattr(ReleaseTree, name, step)
    return lambda: done[0]


def operations(tree: ReleaseTree) -> Iterator[tuple[str, Callable[[], None], set[str]]]:
    """(name, the operation from a state where it applies, releases allowed after it)."""

    def switch() -> None:
        tree.begin_trial(trial_of())

    def confirm() -> None:
        trial = tree.trial()
        assert trial is not None
        tree.confirm(trial)

    def roll_back() -> None:
        trial = tree.trial()
        assert trial is not None
        tree.roll_back(trial, "crashed", "test")

    yield "switch", switch, {"1.0", "2.0"}
    yield "confirm", confirm, {"2.0"}
    yield "roll_back", roll_back, {"1.0"}


@pytest.mark.parametrize("operation", ["switch", "confirm", "roll_back"])
def test_a_power_cut_at_every_step_leaves_a_release_that_worked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    steps = 0
    while True:
        tree = ReleaseTree(tmp_path / f"r{steps}")
        tree.root.mkdir()
        release(tree, "1.0")
        release(tree, "2.0")
        tree.point(CURRENT, "1.0")
        _, run, allowed = next(o for o in operations(tree) if o[0] == operation)
        if operation != "switch":
            tree.begin_trial(trial_of())
            tree.choose()  # the trial release is running
        with monkeypatch.context() as m:
            ran = cut_after(m, steps)
            try:
                run()
                finished = True
            except PowerCut:
                finished = False
        after = ReleaseTree(tree.root)  # the next boot
        version, trial = after.choose()
        assert after.complete(version)
        assert version in allowed or (trial is not None and version == "2.0"), (steps, version)
        if operation == "roll_back" and ran() >= 1:  # the decision is on disk: it holds
            assert version == "1.0" and after.trial() is None, f"cut after {ran()} steps"
        if operation == "confirm":
            assert version == "2.0"
        if finished:
            break
        steps += 1
    assert steps >= 2, "the operation has several durable steps to cut between"


# -- the file as systemd runs it ------------------------------------------------------------


def test_the_launcher_needs_nothing_but_the_standard_library(
    tree: ReleaseTree, tmp_path: Path
) -> None:
    copy = tmp_path / "launcher.py"
    shutil.copy(LAUNCHER, copy)
    out = subprocess.run(
        [sys.executable, "-I", "-S", str(copy), "--releases", str(tree.root), "--status"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(out.stdout)["current"] == "1.0"


def test_the_launcher_execs_the_release_with_the_trial_in_its_environment(
    tree: ReleaseTree, tmp_path: Path
) -> None:
    script = tree.python("2.0")
    script.write_text(
        '#!/bin/sh\necho "args: $*"\necho "trial: $EDGED_TRIAL release: $EDGED_RELEASE"\n'
    )
    tree.begin_trial(trial_of())
    out = subprocess.run(
        [sys.executable, "-I", str(LAUNCHER), "--releases", str(tree.root), "run", "--config", "x"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "args: -P -m edged run --config x" in out.stdout
    assert "trial: t1 release: 2.0" in out.stdout
    assert "on trial (attempt 1 of 2)" in out.stderr


@pytest.mark.parametrize(("flags", "passed"), [(["-OO"], "-OO "), (["-O"], "-O "), ([], "")])
def test_the_launcher_runs_the_release_with_its_own_optimisation_level(
    tree: ReleaseTree, flags: list[str], passed: str
) -> None:
    """systemd/edged.service starts the launcher with -OO: the flag must reach edged, which
    an exec does not do by itself."""
    out = subprocess.run(
        [sys.executable, "-I", *flags, str(LAUNCHER), "--releases", str(tree.root), "run"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == f"{tree.python('1.0')} {passed}-P -m edged run"


def test_the_trial_alarm_survives_the_exec_and_ends_a_release_that_never_confirms(
    tree: ReleaseTree,
) -> None:
    tree.python("2.0").write_text("#!/bin/sh\nexec sleep 20\n")
    tree.begin_trial(Trial(id="t2", version="2.0", previous="1.0", trial_s=0.5, kill_after_s=1))
    proc = subprocess.run(
        [sys.executable, "-I", str(LAUNCHER), "--releases", str(tree.root), "run"],
        capture_output=True, text=True, timeout=15,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGALRM


def test_a_release_that_cannot_be_executed_is_rolled_back_and_the_previous_runs(
    tree: ReleaseTree,
) -> None:
    tree.python("2.0").chmod(0o644)  # not executable
    tree.begin_trial(trial_of())
    out = subprocess.run(
        [sys.executable, "-I", str(LAUNCHER), "--releases", str(tree.root), "run"],
        capture_output=True, text=True, timeout=15,
    )  # fmt: skip
    assert f"{tree.python('1.0')} -P -m edged run" in out.stdout
    outcome = json.loads((tree.root / OUTCOME).read_text())
    assert outcome["code"] == "cannot_start"


def test_reasons_say_how_far_the_release_got() -> None:
    trial = trial_of(attempts=1, reached={"running": 1, "drivers": 2})
    code, reason = describe_end(
        trial, {"result": "signal", "code": "killed", "status": "ALRM", "attempt": 1}
    )
    assert code == "not_online" and "reached: running, drivers" in reason


def on_trial_of_2_0(card: Path) -> ReleaseTree:
    """Releases 1.0 and 2.0 on `card`, 2.0 on trial after 1.0."""
    t = two_releases(card)
    t.begin_trial(trial_of())
    return t


def launch_read_only(t: ReleaseTree, card: Path) -> "subprocess.CompletedProcess[str]":
    """The launcher's `run` while the kernel keeps `card` read-only."""
    with read_only(card):
        return subprocess.run(
            [sys.executable, "-I", str(LAUNCHER), "--releases", str(t.root), "run"],
            capture_output=True, text=True, timeout=15,
        )  # fmt: skip


def test_a_card_left_read_only_mid_trial_starts_the_previous_release_writing_nothing(
    tmp_path: Path,
) -> None:
    """A trial's start is counted on disk before the release runs; on a card the kernel
    remounted read-only (an ext4 error: EROFS on every write), or a full one, the count
    failed and the launcher exited 70 at every start: no release at all, doors and taps
    down, against "a full or corrupt disk degrades the node, never stops it". The trial is
    not judged then: the release that worked runs, and the trial goes on once the card
    can be written."""
    with mounted_tmpfs(tmp_path / "card") as card:
        t = on_trial_of_2_0(card)
        out = launch_read_only(t, card)
        assert out.returncode == 0, out.stderr
        assert f"{t.python('1.0')} -P -m edged run" in out.stdout
        assert "nothing recorded" in out.stderr
        on_disk = t.trial()
        assert on_disk is not None and on_disk.attempts == 0, "the trial goes on later"
        assert t.link(CURRENT) == "2.0"
        assert t.choose()[0] == "2.0", "once the card is written again, the trial runs"


def test_an_unreadable_trial_on_a_read_only_card_starts_the_previous_release(
    tmp_path: Path,
) -> None:
    """As at a start that can write (`_unreadable_trial`): a trial that cannot be judged
    does not run its release, which could crash at every start with nothing counted."""
    with mounted_tmpfs(tmp_path / "card") as card:
        t = on_trial_of_2_0(card)
        (t.root / TRIAL).write_text("{ cut by the ext4 error")
        out = launch_read_only(t, card)
        assert out.returncode == 0, out.stderr
        assert f"{t.python('1.0')} -P -m edged run" in out.stdout


def test_an_unreadable_trial_of_a_switch_cut_short_starts_current_when_nothing_is_written(
    tree: ReleaseTree,
) -> None:
    """A switch cut after trial.json but before `current` (both links on 1.0), its
    trial.json damaged by the error that left the card read-only: 1.0 is the release that
    worked, as `choose` decides when it can write; 2.0 was never started."""
    tree.point(PREVIOUS, "1.0")
    (tree.root / TRIAL).write_text("{ cut by the ext4 error")
    os.utime(tree.path("2.0") / "release.json", (2e9, 2e9))  # the newest install
    assert tree.choose_unwritten() == "1.0"


def test_a_release_rolled_back_from_is_the_last_choice_when_a_trial_waits_unwritten(
    tree: ReleaseTree,
) -> None:
    """2.0 rolled back earlier; 3.0 on trial after 1.0, whose files are gone: nothing
    written, the release that failed its trial comes after one that never did (0.9)."""
    release(tree, "0.9")
    release(tree, "3.0")
    tree.begin_trial(trial_of("2.0"))
    tree.choose()
    tree.roll_back(trial_of("2.0"), "not_online", "never came online")
    tree.begin_trial(Trial(id="t2", version="3.0", previous="1.0", trial_s=60,
                           kill_after_s=75))  # fmt: skip
    os.utime(tree.path("0.9") / "release.json", (1e9, 1e9))
    os.utime(tree.path("2.0") / "release.json", (2e9, 2e9))
    shutil.rmtree(tree.path("1.0"))
    assert tree.choose_unwritten() == "0.9"


def test_a_trials_previous_release_runs_unwritten_even_if_it_once_was_rolled_back_from(
    tree: ReleaseTree,
) -> None:
    """2.0 rolled back once, then installed again by hand (install.sh: current, it ran) and
    3.0 put on trial after it: the release that ran before the switch is the one that
    worked, whatever an older outcome says of it."""
    release(tree, "3.0")
    tree.begin_trial(trial_of("2.0"))
    tree.choose()
    tree.roll_back(trial_of("2.0"), "not_online", "never came online")
    tree.point(CURRENT, "2.0")  # install.sh run for 2.0
    tree.begin_trial(Trial(id="t2", version="3.0", previous="2.0", trial_s=60,
                           kill_after_s=75))  # fmt: skip
    assert tree.choose_unwritten() == "2.0"


@pytest.mark.parametrize(
    "written",
    [
        {"config": {"path": "/etc/edged/edged.toml"}},  # no copy named
        {"config": "/etc/edged/edged.toml"},
        {"kill_after_s": "75.5"},
        {"kill_after_s": 1e300},
        {"trial_s": "sixty"},
        {"exits": ["crashed"]},
        {"asked_stops": "1"},
        {"asked_stops": [True]},
        {"drivers_before": ["gps"]},
        {"drivers_before": {"gps": 1}},
    ],
    ids=["config without its copy", "config as text", "kill_after_s as text", "kill_after_s past alarm()",
         "trial_s as text", "exits not records", "asked_stops as text", "asked_stops of booleans",
         "drivers_before as a list", "drivers_before of numbers"],
)  # fmt: skip
@pytest.mark.parametrize("end", ["crashed", "power cut"])
def test_a_trial_record_in_a_shape_this_launcher_does_not_read_still_goes_back(
    tmp_path: Path, written: dict[str, object], end: str
) -> None:
    """trial.json is written by the releases (the old one at the switch, the one on trial
    as it goes), and the launcher is install.sh's, never updated by a bundle: a release
    that writes a field in another shape (a bug, a rename) made the launcher raise
    (KeyError, TypeError, ValueError) at every start and every stop, before it went back:
    systemd restarted it for ever and the node ran no release at all."""
    tree = two_releases(tmp_path)
    config = tmp_path / "edged.toml"
    config.write_text("[node]\n")
    copy = tmp_path / "config-at-switch.toml"
    copy.write_text("[node]\n")
    tree.begin_trial(trial_of(config={"path": str(config), "copy": str(copy),
                                      "sha256": sha256_file(config)}))  # fmt: skip
    tree.choose()  # attempt 1: the release on trial runs, and rewrites its record
    record = json.loads((tree.root / TRIAL).read_text()) | written
    (tree.root / TRIAL).write_text(json.dumps(record))
    launcher = [sys.executable, "-I", str(LAUNCHER), "--releases", str(tree.root)]
    if end == "crashed":  # ExecStopPost
        env = os.environ | {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited",
                            "EXIT_STATUS": "1"}  # fmt: skip
        subprocess.run([*launcher, "--stopped"], env=env, capture_output=True, timeout=15)
    else:  # a power cut during attempt 1, then two starts
        subprocess.run([*launcher, "run"], capture_output=True, timeout=15)
    started = subprocess.run([*launcher, "run"], capture_output=True, text=True, timeout=15)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"{tree.python('1.0')} "), (started.stdout, started.stderr)
    assert tree.link(CURRENT) == "1.0" and tree.trial() is None


def _trial_dir(t: ReleaseTree) -> None:  # EISDIR: the path of a read that fails (EIO)
    (t.root / TRIAL).unlink()
    (t.root / TRIAL).mkdir()


def _outcome_dir(t: ReleaseTree) -> None:
    (t.root / OUTCOME).mkdir()


def _config_path_with_nul(t: ReleaseTree) -> None:
    record = json.loads((t.root / TRIAL).read_text())
    record["config"] = {"path": "/etc/edged/edged\u0000.toml", "copy": "/x", "sha256": ""}
    record["attempts"] = record["max_attempts"]  # judged now
    (t.root / TRIAL).write_text(json.dumps(record))


@pytest.mark.parametrize(
    "damage", [_trial_dir, _outcome_dir, _config_path_with_nul],
    ids=["trial.json unreadable", "outcome.json unreadable", "config path with a NUL"],
)  # fmt: skip
def test_a_record_the_launcher_cannot_read_or_use_still_starts_a_release(
    tmp_path: Path, damage: Callable[[ReleaseTree], None]
) -> None:
    """The launcher runs at every start: a record it could not read (a read error of a
    failing card) or use (a path Python refuses) made it exit 70 or raise, at every start,
    and the node ran no release at all. A release that worked runs."""
    tree = two_releases(tmp_path)
    tree.begin_trial(trial_of())
    tree.choose()  # attempt 1 of 2 counted
    damage(tree)
    launcher = [sys.executable, "-I", str(LAUNCHER), "--releases", str(tree.root), "run"]
    started = subprocess.run(launcher, capture_output=True, text=True, timeout=15)
    assert started.returncode == 0, started.stderr
    ran = started.stdout.split(" ")[0]
    assert ran in (str(tree.python("1.0")), str(tree.python("2.0"))), started.stdout
    if damage is not _outcome_dir:  # the trial cannot be judged: the release that worked
        assert ran == str(tree.python("1.0")), (started.stdout, started.stderr)


class _Exec(Exception):
    pass


def test_an_error_no_check_foresaw_while_judging_the_trial_still_starts_a_release(
    tree: ReleaseTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a record holds that the checks did not foresee (KeyError, TypeError,
    ValueError while judging it), the launcher starts a release that worked, judging and
    writing nothing, rather than raising at every start with no release running."""
    tree.begin_trial(trial_of())

    def unforeseen(self: ReleaseTree) -> None:
        raise KeyError("copy")

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise _Exec(path)

    monkeypatch.setattr(ReleaseTree, "settle", unforeseen)
    monkeypatch.setattr(launcher_module.os, "execve", execve)
    with pytest.raises(_Exec) as ran:
        launcher_module.main(["--releases", str(tree.root), "run"])
    assert str(ran.value) == str(tree.python("1.0"))


def test_a_trial_cut_by_a_power_cut_then_a_clean_stop_says_so(tree: ReleaseTree) -> None:
    """Attempt 1 ended with the power, attempt 2 with a clean stop: the reason said the
    release "stopped cleanly ... 2 time(s)", a stop that never was for the first."""
    tree.begin_trial(trial_of(max_attempts=2))
    tree.choose()  # attempt 1: the power goes, nothing recorded
    tree.choose()  # attempt 2
    tree.record_stop({"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"})
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "stopped"
    assert "stopped cleanly in 1 of its 2 starts" in outcome["reason"], outcome["reason"]


CLEAN = {"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"}


def _asked_to_stop(tree: ReleaseTree) -> None:
    """What the release on trial writes as a stop signal ends it (`record_asked_stop`)."""
    trial = tree.trial()
    assert trial is not None
    trial.asked_stops.append(trial.attempts)
    tree.save_trial(trial)


def test_starts_stopped_on_request_before_confirming_are_not_counted(tree: ReleaseTree) -> None:
    """The switch is made parked, ignition off, and the Pi's power management shuts it down
    cleanly minutes later, before the trial confirms; the next day the same. Each clean stop
    used an attempt as a power cut does: two of them rolled a good release back (`stopped`)."""
    tree.begin_trial(trial_of(max_attempts=2))
    for _ in range(4):
        assert tree.choose()[0] == "2.0"
        _asked_to_stop(tree)
        tree.record_stop(CLEAN)
    version, trial = tree.choose()
    assert version == "2.0" and trial is not None and trial.attempts == 5
    assert tree.outcome() is None


def test_starts_stopped_on_request_are_not_counted_beyond_a_bound(tree: ReleaseTree) -> None:
    """A release stopped at every start must still end its trial."""
    tree.begin_trial(trial_of(max_attempts=2))
    starts = 0
    while tree.choose()[0] == "2.0":
        starts += 1
        _asked_to_stop(tree)
        tree.record_stop(CLEAN)
        assert starts <= 20, "never judged"
    assert starts == 2 + MAX_ASKED_STOPS
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "stopped", outcome


def test_a_clean_exit_the_release_was_not_asked_for_still_counts(tree: ReleaseTree) -> None:
    """Exit 0 by itself (no stop signal: the release's own bug) is no reason to wait."""
    tree.begin_trial(trial_of(max_attempts=2))
    tree.choose()
    _asked_to_stop(tree)
    tree.record_stop(CLEAN)
    tree.choose()  # attempt 2 ends by itself: exit 0, not asked
    tree.record_stop(CLEAN)
    tree.choose()  # attempt 3 (attempt 1 not counted): a power cut, nothing recorded
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["result"] == "rolled_back"


def test_a_stop_asked_but_ended_by_the_power_counts(tree: ReleaseTree) -> None:
    """The release wrote that it was asked to stop, and the power went before systemd
    recorded the end: not known to be clean, so counted."""
    tree.begin_trial(trial_of(max_attempts=2))
    tree.choose()
    _asked_to_stop(tree)
    tree.choose()
    assert tree.choose() == ("1.0", None)


def test_a_stop_asked_that_systemd_had_to_kill_is_a_failure(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of(max_attempts=3))
    tree.choose()
    _asked_to_stop(tree)
    tree.record_stop({"SERVICE_RESULT": "timeout", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"})
    outcome = tree.outcome()
    assert outcome is not None and outcome["result"] == "rolled_back"
    assert tree.link(CURRENT) == "1.0"


def test_the_launcher_says_which_starts_it_did_not_count(tree: ReleaseTree) -> None:
    tree.begin_trial(trial_of(max_attempts=2))
    tree.choose()
    _asked_to_stop(tree)
    tree.record_stop(CLEAN)
    launcher = [sys.executable, "-I", str(LAUNCHER), "--releases", str(tree.root), "run"]
    started = subprocess.run(launcher, capture_output=True, text=True, timeout=15)
    assert started.returncode == 0, started.stderr
    assert "(attempt 1 of 2, 1 asked stop(s) not counted)" in started.stderr, started.stderr


def test_a_trial_record_without_the_new_fields_is_read_as_before(tree: ReleaseTree) -> None:
    """trial.json written by a release from before `asked_stops` and `drivers_before`."""
    tree.begin_trial(trial_of(max_attempts=2))
    record = json.loads((tree.root / TRIAL).read_text())
    for key in ("asked_stops", "drivers_before"):
        del record[key]
    (tree.root / TRIAL).write_text(json.dumps(record))
    _, trial = tree.choose()
    assert trial is not None and trial.asked_stops == [] and trial.drivers_before is None
    tree.record_stop(CLEAN)
    tree.choose()
    tree.record_stop(CLEAN)
    assert tree.choose() == ("1.0", None)


def test_a_rollback_for_power_cuts_says_how_many_starts_had_no_recorded_end(
    tree: ReleaseTree,
) -> None:
    """A start stopped on request is not counted, but it ended: the reason said that all
    the starts had no recorded exit ("started 3 time(s) ... without a recorded exit")."""
    tree.begin_trial(trial_of(max_attempts=2))
    tree.choose()
    _asked_to_stop(tree)
    tree.record_stop(CLEAN)
    tree.choose()  # attempts 2 and 3: the power goes
    tree.choose()
    assert tree.choose() == ("1.0", None)
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "no_exit", outcome
    said = "started 3 time(s) without confirming, 2 of them without a recorded exit"
    assert said in outcome["reason"], outcome["reason"]


def test_a_start_that_timed_out_is_a_failure_though_it_exited_cleanly_on_sigterm(
    tree: ReleaseTree,
) -> None:
    """TimeoutStartSec: systemd sends SIGTERM, the release writes it was asked to stop and
    exits 0; the end is `timeout`, not a stop anyone asked for."""
    tree.begin_trial(trial_of(max_attempts=3))
    tree.choose()
    _asked_to_stop(tree)
    tree.record_stop({"SERVICE_RESULT": "timeout", "EXIT_CODE": "exited", "EXIT_STATUS": "0"})
    outcome = tree.outcome()
    assert outcome is not None and outcome["code"] == "start_timeout", outcome
    assert tree.link(CURRENT) == "1.0"


def test_a_start_removes_the_temporary_files_a_kill_midway_left(tree: ReleaseTree) -> None:
    """`.current.tmp-PID` and `.trial.json.tmp-PID` of a launcher killed mid-write stayed
    for ever (each start has another pid); old ones of ours are removed, nothing else."""
    os.symlink("2.0", tree.root / ".current.tmp-999")
    (tree.root / ".trial.json.tmp-998").write_text("{")
    young = tree.root / ".stops.json.tmp-997"
    young.write_text("{")
    others = [tree.root / ".trial.json.swp", tree.root / ".tmp-5"]
    for f in others:
        f.write_text("x")
    for f in (tree.root / ".current.tmp-999", tree.root / ".trial.json.tmp-998", *others):
        os.utime(f, (1, 1), follow_symlinks=False)
    assert tree.choose() == ("1.0", None)
    assert sorted(p.name for p in tree.root.iterdir() if p.name.startswith(".")) == sorted(
        [young.name, *(f.name for f in others)]
    )

"""The launcher: systemd's ExecStart runs it, it picks the release to run and execs it.

One file, standard library only: install.sh copies it to /opt/edged/launcher.py and the
system's python3 runs it (`python3 -I`), so the choice is made before any release's code is
imported, and a release that cannot even be imported is still rolled back. It is updated by
install.sh only, never by a bundle: a bundle cannot break the thing that undoes bundles.

The release tree (`--releases`, /opt/edged/releases by default):

    0.1.0/               a release: venv/ and release.json (written last: the release is complete)
    0.2.0/
    current -> 0.2.0     what to run
    previous -> 0.1.0    the fallback: a release that worked
    trial.json           present while `current` is on trial (see `Trial`)
    outcome.json         how the last trial ended: confirmed, or rolled_back with the reason

A trial is on when trial.json exists and `current` names its release. Each start of the trial
release counts an attempt (written before the exec); the release must confirm itself (write
outcome.json, remove trial.json) within its time, and a kernel alarm (`signal.alarm`, which
survives exec) kills it if it neither confirms nor gives up by itself. ExecStopPost runs this
file with `--stopped`: it records how the attempt ended (systemd's $SERVICE_RESULT,
$EXIT_CODE, $EXIT_STATUS) and rolls back at once when that was a failure. A start that finds
the attempts used up, or a failure recorded, rolls back too. Rolling back writes the outcome
first, then puts back the config kept at the switch (when the trial changed it), then points
`current` at the previous release, then removes trial.json: each step is an atomic rename
followed by an fsync of its directory, and a start that finds an outcome for the trial on
disk finishes the steps. So a power cut between any two steps leaves a tree this launcher
resolves to a release that worked:

- switch (by the running release): `previous` -> old, trial.json, `current` -> new. Cut before
  the last step: trial.json names a release `current` does not: stale, removed, the old runs.
- confirm (by the trial release): outcome confirmed, trial.json removed. Cut between: the
  outcome names the trial: trial.json removed, the new release runs.
- roll back: outcome, config back, `current` -> previous, trial.json removed. Cut
  anywhere: the outcome names the trial, the remaining steps are done again (each is idempotent).

A tree it cannot write (a full card, or one the kernel left read-only) does not stop the
node: a release that worked is started with nothing written (`choose_unwritten`).
"""

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

FORMAT = 1
"""Version of trial.json and outcome.json; a release must keep writing what this reads."""

DEFAULT_RELEASES = "/opt/edged/releases"
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
TRIAL = "trial.json"
OUTCOME = "outcome.json"
CURRENT = "current"
PREVIOUS = "previous"
COMPLETE = "release.json"
EX_SOFTWARE = 70
MAX_ALARM_S = 7 * 86400
MAX_ASKED_STOPS = 8
"""Starts of a trial that end in a stop asked of the release (a shutdown, `systemctl
restart`) are not counted against it, up to this many: a vehicle whose power management
shuts the Pi down minutes after the ignition goes off, when the switch was made, must not
roll a good release back; a release stopped at every start must still end its trial."""
MILESTONES = ("running", "broker", "drivers")
"""What a trial release reports reaching, in order: started with its config and outbox open,
connected to the broker, every configured driver running."""


class LauncherError(Exception):
    """The tree cannot give a release to run; the message says what to do."""


def now_ms() -> int:
    return int(time.time() * 1000)


def say(message: str) -> None:
    print(f"edged-launcher: {message}", file=sys.stderr, flush=True)


# -- durable files ------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


LEFT_AFTER_S = 600.0
"""A temporary file of `write_atomically` or `point` this old is one a kill midway left."""


def clear_left(directory: Path, names: str, older_than_s: float = LEFT_AFTER_S) -> None:
    """Remove what `write_atomically` and `point` left in `directory` for the files whose
    names match `names` (a regular expression) when killed midway (a power cut, the unit
    stopped as it starts): `.NAME.tmp-PID`, a regular file or a link, of this user,
    untouched for `older_than_s`; each start's pid is another, so none was ever reused or
    removed. Never raises (this runs at every start)."""
    pattern = re.compile(rf"\.(?:{names})\.tmp-[0-9]+")
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            mine = st.st_uid == os.geteuid() and now - st.st_mtime >= older_than_s
            if mine and (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                os.unlink(entry.path)
                say(f"removed {entry.path}, left by a write killed midway")


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary name, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class CorruptRecordError(LauncherError):
    """A record file exists but is not the JSON object this launcher wrote."""


# -- records ------------------------------------------------------------------------------


@dataclass
class Trial:
    """trial.json: a release on trial. Fields this launcher does not know are kept as they are
    (`extra`), so a newer release may add some."""

    id: str
    version: str
    previous: str
    trial_s: float
    kill_after_s: float
    max_attempts: int = 2
    attempts: int = 0
    update_id: str | None = None
    started: int = field(default_factory=now_ms)
    attempt_started: int = 0
    attempt_monotonic: float = 0.0
    """`time.monotonic()` when this attempt was started: the same clock in the release it
    execs (CLOCK_MONOTONIC, since boot), which the wall clock is not at boot on a Pi with no
    real-time clock (fake-hwclock, then NTP jumping it forward)."""
    reached: dict[str, int] = field(default_factory=dict)
    exits: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    failure_code: str | None = None
    config: dict[str, str] | None = None
    """{"path", "copy", "sha256"}: the config at the switch, put back by a rollback when it
    changed during the trial."""
    asked_stops: list[int] = field(default_factory=list)
    """The attempts the release was asked to stop (a stop signal) before it confirmed,
    written by the release as it exits: with a clean end, they are not counted."""
    drivers_before: dict[str, str] | None = None
    """Each configured driver's state in the release that switched, at the switch: the
    trial does not wait for those failing there, `backoff` or `failed` (an unplugged reader is
    not the new release's fault). None (a release that did not note them): every driver."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Trial":
        try:
            known = {k: data[k] for k in _trial_fields() if k in data}
            extra = {k: v for k, v in data.items() if k not in known and k != "v"}
            trial = cls(**known, extra=extra)
        except TypeError as exc:
            raise CorruptRecordError(f"{TRIAL}: {exc}") from None
        if not (
            isinstance(trial.id, str)
            and valid_version(trial.version)
            and valid_version(trial.previous)
            and isinstance(trial.attempts, int)
            and isinstance(trial.max_attempts, int)
            and isinstance(trial.reached, dict)
            and isinstance(trial.exits, list)
            and all(isinstance(end, dict) for end in trial.exits)
            and all(_number(getattr(trial, k)) for k in _NUMBERS)
            and all(isinstance(getattr(trial, k), str | None) for k in _TEXTS)
            and _config_record(trial.config)
            and isinstance(trial.asked_stops, list)
            and all(type(n) is int for n in trial.asked_stops)
            and _drivers_record(trial.drivers_before)
        ):
            # the releases write this record, and this launcher is never updated by one: a
            # field in another shape is a record it cannot judge (back to `previous`), never
            # an exception at every start and stop, which would leave no release running
            raise CorruptRecordError(f"{TRIAL}: fields of the wrong type")
        return trial

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _trial_fields()}
        return {**self.extra, "v": FORMAT, **out}


_NUMBERS = ("trial_s", "kill_after_s", "started", "attempt_started", "attempt_monotonic")
_TEXTS = ("update_id", "failure", "failure_code")


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _config_record(config: Any) -> bool:
    """None, or {"path", "copy", "sha256"} as `restore_config` reads it."""
    if config is None:
        return True
    return (
        isinstance(config, dict)
        and all(_path_text(config.get(k)) for k in ("path", "copy"))
        and isinstance(config.get("sha256", ""), str)
    )


def _drivers_record(drivers: Any) -> bool:
    """None, or {driver name: state}."""
    return drivers is None or (
        isinstance(drivers, dict) and all(isinstance(v, str) for v in drivers.values())
    )


def _path_text(value: Any) -> bool:
    """A file name the system takes (a NUL in it: ValueError at every open)."""
    return isinstance(value, str) and bool(value) and "\0" not in value


def _trial_fields() -> list[str]:
    return [f.name for f in fields(Trial) if f.name != "extra"]


def valid_version(value: Any) -> bool:
    """A release's directory name: never one of the tree's links or records."""
    return (
        isinstance(value, str)
        and VERSION_NAME.fullmatch(value) is not None
        and value not in (CURRENT, PREVIOUS, TRIAL, OUTCOME)
    )


# -- the tree -----------------------------------------------------------------------------


class ReleaseTree:
    """The releases directory: releases, the `current` and `previous` links, the records."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def path(self, version: str) -> Path:
        if not valid_version(version):
            raise LauncherError(f"not a release name: {version!r}")
        return self.root / version

    def python(self, version: str) -> Path:
        return self.path(version) / "venv" / "bin" / "python"

    def complete(self, version: str | None) -> bool:
        """Installed to the end: release.json is written last, and the interpreter is there."""
        if version is None or not valid_version(version):
            return False
        return (self.path(version) / COMPLETE).is_file() and self.python(version).exists()

    def releases(self) -> list[str]:
        """Complete releases, oldest install first."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                if entry.is_dir() and not entry.is_symlink() and self.complete(entry.name):
                    found.append((entry.joinpath(COMPLETE).stat().st_mtime, entry.name))
        return [name for _, name in sorted(found)]

    def link(self, name: str) -> str | None:
        """The release a link names, or None (missing, or not naming a release)."""
        try:
            target = os.readlink(self.root / name)
        except (FileNotFoundError, OSError):
            return None
        return target if valid_version(target) else None

    def point(self, name: str, version: str) -> None:
        """Make the link `name` name `version`, atomically (rename over it), durably."""
        self.path(version)  # validates
        if self.link(name) == version:
            return
        tmp = self.root / f".{name}.tmp-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(version, tmp)
        os.replace(tmp, self.root / name)
        fsync_dir(self.root)

    def read(self, name: str) -> dict[str, Any] | None:
        path = self.root / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise CorruptRecordError(f"{path} is not JSON") from None
        if not isinstance(data, dict):
            raise CorruptRecordError(f"{path} is not a JSON object")
        return data

    def write(self, name: str, data: Mapping[str, Any]) -> None:
        write_atomically(self.root / name, json.dumps(data, indent=1, sort_keys=True).encode())

    def remove(self, name: str) -> None:
        try:
            (self.root / name).unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.root)

    def trial(self) -> Trial | None:
        data = self.read(TRIAL)
        return None if data is None else Trial.from_json(data)

    def save_trial(self, trial: Trial) -> None:
        self.write(TRIAL, trial.to_json())

    def outcome(self) -> dict[str, Any] | None:
        try:
            return self.read(OUTCOME)
        except (CorruptRecordError, OSError):  # damaged, or a read error of the card
            return None  # only a report: never a reason not to start

    # -- the three changes (module docstring), each resumable -----------------------------

    def begin_trial(self, trial: Trial) -> None:
        """Switch to `trial.version`: previous -> the running release, trial.json, current."""
        if not self.complete(trial.version):
            raise LauncherError(f"release {trial.version} is not completely installed")
        self.point(PREVIOUS, trial.previous)
        self.save_trial(trial)
        self.point(CURRENT, trial.version)

    def confirm(self, trial: Trial) -> None:
        """The trial release came online: keep it; `previous` stays as the fallback."""
        self.write(OUTCOME, outcome(trial, "confirmed", None, "came online within its trial"))
        self.remove(TRIAL)

    def roll_back(self, trial: Trial, code: str, reason: str) -> None:
        """Back to `trial.previous`, with the data and config it had at the switch."""
        say(f"rolling back from {trial.version} to {trial.previous}: {reason}")
        self.write(OUTCOME, outcome(trial, "rolled_back", code, reason))
        self._finish_roll_back(trial)

    def _finish_roll_back(self, trial: Trial) -> None:
        if trial.config:
            restore_config(trial.config)
        self.point(CURRENT, trial.previous)
        self.remove(TRIAL)

    # -- deciding at start -----------------------------------------------------------------

    def settle(self) -> Trial | None:
        """Finish or undo whatever a power cut interrupted; return the trial to attempt now,
        if one is on (attempts not used up, no failure recorded), else None."""
        try:
            trial = self.trial()
        except (CorruptRecordError, OSError) as exc:  # OSError: the card's read error (EIO)
            self._unreadable_trial(str(exc))
            return None
        if trial is None:
            return None
        done = self.outcome()
        if done is not None and done.get("trial") == trial.id:
            if done.get("result") == "rolled_back":
                self._finish_roll_back(trial)
            else:
                self.remove(TRIAL)
            return None
        current = self.link(CURRENT)
        if current != trial.version:
            say(f"the switch to {trial.version} did not finish: staying on {current}")
            self.remove(TRIAL)
            return None
        if not self.complete(trial.version):
            self.roll_back(
                trial, "incomplete", f"release {trial.version} is not completely installed"
            )
            return None
        if trial.failure:
            self.roll_back(trial, trial.failure_code or "failed", trial.failure)
            return None
        if counted_attempts(trial) >= trial.max_attempts:
            self.roll_back(trial, *describe_end(trial))
            return None
        return trial

    def _unreadable_trial(self, why: str) -> None:
        current, previous = self.link(CURRENT), self.link(PREVIOUS)
        say(f"{why}: the trial cannot be judged")
        if previous and previous != current and self.complete(previous):
            self.write(
                OUTCOME,
                {
                    "v": FORMAT,
                    "trial": None,
                    "version": current,
                    "previous": previous,
                    "result": "rolled_back",
                    "code": "unreadable_trial",
                    "reason": f"the trial record was unreadable ({why})",
                    "at": now_ms(),
                },
            )
            self.point(CURRENT, previous)
        self.remove(TRIAL)

    def choose(self) -> tuple[str, Trial | None]:
        """The release to start and, when it is on trial, its trial (attempt counted)."""
        clear_left(self.root, r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
        trial = self.settle()
        if trial is not None:
            trial.attempts += 1
            trial.attempt_started = now_ms()
            trial.attempt_monotonic = time.monotonic()
            trial.reached = {}
            self.save_trial(trial)  # counted before the exec: a crash cannot loop for ever
            return trial.version, trial
        current = self.link(CURRENT)
        if self.complete(current):
            assert current is not None
            return current, None
        failed = self._rolled_back_from()
        fallbacks = [n for n in (self.link(PREVIOUS), *reversed(self.releases())) if n != failed]
        for name in (*fallbacks, failed):  # the release a rollback left: only if nothing else
            if self.complete(name):
                assert name is not None
                say(f"`current` ({current}) is not a complete release: starting {name}")
                self.point(CURRENT, name)
                return name, None
        raise LauncherError(
            f"no complete release in {self.root}: run install.sh again (it installs one)"
        )

    def choose_unwritten(self) -> str:
        """The release to start when `choose` could not write (a full card, or one the
        kernel left read-only): the node must run, on a release that worked, with nothing
        written. A trial on is neither counted nor judged (its release could crash at
        every start, uncounted): its previous release runs, and the trial goes on at a
        start that can write; its release runs only when no other is left, as one rolled
        back from. A confirmed trial whose record could not be removed runs."""
        current, previous = self.link(CURRENT), self.link(PREVIOUS)
        failed = self._rolled_back_from()
        first: list[str | None] = [current]
        last: list[str | None] = [failed]
        try:
            trial = self.trial()
        except (CorruptRecordError, OSError):  # not judged: the previous first, as at a start
            if previous != current:  # else a switch cut before `current`: it worked
                first, last = [previous], [current, failed]
        else:
            if trial is not None and current == trial.version:
                done = self.outcome() or {}
                kept = done.get("trial") == trial.id and done.get("result") == "confirmed"
                if not kept:
                    first, last = [trial.previous], [current, failed]
        last = [n for n in last if n not in first]  # what ran before stays first
        names = [*first, previous, *reversed(self.releases())]
        for name in [n for n in names if n not in last] + last:
            if name is not None and self.complete(name):
                return name
        raise LauncherError(
            f"no complete release in {self.root}: run install.sh again (it installs one)"
        )

    def _rolled_back_from(self) -> str | None:
        """The release the last trial rolled back from: when the release it went back to
        has gone (deleted, a damaged card), the fallback is any other complete release
        first, not the newest install, which is the very release that failed."""
        done = self.outcome()
        if done is None or done.get("result") != "rolled_back":
            return None
        version = done.get("version")
        return version if valid_version(version) else None

    def record_stop(self, env: Mapping[str, str]) -> None:
        """ExecStopPost: how an attempt of the trial release ended; roll back on a failure."""
        try:
            trial = self.trial()
        except CorruptRecordError:
            return  # the next start deals with it
        if trial is None or trial.attempts == 0 or self.link(CURRENT) != trial.version:
            return  # not on trial, or the release that switched to the trial stopping
        end = {
            "result": env.get("SERVICE_RESULT", ""),
            "code": env.get("EXIT_CODE", ""),
            "status": env.get("EXIT_STATUS", ""),
            "attempt": trial.attempts,
            "at": now_ms(),
        }
        trial.exits.append(end)
        failure = (
            (trial.failure_code or "failed", trial.failure)
            if trial.failure
            else failure_of(end, trial)
        )
        self.save_trial(trial)
        if failure:
            self.roll_back(trial, *failure)

    def status(self) -> dict[str, Any]:
        try:
            trial: Any = self.trial()
            trial = trial.to_json() if trial else None
        except CorruptRecordError as exc:
            trial = {"unreadable": str(exc)}
        return {
            "current": self.link(CURRENT),
            "previous": self.link(PREVIOUS),
            "releases": self.releases(),
            "trial": trial,
            "outcome": self.outcome(),
        }


def outcome(trial: Trial, result: str, code: str | None, reason: str) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "trial": trial.id,
        "update_id": trial.update_id,
        "version": trial.version,
        "previous": trial.previous,
        "result": result,
        "code": code,
        "reason": reason,
        "attempts": trial.attempts,
        "at": now_ms(),
    }


def restore_config(config: Mapping[str, str]) -> None:
    """The config as it was at the switch, when the trial changed it (`config.set`): the
    changed one is kept beside it as `.rolled-back`."""
    path, copy = Path(config["path"]), Path(config["copy"])
    try:
        now = sha256_file(path)
    except FileNotFoundError:
        now = ""
    if now == config.get("sha256") or not copy.exists():
        return
    if sha256_file(copy) != config.get("sha256"):  # emptied or cut short by a power cut
        say(f"{copy} is not the config of the switch: {path} kept as the trial left it")
        return
    clear_left(path.parent, re.escape(path.name) + r"(?:\.rolled-back)?")
    if now:
        write_atomically(path.with_name(path.name + ".rolled-back"), path.read_bytes(), 0o600)
    write_atomically(path, copy.read_bytes(), 0o640)
    with contextlib.suppress(FileNotFoundError):  # a config.set probation of the trial: over
        path.with_name(path.name + ".pending").unlink()
    say(f"{path}: put back as it was at the switch (the changed one: {path.name}.rolled-back)")


# -- reasons --------------------------------------------------------------------------------

CONFIG_EXITS = ("78", "2")
"""`edged run`'s exit statuses for a config it cannot use (78, EX_CONFIG; 2 before that)."""


def counted_attempts(trial: Trial) -> int:
    """The starts that count against the trial: all of them but those that ended in a clean
    stop the release was asked for (`asked_stops`), at most `MAX_ASKED_STOPS` of those."""
    asked = {
        e.get("attempt")
        for e in trial.exits
        if clean_stop(e) and e.get("attempt") in trial.asked_stops
    }
    return trial.attempts - min(len(asked), MAX_ASKED_STOPS)


def failure_of(end: Mapping[str, Any], trial: Trial) -> tuple[str, str] | None:
    """(code, reason) of an attempt that ended this way, or None when it was a clean stop."""
    return None if clean_stop(end) else describe_end(trial, end)


def clean_stop(end: Mapping[str, Any]) -> bool:
    """An attempt that ended as asked (a shutdown, `systemctl stop` or `restart`)."""
    result, code, status = end.get("result"), end.get("code"), str(end.get("status", ""))
    return result == "success" and code == "exited" and status in ("0", "")


def describe_end(trial: Trial, end: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(code, reason for a person) from how the last attempt ended and what it reached."""
    if end is None:
        end = trial.exits[-1] if trial.exits else None
    if end is not None and end.get("attempt", trial.attempts) != trial.attempts:
        end = None  # that exit belongs to an earlier attempt
    reached = [m for m in MILESTONES if m in trial.reached]
    got = f" (reached: {', '.join(reached)})" if reached else " (reached nothing)"
    if end is None:
        ended = {e.get("attempt") for e in trial.exits if type(e.get("attempt")) is int}
        unended = sum(1 for n in range(1, trial.attempts + 1) if n not in ended)
        return "no_exit", (
            f"started {trial.attempts} time(s) without confirming, {unended} of them without a "
            f"recorded exit (power cut, or killed with the service manager)" + got
        )
    result, code, status = end.get("result"), end.get("code"), str(end.get("status", ""))
    if result == "watchdog":
        return "hung", "hung: it stopped pinging the watchdog and systemd killed it" + got
    if result == "timeout":
        return "start_timeout", "did not start in time (TimeoutStartSec)" + got
    if clean_stop(end):
        stops = sum(1 for e in trial.exits if isinstance(e, dict) and clean_stop(e))
        return "stopped", (
            f"stopped cleanly in {stops} of its {trial.attempts} starts on trial (systemctl "
            "stop or restart, a shutdown) without confirming" + got
        )
    if code in ("killed", "dumped") and status in ("ALRM", "14"):
        return "not_online", f"did not come online within {trial.trial_s:g} s" + got
    if code == "exited" and status in CONFIG_EXITS and "running" not in reached:
        return "config_rejected", f"rejected the running config (exit status {status})"
    if code == "exited" and not reached:
        return "crashed", f"crashed at start (exit status {status}): see journalctl -u edged"
    if code == "exited":
        return "crashed", f"exited with status {status}" + got
    return "killed", f"killed by signal {status}" + got


# -- main -----------------------------------------------------------------------------------


def optimize_flags(level: int | None = None) -> list[str]:
    """The interpreter flags that give the release this optimisation level (`-O`, `-OO`):
    by default this interpreter's own. systemd/edged.service runs the launcher with `-OO`,
    and the release must run with it too: the flag does not survive an exec by itself."""
    level = sys.flags.optimize if level is None else level
    return ["-" + "O" * level] if level > 0 else []


def launch_env(tree: ReleaseTree, version: str, trial: Trial | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("EDGED_TRIAL", None)
    env["EDGED_RELEASES"] = str(tree.root)
    env["EDGED_RELEASE"] = version
    env["EDGED_LAUNCHER"] = str(Path(__file__).resolve())
    if trial is not None:
        env["EDGED_TRIAL"] = trial.id
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edged-launcher",
        description="Start the edged release the release tree says, or roll back a failed trial.",
    )
    parser.add_argument("--releases", type=Path, default=Path(DEFAULT_RELEASES))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stopped", action="store_true", help="ExecStopPost: record the exit")
    mode.add_argument("--status", action="store_true", help="print the tree as JSON")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to `python -m edged`")
    ns = parser.parse_args(argv)
    tree = ReleaseTree(ns.releases)
    try:
        if ns.status:
            print(json.dumps(tree.status(), indent=2, sort_keys=True))
            return 0
        if ns.stopped:
            tree.record_stop(os.environ)
            return 0
        try:
            version, trial = tree.choose()
        except OSError as exc:  # the card is full or read-only: run, writing nothing
            version, trial = tree.choose_unwritten(), None
            say(f"cannot write to {tree.root} ({exc}): starting {version}, nothing recorded")
        except LauncherError:
            raise
        except Exception as exc:  # a record in a shape no check here foresaw: this runs at
            # every start, and raising would leave the node with no release running
            version, trial = tree.choose_unwritten(), None
            say(f"cannot judge {tree.root} ({type(exc).__name__}: {exc}): starting {version}")
    except (LauncherError, OSError) as exc:
        say(str(exc))
        return EX_SOFTWARE
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    python = tree.python(version)
    argv_out = [str(python), *optimize_flags(), "-P", "-m", "edged", *args]
    if trial is not None:
        asked = trial.attempts - counted_attempts(trial)
        stops = f", {asked} asked stop(s) not counted" if asked > 0 else ""
        say(
            f"starting {version} on trial (attempt {counted_attempts(trial)} of "
            f"{trial.max_attempts}{stops})"
        )
        # survives exec; the release cancels it (bounded: alarm() takes an unsigned int)
        signal.alarm(min(max(1, int(trial.kill_after_s)), MAX_ALARM_S))
    try:
        os.execve(python, argv_out, launch_env(tree, version, trial))
    except OSError as exc:
        signal.alarm(0)
        if trial is None:
            say(f"cannot start {version}: {exc}")
            return EX_SOFTWARE
        tree.roll_back(trial, "cannot_start", f"cannot start: {exc}")
        return main(argv)
    return EX_SOFTWARE  # pragma: no cover: execve does not return


if __name__ == "__main__":
    sys.exit(main())

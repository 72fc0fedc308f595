"""`edged wifi apply`: make the system hold what the plan says, and say what changed.

Idempotent: a file whose content and mode are already right is left alone, and a step runs
only for a file that changed; a second apply changes nothing and runs nothing. Every new
content is checked by its tool first (edged.wifi.validate): a refused file stops the apply
before anything is written. `dry_run` writes and runs nothing; `root` writes under another
directory (an SD card image being prepared) and runs nothing either.
"""

import difflib
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.files import replace_atomically
from edged.wifi.plan import Managed, Plan, Step
from edged.wifi.validate import (
    Verdict,
    check_dnsmasq,
    check_hostapd,
    check_keyfile,
    check_nft,
)

SECRET_LINE = re.compile(r"^(psk|wpa_passphrase|sae_password)=.*$", re.M)
Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: not installed")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]}: no answer in 60 s")


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    ok: bool = True
    changed: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)


def _validate(m: Managed, content: str) -> Verdict | None:
    if m.tool in ("nft", "nft-optional"):
        return check_nft(content)
    if m.tool == "dnsmasq":
        return check_dnsmasq(content)
    if m.tool == "nm-dnsmasq":
        return check_dnsmasq(content, networkmanager=True)
    if m.tool == "hostapd":
        return check_hostapd(content)
    if m.tool == "nmcli":
        return check_keyfile(content)
    return None


def _masked(text: str) -> str:
    return SECRET_LINE.sub(lambda mt: f"{mt.group(1)}=********", text)


def _diff(m: Managed, old: str, new: str) -> list[str]:
    a, b = (_masked(old), _masked(new)) if m.secret else (old, new)
    if a == b:
        return ["    (only the passphrase changed)"] if old != new else []
    lines = difflib.unified_diff(
        a.splitlines(), b.splitlines(), str(m.path), str(m.path), n=1, lineterm=""
    )
    return [f"    {line}" for line in list(lines)[2:]]


def _read(path: Path) -> tuple[str | None, int | None]:
    try:
        return path.read_text(encoding="utf-8"), path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return None, None
    except UnicodeDecodeError:
        return "", path.stat().st_mode & 0o7777  # not ours any more: rewritten


def write_atomic(path: Path, content: str, mode: int) -> None:
    """A reader (NetworkManager, systemd, a reboot) sees the old file or the new, never half;
    a secret file is never readable by others, not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    replace_atomically(path, content, mode=mode, sync=True)


def apply_plan(
    plan: Plan,
    *,
    root: Path | None = None,
    dry_run: bool = False,
    run: Runner = run_command,
) -> Outcome:
    out = Outcome()

    def where(p: Path) -> Path:
        return root / p.relative_to("/") if root is not None else p

    would = "would " if dry_run else ""
    steps: set[Step] = set()
    todo: list[tuple[Managed, str | None]] = []
    kept = 0
    for m in plan.files:
        old, mode = _read(where(m.path))
        if m.content is None:
            if old is None:
                continue
            out.say(f"{would}remove {m.path}")
            todo.append((m, None))
            steps.update(m.on_remove)
            continue
        if old == m.content and mode == m.mode:
            kept += 1
            continue
        if old is None:
            out.say(f"{would}create {m.path}")
        elif old == m.content:
            out.say(f"{would}set mode {m.mode:o} on {m.path} (was {mode:o})")
        else:
            out.say(f"{would}change {m.path}")
            out.lines += _diff(m, old, m.content)
        todo.append((m, m.content))
        if old != m.content:
            steps.update(m.on_change)
    if kept:
        out.say(f"unchanged: {kept} file(s)")
    if not todo:
        out.say("nothing to do: the system already matches the config")
        return out

    refused = False
    for m, content in todo:
        if content is None or m.tool is None:
            continue
        verdict = _validate(m, content)
        if verdict is None:
            continue
        if verdict.ok is False and m.tool == "nft-optional":
            out.say(f"{verdict.tool} refuses {m.path} (written all the same):")
            out.lines += [f"    {line}" for line in verdict.message.splitlines()[:20]]
        elif verdict.ok is False:
            refused = True
            out.say(f"{verdict.tool} refuses {m.path}:")
            out.lines += [f"    {line}" for line in verdict.message.splitlines()[:20]]
        elif verdict.ok is None:
            out.say(f"not checked: {verdict.message}")
    if refused:
        out.ok = False
        out.say("nothing written: fix the config (or report a bug in edged) and apply again")
        return out

    ordered = sorted(steps, key=lambda s: s.order)
    if dry_run or root is not None:
        why = "dry run" if dry_run else f"--root {root}: not this system"
        if not dry_run:
            _write(todo, where)
            out.changed = len(todo)
        for step in ordered:
            out.say(
                f"{'would run' if dry_run else 'not run'} ({why}): "
                f"{' '.join(step.argv(plan.values))}"
            )
        return out

    for step in (s for s in ordered if s.before_files):
        _step(out, step, plan, run)
    _write(todo, where)
    out.changed = len(todo)
    for step in (s for s in ordered if not s.before_files):
        _step(out, step, plan, run)
    return out


def _write(todo: list[tuple[Managed, str | None]], where: Callable[[Path], Path]) -> None:
    for m, content in todo:
        target = where(m.path)
        if content is None:
            target.unlink(missing_ok=True)
        else:
            write_atomic(target, content, m.mode)


def _step(out: Outcome, step: Step, plan: Plan, run: Runner) -> None:
    argv = step.argv(plan.values)
    done = run(argv)
    if done.returncode == 0:
        out.say(f"ran: {' '.join(argv)}")
        return
    why = (done.stderr or done.stdout).strip().splitlines()
    detail = why[-1] if why else f"exit {done.returncode}"
    if step.may_fail:
        out.say(f"ran: {' '.join(argv)} (failed, {step.if_failed}: {detail})")
    else:
        out.ok = False
        out.say(f"FAILED: {' '.join(argv)}: {detail}")

"""Run every check, independent ones concurrently, the whole bounded by the timeout."""

import asyncio
import grp
import os
import pwd
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.doctor import broker, clock, config, devices, kiosk, running, storage, wifi
from edged.doctor.check import Check, Status, fail, ok, skip

GRACE_S = devices.CLEANUP_S + 1.0
"""Beyond --timeout: drivers closing their devices, sockets closing."""

Job = tuple[str, str, Coroutine[Any, Any, list[Check]]]
"""(section, name, the check): the name is reported if it never finishes."""


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    config_valid: bool
    elapsed_s: float

    @property
    def exit_code(self) -> int:
        """2: the config cannot be used (as check-config); 1: something failed; else 0."""
        if not self.config_valid:
            return 2
        return 1 if any(c.status is Status.FAIL for c in self.checks) else 0


async def run_checks(config_path: Path, wait_s: float) -> Report:
    """Every line of the report, in a fixed order whatever finishes first.

    `wait_s` bounds each check that waits on something (a device, the broker); they run
    concurrently, so the whole report takes about that long plus a grace for cleanup."""
    started = time.monotonic()
    loaded = config.load(config_path)
    held_by = running.daemons_using(config_path) if loaded.usable else []
    checks = [*loaded.checks, user_check()]
    if held_by:
        pids = ", ".join(map(str, held_by))
        checks.append(
            ok("system", "edged", f"running with this config (pid {pids}): devices not probed")
        )
    has_gps = any(d.driver.startswith("gps.") and d.enabled for d in loaded.drivers)
    checks.append(clock.check_clock(loaded.clock, has_gps))
    if loaded.outbox is not None:
        checks.extend(storage.check_outbox(loaded.outbox, config_path))
    elif loaded.usable:
        checks.append(skip("storage", "outbox", "not checked: [outbox] is invalid (see config)"))
    checks.extend(kiosk.check_kiosk(loaded.kiosk, held_by))
    checks.extend(kiosk.check_emoji_font(loaded.kiosk))
    checks.extend(kiosk.check_browser_policy(loaded.kiosk))

    jobs: list[Job] = [
        ("drivers", d.name, devices.check_driver(d, loaded.base_dir, wait_s, held_by))
        for d in loaded.drivers
    ]
    if loaded.broker is not None:
        jobs.append(
            ("broker", "broker", broker.check_broker(loaded.broker, loaded.client_id, wait_s))
        )
    elif loaded.usable:
        checks.append(skip("broker", "broker", "not checked: [broker] is invalid (see config)"))
    if loaded.wifi is not None and loaded.wifi.enabled:
        jobs.append(("wifi", "wifi", wifi.check_wifi(loaded.wifi)))
    checks.extend(await _bounded(jobs, wait_s + GRACE_S))
    return Report(checks, loaded.valid, time.monotonic() - started)


async def _bounded(jobs: list[Job], within_s: float) -> list[Check]:
    """Run the jobs concurrently; one still running after `within_s` becomes a failure."""
    if not jobs:
        return []
    tasks = [asyncio.create_task(coro, name=f"doctor.{name}") for _, name, coro in jobs]
    await asyncio.wait(tasks, timeout=within_s)
    out: list[Check] = []
    for (section, name, _), task in zip(jobs, tasks, strict=True):
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
            out.append(
                fail(
                    section,
                    name,
                    f"did not finish within {within_s:g} s",
                    "something hangs (a device or the network): `edged -v doctor` shows where",
                )
            )
        elif (exc := task.exception()) is not None:
            out.append(
                fail(
                    section,
                    name,
                    f"the check itself crashed: {exc!r}",
                    "a bug in edged doctor: report it with the output of `edged -v doctor`",
                )
            )
        else:
            out.extend(task.result())
    return out


def user_check() -> Check:
    """Who the checks ran as: device and file permissions are this user's."""
    uid = os.geteuid()
    if uid == 0:
        return ok(
            "system",
            "user",
            "root: every permission check passes for root; to check the daemon's user, "
            "run `sudo -u edged edged doctor`",
        )
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    groups = sorted({_group(g) for g in os.getgroups()})
    return ok("system", "user", f"{name} (groups: {', '.join(groups) or 'none'})")


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)

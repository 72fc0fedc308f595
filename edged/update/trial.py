"""The new release on trial judges itself: online in time, then confirmed; else it gives up.

Online means what the issue of the node's day needs: connected to the broker (its birth
sent), every configured driver running but those failing in the release before it at the
switch (`Trial.drivers_before`: a reader unplugged then is not the new release's fault), and
the outbox readable; and all three for
`stable_s` in a row, so a release that connects and falls over two seconds later is not
kept. Each first time is written to trial.json (`reached`), which is how a rollback's reason
can say "never reached the broker". Past the trial's time the release writes why it failed
and exits: systemd restarts, the launcher rolls back. If this code itself is what is broken,
the launcher's alarm (`kill_after_s`) and systemd's watchdog end it anyway.
"""

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.logs import KEEP
from edged.release.launcher import ReleaseTree, Trial, now_ms

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75
"""`edged run`'s exit status when its trial failed: not 78 (systemd would not restart it)."""


@dataclass
class Checks:
    connected: Callable[[], bool]
    drivers: Callable[[], list[tuple[str, str]]]  # (name, state) of each configured driver
    outbox_readable: Callable[[], Awaitable[bool]]
    at_switch: Callable[[], dict[str, str]] | None = None
    """Each configured driver's state as the switch notes it (`Trial.drivers_before`);
    None: `drivers`' states as they are."""


FAILING = ("backoff", "failed")
"""Driver states noted at the switch that the trial does not wait for: the device missing
(its retries), or the driver refusing its config. Any other (`running`, `starting`: a slow
open, a driver coming back after a failure) ran, or was about to, in the release before."""


def required(trial: Trial, drivers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The drivers the trial waits for: those not failing at the switch, when it noted them
    (one it did not note was not configured then: nothing says it can run)."""
    before = trial.drivers_before
    if before is None:
        return drivers
    return [(n, state) for n, state in drivers if n in before and before[n] not in FAILING]


def missing(connected: bool, drivers: list[tuple[str, str]], outbox_ok: bool) -> list[str]:
    out = [] if connected else ["not connected to the broker"]
    out += [f"driver {name} {state}" for name, state in drivers if state != "running"]
    return out + ([] if outbox_ok else ["the outbox cannot be read"])


def record_failure(tree: ReleaseTree, trial_id: str, code: str, reason: str) -> None:
    """Write why this attempt failed, so the next start rolls back with that reason."""
    trial = tree.trial()
    if trial is None or trial.id != trial_id:
        return
    trial.failure, trial.failure_code = reason, code
    tree.save_trial(trial)


class TrialWatch:
    def __init__(
        self,
        tree: ReleaseTree,
        trial: Trial,
        checks: Checks,
        *,
        stable_s: float,
        on_confirmed: Callable[[Trial], Awaitable[None]],
        on_failed: Callable[[str], None],
        poll_s: float = 0.5,
    ) -> None:
        self.tree = tree
        self.trial = trial
        self.checks = checks
        self.stable_s = stable_s
        self.on_confirmed = on_confirmed
        self.on_failed = on_failed
        self.poll_s = poll_s
        self.done = False

    @property
    def deadline_s(self) -> float:
        """Seconds left of this attempt's time, on the monotonic clock the launcher noted
        when it started the attempt. A trial.json from a launcher that did not note it has
        only the wall clock, which may have jumped since (no real-time clock on a Pi: NTP
        sets it a few seconds into the boot): an elapsed time below zero or beyond the
        launcher's alarm cannot be true, and counts as none (the alarm still bounds it)."""
        trial = self.trial
        if trial.attempt_monotonic > 0:
            elapsed = time.monotonic() - trial.attempt_monotonic
        else:
            elapsed = (now_ms() - (trial.attempt_started or trial.started)) / 1000
        if not 0 <= elapsed <= trial.kill_after_s:
            elapsed = 0.0
        return max(0.0, trial.trial_s - elapsed)

    def _reach(self, milestone: str) -> None:
        if milestone not in self.trial.reached:
            self.trial.reached[milestone] = now_ms()
            self.tree.save_trial(self.trial)
            log.info("trial of %s: reached %s", self.trial.version, milestone, extra=KEEP)

    async def run(self) -> None:
        self._reach("running")
        end = time.monotonic() + self.deadline_s
        ok_since: float | None = None
        while True:
            connected = self.checks.connected()
            drivers = required(self.trial, self.checks.drivers())
            try:
                outbox_ok = await self.checks.outbox_readable()
            except Exception:
                outbox_ok = False
            if connected:
                self._reach("broker")
            if all(state == "running" for _, state in drivers):
                self._reach("drivers")
            lacking = missing(connected, drivers, outbox_ok)
            now = time.monotonic()
            if not lacking:
                ok_since = now if ok_since is None else ok_since
                if now - ok_since >= self.stable_s:
                    await self._confirm()
                    return
            else:
                ok_since = None
            if now >= end:
                reason = f"did not come online within {self.trial.trial_s:g} s: " + "; ".join(
                    lacking or ["not online long enough"]
                )
                log.error("trial of %s failed: %s", self.trial.version, reason, extra=KEEP)
                record_failure(self.tree, self.trial.id, "not_online", reason)
                self.done = True
                self.on_failed(reason)
                return
            await asyncio.sleep(self.poll_s)

    async def _confirm(self) -> None:
        signal.alarm(0)  # the launcher's deadline: met
        self.tree.confirm(self.trial)
        self.done = True
        log.info("release %s confirmed: %s kept as the fallback", self.trial.version,
                 self.trial.previous, extra=KEEP)  # fmt: skip
        drivers = self.checks.drivers()
        waited = required(self.trial, drivers)
        idle = [f"{name} {state}" for name, state in drivers if (name, state) not in waited]
        if idle:
            log.warning("release %s confirmed without these drivers, failing in %s at the "
                        "switch or not configured then: %s", self.trial.version,
                        self.trial.previous, ", ".join(idle), extra=KEEP)  # fmt: skip
        await self.on_confirmed(self.trial)


def record_asked_stop() -> None:
    """`edged run` stopped by a stop signal: when this process is a release on trial, not yet
    confirmed, write that this attempt was asked to stop, so the launcher does not count it
    (a shutdown minutes after a switch made at the ignition's off is not the release's
    failure; `MAX_ASKED_STOPS` bounds it)."""
    trial_id, releases = os.environ.get("EDGED_TRIAL"), os.environ.get("EDGED_RELEASES")
    if not trial_id or not releases:
        return
    try:
        tree = ReleaseTree(releases)
        trial = tree.trial()
        if trial is None or trial.id != trial_id or trial.failure:
            return
        if trial.attempts not in trial.asked_stops:
            trial.asked_stops.append(trial.attempts)
            tree.save_trial(trial)
    except Exception as exc:  # the attempt then counts, as it did before: nothing worse
        log.error("cannot record that the trial was asked to stop: %s", exc)


def on_trial_failure(code: str, reason: str) -> bool:
    """`edged run` could not run (a config it rejects, a file it cannot open): when this
    process is a release on trial, write why (the launcher rolls back with that reason) and
    return True."""
    trial_id, releases = os.environ.get("EDGED_TRIAL"), os.environ.get("EDGED_RELEASES")
    if not trial_id or not releases:
        return False
    try:
        record_failure(ReleaseTree(releases), trial_id, code, reason[:500])
    except Exception as exc:  # reporting must not hide the failure itself
        log.error("cannot record the trial's failure: %s", exc)
    return True

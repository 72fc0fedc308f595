"""The update's state machine on the node, from `update.apply` to `confirmed` or
`rolled_back`, reported on the retained `update` topic at each step (docs/updates.md).

    update.apply ─▶ downloading ─▶ verifying ─▶ installing ─▶ staged ─▶ switching ─╮
                        (refused: failed + code, nothing changed)                     │
    the new release:  trial ─▶ confirmed                 restart (systemd, launcher) ◀╯
    the old release again:  rolled_back + reason   (the launcher went back by itself)

Every step is resumable: job.json says where the job is, the download continues from its
`.part`, an install cut short is done again, a switch that did not happen waits for the
next safe moment. Nothing of the running release changes before `switching`: a bundle that
is refused (signature, scope, hash, size, machine, data, config, space) leaves the node as
it was, minus the download.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.boot import boot_id
from core.logs import KEEP
from edged.commands.spec import CommandSpec
from edged.config.update import UpdateConfig
from edged.errors import CommandError
from edged.payloads import UpdateState, UpdateStatus
from edged.release.launcher import (
    OUTCOME,
    VERSION_NAME,
    LauncherError,
    ReleaseTree,
    Trial,
    sha256_file,
    valid_version,
    write_atomically,
)
from edged.release.schemas import SCHEMAS
from edged.update.job import Job, WorkDir
from edged.update.trial import EX_TEMPFAIL, Checks, TrialWatch
from edged.update.versions import release_key

if TYPE_CHECKING:  # a bundle's code loads on the first update.apply, not at every start
    from edged.release.bundle import Keys, VerifiedBundle

log = logging.getLogger(__name__)
T = TypeVar("T")

PROGRESS_EVERY_S = 2.0
INSTALL_FACTOR = 1.3
"""Installed size over the wheels' uncompressed content (bytecode, venv, RECORD files)."""
GUESS_FACTOR = 6
"""Space to keep for the install per byte of bundle, before its manifest says exactly."""
SLOW_CONNECTIONS = 3
"""Connections in a row that bring less than `[update] min_bytes_per_s` before the job fails
`download_failed`: a bad spot on the road is passed, a server that trickles is given up."""
MAX_SWITCHES = 3
"""Switches begun that did not happen before the job fails: a power cut mid-switch is tried
again, a switch that fails each time (a full disk) is not, node restart after restart."""
MAX_INSTALLS = 3
"""Verifications and installs begun in one boot that edged did not live through (killed: out
of memory in its cgroup, a crash) before the job fails: a start that resumes them would die
again, node restart after restart, doors and uplink down each time. A new boot starts the
count again: what ended the last one was the power (a vehicle's ignition), not the install."""
SHA256 = re.compile(r"[0-9a-f]{64}")
APPLY_KEYS = {"version", "url", "size", "sha256", "switch", "allow_downgrade"}


@dataclass
class Host:
    """What the manager uses of the node (wired in `edged.update.wiring`)."""

    publish: Callable[[UpdateStatus], "asyncio.Future[Any]"]
    keys: "Callable[[], Keys]"
    checks: Checks
    waiting_for: Callable[[], list[str]]
    stop: Callable[[int], None]
    """Stop the node; `edged run` then exits with this status."""
    config_path: Path | None
    data_file: Path
    """The SQLite file holding the `outbox` and `state` stores."""
    data_stamps: Callable[[], dict[str, tuple[int, int]]]
    ca_file: Path | None


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class UpdateManager:
    def __init__(
        self,
        host: Host,
        config: UpdateConfig,
        *,
        releases: Path | None,
        running: str,
        trial_id: str | None,
        python: Path,
    ) -> None:
        self.host = host
        self.config = config
        self.tree = ReleaseTree(releases) if releases is not None else None
        self.work = WorkDir(releases) if releases is not None else None
        self.running = running
        self.trial_id = trial_id
        self.python = python
        self.job: Job | None = None
        self.status = UpdateStatus(state="idle", running=running)
        self.switch_pending: Job | None = None
        self.drivers_at_switch: dict[str, str] | None = None
        self.watch: TrialWatch | None = None
        self._pipeline: asyncio.Task[None] | None = None
        self._cancel = threading.Event()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._loading: asyncio.Event | None = None
        """Set once `run` has read the job on disk and begun it: until then `update.apply`
        and `update.cancel` wait, or the job they save would be read back and begun a second
        time, and the job on disk would be neither replaced nor cancelled."""
        self._ended = False
        """`run` is over (the node stops): a command no longer starts or abandons a job."""
        self._marking: asyncio.Task[None] | None = None
        """The last trial's outcome marked reported once the outbox has stored it."""

    # -- the node's service life ----------------------------------------------------------

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("update.apply", self.command_apply, scope="update"),
            CommandSpec("update.status", self.command_status, scope="read"),
            CommandSpec("update.cancel", self.command_cancel, scope="update"),
        ]

    async def run(self) -> None:
        """Report how things stand, then carry on with whatever job is on disk. When the
        node stops, the pipeline stops with it (a download ends at its next chunk)."""
        if self.tree is None or self.work is None:
            return
        self._loading = asyncio.Event()
        try:
            await self._run()
        except OSError as exc:
            self._loading.set()  # the commands fail on the same disk, and say so
            # this task is one of the node's: raising would stop the doors and the uplink
            # too, and again at every start on the same disk
            log.error(
                "updates stopped: the release tree %s cannot be written (%s); the node runs "
                "on, updates resume once the disk is repaired and edged restarts",
                self.tree.root,
                exc,
            )
            await asyncio.Event().wait()
        finally:
            self._ended = True
            self._loading.set()  # a command waiting is answered now, not at the stop's end
            self._cancel.set()
            if self._pipeline is not None:
                self._pipeline.cancel()
            if self._marking is not None:
                self._marking.cancel()  # not stored yet: reported again at the next start

    async def _run(self) -> None:
        assert self.tree is not None and self.work is not None
        await self._sweep()
        if self.trial_id is not None:
            trial = self.tree.trial()
            if trial is not None and trial.id == self.trial_id and trial.version == self.running:
                self._loaded()  # update.apply is refused `busy` meanwhile
                await self._run_trial(trial)
                return
            self.trial_id = None  # confirmed before an in-process restart: a release like any
        await self._report_outcome()
        job = self.work.job()
        if job is not None:
            self.job = job
            if job.state == "switching":  # the switch did not happen (cut before `current`)
                self._switch_undone(job)
            elif (
                job.state in ("verifying", "installing")
                and job.installs >= MAX_INSTALLS
                and job.install_boot == boot_id()
            ):
                self._install_undone(job)
            if job.active and self.config.enabled:
                self._start(job)
            elif not job.active and job.state in ("failed", "confirmed", "rolled_back"):
                state: UpdateState = job.state  # type: ignore[assignment]
                self._publish(state, job, code=job.code, reason=job.reason)
        elif self.tree.outcome() is None:
            self._publish("idle")
        self._loaded()
        await asyncio.Event().wait()  # the pipeline runs as its own task

    def _loaded(self) -> None:
        if self._loading is not None:
            self._loading.set()

    async def _job_loaded(self) -> None:
        """Wait until the start has read the job on disk (`_loading`): a command the broker
        kept arrives as the node connects, while the start may still delete old releases."""
        if self._loading is not None:
            await self._loading.wait()
        if self._ended:  # the start never loaded the job, or the node stops: nothing begun
            raise CommandError("busy", "edged is stopping: send the command again once it is back")

    def _switch_undone(self, job: Job) -> None:
        """Staged again, to switch at the next moment; failed once MAX_SWITCHES did not
        happen (the bundle goes: what filled the disk may be what stopped the switch)."""
        assert self.work is not None
        job.switches += 1
        if job.switches < MAX_SWITCHES:
            job.state = "staged"
            log.warning(
                "the switch to release %s did not happen (%d of %d): staged again",
                job.version,
                job.switches,
                MAX_SWITCHES,
                extra=KEEP,
            )
        else:
            job.state, job.code = "failed", "install_failed"
            job.reason = (
                f"the switch to release {job.version} did not happen {job.switches} times "
                f"(the log of each start says why): staying on {self.running}"
            )
            log.error("update to %s refused: %s", job.version, job.reason, extra=KEEP)
            self.work.drop_files()
        self.work.save(job)

    def _install_undone(self, job: Job) -> None:
        """The job failed: edged stopped during its verification or install MAX_INSTALLS
        times in this boot (a clean stop is not counted); what is on disk of it goes."""
        assert self.work is not None
        job.state, job.code = "failed", "install_failed"
        job.reason = (
            f"edged stopped {job.installs} times while it verified or installed release "
            f"{job.version} (out of memory? the log of each start says): staying on "
            f"{self.running}; send update.apply again once the cause is found"
        )
        log.error("update to %s refused: %s", job.version, job.reason, extra=KEEP)
        self.work.drop_files()
        self.work.save(job)

    async def _sweep(self) -> None:
        """Remove releases that are neither current, previous, nor being installed (each
        in a worker thread: the loop keeps deciding taps)."""
        assert self.tree is not None and self.work is not None
        keep = {self.tree.link("current"), self.tree.link("previous"), self.running}
        job = self.work.job()
        if job is not None and job.active:
            keep.add(job.version)
        for entry in self.tree.root.iterdir():
            release = entry.is_dir() and not entry.is_symlink()
            if release and VERSION_NAME.fullmatch(entry.name) and entry.name not in keep:
                log.info("removing release %s (neither current nor previous)", entry.name)
                await self._remove(entry.name)

    async def _remove(self, version: str) -> None:
        """Delete a release that is not in use, off the loop; one in use is kept."""
        if self.tree is None:
            return
        from edged.update.install import remove_release_off_loop

        with contextlib.suppress(ValueError, LauncherError):
            await remove_release_off_loop(self.tree, version)

    async def _report_outcome(self) -> None:
        """Say once how the last trial ended (the launcher may have rolled it back)."""
        assert self.tree is not None and self.work is not None
        outcome = self.tree.outcome()
        if outcome is None or outcome.get("reported"):
            return
        result = outcome.get("result")
        version = str(outcome.get("version") or "")
        job = self.work.job()
        update_id = outcome.get("update_id")
        # a trial record the launcher could not read cannot name its update: the job that
        # switched to that release is the one (it would otherwise be taken for a switch cut
        # short, staged again, and the release just rolled back from switched to again)
        switched = job is not None and job.state in ("switching", "trial")
        same = job is not None and (
            job.id == update_id or (update_id is None and switched and job.version == version)
        )
        if same and job is not None:
            update_id = job.id
        state: UpdateState = "rolled_back" if result == "rolled_back" else "confirmed"
        code = outcome.get("code") if state == "rolled_back" else None
        reason = str(outcome.get("reason") or "")[:500] if state == "rolled_back" else None
        if job is not None and same:
            job.state, job.code, job.reason = state, code, reason
            self.work.save(job)
        stored = self.host.publish(
            UpdateStatus(
                state=state,
                running=self.running,
                id=str(update_id or "") or None,
                version=version or None,
                previous=self.tree.link("previous"),
                code=code,
                reason=reason,
            )
        )
        self.status = UpdateStatus(state=state, running=self.running, version=version or None)
        if state == "rolled_back":
            log.error("the update to %s was rolled back: %s", version, reason, extra=KEEP)
            if version and version != self.running:
                await self._remove(version)
        self.work.drop_trial_files()
        # marked once the outbox has it, without the start waiting (update.apply and
        # update.cancel wait for the start): a store that takes long holds up nothing
        self._marking = asyncio.create_task(self._mark_reported(stored, outcome))

    async def _mark_reported(self, stored: "asyncio.Future[Any]", outcome: dict[str, Any]) -> None:
        assert self.tree is not None
        with contextlib.suppress(Exception):
            await stored  # durable (or refused by a full disk: reported again next start)
            self.tree.write(OUTCOME, {**outcome, "reported": True})

    # -- commands ---------------------------------------------------------------------------

    async def command_apply(self, args: dict[str, Any]) -> dict[str, Any]:
        """`update.apply {version, url, size, sha256, switch?, allow_downgrade?}`."""
        if self.tree is None or self.work is None:
            raise CommandError(
                "not_supported",
                "this node was not started by the release launcher (edged-launcher): it "
                "cannot update itself; see systemd/README.md",
            )
        if not self.config.enabled:
            raise CommandError("disabled", "[update] enabled = false on this node")
        job = self._job_from(args)
        await self._job_loaded()
        if self.trial_id is not None or self.tree.trial() is not None:
            raise CommandError(
                "busy", f"release {self.running} is on trial: wait for its confirmation"
            )
        current = self.job
        if current is not None and current.active:
            if current.id == job.id or (
                current.sha256 == job.sha256 and current.version == job.version
            ):
                # the same bundle asked again: what the new command says of how to get it
                # (another url: the first one's server is gone) and when to switch (`now`
                # for a bus staged for `parked` that drives all day) is taken, not dropped;
                # a command that says nothing of the switch leaves the one asked before
                switch = job.switch if "switch" in args else current.switch
                if current.state != "switching" and (current.url, current.switch) != (
                    job.url,
                    switch,
                ):
                    current.url, current.switch = job.url, switch
                    self.work.save(current)
                    self._wake.set()
                return self._accepted(current)
            if current.state == "switching":
                raise CommandError("busy", f"switching to {current.version} now")
            await self._abandon(current, "replaced by a newer update.apply")
        self._check_space(job.size * (1 + GUESS_FACTOR))
        self.work.drop_files()
        self.job = job
        self.work.save(job)
        self._start(job)
        return self._accepted(job)

    def _job_from(self, args: dict[str, Any]) -> Job:
        unknown = set(args) - APPLY_KEYS
        if unknown:
            raise CommandError("bad_args", f"unknown arguments: {sorted(unknown)}")
        version, url, size, sha = (args.get(k) for k in ("version", "url", "size", "sha256"))
        if not isinstance(version, str) or not valid_version(version):  # never a link, a record
            raise CommandError("bad_args", "version: a release name such as 0.2.0")
        if not isinstance(url, str) or len(url) > 2000:
            raise CommandError("bad_args", "url: https://… of the bundle")
        from edged.update.download import check_url

        check_url(url)
        limit = self.config.max_bundle_mb * 1_000_000
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= limit:
            raise CommandError("bad_args", f"size: the bundle's size in bytes, 1 to {limit}")
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise CommandError("bad_args", "sha256: 64 lower-case hex digits")
        switch = args.get("switch", self.config.switch)
        if switch not in ("now", "parked"):
            raise CommandError("bad_args", 'switch: "now" or "parked"')
        downgrade = args.get("allow_downgrade", False)
        if not isinstance(downgrade, bool):
            raise CommandError("bad_args", "allow_downgrade: true or false")
        if version == self.running:
            raise CommandError("already_running", f"release {version} is running")
        if release_key(version) < release_key(self.running) and not downgrade:
            raise CommandError(
                "downgrade",
                f"{version} is older than the running {self.running}: say allow_downgrade",
            )
        return Job(
            id=uuid.uuid4().hex, version=version, url=url, size=size, sha256=sha, switch=switch
        )

    def _accepted(self, job: Job) -> dict[str, Any]:
        """The reply: `id` names this update on the `update` topic."""
        return {"accepted": True, "id": job.id, "version": job.version, "state": job.state,
                "running": self.running}  # fmt: skip

    async def command_status(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise CommandError("bad_args", "update.status takes no arguments")
        out: dict[str, Any] = self.status.to_json_dict()
        if self.tree is not None:
            tree = self.tree.status()
            out["releases"] = tree["releases"]
            out["current"] = tree["current"]
            out["previous"] = tree["previous"]
        return out

    async def command_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise CommandError("bad_args", "update.cancel takes no arguments")
        await self._job_loaded()
        job = self.job
        if job is None or not job.active:
            raise CommandError("no_update", "no update in progress")
        if job.state == "switching" or self.trial_id is not None:
            raise CommandError("busy", "too late: the switch is under way")
        await self._abandon(job, "cancelled by update.cancel")
        return {"cancelled": job.version}

    # -- the pipeline -----------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        self._cancel = threading.Event()
        self._pipeline = asyncio.create_task(self._carry_out(job), name="update.pipeline")

    async def _abandon(self, job: Job, why: str) -> None:
        self._cancel.set()
        if self._pipeline is not None:
            self._pipeline.cancel()
            try:
                await self._pipeline
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # ours, not the pipeline's: the node is stopping
            except Exception:  # the pipeline's own failure: it is abandoned anyway
                pass
        self._fail(job, "cancelled", why)
        await self._remove(job.version)  # installed, or half: not to be switched to now

    async def _carry_out(self, job: Job) -> None:
        from edged.update.download import Cancelled

        assert self.tree is not None and self.work is not None
        try:
            if job.state == "staged" and self.tree.complete(job.version):
                self._still_trusted(job)  # the config may have changed while the node was down
                self._set(job, "staged")  # installed before a restart
            else:
                await self._install(job)
            await self._wait_for_moment(job)
            self._still_trusted(job)  # ...or while the release waited for its moment
            from edged.update.install import check_release  # not at every start: 16 KB

            await check_release(self.tree.python(job.version), job.version, self.host.config_path)
            self._set(job, "switching")
            # what ran here, what was failing: the trial does not wait for those (update.trial)
            at_switch = self.host.checks.at_switch
            self.drivers_at_switch = at_switch() if at_switch else dict(self.host.checks.drivers())
            self.switch_pending = job
            log.info(
                "switching to release %s: edged stops, systemd starts it", job.version, extra=KEEP
            )
            self.host.stop(0)
        except (Cancelled, asyncio.CancelledError):
            raise  # abandoned (its caller removes it), or the node stops: resumed at start
        except Exception as exc:
            if isinstance(exc, CommandError):
                self._fail(job, exc.code, exc.message)
            else:
                log.exception("update to %s failed", job.version, extra=KEEP)
                self._fail(job, "internal", f"{type(exc).__name__}: {exc}")
            # one path for every failure: what the job wrote, whole or half, goes now (the
            # start's sweep would remove it only later); `current` and `previous` are kept
            await self._remove(job.version)

    async def _install(self, job: Job) -> None:
        """Download, verify, install: `staged` at the end, or a refusal on the way."""
        assert self.tree is not None and self.work is not None
        bundle_file = await self._download(job)
        boot = boot_id()
        if job.install_boot != boot:  # a new boot: the power ended the last ones
            job.installs, job.install_boot = 0, boot
        job.installs += 1  # durable before the work: a death in it is counted (MAX_INSTALLS)
        self._set(job, "verifying")
        try:
            await self._verify_and_install(job, bundle_file)
        except asyncio.CancelledError:  # the node stops cleanly: not a death of the install
            job.installs -= 1
            with contextlib.suppress(OSError):
                self.work.save(job)
            raise
        self.work.drop_files()
        self._set(job, "staged")

    async def _verify_and_install(self, job: Job, bundle_file: Path) -> None:
        from edged.release.bundle import verify_bundle
        from edged.release.platforms import this_machine
        from edged.update.install import install

        assert self.tree is not None and self.work is not None
        _crash_point("verifying")
        bundle = await asyncio.to_thread(
            verify_bundle, bundle_file, self.host.keys(), version=job.version,
            target=this_machine(),
        )  # fmt: skip
        job.kid = bundle.kid
        job.signed(bundle.raw_manifest, bundle.raw_signature)  # saved with `installing`
        self._check_data(bundle)
        self._check_space(
            int(bundle.manifest.unpacked_bytes * INSTALL_FACTOR)
            + sum(f.size for f in bundle.manifest.files)
        )
        self._set(job, "installing")
        await install(self.tree, bundle, self.python, self.host.config_path)

    def _still_trusted(self, job: Job) -> None:
        """The staged release's signature, checked again with the keys of the config in
        force: a key revoked (or stripped of `update`) since the bundle was verified, say
        after it leaked, must not get its release switched to. And the release on disk must
        be the one that manifest describes (release.json names its SHA-256)."""
        from edged.release.manifest import check_signature
        from edged.update.install import installed_from

        assert self.tree is not None
        head = job.signed_head()
        if head is None:
            raise CommandError(
                "bad_signature",
                f"the staged release {job.version} has no signed manifest on record to check "
                "with the keys in force (staged by an older edged): send update.apply again",
            )
        raw, sig = head
        try:
            check_signature(raw, sig, self.host.keys())
        except CommandError as exc:
            raise CommandError(
                exc.code,
                f"the staged release {job.version} is no longer trusted: {exc.message}. Its "
                f"key ({job.kid}) was removed from [[security.keys]], or lost the scope "
                "`update`, since the bundle was verified: the release is removed, not "
                "switched to; send update.apply with a bundle signed by a current update key",
            ) from None
        if not installed_from(self.tree, job.version, raw):
            raise CommandError(
                "bad_bundle",
                f"release {job.version} on disk is not the one verified for this update "
                "(its release.json names another manifest): send update.apply again",
            )

    async def _download(self, job: Job) -> Path:
        from edged.update.download import Dropped, TooSlow, Transfer, Unreachable, fetch

        assert self.work is not None
        final = self.work.bundle(job)
        if final.exists():
            return final
        self._set(job, "downloading")
        part = self.work.part(job)
        # the time the download took before a restart counts (job.json keeps it); the time
        # without any connection to the server (out of coverage: `Unreachable`) does not
        max_s = self.config.download_max_s
        spent = job.download_s  # counted up to `since`
        since: float | None = time.monotonic()  # counting since (None: out of coverage)
        transfer = Transfer(
            job.url, job.size, part, self.config.max_bytes_per_s, self.config.ca_file
            or self.host.ca_file, self.config.min_rate(), self.config.slow_s,
        )  # fmt: skip

        def taken() -> float:
            return spent + (time.monotonic() - since if since is not None else 0.0)

        pause = 1.0
        slow = 0  # connections in a row that were too slow
        resumed = part.exists() and part.stat().st_size > 0
        reporter = asyncio.create_task(self._report_progress(job), name="update.progress")
        try:
            while True:
                transfer.url = job.url  # update.apply may have given another since
                self._bytes = had = part.stat().st_size if part.exists() else 0
                if since is None:  # a connection is tried again: its time counts
                    since = time.monotonic()
                transfer.deadline = since + max(max_s - spent, 0.0)
                tried_at = time.monotonic()
                try:
                    await in_daemon_thread(fetch, transfer, self._progress, self._cancel)
                except Dropped as exc:
                    if isinstance(exc, Unreachable) and since is not None:  # out of coverage
                        spent, since = spent + tried_at - since, None
                    job.download_s = taken()
                    self.work.save(job)
                    if taken() >= max_s:
                        raise CommandError(
                            "download_failed",
                            f"the download took {job.download_s / 3600:.1f} h, longer than "
                            f"[update] download_max_s = {self.config.download_max_s:g} s "
                            f"(last: {exc}): check the file server and what is between, or "
                            "raise download_max_s, then send update.apply again",
                        ) from None
                    # a connection that brought a window's worth before it slowed down met a
                    # bad spot on the road, not a server that trickles: it starts the count
                    # again, and the pauses too (the server answers)
                    brought = (part.stat().st_size if part.exists() else 0) - had
                    progressed = brought >= transfer.min_bytes_per_s * transfer.slow_s
                    if progressed:
                        pause = 1.0
                    slow = (1 if progressed else slow + 1) if isinstance(exc, TooSlow) else 0
                    if slow >= SLOW_CONNECTIONS:
                        raise CommandError(
                            "download_failed",
                            f"{exc}, {slow} connections in a row: the file server (or what "
                            "is between) sends too slowly; check it, or lower [update] "
                            "min_bytes_per_s, then send update.apply again",
                        ) from None
                    resumed = True
                    log.warning("update download: %s; again in %.0f s", exc, pause)
                    # not past the deadline while counting; out of coverage, the whole pause
                    left = max(max_s - taken(), 0.0) if since is not None else pause
                    await asyncio.sleep(min(pause, left))
                    pause = min(pause * 2, self.config.retry_max_s)
                    continue
                digest = await asyncio.to_thread(sha256_file, part)
                if digest == job.sha256:
                    part.replace(final)
                    return final
                part.unlink()
                if resumed and job.downloads == 0:  # a power cut may have damaged a resumed part
                    job.downloads += 1
                    self.work.save(job)
                    log.warning("update download: SHA-256 differs after a resume: fetching again")
                    resumed = False
                    continue
                raise CommandError(
                    "hash_mismatch",
                    f"the downloaded bundle's SHA-256 is {digest}, update.apply said {job.sha256}",
                )
        except asyncio.CancelledError:  # the node stops: what it took counts after the start
            job.download_s = taken()
            with contextlib.suppress(OSError):
                self.work.save(job)
            raise
        finally:
            reporter.cancel()

    def _progress(self, have: int) -> None:
        self._bytes = have  # from the download thread: one int, read by the reporter

    async def _report_progress(self, job: Job) -> None:
        last, last_at = self._bytes, time.monotonic()
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            now, have = time.monotonic(), self._bytes
            rate = int((have - last) / max(now - last_at, 1e-3))
            last, last_at = have, now
            self._publish(
                "downloading", job, bytes=have, total=job.size,
                percent=int(100 * have / job.size), rate_bps=max(rate, 0),
            )  # fmt: skip

    def _check_space(self, need: int) -> None:
        assert self.tree is not None
        free = free_bytes(self.tree.root)
        floor = self.config.min_free_mb * 1_000_000
        if free - need < floor:
            raise CommandError(
                "no_space",
                f"{free / 1e6:.0f} MB free in {self.tree.root}; the update needs about "
                f"{need / 1e6:.0f} MB and [update] min_free_mb keeps {floor / 1e6:.0f} MB",
            )

    def _check_data(self, bundle: "VerifiedBundle") -> None:
        """Both ways (edged.release.schemas): the new release reads the data as it is on
        disk now, and this release will read what the new one writes, after a rollback."""
        on_disk = self.host.data_stamps()
        theirs = bundle.manifest.schemas
        new = bundle.manifest.version
        for store, ours in SCHEMAS.items():
            if store not in theirs:
                continue
            if store == "config":
                version, compat = ours.version, ours.compat
            else:
                version, compat = on_disk.get(store, (0, 0))
            if compat > theirs[store].version:  # as `open_stores` refuses it at its start
                raise CommandError(
                    "incompatible_data",
                    f"release {new} reads {store} data up to format {theirs[store].version}; "
                    f"this node's is format {version}, which needs a reader of format "
                    f"{compat} or newer: choose a release that reads it",
                )
            if version < theirs[store].reads_from:
                raise CommandError(
                    "incompatible_data",
                    f"release {new} reads {store} data from format {theirs[store].reads_from}; "
                    f"this node's is {version}: update through an intermediate release",
                )
            if theirs[store].compat > ours.version:
                raise CommandError(
                    "incompatible_data",
                    f"release {new} writes {store} data that this release ({self.running}, "
                    f"format {ours.version}) could not read after a rollback (it needs a "
                    f"reader of format {theirs[store].compat}): update through a release "
                    "that reads it first",
                )

    async def _wait_for_moment(self, job: Job) -> None:
        """Parked (`switch = "parked"`), and in either mode connected to the broker: the
        trial wants it within `trial_s`, so a switch made offline (the modem off with the
        ignition, a depot without coverage, the broker blocked on the path) would be
        rolled back whatever the release, and the update never kept."""
        reasons: list[str] | None = None
        while True:
            now = self.host.waiting_for() if job.switch == "parked" else []
            if not self.host.checks.connected():
                now = [*now, "not connected to the broker"]
            if not now:
                return
            if now != reasons:
                reasons = now
                self._publish("staged", job, waiting_for=now)
                log.info("release %s staged; switching once none is so: %s", job.version,
                         "; ".join(now), extra=KEEP)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()

    # -- the switch (after the node stopped) and the trial ------------------------------------

    def finish_switch(self) -> None:
        """Called by `edged run` once the node has stopped and its files are closed: copy
        what a rollback would need, then hand over to the launcher (switch: module doc)."""
        job = self.switch_pending
        assert job is not None and self.tree is not None and self.work is not None
        work = self.work
        work.drop_trial_files()
        config = None
        if self.host.config_path is not None and self.host.config_path.exists():
            data = self.host.config_path.read_bytes()
            # durable before trial.json names it: the switch is when the power goes
            write_atomically(work.config_copy, data, 0o600)
            config = {
                "path": str(self.host.config_path),
                "copy": str(work.config_copy),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        trial_s = self.config.trial_s
        trial = Trial(
            id=uuid.uuid4().hex,
            version=job.version,
            previous=self.running,
            trial_s=trial_s,
            kill_after_s=trial_s + max(15.0, trial_s / 4),
            max_attempts=self.config.max_attempts,
            update_id=job.id,
            config=config,
            drivers_before=self.drivers_at_switch,
        )
        self.tree.begin_trial(trial)
        _crash_point("after_switch")

    async def _run_trial(self, trial: Trial) -> None:
        assert self.tree is not None and self.work is not None
        job = self.work.job()
        if job is not None and job.id == trial.update_id:
            self.job = job
            job.state = "trial"
            self.work.save(job)
        self.watch = TrialWatch(
            self.tree, trial, self.host.checks, stable_s=self.config.stable_s,
            on_confirmed=self._confirmed, on_failed=lambda _: self.host.stop(EX_TEMPFAIL),
        )  # fmt: skip
        self.status = UpdateStatus(
            state="trial", running=self.running, id=trial.update_id, version=trial.version,
            previous=trial.previous, deadline_s=round(self.watch.deadline_s, 1),
        )  # fmt: skip
        self.host.publish(self.status)
        await self.watch.run()
        await asyncio.Event().wait()

    async def _confirmed(self, trial: Trial) -> None:
        assert self.tree is not None and self.work is not None
        job = self.job
        if job is not None:
            job.state = "confirmed"
            self.work.save(job)
        self.trial_id = None
        os.environ.pop("EDGED_TRIAL", None)  # a restart in this process is not on trial
        self.status = UpdateStatus(
            state="confirmed", running=self.running, id=trial.update_id, version=trial.version,
            previous=trial.previous,
        )  # fmt: skip
        stored = self.host.publish(self.status)
        self.work.drop_trial_files()
        await self._sweep()
        with contextlib.suppress(Exception):
            await stored
            outcome = self.tree.outcome()
            if outcome is not None and outcome.get("trial") == trial.id:
                self.tree.write(OUTCOME, {**outcome, "reported": True})

    # -- reporting ----------------------------------------------------------------------------

    def _set(self, job: Job, state: UpdateState) -> None:
        assert self.work is not None
        job.state = state
        job.code = job.reason = None
        self.work.save(job)
        self._publish(state, job)

    def _fail(self, job: Job, code: str, reason: str) -> None:
        assert self.work is not None
        log.error("update to %s refused: %s: %s", job.version, code, reason, extra=KEEP)
        job.state, job.code, job.reason = "failed", code, reason[:500]
        self.work.drop_files()  # first: on a full disk (no_space) they are the room to save in
        self.work.save(job)
        self._publish("failed", job, code=code, reason=reason[:500])

    def _publish(self, state: UpdateState, job: Job | None = None, **fields: Any) -> None:
        self.status = UpdateStatus(
            state=state,
            running=self.running,
            id=job.id if job else None,
            version=job.version if job else None,
            previous=self.tree.link("previous") if self.tree else None,
            **fields,
        )
        self.host.publish(self.status)


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a daemon thread: a download that a stalled server holds up must not
    keep edged from exiting when systemd stops it (the default executor would)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            error = exc
        # the loop may be gone (the node stopped or restarted meanwhile): nobody to tell
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="update.download", daemon=True).start()
    return await future


def _crash_point(name: str) -> None:
    """Die here, as a power cut would, when the tests ask (EDGED_TEST_CRASH_AT): the
    instants between two file operations cannot be hit from outside."""
    if os.environ.get("EDGED_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), 9)

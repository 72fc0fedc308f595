"""The update in progress, on disk, so a restart or a power cut resumes it where it was.

`<releases>/.update/` holds job.json (what `update.apply` asked and how far it got, and
once verified the bundle's signed manifest), the bundle being downloaded
(`<sha256>.part`, renamed `<sha256>.bundle` once its hash is right), the config as it was
at the switch and the data copies a rollback may need.
"""

import base64
import contextlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from edged.release.launcher import now_ms, write_atomically

log = logging.getLogger(__name__)

WORK = ".update"
JOB = "job.json"
ACTIVE = ("downloading", "verifying", "installing", "staged", "switching")
"""States in which a job still has work to do."""


@dataclass
class Job:
    id: str
    version: str
    url: str
    size: int
    sha256: str
    switch: str
    state: str = "downloading"
    code: str | None = None
    reason: str | None = None
    started: int = 0
    kid: str | None = None
    downloads: int = 0  # full restarts of the download after a hash mismatch
    switches: int = 0  # switches begun that did not happen (a cut, or a failure: see the log)
    installs: int = 0  # verifications and installs begun in the boot `install_boot`
    install_boot: str | None = None  # (one that kills edged is not redone for ever)
    download_s: float = 0.0  # time spent downloading, restarts included ([update] download_max_s)
    manifest: str | None = None  # base64 of the verified manifest.json and manifest.sig:
    signature: str | None = None  # checked again with the keys in force before the switch

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def signed(self, raw_manifest: bytes, raw_signature: bytes) -> None:
        self.manifest = base64.b64encode(raw_manifest).decode()
        self.signature = base64.b64encode(raw_signature).decode()

    def signed_head(self) -> tuple[bytes, bytes] | None:
        """manifest.json and manifest.sig of the bundle verified for this job; None if the
        job has none (not verified yet, or staged by an edged that did not keep them)."""
        if self.manifest is None or self.signature is None:
            return None
        try:
            return (
                base64.b64decode(self.manifest, validate=True),
                base64.b64decode(self.signature, validate=True),
            )
        except ValueError:  # binascii.Error: a job.json edited by hand
            return None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Job | None":
        names = {f.name for f in fields(cls)}
        try:
            job = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None
        ok = all(isinstance(getattr(job, k), str) for k in ("id", "version", "url", "sha256"))
        numbers = ("size", "downloads", "switches", "installs")
        counts = all(type(getattr(job, k)) is int for k in numbers)
        spent = type(job.download_s) in (int, float) and job.download_s >= 0
        texts = ("manifest", "signature", "install_boot")
        head = all(isinstance(getattr(job, k), str | None) for k in texts)
        return job if ok and counts and spent and head else None


class WorkDir:
    """`<releases>/.update`: the job and its files."""

    def __init__(self, releases: Path) -> None:
        self.path = releases / WORK

    def ensure(self) -> None:
        self.path.mkdir(mode=0o700, exist_ok=True)

    def job(self) -> Job | None:
        try:
            data = json.loads((self.path / JOB).read_bytes())
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None
        except OSError as exc:  # a directory in its place, a failing card: no job, said
            log.error(
                "cannot read the update job %s (%s): no update resumes; remove it to start "
                "a new one",
                self.path / JOB,
                exc,
            )
            return None
        return Job.from_json(data) if isinstance(data, dict) else None

    def save(self, job: Job) -> None:
        self.ensure()
        if not job.started:
            job.started = now_ms()
        write_atomically(self.path / JOB, json.dumps(asdict(job), indent=1).encode(), 0o600)

    def part(self, job: Job) -> Path:
        return self.path / f"{job.sha256}.part"

    def bundle(self, job: Job) -> Path:
        return self.path / f"{job.sha256}.bundle"

    @property
    def config_copy(self) -> Path:
        return self.path / "config-at-switch.toml"

    def drop_files(self, keep: Job | None = None) -> None:
        """Remove downloads and leftovers, except those of `keep`."""
        if not self.path.is_dir():
            return
        wanted = {self.part(keep).name, self.bundle(keep).name} if keep else set()
        for entry in self.path.iterdir():
            if entry.name in wanted or entry.name == JOB:
                continue
            if entry.suffix in (".part", ".bundle"):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def drop_trial_files(self) -> None:
        """The config copy of a trial that is over."""
        with contextlib.suppress(FileNotFoundError):
            self.config_copy.unlink()

"""`[update]`: how a node takes a software update (docs/updates.md)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from core.paths import ConfigPath
from edged.config.base import Strict

Switch = Literal["now", "parked"]


class UpdateConfig(Strict):
    enabled: bool = Field(
        default=True, description="take `update.apply` (only when started by the launcher)"
    )
    switch: Switch = Field(
        default="parked",
        description="when to switch to a staged release: `now`, or `parked` (ignition off, "
        "no trip open, doors closed and idle)",
    )
    parked_idle_s: float = Field(
        default=60.0, ge=0, le=3600, description="parked: no door, tap or unlock this long"
    )
    trial_s: float = Field(
        default=180.0,
        ge=5,
        le=3600,
        description="a new release must come online (broker, drivers, outbox) within this",
    )
    stable_s: float = Field(
        default=15.0, ge=0, le=600, description="...and stay online this long before it confirms"
    )
    max_attempts: int = Field(
        default=2,
        ge=1,
        le=5,
        description="starts a release on trial gets (a power cut during the trial uses one)",
    )
    max_bytes_per_s: int = Field(
        default=0, ge=0, description="download bandwidth cap in bytes per second; 0: none"
    )
    min_free_mb: int = Field(
        default=200,
        ge=0,
        description="refuse an update that would leave less free space than this",
    )
    max_bundle_mb: int = Field(default=512, ge=1, le=4096)
    ca_file: ConfigPath | None = Field(
        default=None,
        description="CA of the file server (HTTPS); default: [broker.tls] ca_file, else the "
        "system's CAs",
    )
    python: ConfigPath | None = Field(
        default=None,
        description="interpreter new releases' venvs are made from; default: the running one's",
    )
    retry_max_s: float = Field(
        default=300.0, ge=1, le=86400, description="longest wait between download retries"
    )
    min_bytes_per_s: int = Field(
        default=1000,
        ge=0,
        description="a download connection that brings less than this over `slow_s` is ended "
        "(a server that trickles); three in a row fail the update `download_failed`; 0: no "
        "minimum; at most half of `max_bytes_per_s`. A link of tens of kB/s at a bad spot "
        "passes it many times over",
    )
    slow_s: float = Field(
        default=120.0, gt=0, le=3600, description="the window `min_bytes_per_s` is judged over"
    )
    download_max_s: float = Field(
        default=172800.0,
        gt=0,
        le=30 * 86400,
        description="the longest a download may take, connections, pauses and restarts "
        "included, before the update fails `download_failed` (a server that hangs up, or "
        "stalls, before `slow_s` can judge it); time without any connection to the server "
        "(out of coverage) does not count; default 48 h: 17 MB at 1 kB/s takes 5 h",
    )

    @model_validator(mode="after")
    def _stable_in_trial(self) -> "UpdateConfig":
        if self.stable_s >= self.trial_s:
            raise ValueError("stable_s must be shorter than trial_s")
        return self

    def min_rate(self) -> int:
        """`min_bytes_per_s`, kept under the cap: a node capped at 800 B/s is not too slow."""
        if self.max_bytes_per_s:
            return min(self.min_bytes_per_s, self.max_bytes_per_s // 2)
        return self.min_bytes_per_s

    def interpreter(self, running: str) -> Path:
        return Path(self.python) if self.python is not None else Path(running)

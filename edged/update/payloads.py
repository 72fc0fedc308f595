"""The `update` topic's body: where a node is with a software update (docs/topics.md)."""

from typing import Literal

from pydantic import Field

from edged.payloads import Body

UpdateState = Literal[
    "idle",
    "downloading",
    "verifying",
    "installing",
    "staged",
    "switching",
    "trial",
    "confirmed",
    "rolled_back",
    "failed",
]


class UpdateStatus(Body):
    state: UpdateState
    running: str = Field(description="the release running now")
    id: str | None = Field(default=None, description="the `update.apply` command's id")
    version: str | None = Field(default=None, description="the release being installed or tried")
    previous: str | None = Field(default=None, description="the fallback release")
    bytes: int | None = Field(default=None, description="downloading: bytes on disk")
    total: int | None = Field(default=None, description="downloading: the bundle's size")
    percent: int | None = None
    rate_bps: int | None = Field(default=None, description="downloading: bytes/s lately")
    waiting_for: list[str] | None = Field(
        default=None, description="staged: what keeps the switch from happening now"
    )
    deadline_s: float | None = Field(default=None, description="trial: seconds to come online")
    code: str | None = Field(default=None, description="failed, rolled_back: machine reason")
    reason: str | None = Field(default=None, description="failed, rolled_back: for a person")

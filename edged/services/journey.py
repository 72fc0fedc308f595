"""The run a vehicle is on: `journey.assign` / `journey.clear`, published retained on `journey`.

Dispatch names the run in GTFS terms — a timetabled trip (`route_id` + `trip_id`) or, for an
on-demand run that is in no timetable, an ADDED trip (`route_id`, `start_date`,
`start_time`, `direction_id`) — so the fleet's GTFS-Realtime and SIRI feeds can put it in
their trip descriptor, and the kiosk can show the line. The topic also carries the node's
operating mode (`mode.set`), watched here, so the feed knows a vehicle out of service
without another topic. The assignment is kept across restarts.
"""

import asyncio
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edged.commands.args import only
from edged.commands.declared import Declared
from edged.payloads import Journey
from edged.services.base import NodeApi
from edged.topics import JOURNEY

STATE_KEY = "journey.current"
PUBLISHED_KEY = "journey.published"
MODE_KEY = "mode"
DEFAULT_MODE = "on-demand"
MODE_POLL_S = 1.0
_TIME = re.compile(r"([0-3]\d|4[0-7]):[0-5]\d:[0-5]\d")


def _printable(text: str) -> str:
    if not text.isprintable() or text != text.strip():
        raise ValueError("must be printable text without control characters or outer spaces")
    return text


def _gtfs_date(text: str) -> str:
    if not re.fullmatch(r"\d{8}", text):
        raise ValueError("must be YYYYMMDD")
    date(int(text[:4]), int(text[4:6]), int(text[6:]))  # ValueError on 20250230
    return text


def _gtfs_time(text: str) -> str:
    if not _TIME.fullmatch(text):
        raise ValueError("must be HH:MM:SS (hours may pass 24 for a run after midnight)")
    return text


GtfsId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]
Text = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_printable)]


class AssignArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    route_id: GtfsId
    trip_id: GtfsId | None = None
    schedule_relationship: Literal["SCHEDULED", "ADDED"] = "SCHEDULED"
    start_date: Annotated[str, AfterValidator(_gtfs_date)] | None = None
    start_time: Annotated[str, AfterValidator(_gtfs_time)] | None = None
    direction_id: Annotated[int, Field(ge=0, le=1)] | None = None
    line: Annotated[Text, Field(max_length=40)] | None = None
    headsign: Text | None = None

    @model_validator(mode="after")
    def _complete(self) -> "AssignArgs":
        if self.schedule_relationship == "SCHEDULED" and self.trip_id is None:
            raise ValueError("a SCHEDULED run needs trip_id (an on-demand run: ADDED)")
        if self.schedule_relationship == "ADDED":
            missing = [
                k for k in ("start_date", "start_time", "direction_id") if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(f"an ADDED run needs {', '.join(missing)}")
        return self


class JourneyService:
    def __init__(self, node: NodeApi) -> None:
        self.node = node
        saved = node.get_state(STATE_KEY)
        self.assigned: dict[str, Any] | None = saved if isinstance(saved, dict) else None

    def commands(self) -> list[Declared]:
        return [
            Declared("journey.assign", self.command_assign, scope="operate"),
            Declared("journey.clear", self.command_clear, scope="operate"),
        ]

    @property
    def current(self) -> dict[str, Any] | None:
        """The assigned run (the kiosk shows its line), None when there is none."""
        return self.assigned

    def _mode(self) -> str:
        mode = self.node.get_state(MODE_KEY, DEFAULT_MODE)
        return mode if isinstance(mode, str) and 0 < len(mode) <= 40 else DEFAULT_MODE

    def _body(self) -> Journey:
        run = self.assigned or {}
        return Journey(mode=self._mode(), assigned=bool(run), **run)

    def _publish_if_changed(self) -> None:
        body = self._body()
        data = body.to_json_dict()
        if data != self.node.get_state(PUBLISHED_KEY):
            self.node.set_state(PUBLISHED_KEY, data)
            self.node.publish(JOURNEY, body)

    async def run(self) -> None:
        """Publish once at start if needed, then follow `mode.set` (it tells no one)."""
        while True:
            self._publish_if_changed()
            await asyncio.sleep(MODE_POLL_S)

    async def command_assign(self, args: dict[str, Any]) -> dict[str, Any]:
        """`journey.assign`: the run this vehicle is on now; replaces any other."""
        from edged.kiosk.models import parse_args  # not at import: a node without a kiosk

        run = parse_args(AssignArgs, args)
        self.assigned = {
            **run.model_dump(exclude_none=True),
            "assigned_at": self.node.clock.now()[0],
        }
        self.node.set_state(STATE_KEY, self.assigned)
        self._publish_if_changed()
        return dict(self.assigned)

    async def command_clear(self, args: dict[str, Any]) -> dict[str, Any]:
        """`journey.clear`: the run is over; the vehicle stays in its mode."""
        only("journey.clear", args)
        previous, self.assigned = self.assigned, None
        self.node.set_state(STATE_KEY, None)
        self._publish_if_changed()
        return {"cleared": previous is not None}

"""The run a vehicle is on: `journey.assign` / `journey.clear`, published retained on `journey`.

Dispatch names the run in GTFS terms — a timetabled trip (`route_id` + `trip_id`) or, for an
on-demand run that is in no timetable, an ADDED trip (`route_id`, `start_date`,
`start_time`, `direction_id`) — so the fleet's GTFS-Realtime and SIRI feeds can put it in
their trip descriptor, and the kiosk can show the line (`JourneyChanged`). The topic also
carries the node's operating mode (the mode service's `ModeChanged`), so the feed knows a
vehicle out of service without another topic. The assignment is kept across restarts.
"""

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.host import Host
from edged.kiosk.marks import too_many_marks
from edged.payloads import Journey
from edged.services import mode
from edged.services.base import Service
from edged.services.events import JourneyChanged, ModeChanged
from edged.topics import JOURNEY

STATE_KEY = "journey.current"
PUBLISHED_KEY = "journey.published"
_TIME = re.compile(r"([0-3]\d|4[0-7]):[0-5]\d:[0-5]\d")


def _printable(text: str) -> str:
    if not text.isprintable() or text != text.strip():
        raise ValueError("must be printable text without control characters or outer spaces")
    if problem := too_many_marks(text):  # the line and headsign are on the kiosk's screen
        raise ValueError(problem)
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
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)  # on a command

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


class JourneyService(Service):
    def __init__(self, host: Host) -> None:
        super().__init__(host)
        saved = host.state.get(STATE_KEY)
        self.assigned: dict[str, Any] | None = saved if isinstance(saved, dict) else None
        self.mode = mode.DEFAULT
        host.bus.emit(JourneyChanged(self.current))
        host.bus.subscribe(ModeChanged, self._on_mode)

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("journey.assign", self.command_assign, scope="operate"),
            CommandSpec("journey.clear", self.command_clear, scope="operate"),
        ]

    @property
    def current(self) -> dict[str, Any] | None:
        """The assigned run, None when there is none."""
        return self.assigned

    def _on_mode(self, event: ModeChanged) -> None:
        self.mode = event.mode
        self._publish_if_changed()

    def _body(self) -> Journey:
        run = self.assigned or {}
        return Journey(mode=self.mode, assigned=bool(run), **run)

    def _publish_if_changed(self) -> None:
        body = self._body()
        data = body.to_json_dict()
        if data != self.host.state.get(PUBLISHED_KEY):
            self.host.state.set(PUBLISHED_KEY, data)
            self.host.publish(JOURNEY, body)

    async def run(self) -> None:
        """Publish once at start if the run or the mode changed while the node was down."""
        self._publish_if_changed()

    async def command_assign(self, args: dict[str, Any]) -> dict[str, Any]:
        """`journey.assign`: the run this vehicle is on now; replaces any other."""
        from edged.kiosk.models import parse_args  # not at import: a node without a kiosk

        run = parse_args(AssignArgs, args)
        self.assigned = {
            **run.model_dump(exclude_none=True),
            "assigned_at": self.host.clock.now()[0],
        }
        self.host.state.set(STATE_KEY, self.assigned)
        self.host.bus.emit(JourneyChanged(self.current))
        self._publish_if_changed()
        return dict(self.assigned)

    async def command_clear(self, args: dict[str, Any]) -> dict[str, Any]:
        """`journey.clear`: the run is over; the vehicle stays in its mode."""
        only("journey.clear", args)
        previous, self.assigned = self.assigned, None
        self.host.state.set(STATE_KEY, None)
        self.host.bus.emit(JourneyChanged(None))
        self._publish_if_changed()
        return {"cleared": previous is not None}

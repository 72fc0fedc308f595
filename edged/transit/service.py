"""The feed service's state: the fleet view it is fed, and the documents built from it.

Nothing here is kept that the broker cannot give again: the view is rebuilt from retained
messages and live traffic after a restart, so replicas agree. Documents are built on
request, at most once per second, and kept with their validators: within the second of the
version served, that version is served (one content per timestamp, E017); at the first
request of each new second the document is built again from what changed, or an unchanged
one stamped again (GTFS-RT header, SIRI ResponseTimestamp), so a quiet feed never reads as
a dead producer.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from core.zones import check_zone
from edged.ops.fleet import FleetView, JourneyInfo
from edged.transit import gtfsrt, siri
from edged.transit.page import PageState
from edged.transit.representation import Representation, fingerprint
from edged.transit.schedule import Schedule, malformed, service_days
from edged.transit.vehicles import Left, Served, select

log = logging.getLogger(__name__)

MAX_REPORTED_PROBLEMS = 50


@dataclass(frozen=True)
class FeedSettings:
    max_age_s: float = 90.0
    producer: str = "edged"
    max_vehicles: int = 10_000
    timezone: str | None = None
    """Where a run sent without start_date gets its service day (GTFS-RT start_date, SIRI's
    DataFrameRef): this zone, else the static GTFS agency's, else DEFAULT_ZONE."""


DEFAULT_ZONE = "Europe/Paris"  # the nodes' own default ([node] timezone)


@dataclass
class Selection:
    vehicles: list[Served]
    left: dict[Left, int]
    at: float


@dataclass
class _Doc:
    tag: str = ""
    stamp: int = -1
    """The second the document says it was generated (its timestamp)."""
    rep: Representation | None = None


@dataclass
class Status:
    """What the MQTT side reports: filled by the running service, read by `/health`."""

    connected: Callable[[], bool] = lambda: False
    broker: Callable[[], str] = lambda: "not started"
    dropped: Callable[[], int] = lambda: 0
    """Messages the reader dropped while behind (a node over its share of the queue)."""
    unreadable: Callable[[], int] = lambda: 0
    """Messages left out because they could not be read (`FleetFeed.unreadable`)."""
    last_message: float | None = None
    started: float = field(default_factory=time.time)


class FeedService:
    def __init__(
        self,
        view: FleetView,
        settings: FeedSettings | None = None,
        *,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view
        self.settings = settings or FeedSettings()
        self.schedule = schedule
        # looked up by name first: without the zone database (a container without tzdata)
        # a ValueError that says so, which `edgectl feed` reports as a usage error
        self.zone = ZoneInfo(
            check_zone(self.settings.timezone or (schedule and schedule.timezone) or DEFAULT_ZONE)
        )
        self.clock = clock
        self.status = Status()
        self.encoder = gtfsrt.Encoder()
        self.page = PageState(view, self.settings.max_age_s)
        self._selection: tuple[tuple[int, int], Selection] | None = None
        self._docs: dict[str, _Doc] = {}
        self._siri_cache: dict[str, tuple[tuple[int, bool, int], dict[str, Any]]] = {}
        self.trip_problems: dict[str, list[str]] = {}
        """Per vehicle key: why its assigned run is left out of the trip descriptors."""
        self.day_problems: dict[str, list[str]] = {}
        """Per vehicle key: no service day of its run near its fix (the calendar)."""
        self.shape_problems: dict[str, list[str]] = {}
        """Per vehicle key: its fix is too far from its trip's shape (E029)."""
        self._checked: dict[str, JourneyInfo] = {}
        self._named: dict[str, tuple[JourneyInfo, int, JourneyInfo | None]] = {}
        """Per vehicle key: its run, the minute of the fix it was named at, the run as named."""
        self._header_s = 0
        """The last GTFS-RT header timestamp: consumers reject one that goes back (E018)."""

    # -- which vehicles, now ------------------------------------------------------------

    def selection(self) -> Selection:
        now = self.clock()
        key = (self.view.version, int(now))
        if self._selection is not None and self._selection[0] == key:
            return self._selection[1]
        self.check_journeys()
        area = None if self.schedule is None else self.schedule.area
        vehicles, left = select(self.view, now, self.settings.max_age_s, self._trip_of, area)
        if len(self._named) > 2 * max(len(vehicles), 1000):
            self._named.clear()
        chosen = Selection(vehicles, left, now)
        self._selection = (key, chosen)
        return chosen

    def _trip_of(self, key: str, run: JourneyInfo, fix_s: float) -> JourneyInfo | None:
        """The run as the feeds name it, None when it is left out (its problems); worked out
        once per run and minute of the vehicle's fix (the service day moves no faster)."""
        minute = int(fix_s // 60)
        hit = self._named.get(key)
        if hit is not None and hit[0] is run and hit[1] == minute:
            named = hit[2]
        else:
            named = None if self._problems(run) else self._name(key, run, fix_s)
            self._named[key] = (run, minute, named)
        return None if named is None or self._off_shape(key, named) else named

    def _off_shape(self, key: str, run: JourneyInfo) -> bool:
        """Whether the vehicle is too far from its trip's shape for the feeds to name the
        run (MobilityData E029 fails the whole feed on one such vehicle); said on /health
        and in the log while it is."""
        position = self.view.nodes[key].position
        if self.schedule is None or position is None:
            return False
        if not self.schedule.off_shape(run, position.lat, position.lon):
            self.shape_problems.pop(key, None)
            return False
        if key not in self.shape_problems:
            problem = (
                f"position ({position.lat:.5f}, {position.lon:.5f}) is off trip_id "
                f"{run.trip_id!r}'s shape in shapes.txt (E029: 200 m counted in degrees)"
            )
            self.shape_problems[key] = [problem]
            log.warning("%s: assigned run left out of the feeds while off: %s", key, problem)
        return True

    def _name(self, key: str, run: JourneyInfo, fix_s: float) -> JourneyInfo | None:
        """A run sent without start_date gets its service day when its start is known (its
        start_time, else its trip's first arrival in the timetable): for a timetabled trip
        GTFS-RT's start_date is what tells which day's run it is, and a consumer left to
        guess takes its own today, the wrong one for a run after midnight. The day is the
        nearest on which the trip's service runs (calendar.txt, calendar_dates.txt); with
        none within a day of the fix the run is left out (None), as one that does not
        exist. A run whose start is not known keeps no start_date (GTFS-RT allows it; a
        wrong one is worse than none). A run of an exact_times 0 trip is UNSCHEDULED (E013)."""
        start = run.start_time if self.schedule is None else self.schedule.start_time(run)
        day = run.start_date
        before = self.day_problems.pop(key, None)
        if day is None and start is not None:
            days = service_days(start, fix_s, self.zone)
            schedule = self.schedule
            day = next((d for d in days if schedule is None or schedule.runs_on(run, d)), None)
            if day is None:
                problem = (
                    f"trip_id {run.trip_id!r} does not run on {' or '.join(sorted(days))} (its "
                    "service in calendar.txt / calendar_dates.txt): send start_date"
                )
                self.day_problems[key] = [problem]
                if before != [problem]:
                    log.warning("%s: assigned run left out of the feeds: %s", key, problem)
                return None
        unscheduled = self.schedule is not None and self.schedule.unscheduled(run)
        if day == run.start_date and not unscheduled:
            return run
        relationship = "UNSCHEDULED" if unscheduled else run.schedule_relationship
        return replace(run, start_date=day, schedule_relationship=relationship)

    def _problems(self, run: JourneyInfo) -> list[str]:
        found = malformed(run)
        if self.schedule is not None:
            found += self.schedule.problems(run)
        return found

    def check_journeys(self) -> None:
        """Check each assigned run (its formats, and against the timetable when there is one)
        once per change; log what is wrong."""
        for key, node in self.view.nodes.items():
            run = node.journey
            if run is None or not run.assigned:
                self.trip_problems.pop(key, None)
                self.day_problems.pop(key, None)
                self.shape_problems.pop(key, None)
                self._checked.pop(key, None)
                continue
            if self._checked.get(key) == run:
                continue
            self._checked[key] = run
            self.day_problems.pop(key, None)
            self.shape_problems.pop(key, None)
            problems = self._problems(run)
            if problems:
                self.trip_problems[key] = problems
                log.warning("%s: assigned run left out of the feeds: %s", key, "; ".join(problems))
            else:
                self.trip_problems.pop(key, None)

    # -- documents ----------------------------------------------------------------------

    def _doc(
        self,
        name: str,
        content: Callable[[], tuple[str, Callable[[int], tuple[bytes, str]]]],
        stamp: int | None = None,
    ) -> Representation:
        """The document `name` at second `stamp` (the clock's by default). `content()` gives
        the current content's tag and `build(second)`, which makes the document stamped
        with that second: built again when the content changed, stamped again when it did
        not but a later second asks for it. A feed's timestamp says when it was generated:
        one kept at the last change reads hours old after a quiet night (W008), and a
        journey planner drops the feed as dead. ETag and Last-Modified stay the content's: a
        conditional request for unchanged content is still answered 304.

        Within the second of the version served last (or before it, the clock stepped
        back), that version stays, changed content or not: the timestamp counts seconds,
        and two contents under one (MobilityData E017) would leave a consumer unable to
        tell them apart. The change follows at the next second, under the next one."""
        doc = self._docs.setdefault(name, _Doc())
        second = int(self.clock()) if stamp is None else stamp
        if doc.rep is not None and second <= doc.stamp:
            return doc.rep
        tag, build = content()
        body, content_type = build(second)
        modified = second if doc.rep is None or doc.tag != tag else doc.rep.modified_s
        doc.rep = Representation(body, content_type, modified, tag)
        doc.tag, doc.stamp = tag, second
        return doc.rep

    def vehicle_positions(self) -> Representation:
        def content() -> tuple[str, Callable[[int], tuple[bytes, str]]]:
            chosen = self.selection()
            frames = [self.encoder.framed(v) for v in chosen.vehicles]

            def build(now: int) -> tuple[bytes, str]:
                newest = max((int(v.fix_s) for v in chosen.vehicles), default=0)
                self.encoder.forget(v.key for v in chosen.vehicles)
                # the second the feed is generated, changed or not (W008); never before the
                # newest fix (E012: fixes are stamped no later than the clock, so this is
                # the clock's second) and never back (E018)
                self._header_s = max(now, newest, self._header_s)
                return self.encoder.feed(frames, self._header_s), "application/x-protobuf"

            return fingerprint(*frames), build

        return self._doc("gtfs-rt", content)

    def vehicle_positions_json(self) -> Representation:
        pb = self.vehicle_positions()
        return self._doc(
            "gtfs-rt.json",
            lambda: (pb.tag, lambda now: (gtfsrt.as_json(pb.body), "application/json")),
            stamp=self._docs["gtfs-rt"].stamp,  # a new header, a new JSON form
        )

    def vehicle_monitoring(self) -> Representation:
        def content() -> tuple[str, Callable[[int], tuple[bytes, str]]]:
            chosen = self.selection()
            valid_s = self.settings.max_age_s
            activities = []
            for v in chosen.vehicles:
                stamp = (v.node.changed, v.trip is not None, int(v.fix_s))
                hit = self._siri_cache.get(v.key)
                if hit is None or hit[0] != stamp:
                    hit = (stamp, siri.activity(v, valid_s, self.zone))
                    self._siri_cache[v.key] = hit
                activities.append(hit[1])
            if len(self._siri_cache) > 2 * max(len(chosen.vehicles), 1000):
                self._siri_cache.clear()

            def build(now: int) -> tuple[bytes, str]:
                return siri.delivery_of(activities, now, self.settings.producer), "application/json"

            return fingerprint(repr(activities).encode()), build

        return self._doc("siri", content)

    # -- health -------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For a load balancer: 200 while the broker is connected, 503 otherwise."""
        now = self.clock()
        # a load balancer polls often: a selection up to a second old will do here
        recent = self._selection
        chosen = recent[1] if recent is not None and now - recent[1].at < 1.0 else self.selection()
        connected = self.status.connected()
        last = self.status.last_message
        body: dict[str, Any] = {
            "ok": connected,
            "broker": {"connected": connected, "status": self.status.broker()},
            "vehicles": {
                "known": len(self.view.nodes),
                "served": len(chosen.vehicles),
                "left_out": {k.value: n for k, n in chosen.left.items()},
            },
            "newest_message_age_s": None if last is None else round(max(0.0, now - last), 3),
            "messages": {
                "received": self.view.received,
                "accepted": self.view.accepted,
                "rejected": self.view.rejected,
                "ignored": self.view.ignored,
                "dropped": self.status.dropped(),
                "unreadable": self.status.unreadable(),
            },
            "max_age_s": self.settings.max_age_s,
            "uptime_s": round(now - self.status.started, 1),
        }
        if self.schedule is not None:
            found = {**self.shape_problems, **self.day_problems, **self.trip_problems}
            problems = sorted(found.items())[:MAX_REPORTED_PROBLEMS]
            body["gtfs"] = {
                "source": self.schedule.source,
                "routes": len(self.schedule.routes),
                "trips": len(self.schedule.trips),
                "unknown_ids": [{"vehicle": k, "problems": p} for k, p in problems],
                "unknown_count": len(found),
            }
        return connected, body

"""Which vehicles a transit feed shows, and what it says about each, from the `FleetView`.

A consumer must never be told a vehicle is somewhere it left long ago: a vehicle is served
only while its node is online, in service (not `out-of-service`), and its last fix is no
older than `max_age_s` (90 s by default, the usual consumer rule) and not in the future
(a node clock far ahead would push the feed's own timestamp forward). A fix up to
`FUTURE_TOLERANCE_S` ahead is served stamped with the feed's clock: a later time would hold
the GTFS-RT header there while the rest of the feed changed (E017).
"""

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, get_args

from edged.config.access import OccupancyStatus
from edged.ops.fleet import FleetView, JourneyInfo, NodeView
from edged.transit.schedule import Area

OCCUPANCY_STATUSES = frozenset(get_args(OccupancyStatus))
"""GTFS-Realtime `OccupancyStatus` names a node may send; anything else is left out."""
FUTURE_TOLERANCE_S = 60.0
OUT_OF_SERVICE = "out-of-service"


class Left(StrEnum):
    """Why a known vehicle is not in the feed (counted on /health)."""

    OFFLINE = "offline"
    OUT_OF_SERVICE = "out_of_service"
    NO_FIX = "no_fix"
    OUTSIDE_AREA = "outside_area"
    STALE = "stale"
    FUTURE = "future"


def encodable(text: str) -> str:
    """`text` with any lone surrogate as `?`: JSON's `"\\ud800"` escape gives Python one,
    and neither protobuf nor UTF-8 can encode it, so one node's name failed every feed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def encodable_run(run: JourneyInfo) -> JourneyInfo:
    """The run with every text field `encodable` (the view keeps what the node sent)."""
    changes: dict[str, Any] = {
        f.name: encodable(value)
        for f in fields(run)
        if isinstance(value := getattr(run, f.name), str) and encodable(value) is not value
    }
    return replace(run, **changes) if changes else run


@dataclass(frozen=True)
class Served:
    """One vehicle in the feed: the node view and the trip it may name."""

    node: NodeView
    fix_s: float
    """The fix time, never after the moment the vehicle was selected (a node clock ahead)."""
    trip: JourneyInfo | None
    key: str

    @property
    def label(self) -> str:
        return encodable(self.node.name or self.node.node)

    @property
    def occupancy_status(self) -> str | None:
        occ = self.node.occupancy
        if occ is None or occ.doubt:  # riders' apps do not show a count the node doubts
            return None
        return occ.status if occ.status in OCCUPANCY_STATUSES else None

    @property
    def occupancy_percentage(self) -> int | None:
        occ = self.node.occupancy
        if occ is None or occ.percent is None or occ.doubt:
            return None
        return round(occ.percent)


def why_left(node: NodeView, now: float, max_age_s: float, area: Area | None = None) -> Left | None:
    if node.state != "online":
        return Left.OFFLINE
    if node.journey is not None and node.journey.mode == OUT_OF_SERVICE:
        return Left.OUT_OF_SERVICE
    position = node.position
    if position is None or position.fix_ms is None:
        return Left.NO_FIX
    if position.lat == 0 and position.lon == 0:
        # "null island": a receiver without a fix, not a place (validator E028)
        return Left.NO_FIX
    if area is not None and not area.holds(position.lat, position.lon):
        # far from every shape (or stop) of the static GTFS: a wrong fix or a hostile
        # node, not a vehicle of this network (validator E028 fails the whole feed)
        return Left.OUTSIDE_AREA
    age = now - position.fix_ms / 1000
    if age > max_age_s:
        return Left.STALE
    if age < -FUTURE_TOLERANCE_S:
        return Left.FUTURE
    return None


def select(
    view: FleetView,
    now: float,
    max_age_s: float,
    trip_of: Callable[[str, JourneyInfo, float], JourneyInfo | None],
    area: Area | None = None,
) -> tuple[list[Served], dict[Left, int]]:
    """The vehicles to serve, sorted by key, and how many were left out and why.
    `trip_of(key, run, fix_s)`: the run as the feeds name it, None to leave it out;
    `area`: where the network's vehicles can be (the static GTFS's), None for anywhere."""
    served: list[Served] = []
    left = dict.fromkeys(Left, 0)
    for key in sorted(view.nodes):
        node = view.nodes[key]
        why = why_left(node, now, max_age_s, area)
        if why is not None:
            left[why] += 1
            continue
        assert node.position is not None and node.position.fix_ms is not None
        fix_s = min(node.position.fix_ms / 1000, now)
        journey = node.journey
        trip = (
            trip_of(key, encodable_run(journey), fix_s)
            if journey is not None and journey.assigned
            else None
        )
        served.append(Served(node, fix_s, trip, key))
    return served, left

"""Geofences: stops and service markets, `events/geofence` arrive and depart.

A bus idling on a fence's border must not chatter: it arrives only after being inside for
`dwell_s`, and departs only after being more than `hysteresis_m` outside for `dwell_s`.
Times are the receiver's fix times, so replayed or delayed fixes give the same events. A fix
whose HDOP is above `max_hdop` is not looked at: it is too far from the truth to say which
side of a stop's edge the bus is on.

Fences come from the config (fixed) and from dispatch's `geofences.set` (the dynamic set,
replaced as a whole, kept across restarts). The fences in force, and which of them the
vehicle is in, go on the bus as `GeofencesChanged` (the kiosk shows the stop).

Which fences the vehicle arrived at is kept across restarts too (`INSIDE_KEY`, with the
time of each arrival): a node restarted at a market does not arrive there a second time,
and a vehicle that left while the node was down departs once the first fixes after the
start are out for `dwell_s` (its `dwell_s` then counts the time the node was down).

A fence dispatch removes (a `geofences.set` without it) while the vehicle is in it departs
at once, marked `removed`: dispatch and a venue manager count who is at a stop or a venue
from the arrivals and departures, and without it the vehicle would stay there in their
books for good. It carries the last fix looked at; with none yet since the start, the
departure is owed (`REMOVED_KEY`, kept across restarts) and made at the first fix.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import ValidationError

from core.events import Fix
from core.geo import circle_signed_distance, polygon_signed_distance
from edged.commands.spec import CommandSpec
from edged.config.geofences import Geofence, GeofenceSet
from edged.config.services import GeofenceServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import GeofenceEvent
from edged.services.base import Service
from edged.services.events import GeofencesChanged
from edged.topics import GEOFENCE

DYNAMIC_KEY = "geofences.dynamic"
INSIDE_KEY = "geofences.inside"
"""{fence id: ISO time of its arrival}: the fences the vehicle had arrived at and not left."""
REMOVED_KEY = "geofences.removed"
"""{fence id: {"fence": the fence, "arrived": ISO time}}: departures owed for fences dispatch
removed while the vehicle was in them, before any fix of this run said where it was."""


class Where(Enum):
    OUTSIDE = "outside"
    ENTERING = "entering"
    INSIDE = "inside"
    LEAVING = "leaving"


@dataclass
class _Track:
    where: Where = Where.OUTSIDE
    since: datetime | None = None  # when the current state (or its candidate) began
    arrived: datetime | None = None


def signed_distance(fence: Geofence, lat: float, lon: float) -> float:
    """Metres from the fence's edge: negative inside."""
    if fence.points is not None:
        return polygon_signed_distance(lat, lon, list(fence.points))
    assert fence.center is not None and fence.radius_m is not None
    return circle_signed_distance(lat, lon, fence.center, fence.radius_m)


class GeofenceService(Service):
    def __init__(self, host: Host, config: GeofenceServiceConfig) -> None:
        super().__init__(host)
        self.config = config
        self.static = list(config.fences)
        stored = host.state.get(DYNAMIC_KEY, [])
        self.dynamic = GeofenceSet.model_validate({"geofences": stored}).geofences
        self._tracks: dict[str, _Track] = self._restore_inside()
        self._owed: dict[str, tuple[Geofence, datetime]] = self._restore_owed()
        self._last: Fix | None = None  # the last fix looked at
        host.bus.subscribe(Fix, self.on_fix)
        self._tell()

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("geofences.set", self.command_set)]

    def _restore_inside(self) -> dict[str, _Track]:
        """The fences arrived at before the restart that are still in force; anything else
        stored (a fence gone from the config, a value that is no time) is left out."""
        stored = self.host.state.get(INSIDE_KEY, {})
        ids = {g.id for g in self.fences}
        tracks: dict[str, _Track] = {}
        for fence_id, arrived in stored.items() if isinstance(stored, dict) else ():
            try:
                when = datetime.fromisoformat(arrived) if isinstance(arrived, str) else None
            except ValueError:
                when = None
            if fence_id in ids and when is not None and when.tzinfo is not None:
                tracks[fence_id] = _Track(Where.INSIDE, when, when)
        return tracks

    def _restore_owed(self) -> dict[str, tuple[Geofence, datetime]]:
        """The departures owed before the restart; an entry that cannot be read is left out."""
        stored = self.host.state.get(REMOVED_KEY, {})
        owed: dict[str, tuple[Geofence, datetime]] = {}
        for fence_id, entry in stored.items() if isinstance(stored, dict) else ():
            try:
                fence = Geofence.model_validate(entry["fence"])
                arrived = datetime.fromisoformat(entry["arrived"])
            except (KeyError, TypeError, ValueError):
                continue  # pydantic's ValidationError is a ValueError
            if fence.id == fence_id and arrived.tzinfo is not None:
                owed[fence_id] = (fence, arrived)
        return owed

    def _save_owed(self) -> None:
        self.host.state.set(
            REMOVED_KEY,
            {
                fence.id: {"fence": fence.model_dump(mode="json"), "arrived": arrived.isoformat()}
                for fence, arrived in self._owed.values()
            },
        )

    def _save_inside(self) -> None:
        inside = {
            fence_id: track.arrived.isoformat()
            for fence_id, track in self._tracks.items()
            if track.where in (Where.INSIDE, Where.LEAVING) and track.arrived is not None
        }
        self.host.state.set(INSIDE_KEY, inside)

    @property
    def fences(self) -> list[Geofence]:
        by_id = {g.id: g for g in self.static}
        by_id.update({g.id: g for g in self.dynamic})  # dispatch overrides the config
        return list(by_id.values())

    def inside(self) -> list[Geofence]:
        """Fences the vehicle is in now."""
        return [
            g
            for g in self.fences
            if self._tracks.get(g.id, _Track()).where in (Where.INSIDE, Where.LEAVING)
        ]

    def _tell(self) -> None:
        inside = tuple(g.id for g in self.inside())
        self.host.bus.emit(GeofencesChanged(tuple(self.fences), inside))

    def on_fix(self, fix: Fix) -> None:
        if not fix.valid:
            return
        if fix.hdop is not None and fix.hdop > self.config.max_hdop:
            # HDOP 20 is a fix ±100 m off: it would put a bus at a stop it is not at, or
            # take it out of one; a receiver that gives no HDOP is taken at its word
            self.host.counters.inc("geofences.poor_hdop")
            return
        self._last = fix
        if self._owed:
            for fence, arrived in self._owed.values():
                self._depart_removed(fence, arrived, fix)
            self._owed.clear()
            self._save_owed()
        for fence in self.fences:
            self._step(fence, fix)

    def _step(self, fence: Geofence, fix: Fix) -> None:
        track = self._tracks.setdefault(fence.id, _Track())
        d = signed_distance(fence, fix.lat, fix.lon)
        hysteresis = self.config.hysteresis_m if fence.hysteresis_m is None else fence.hysteresis_m
        dwell = self.config.dwell_s if fence.dwell_s is None else fence.dwell_s
        t = fix.fix_time

        def held() -> bool:
            return track.since is not None and (t - track.since).total_seconds() >= dwell

        if track.where is Where.OUTSIDE and d <= 0:
            track.where, track.since = Where.ENTERING, t
        elif track.where is Where.ENTERING and d > 0:
            track.where, track.since = Where.OUTSIDE, t  # not inside for all of the dwell
        elif track.where is Where.INSIDE and d > hysteresis:
            track.where, track.since = Where.LEAVING, t
        elif track.where is Where.LEAVING and d <= hysteresis:
            track.where, track.since = Where.INSIDE, t  # not far out for all of the dwell

        if track.where is Where.ENTERING and held():
            track.where, track.arrived = Where.INSIDE, track.since
            self._publish(fence, fix, "arrive", None)
            self._save_inside()
            self._tell()
        elif track.where is Where.LEAVING and held():
            stayed = None
            if track.arrived is not None and track.since is not None:
                stayed = round((track.since - track.arrived).total_seconds(), 1)
            track.where, track.arrived = Where.OUTSIDE, None
            self._publish(fence, fix, "depart", stayed)
            self._save_inside()
            self._tell()

    def _publish(
        self,
        fence: Geofence,
        fix: Fix,
        event: Literal["arrive", "depart"],
        dwell_s: float | None,
        removed: bool = False,
    ) -> None:
        self.host.publish(
            GEOFENCE,
            GeofenceEvent(
                geofence=fence.id,
                name=fence.name,
                kind=fence.kind,
                event=event,
                dwell_s=dwell_s,
                lat=fix.lat,
                lon=fix.lon,
                fix_time=fix.fix_time,
                removed=True if removed else None,
            ),
        )

    def _depart_removed(self, fence: Geofence, arrived: datetime, fix: Fix) -> None:
        stayed = round(max(0.0, (fix.fix_time - arrived).total_seconds()), 1)
        self._publish(fence, fix, "depart", stayed, removed=True)

    async def command_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """`geofences.set`: replace the dynamic set; refused as a whole when one is bad."""
        try:
            new = GeofenceSet.model_validate(args).geofences
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise CommandError("bad_args", problems[:500]) from None
        in_force = {g.id for g in new} | {g.id for g in self.static}
        before = {g.id: g for g in self.fences}
        removed: list[tuple[Geofence, datetime]] = []
        for gone in [i for i in self._tracks if i not in in_force]:
            track = self._tracks.pop(gone)
            if track.where in (Where.INSIDE, Where.LEAVING) and track.arrived is not None:
                fence = before.get(gone)
                if fence is not None:
                    removed.append((fence, track.arrived))
        self.dynamic = new
        self.host.state.set(DYNAMIC_KEY, [g.model_dump(mode="json") for g in new])
        for fence, arrived in removed:
            if self._last is not None:
                self._depart_removed(fence, arrived, self._last)
            else:
                self._owed[fence.id] = (fence, arrived)
        if removed and self._last is None:
            self._save_owed()
        self._save_inside()
        self._tell()
        return {"dynamic": len(new), "static": len(self.static)}

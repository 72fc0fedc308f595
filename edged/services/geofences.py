"""Geofences: stops and service markets, `events/geofence` arrive and depart.

A bus idling on a fence's border must not chatter: it arrives only after being inside for
`dwell_s`, and departs only after being more than `hysteresis_m` outside for `dwell_s`. A
parked receiver's position drifts for minutes (±10-30 m in a covered depot, among other
buses), slower than any dwell, while its Doppler speed stays near zero: a vehicle standing
still starts to leave only `STILL_MARGIN_M` further out, so that drift is no departure
(and no arrival again after it) while the bus stands there; nor is one fix in it whose
speed flickers above standing still, the fixes after it standing still within the margin.
Times are the receiver's fix times, so replayed or delayed fixes give the same events; a fix
dated before the one that started a dwell (the receiver's time went back after a fix dated
ahead), or further after it than position.py believes of the time between their arrivals
(one fix dated back, then the true time again), starts it again. A fix
whose HDOP is above `max_hdop` is not looked at: it is too far from the truth to say which
side of a stop's edge the bus is on; nor is one the position service judged suspect
(plausibility.py: a spoofer's, a frozen receiver's): this service takes the fixes from it
(`PositionUpdated`, each valid fix with its verdict), never the raw ones, so no order of
building the services lets a fix through before its verdict.

Fences come from the config (fixed) and from dispatch's `geofences.set` (the dynamic set,
replaced as a whole, kept across restarts). The fences in force, and which of them the
vehicle is in, go on the bus as `GeofencesChanged` (the kiosk shows the stop).

Which fences the vehicle arrived at is kept across restarts too (`INSIDE_KEY`, with the
time of each arrival): a node restarted at a market does not arrive there a second time,
and a vehicle that left while the node was down departs once the first fixes after the
start are out for `dwell_s` (its `dwell_s` then counts the time the node was down).

A fence removed while the vehicle is in it departs, marked `removed`: dispatch and a venue
manager count who is at a stop or a venue from the arrivals and departures, and without it
the vehicle would stay there in their books for good. Dispatch removes one with a
`geofences.set` without it: the departure is at once, with the last fix looked at. The
config removes one with a new file (`config.set`), which takes effect by restarting the
node: the fence's definition is gone by then, so what a departure says of each fence the
vehicle is in (`LABELS_KEY`) is kept with the arrival. One piece serves both (`_retire`).
With no fix yet since the start (always so after a restart), the departure is owed
(`REMOVED_KEY`, kept across restarts) and made at the first fix.

Each such departure ends one arrival, once: the state is bounded by the fences in force
(500 from the config, 500 from dispatch), whatever the number of changes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from core.events import Fix
from core.geo import circle_signed_distance, polygon_signed_distance
from edged.commands.spec import CommandSpec
from edged.config.geofences import FenceId, FenceKind, FenceName, Geofence, GeofenceSet
from edged.config.services import GeofenceServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import GeofenceEvent
from edged.services.base import Service
from edged.services.events import GeofencesChanged, PositionUpdated
from edged.services.position import STATIONARY_SPEED, believed_s
from edged.topics import GEOFENCE

STILL_MARGIN_M = 50.0
"""How much further than `hysteresis_m` a vehicle standing still must seem to be outside to
start leaving: more than a parked receiver drifts, less than a fence a bus was restarted,
or reshaped, away from is."""
DYNAMIC_KEY = "geofences.dynamic"
INSIDE_KEY = "geofences.inside"
"""{fence id: ISO time of its arrival}: the fences the vehicle had arrived at and not left."""
LABELS_KEY = "geofences.inside_labels"
"""{fence id: {"id", "name", "kind"}}: what a departure says of each fence of `INSIDE_KEY`,
so that one gone from the config by the restart that applies it still departs. A key of
its own: `INSIDE_KEY` keeps the format an older release (an update rolled back) reads."""
REMOVED_KEY = "geofences.removed"
"""{fence id: {"fence": the fence, or its label when its shape is gone (taken out of the
config), "arrived": ISO time}}: departures owed for fences removed while the vehicle was in
them, before any fix of this run said where it was. An older release (an update rolled
back) reads only whole fences: one dispatch removed is kept whole, so it departs there too."""


class FenceLabel(BaseModel):
    """What an event says of a fence: all its departure needs once its shape is gone."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # a whole fence reads as its label

    id: FenceId
    name: FenceName = ""
    kind: FenceKind = "stop"

    @classmethod
    def of(cls, fence: Geofence) -> "FenceLabel":
        return cls(id=fence.id, name=fence.name, kind=fence.kind)


def _whole_or_label(raw: Any) -> Geofence | FenceLabel:
    """An owed departure's fence as stored: whole if it is one (kept so when saved again),
    else its label; raises pydantic's ValidationError (a ValueError) when neither."""
    try:
        return Geofence.model_validate(raw)
    except ValidationError:
        return FenceLabel.model_validate(raw)


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
    since_at: float | None = None  # when the fix of `since` arrived (monotonic s), if said
    moves: int = 0  # fixes not standing still since a departure began


def _jumped(since: datetime, since_at: float | None, fix: Fix) -> bool:
    """The receiver's time from `since` to `fix` is no time the vehicle spent: it went back,
    or on further than position.py's rule believes of the time between the two fixes'
    arrivals (`since_at`, `fix.received`: when the driver says)."""
    elapsed = (fix.fix_time - since).total_seconds()
    return elapsed < 0 or elapsed > believed_s(since_at, fix.received)


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
        self._owed: dict[str, tuple[Geofence | FenceLabel, datetime]] = self._restore_owed()
        self._last: Fix | None = None  # the last fix looked at
        # a fence the vehicle was in that the config (the new file) no longer has departs;
        # the labels of those it keeps are written (renamed, or kept by no older release)
        self._retire(self._restore_labels())
        host.bus.subscribe(PositionUpdated, self._on_position)
        self._tell()

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("geofences.set", self.command_set)]

    def _restore_inside(self) -> dict[str, _Track]:
        """The fences arrived at before the restart (`_retire` then takes out those no
        longer in force); a value that is no time is left out."""
        stored = self.host.state.get(INSIDE_KEY, {})
        tracks: dict[str, _Track] = {}
        for fence_id, arrived in stored.items() if isinstance(stored, dict) else ():
            try:
                when = datetime.fromisoformat(arrived) if isinstance(arrived, str) else None
            except ValueError:
                when = None
            if when is not None and when.tzinfo is not None:
                tracks[fence_id] = _Track(Where.INSIDE, when, when)
        return tracks

    def _restore_labels(self) -> dict[str, FenceLabel]:
        """The labels of the fences arrived at before the restart, those in force now
        taken from the config; a stored one that cannot be read is left out (its fence,
        if gone, is then only forgotten, as before labels were kept)."""
        stored = self.host.state.get(LABELS_KEY, {})
        labels: dict[str, FenceLabel] = {}
        for fence_id, entry in stored.items() if isinstance(stored, dict) else ():
            try:
                label = FenceLabel.model_validate(entry)
            except ValidationError:
                continue
            if label.id == fence_id:
                labels[fence_id] = label
        labels.update({g.id: FenceLabel.of(g) for g in self.fences})
        return labels

    def _restore_owed(self) -> dict[str, tuple[Geofence | FenceLabel, datetime]]:
        """The departures owed before the restart; an entry that cannot be read is left out."""
        stored = self.host.state.get(REMOVED_KEY, {})
        owed: dict[str, tuple[Geofence | FenceLabel, datetime]] = {}
        for fence_id, entry in stored.items() if isinstance(stored, dict) else ():
            try:
                label = _whole_or_label(entry["fence"])
                arrived = datetime.fromisoformat(entry["arrived"])
            except (KeyError, TypeError, ValueError):
                continue  # pydantic's ValidationError is a ValueError
            if label.id == fence_id and arrived.tzinfo is not None:
                owed[fence_id] = (label, arrived)
        return owed

    def _save_owed(self) -> None:
        self.host.state.set(
            REMOVED_KEY,
            {
                label.id: {"fence": label.model_dump(mode="json"), "arrived": arrived.isoformat()}
                for label, arrived in self._owed.values()
            },
        )

    def _save_inside(self) -> None:
        """The fences arrived at and their labels; written only when they changed (the SD
        card: a start writes nothing when nothing changed)."""
        by_id = {g.id: g for g in self.fences}
        inside: dict[str, str] = {}
        labels: dict[str, Any] = {}
        for fence_id, track in self._tracks.items():
            fence = by_id.get(fence_id)
            if track.where in (Where.INSIDE, Where.LEAVING) and track.arrived is not None:
                inside[fence_id] = track.arrived.isoformat()
                if fence is not None:  # always so: a track is of a fence in force
                    labels[fence_id] = FenceLabel.of(fence).model_dump(mode="json")
        if self.host.state.get(INSIDE_KEY) != inside:
            self.host.state.set(INSIDE_KEY, inside)
        if self.host.state.get(LABELS_KEY) != labels:
            self.host.state.set(LABELS_KEY, labels)

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

    def _on_position(self, event: PositionUpdated) -> None:
        if event.suspect is not None:
            # a spoofer's stop, a frozen receiver's last place: no arrival, no departure
            self.host.counters.inc("geofences.suspect")
            return
        self.on_fix(event.fix)

    def on_fix(self, fix: Fix) -> None:
        """A fix believed where the vehicle is (the position service's verdict)."""
        if not fix.valid:
            return
        if fix.hdop is not None and fix.hdop > self.config.max_hdop:
            # HDOP 20 is a fix ±100 m off: it would put a bus at a stop it is not at, or
            # take it out of one; a receiver that gives no HDOP is taken at its word
            self.host.counters.inc("geofences.poor_hdop")
            return
        self._last = fix
        if self._owed:
            for label, arrived in self._owed.values():
                self._depart_removed(label, arrived, fix)
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
        still = fix.speed is not None and fix.speed < STATIONARY_SPEED

        def held() -> bool:
            return track.since is not None and (t - track.since).total_seconds() >= dwell

        def start(where: Where) -> None:
            track.where, track.since, track.since_at = where, t, fix.received

        if track.since is not None and _jumped(track.since, track.since_at, fix):
            # the receiver's time went back (one fix dated ahead: a spoofer, a receiver's
            # glitch): the dwell counts from this fix, or it would wait for the time of that
            # one to come round again — a departure held back for a year; or it went on
            # further than the time between the fixes' arrivals allows (one fix dated back,
            # then the true time): counted, that year would end any dwell at once
            start(track.where)
        if track.where is Where.OUTSIDE and d <= 0:
            start(Where.ENTERING)
        elif track.where is Where.ENTERING and d > 0:
            start(Where.OUTSIDE)  # not inside for all of the dwell
        elif track.where is Where.INSIDE and d > hysteresis + (STILL_MARGIN_M if still else 0):
            start(Where.LEAVING)
            track.moves = 0
        elif track.where is Where.LEAVING and (
            d <= hysteresis or (still and track.moves < 2 and d <= hysteresis + STILL_MARGIN_M)
        ):
            # not far out for all of the dwell; or standing still near, the departure
            # started by one fix alone that did not (a parked receiver's Doppler flickers)
            start(Where.INSIDE)
        if track.where is Where.LEAVING and not still:
            track.moves += 1

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
        fence: Geofence | FenceLabel,
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

    def _depart_removed(self, label: Geofence | FenceLabel, arrived: datetime, fix: Fix) -> None:
        stayed = round(max(0.0, (fix.fix_time - arrived).total_seconds()), 1)
        self._publish(label, fix, "depart", stayed, removed=True)

    def _retire(self, labels: Mapping[str, Geofence | FenceLabel]) -> None:
        """Drop the tracks of fences no longer in force (dispatch's set or the config
        changed); the vehicle departs from those it had arrived at, marked `removed`: at
        once with the last fix looked at, or owed until the first fix of this run.
        `labels`: what to say of each fence that was in force (the fence itself when its
        shape is known: kept whole when owed, see `REMOVED_KEY`).

        An owed departure whose fence is in force again (a `config.set` rolled back, put
        back by dispatch) before a fix made it is called off: nothing said it left, so
        the vehicle is still there, since its arrival."""
        in_force = {g.id for g in self.fences}
        gone = [i for i in self._tracks if i not in in_force]
        back = [i for i in self._owed if i in in_force]
        for fence_id in back:
            _, arrived = self._owed.pop(fence_id)
            self._tracks[fence_id] = _Track(Where.INSIDE, arrived, arrived)
        owed_before = len(self._owed)
        for fence_id in gone:
            track = self._tracks.pop(fence_id)
            label = labels.get(fence_id)
            if track.where not in (Where.INSIDE, Where.LEAVING) or track.arrived is None:
                continue  # not arrived: nothing to end
            if label is None:
                continue  # kept by a release that stored no labels: only forgotten
            if self._last is not None:
                self._depart_removed(label, track.arrived, self._last)
            else:
                self._owed[fence_id] = (label, track.arrived)
        if back or len(self._owed) != owed_before:
            self._save_owed()  # with the presence, in the same commit: owed once
        self._save_inside()

    async def command_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """`geofences.set`: replace the dynamic set; refused as a whole when one is bad."""
        try:
            new = GeofenceSet.model_validate(args).geofences
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            raise CommandError("bad_args", problems[:500]) from None
        before = {g.id: g for g in self.fences}
        self.dynamic = new
        self.host.state.set(DYNAMIC_KEY, [g.model_dump(mode="json") for g in new])
        self._retire(before)
        self._tell()
        return {"dynamic": len(new), "static": len(self.static)}

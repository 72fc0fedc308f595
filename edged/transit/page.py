"""What the live fleet page is sent: every known vehicle as plain JSON, and what changed.

The page gets the whole fleet once, then only the vehicles that changed since its last
update (the view's version says which), so a thousand vehicles do not mean a thousand
vehicles resent every second. Strings are the view's bounded, control-free text; the page
puts them in the DOM as text only.
"""

from typing import Any

from edged.ops.fleet import FleetView, NodeView

ALARM_ORDER = {"panic": 0}
JS_MAX_MS = 8_640_000_000_000_000
"""JavaScript's last date: a time past it is an Invalid Date, which `Intl.DateTimeFormat`
refuses with a RangeError, so one node's `raised_at` of 2**62 stopped every render."""


def when(ms: int | None) -> int | None:
    """A time in milliseconds the page can show, else None (a node may send any integer)."""
    return ms if ms is not None and 0 < ms <= JS_MAX_MS else None


def vehicle(node: NodeView) -> dict[str, Any]:
    position = node.position
    occupancy = node.occupancy
    journey = node.journey
    faults = node.faults
    alarms = sorted(
        node.alarms.values(), key=lambda a: (not a.active, ALARM_ORDER.get(a.kind, 1), a.kind)
    )
    return {
        "key": node.key,
        "fleet": node.fleet,
        "node": node.node,
        "name": node.name or node.node,
        "profile": node.profile,
        "state": node.state,
        "mode": journey.mode if journey is not None else None,
        "position": None
        if position is None
        else {
            "lat": position.lat,
            "lon": position.lon,
            "course": position.course,
            "speed_kmh": None if position.speed_kmh is None else round(position.speed_kmh, 1),
            "fix_ms": when(position.fix_ms),
        },
        "occupancy": None
        if occupancy is None
        else {
            "count": occupancy.count,
            "capacity": occupancy.capacity,
            "percent": occupancy.percent,
            "status": occupancy.status,
            "doubt": list(occupancy.doubt),
        },
        "journey": None
        if journey is None or not journey.assigned
        else {
            "line": journey.line or journey.route_id,
            "route_id": journey.route_id,
            "trip_id": journey.trip_id,
            "headsign": journey.headsign,
            "added": journey.schedule_relationship == "ADDED",
        },
        "alarms": [
            {
                "kind": a.kind,
                "active": a.active,
                "reason": a.reason,
                "alarm_id": a.alarm_id,
                "raised_at": when(a.raised_at),
                "acked_by": a.acked_by,
                "ts": when(a.ts),
            }
            for a in alarms
        ],
        "faults": None
        if faults is None or not faults.count
        else {
            "count": faults.count,
            "red": faults.red,
            "amber": faults.amber,
            "codes": [{"spn": c.spn, "fmi": c.fmi, "source": c.source} for c in faults.codes[:4]],
        },
        "last_ts": when(node.last_ts),
    }


class PageState:
    def __init__(self, view: FleetView, max_age_s: float) -> None:
        self.view = view
        self.max_age_s = max_age_s
        self._cache: dict[str, tuple[int, dict[str, Any]]] = {}

    def _one(self, node: NodeView) -> dict[str, Any]:
        hit = self._cache.get(node.key)
        if hit is None or hit[0] != node.changed:
            hit = (node.changed, vehicle(node))
            self._cache[node.key] = hit
        return hit[1]

    def changed_since(self, version: int) -> list[dict[str, Any]]:
        """Vehicles changed after `version` (0: all of them)."""
        return [self._one(n) for n in self.view.nodes.values() if n.changed > version]

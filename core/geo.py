"""Small geodesy for distances between fixes (no library needed for a haversine)."""

import itertools
import math
from collections.abc import Sequence

EARTH_RADIUS_M = 6_371_008.8
MIN_AREA_M2 = 1.0  # a polygon smaller than this is a line (corners on one line, to float error)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360) % 360


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point moved by small distances north and east (flat-earth, fine under a km)."""
    dlat = north_m / EARTH_RADIUS_M
    dlon = east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def lon_delta(lon0: float, lon: float) -> float:
    """Degrees east from `lon0` to `lon`, the short way round: -180..180. Across the 180th
    meridian (Fiji's Taveuni, Chukotka) 179.99 to -179.99 is 0.02° east, not 359.98° west."""
    return (lon - lon0 + 180.0) % 360.0 - 180.0


def unwrapped(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The corners with each edge's longitudes read the short way round from the corner
    before: across the 180th meridian 179.99 to -179.99 is 0.02° east, and a region wider
    than half the world (a fleet's, Russia with Alaska) is read as drawn, edge by edge."""
    out: list[tuple[float, float]] = []
    for lat, lon in points:
        out.append((lat, lon if not out else out[-1][1] + lon_delta(out[-1][1], lon)))
    return out


def _local_xy(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    """Equirectangular metres east/north of (lat0, lon0): exact enough within a few km.
    Longitudes as given (unwrapped by the caller, all from one reference)."""
    x = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return x, y


def _segment_distance(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def polygon_signed_distance(lat: float, lon: float, points: list[tuple[float, float]]) -> float:
    """Metres from the polygon's edge: negative inside, positive outside. Longitudes are
    read the short way round along each edge, the position's from the fence's middle: a
    fence across the 180th meridian is the small area it encloses there, a region wider
    than half the world is the one drawn, and a position half a world away is outside."""
    corners = unwrapped(points)
    lons = [plon for _, plon in corners]
    ref = (min(lons) + max(lons)) / 2  # the position on the fence's side of the globe
    here = ref + lon_delta(ref, lon)
    xy = [_local_xy(lat, here, plat, plon) for plat, plon in corners]
    inside = False
    edge = math.inf
    for (ax, ay), (bx, by) in zip(xy, xy[1:] + xy[:1], strict=True):
        if (ay > 0) != (by > 0) and (bx - ax) * (0 - ay) / (by - ay) + ax > 0:
            inside = not inside
        edge = min(edge, _segment_distance(0.0, 0.0, ax, ay, bx, by))
    return -edge if inside else edge


def _orient(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
    return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])


def _within(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> bool:
    """r, on the line through p and q, is between them."""
    return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])


def _meet(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]
) -> bool:
    """Segments ab and cd cross or touch."""
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    return (
        (o1 == 0 and _within(a, b, c))
        or (o2 == 0 and _within(a, b, d))
        or (o3 == 0 and _within(c, d, a))
        or (o4 == 0 and _within(c, d, b))
    )


def ring_problem(points: Sequence[tuple[float, float]]) -> str | None:
    """Why a polygon's ring, open or closed, bounds no area or not the one it seems to: a
    ring is closed and simple (OGC Simple Features 1.1: no edge crosses or touches another
    but its neighbours at their shared corner). None when it is a polygon. Each edge's
    longitudes are read the short way round, as the fence is judged: a ring across the 180th
    meridian is the small area it encloses there; an edge half way round the Earth has no
    short way, and a ring all the way round it (a fence around a pole) no inside."""
    if len(points) > 1:
        ring = unwrapped([*points, points[0]])
        if any(abs(b[1] - a[1]) >= 180.0 for a, b in itertools.pairwise(ring)):
            return (
                "an edge spans half the Earth's longitudes or more: which way round is "
                "unknown; add a corner on it"
            )
        if abs(ring[-1][1] - ring[0][1]) > 1.0:
            return "the ring goes all the way round the Earth (around a pole): it has no inside"
    corners: list[tuple[float, float]] = []
    for p in points:
        if not corners or p != corners[-1]:
            corners.append(p)
    while len(corners) > 1 and corners[0] == corners[-1]:
        corners.pop()  # closed as GeoJSON closes it
    corners = unwrapped(corners)
    n = len(corners)
    if n < 3:
        return "a polygon needs three distinct corners"
    xy = [_local_xy(*corners[0], lat, lon) for lat, lon in corners]
    if abs(sum(_orient(xy[0], xy[i], xy[i + 1]) for i in range(1, n - 1))) < 2 * MIN_AREA_M2:
        return "the polygon's corners are on one line: it bounds no area"
    edges = [(corners[i], corners[(i + 1) % n]) for i in range(n)]
    for i, (a, b) in enumerate(edges):  # a corner where the ring turns back on itself
        c = edges[(i + 1) % n][1]
        if (
            _orient(a, b, c) == 0
            and (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]) < 0
        ):
            return f"the ring turns back on itself at corner {(i + 1) % n + 1}"
    # non-neighbouring edges, swept by their extent along the first coordinate
    order = sorted(range(n), key=lambda i: min(edges[i][0][0], edges[i][1][0]))
    for k, i in enumerate(order):
        a, b = edges[i]
        top = max(a[0], b[0])
        for j in order[k + 1 :]:
            c, d = edges[j]
            if min(c[0], d[0]) > top:
                break
            if abs(i - j) in (1, n - 1):
                continue  # neighbours share a corner
            if _meet(a, b, c, d):
                first, second = sorted((i, j))
                return (
                    f"edges {first + 1} and {second + 1} cross or touch: list the corners "
                    "in order around the fence"
                )
    return None


def circle_signed_distance(
    lat: float, lon: float, center: tuple[float, float], radius_m: float
) -> float:
    """Metres from the circle's edge: negative inside, positive outside."""
    return haversine_m(lat, lon, center[0], center[1]) - radius_m

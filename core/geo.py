"""Small geodesy for distances between fixes (no library needed for a haversine)."""

import math

EARTH_RADIUS_M = 6_371_008.8


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


def _local_xy(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    """Equirectangular metres east/north of (lat0, lon0): exact enough within a few km."""
    x = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return x, y


def _segment_distance(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def polygon_signed_distance(lat: float, lon: float, points: list[tuple[float, float]]) -> float:
    """Metres from the polygon's edge: negative inside, positive outside."""
    xy = [_local_xy(lat, lon, plat, plon) for plat, plon in points]
    inside = False
    edge = math.inf
    for (ax, ay), (bx, by) in zip(xy, xy[1:] + xy[:1], strict=True):
        if (ay > 0) != (by > 0) and (bx - ax) * (0 - ay) / (by - ay) + ax > 0:
            inside = not inside
        edge = min(edge, _segment_distance(0.0, 0.0, ax, ay, bx, by))
    return -edge if inside else edge


def circle_signed_distance(
    lat: float, lon: float, center: tuple[float, float], radius_m: float
) -> float:
    """Metres from the circle's edge: negative inside, positive outside."""
    return haversine_m(lat, lon, center[0], center[1]) - radius_m

"""How ops describe a polygon geofence: which rings are polygons, which are refused."""

import pytest
from pydantic import ValidationError

from edged.config.geofences import Geofence

# the market square of config/shuttle.toml, its corners in order around it (clockwise)
NW, NE, SE, SW = (46.1721, 1.8702), (46.1722, 1.8731), (46.1707, 1.8733), (46.1706, 1.8703)


def test_a_ring_whose_edges_cross_is_refused() -> None:
    # The corners in reading order (NW, NE, SW, SE) make a bow tie: its two edges cross in
    # the middle and, by the even-odd rule, the east and west quarters of the square are
    # "outside" — a market fence that misses the truck parked there, said nowhere. A ring is
    # closed and simple, no edge crossing another (OGC Simple Features 1.1, LinearRing;
    # RFC 7946 §3.1.6 builds GeoJSON polygons from linear rings).
    with pytest.raises(ValidationError, match="cross"):
        Geofence(id="market", kind="market", points=[NW, NE, SW, SE])


@pytest.mark.parametrize(
    "points",
    [
        [NW, NE, NW],  # two corners, "closed" as GeoJSON closes a ring
        [NW, NW, NW, NE],
        [(46.0, 2.0), (46.001, 2.001), (46.002, 2.002)],  # on one line
        [(46.0, 2.0), (46.002, 2.0), (46.001, 2.0), (46.001, 2.001)],  # turns back on itself
    ],
    ids=["two-corners", "repeated-corner", "collinear", "spike"],
)
def test_a_ring_that_bounds_no_area_is_refused(points: list[tuple[float, float]]) -> None:
    # RFC 7946 §3.1.6: a linear ring has four or more positions, the first and last the
    # same: three distinct corners at least, not on one line. Such a fence is never entered.
    with pytest.raises(ValidationError):
        Geofence(id="x", points=points)


@pytest.mark.parametrize(
    "points",
    [[NW, NE, SE, SW], [SW, SE, NE, NW], [NW, NE, SE, SW, NW], [SW, SE, NE, NW, SW]],
    ids=["clockwise", "counter-clockwise", "closed-clockwise", "closed-counter-clockwise"],
)
def test_a_simple_ring_is_a_polygon_open_or_closed_either_way_round(
    points: list[tuple[float, float]],
) -> None:
    # RFC 7946 §3.1.6: "parsers SHOULD NOT reject Polygons that do not follow the
    # right-hand rule"; the config does not ask for the ring to be closed.
    assert Geofence(id="market", points=points).points == points


def test_a_ring_across_the_180th_meridian_is_judged_the_short_way_round() -> None:
    # A stop on Taveuni (Fiji), whose map tool puts a corner on the meridian as 180: read
    # as raw numbers, the edge from 180 to -179.999 runs back west round the whole world
    # over the one before, and a good fence was refused ("turns back on itself").
    stop = [(-16.799, 179.999), (-16.799, 180.0), (-16.799, -179.999), (-16.801, -179.999)]
    Geofence(id="waiyevo", points=[*stop, (-16.801, 179.999)])
    # and a bow tie there is still one
    with pytest.raises(ValidationError, match="cross"):
        Geofence(
            id="waiyevo",
            points=[
                (-16.799, 179.999),
                (-16.801, -179.999),
                (-16.799, -179.999),
                (-16.802, 179.999),
            ],
        )


# A fleet's region from the Baltic to Alaska, 200° of longitude across the 180th meridian,
# each edge under 180° (as a map tool draws a region that wide: corners along the way).
RUSSIA_WITH_ALASKA = [
    (41.0, 19.0),
    (41.0, 100.0),
    (50.0, 180.0),
    (50.0, -141.0),
    (72.0, -141.0),
    (72.0, 180.0),
    (78.0, 100.0),
    (60.0, 19.0),
]


def test_a_region_wider_than_half_the_world_is_read_edge_by_edge() -> None:
    # Read from the first corner, Alaska's -141 was 160° west of the Baltic, not 220° east:
    # the ring crossed itself and the region was refused.
    Geofence(id="fleet", points=RUSSIA_WITH_ALASKA)
    # an edge half way round has no short way (a box from 90° W to 90° E: which half?); a
    # box from -180 to 180 is a line (the same meridian); a ring round a pole has no inside
    half = [(-60.0, -90.0), (-60.0, 90.0), (75.0, 90.0), (75.0, -90.0)]
    with pytest.raises(ValidationError, match="half the Earth"):
        Geofence(id="half", points=half)
    world = [(-60.0, -180.0), (-60.0, 180.0), (75.0, 180.0), (75.0, -180.0)]
    with pytest.raises(ValidationError, match="one line"):
        Geofence(id="world", points=world)
    with pytest.raises(ValidationError, match="all the way round"):
        Geofence(id="arctic", points=[(80.0, 0.0), (80.0, 90.0), (80.0, 180.0), (80.0, -90.0)])

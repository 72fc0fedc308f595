"""What the emulated devices say: a GPS driving the route, a bus on the FMS CAN.

The GPS compresses distance, not time, as `gps.sim` does: one epoch per real second with
the wall-clock time, the vehicle moving `speed_factor` seconds of route per epoch. So a
shuttle day fits in minutes while the receiver's clock stays true.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.gps.sim import SimGps, SimGpsOptions
from hil.gps.make_logs import State, ublox_m8


def route_epochs(
    route: Path, *, speed_factor: float, rate_hz: float = 1.0, seed: int = 3
) -> Iterator[tuple[float, float, float, float]]:
    """(lat, lon, speed m/s, course) per epoch, along the route, forever."""
    sim = SimGps(SimGpsOptions(route=route, speed_factor=speed_factor, rate_hz=rate_hz, seed=seed))
    return sim.track(speed_factor / rate_hz)


def route_nmea(
    route: Path,
    *,
    seconds: float,
    speed_factor: float,
    start: datetime | None = None,
    rate_hz: float = 1.0,
    offset_s: float = 0.0,
) -> list[bytes]:
    """u-blox M8 sentences for `seconds` of real time, epochs stamped from `start` (now).

    `offset_s`: the receiver's time is that far off (a receiver that lost its almanac, a
    week-number rollover). The same route from the same `start` with and without an offset
    lets a replay jump from one to the other (`NmeaEmulator.switch`).
    """
    t0 = start or datetime.now(UTC)
    track = route_epochs(route, speed_factor=speed_factor, rate_hz=rate_hz)
    lines: list[bytes] = []
    for i in range(round(seconds * rate_hz)):
        lat, lon, speed, course = next(track)
        state = State(
            t=t0 + timedelta(seconds=i / rate_hz + offset_s),
            lat=lat,
            lon=lon,
            alt=430.0,
            speed=speed,
            course=course,
            fix=3,
        )
        lines += [s.encode() for s in ublox_m8(state, gsv_and_gll=False)]
    return lines

"""Generate the NMEA test logs in hil/gps/logs/ from a drive along a real road.

`python -m hil.gps.make_logs` rewrites them (deterministic: same bytes every run). The
vehicle drives the D982 north from Felletin towards Aubusson (Creuse, France): it waits
5 s, accelerates at 1.2 m/s² to 50 km/h and follows the road's bends. Each receiver family
writes that drive the way the family formats it:

- ublox-m8-gn.nmea: u-blox M8, NMEA 4.0, 9600 baud, 1 Hz; GN talker for the merged
  solution: GNRMC GNVTG GNGGA GNGSA×2 GPGSV GLGSV GNGLL; course empty when static.
- sirf-gp.nmea: SiRF III, NMEA 2.2, GPS only, 4800 baud, 1 Hz: GPGGA GPGSA GPGSV GPRMC
  (RMC without mode indicator, 4-decimal minutes).
- ublox-m8-10hz.nmea: u-blox M8 at 10 Hz, 115200 baud: GNRMC GNVTG GNGGA GNGSA×2.
- mtk-coldstart.nmea: MediaTek MT3339 from cold start, 9600 baud, 1 Hz: GPRMC GPVTG GPGGA
  GPGSA GPGSV; crosses midnight UTC, so the RMC date changes mid-log.
- casic-bd.nmea: CASIC ATGM336H, GPS + BeiDou, 9600 baud, 1 Hz: GNGGA GNGLL GNGSA×2 GPGSV
  BDGSV GNRMC GNVTG GNZDA GPTXT (RMC late in the epoch, ZDA and TXT to skip).
- multi-gns.nmea: multi-GNSS NMEA 4.11, 38400 baud, 1 Hz, GNS instead of GGA: GNGNS
  GNGSA×4 (system ids) GPGSV GLGSV GAGSV GBGSV GQGSV GNRMC.

The cold-start log begins with 3 epochs without time, 4 with time but no fix and 2 in 2D
before the 3D drive. The bench generates long drives with `receiver_lines` directly.
"""

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.geo import bearing_deg, haversine_m

LOGS = Path(__file__).resolve().parent / "logs"

ROAD: list[tuple[float, float]] = [
    (45.88330, 2.17440),  # Felletin, place Courtaud
    (45.88810, 2.17595),
    (45.89455, 2.17720),
    (45.90020, 2.17905),
    (45.90500, 2.18010),
    (45.91180, 2.17930),
    (45.91890, 2.17705),
    (45.92510, 2.17580),
    (45.93020, 2.17490),
    (45.93870, 2.17300),
    (45.94790, 2.17050),
    (45.95580, 2.16830),  # Aubusson, gare routière
]
"""The D982 from Felletin to Aubusson, the road the shuttle of config/routes takes."""

KNOTS = 3600 / 1852  # knots per m/s
GPS = [2, 5, 6, 12, 13, 15, 18, 19, 20, 24, 25, 29]
GLONASS = [65, 66, 72, 73, 74, 80, 81, 88]
GALILEO = [3, 5, 13, 15, 21, 26]
BEIDOU = [6, 9, 16, 19, 20, 22, 27, 36]
QZSS = [2, 3]


@dataclass(frozen=True)
class State:
    """The receiver's view at one epoch."""

    t: datetime
    lat: float
    lon: float
    alt: float
    speed: float  # m/s
    course: float
    fix: int  # 0 none, 2 2D, 3 3D
    has_time: bool = True


def drive(
    start: datetime, rate_hz: float, seconds: float, *, seed: int = 1, wait_s: float = 5.0
) -> Iterator[State]:
    """One State per epoch: stopped `wait_s`, then 1.2 m/s² up to 50 km/h along ROAD."""
    rng = random.Random(seed)
    step = 1 / rate_hz
    dist = 0.0
    for i in range(round(seconds * rate_hz)):
        t = i * step
        speed = min(50 / 3.6, 1.2 * max(0.0, t - wait_s))
        dist += speed * step
        lat, lon, course = along_road(dist)
        yield State(
            t=start + timedelta(seconds=t),
            lat=lat,
            lon=lon,
            alt=452.0 - 0.004 * dist + rng.gauss(0, 0.3),
            speed=speed + (0.0 if speed else abs(rng.gauss(0, 0.03))),
            course=course,
            fix=3,
        )


def along_road(dist: float) -> tuple[float, float, float]:
    """Point and bearing `dist` metres along ROAD (stays at the end past it)."""
    for a, b in itertools.pairwise(ROAD):
        length = haversine_m(*a, *b)
        if dist <= length:
            f = dist / length
            return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, bearing_deg(*a, *b)
        dist -= length
    a, b = ROAD[-2], ROAD[-1]
    return b[0], b[1], bearing_deg(*a, *b)


# -- formatting ---------------------------------------------------------------------------


def sentence(body: str) -> str:
    """`$body*hh` with its checksum."""
    checksum = 0
    for byte in body.encode("ascii"):
        checksum ^= byte
    return f"${body}*{checksum:02X}"


def hhmmss(t: datetime, decimals: int) -> str:
    base = t.strftime("%H%M%S")
    if not decimals:
        return base
    return f"{base}.{t.microsecond // 10 ** (6 - decimals):0{decimals}d}"


def ddmmyy(t: datetime) -> str:
    return t.strftime("%d%m%y")


def coord(value: float, degree_digits: int, decimals: int, pos: str, neg: str) -> tuple[str, str]:
    """Signed degrees to NMEA `(d)ddmm.mmmm` and hemisphere."""
    scale = 10**decimals
    total = round(abs(value) * 60 * scale)  # minutes × scale, rounded once
    degrees, minutes = divmod(total, 60 * scale)
    whole, frac = divmod(minutes, scale)
    text = f"{degrees:0{degree_digits}d}{whole:02d}.{frac:0{decimals}d}"
    return text, pos if value >= 0 else neg


def lat_lon(s: State, decimals: int) -> str:
    lat, ns = coord(s.lat, 2, decimals, "N", "S")
    lon, ew = coord(s.lon, 3, decimals, "E", "W")
    return f"{lat},{ns},{lon},{ew}"


def gsa(
    prns: list[int], fix: int, pdop: float, hdop: float, vdop: float, sys_id: str = "", dp: int = 2
) -> str:
    """GSA fields after the talker: 12 PRN slots, DOPs with `dp` decimals, NMEA 4.10 id."""
    used = [f"{p:02d}" for p in prns[:12]] if fix > 1 else []
    slots = ",".join(used + [""] * (12 - len(used)))
    tail = f",{sys_id}" if sys_id else ""
    if fix <= 1:
        return f"A,1,{slots},99.99,99.99,99.99{tail}"
    return f"A,{fix},{slots},{pdop:.{dp}f},{hdop:.{dp}f},{vdop:.{dp}f}{tail}"


def gsv(talker: str, prns: list[int], seed: int) -> list[str]:
    """Satellites in view, four per sentence, with plausible elevation/azimuth/SNR."""
    rng = random.Random(seed)
    sats = [(p, rng.randint(5, 85), rng.randint(0, 359), rng.randint(18, 46)) for p in prns]
    total = max(1, (len(sats) + 3) // 4)
    out = []
    for i in range(total):
        part = sats[i * 4 : i * 4 + 4]
        fields = "".join(f",{p:02d},{el:02d},{az:03d},{snr:02d}" for p, el, az, snr in part)
        out.append(sentence(f"{talker}GSV,{total},{i + 1},{len(sats):02d}{fields}"))
    return out


def used_sats(s: State, pool: list[int], n: int) -> list[int]:
    """A slowly changing subset of `pool`, as a receiver's used list is."""
    shift = int(s.t.timestamp() // 60) % len(pool)
    return (pool[shift:] + pool[:shift])[:n]


# -- receiver families --------------------------------------------------------------------


def ublox_m8(s: State, *, gsv_and_gll: bool = True, decimals: int = 2) -> list[str]:
    """u-blox M8 (NMEA 4.0): GN talker for merged solutions, course empty when static."""
    t = hhmmss(s.t, decimals)
    pos = lat_lon(s, 5)
    kn = s.speed * KNOTS
    course = f"{s.course:.2f}" if kn >= 0.5 else ""
    gps, glo = used_sats(s, GPS, 7), used_sats(s, GLONASS, 5)
    alt_geoid = f"{s.alt:.1f},M,49.2,M"
    out = [
        sentence(f"GNRMC,{t},A,{pos},{kn:.3f},{course},{ddmmyy(s.t)},,,A"),
        sentence(f"GNVTG,{course},T,,M,{kn:.3f},N,{s.speed * 3.6:.3f},K,A"),
        sentence(f"GNGGA,{t},{pos},1,{len(gps) + len(glo):02d},0.87,{alt_geoid},,"),
        sentence("GNGSA," + gsa(gps, 3, 1.52, 0.87, 1.25)),
        sentence("GNGSA," + gsa(glo, 3, 1.52, 0.87, 1.25)),
    ]
    if gsv_and_gll:
        out += gsv("GP", GPS[:10], s.t.minute)
        out += gsv("GL", GLONASS[:7], s.t.minute + 1)
        out.append(sentence(f"GNGLL,{pos},{t},A,A"))
    return out


def sirf_gp(s: State) -> list[str]:
    """SiRF III (NMEA 2.2): GP only, 3-decimal time, 4-decimal minutes, RMC without mode."""
    t = hhmmss(s.t, 3)
    pos = lat_lon(s, 4)
    used = used_sats(s, GPS, 8)
    kn = s.speed * KNOTS
    return [
        sentence(f"GPGGA,{t},{pos},1,{len(used):02d},1.1,{s.alt:.1f},M,49.2,M,,0000"),
        sentence("GPGSA," + gsa(used, 3, 2.0, 1.1, 1.7, dp=1)),
        *gsv("GP", GPS[:11], s.t.minute),
        sentence(f"GPRMC,{t},A,{pos},{kn:.2f},{s.course:.2f},{ddmmyy(s.t)},,"),
    ]


def mtk(s: State) -> list[str]:
    """MediaTek MT3339: GP talker, `hhmmss.000`, empty fields until it knows time and fix."""
    if not s.has_time:
        return [
            sentence("GPRMC,,V,,,,,,,,,,N"),
            sentence("GPVTG,,T,,M,,N,,K,N"),
            sentence("GPGGA,,,,,,0,00,99.99,,,,,,"),
            sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"),
            sentence("GPGSV,1,1,00"),
        ]
    t = hhmmss(s.t, 3)
    d = ddmmyy(s.t)
    if s.fix == 0:
        return [
            sentence(f"GPRMC,{t},V,,,,,0.00,0.00,{d},,,N"),
            sentence("GPVTG,0.00,T,,M,0.00,N,0.00,K,N"),
            sentence(f"GPGGA,{t},,,,,0,03,,,M,,M,,"),
            sentence("GPGSA," + gsa([], 1, 0, 0, 0)),
            *gsv("GP", GPS[:3], 1),
        ]
    pos = lat_lon(s, 4)
    used = used_sats(s, GPS, 4 if s.fix == 2 else 9)
    kn = s.speed * KNOTS
    alt = f"{s.alt:.1f}" if s.fix == 3 else ""
    hdop = "2.41" if s.fix == 2 else "0.95"
    return [
        sentence(f"GPRMC,{t},A,{pos},{kn:.2f},{s.course:.2f},{d},,,A"),
        sentence(f"GPVTG,{s.course:.2f},T,,M,{kn:.2f},N,{s.speed * 3.6:.2f},K,A"),
        sentence(f"GPGGA,{t},{pos},1,{len(used):02d},{hdop},{alt},M,49.2,M,,"),
        sentence("GPGSA," + gsa(used, s.fix, 2.6 if s.fix == 2 else 1.8, float(hdop), 1.5)),
        *gsv("GP", GPS[:10], s.t.minute),
    ]


def casic_bd(s: State) -> list[str]:
    """CASIC ATGM336H: GN merged, BDGSV for BeiDou, ZDA and TXT that a parser skips."""
    t = hhmmss(s.t, 3)
    pos = lat_lon(s, 5)
    gps, bds = used_sats(s, GPS, 6), used_sats(s, BEIDOU, 5)
    kn = s.speed * KNOTS
    return [
        sentence(f"GNGGA,{t},{pos},1,{len(gps) + len(bds):02d},1.0,{s.alt:.1f},M,49.2,M,,"),
        sentence(f"GNGLL,{pos},{t},A,A"),
        sentence("GNGSA," + gsa(gps, 3, 1.8, 1.0, 1.5)),
        sentence("GNGSA," + gsa(bds, 3, 1.8, 1.0, 1.5)),
        *gsv("GP", GPS[:8], s.t.minute),
        *gsv("BD", BEIDOU[:7], s.t.minute + 2),
        sentence(f"GNRMC,{t},A,{pos},{kn:.3f},{s.course:.3f},{ddmmyy(s.t)},,,A"),
        sentence(f"GNVTG,{s.course:.3f},T,,M,{kn:.3f},N,{s.speed * 3.6:.3f},K,A"),
        sentence(f"GNZDA,{t},{s.t:%d,%m,%Y},00,00"),
        sentence("GPTXT,01,01,01,ANTENNA OK"),
    ]


def multi_gns(s: State) -> list[str]:
    """NMEA 4.11 multi-GNSS: GNS with one mode letter per system, GSA with system ids."""
    t = hhmmss(s.t, 2)
    pos = lat_lon(s, 6)
    systems = [("1", used_sats(s, GPS, 6)), ("2", used_sats(s, GLONASS, 4))]
    systems += [("3", used_sats(s, GALILEO, 4)), ("4", used_sats(s, BEIDOU, 5))]
    n = sum(len(u) for _, u in systems)
    kn = s.speed * KNOTS
    return [
        sentence(f"GNGNS,{t},{pos},AAAAN,{n:02d},0.62,{s.alt:.2f},49.20,,,V"),
        *(sentence("GNGSA," + gsa(u, 3, 1.10, 0.62, 0.91, sid)) for sid, u in systems),
        *gsv("GP", GPS[:9], s.t.minute),
        *gsv("GL", GLONASS[:6], s.t.minute + 1),
        *gsv("GA", GALILEO, s.t.minute + 2),
        *gsv("GB", BEIDOU[:7], s.t.minute + 3),
        *gsv("GQ", QZSS, s.t.minute + 4),
        sentence(f"GNRMC,{t},A,{pos},{kn:.3f},{s.course:.2f},{ddmmyy(s.t)},,,A,V"),
    ]


def cold_start(states: Iterator[State]) -> Iterator[State]:
    """The first epochs of a drive as a receiver from cold start sees them."""
    for i, s in enumerate(states):
        if i < 3:
            yield State(s.t, 0, 0, 0, 0, 0, fix=0, has_time=False)
        elif i < 7:
            yield State(s.t, 0, 0, 0, 0, 0, fix=0)
        elif i < 9:
            yield State(s.t, s.lat, s.lon, s.alt, s.speed, s.course, fix=2)
        else:
            yield s


def receiver_lines(family: Callable[[State], list[str]], states: Iterator[State]) -> Iterator[str]:
    for s in states:
        yield from family(s)


def _write(name: str, lines: Iterator[str]) -> Path:
    path = LOGS / name
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode("ascii"))
    return path


def main() -> None:
    LOGS.mkdir(exist_ok=True)
    day = datetime(2025, 6, 12, tzinfo=UTC)
    written = [
        _write(
            "ublox-m8-gn.nmea",
            receiver_lines(ublox_m8, drive(day.replace(hour=8, minute=15), 1, 90)),
        ),
        _write(
            "sirf-gp.nmea",
            receiver_lines(sirf_gp, drive(day.replace(hour=9, minute=2), 1, 60, seed=2)),
        ),
        _write(
            "ublox-m8-10hz.nmea",
            receiver_lines(
                lambda s: ublox_m8(s, gsv_and_gll=False),
                drive(day.replace(hour=10, minute=40), 10, 30, seed=3),
            ),
        ),
        _write(
            "mtk-coldstart.nmea",
            receiver_lines(
                mtk, cold_start(drive(day.replace(hour=23, minute=59, second=20), 1, 80, seed=4))
            ),
        ),
        _write(
            "casic-bd.nmea",
            receiver_lines(casic_bd, drive(day.replace(hour=14, minute=30), 1, 60, seed=5)),
        ),
        _write(
            "multi-gns.nmea",
            receiver_lines(multi_gns, drive(day.replace(hour=16, minute=5), 1, 60, seed=6)),
        ),
    ]
    for path in written:
        print(path.relative_to(LOGS.parents[2]), path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

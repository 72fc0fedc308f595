"""A synthetic FMS bus of a school bus doing shuttle service: frames as a vehicle sends them.

The vehicle drives a speed profile with stops; odometer, fuel used (27.5 L/100 km moving,
2 L/h idling at stops: 30 L/100 km over the profile), engine hours and fuel level all
follow from it, so a replay can be checked for consistency. Doors open at stops. One
engine fault (SPN 110, coolant temperature) comes and goes, with a second one (SPN 1761,
DEF level) overlapping it, so DM1 also goes over the transport protocol (BAM). Other ECUs
send parameter groups that edged does not decode (transmission, brakes, tachograph, a
TSC1 command, a software identification over BAM), as on a real bus.
"""

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from core.events import TroubleCode
from drivers.can.dm1 import encode_dm1
from drivers.can.j1939 import PGN_TP_CM, PGN_TP_DT, make_id

Frame = tuple[float, int, bytes]
"""(timestamp s, 29-bit identifier, data)."""

# source addresses
ENGINE, TRANSMISSION, BRAKES, CLUSTER, BODY, TACHOGRAPH = 0x00, 0x03, 0x0B, 0x17, 0x21, 0xEE

# PGNs decoded by edged (config/fms.dbc) and some it ignores
EEC1, CCVS1, VDHR, LFC, DD, HOURS, DC1, DC2, DM1 = (
    61444,
    65265,
    65217,
    65257,
    65276,
    65253,
    65102,
    64933,
    65226,
)
ETC1, EBC1, TCO1, ET1, AMB, TSC1, SOFT = 61442, 61441, 65132, 65262, 65269, 0, 65242

TICK_S = 0.01
FUEL_L_PER_KM = 0.275  # moving; with idling at stops, 30 L/100 km over the profile
IDLE_L_PER_H = 2.0
TANK_L = 300.0


@dataclass(frozen=True)
class Leg:
    """A piece of the profile: `duration_s` from `v0` to `v1` km/h; doors open at stops."""

    duration_s: float
    v0: float
    v1: float
    doors: tuple[int, ...] = ()  # doors open during a stop (1 front, 2 rear)


DEFAULT_PROFILE = (
    Leg(24, 0, 0, (1,)),
    Leg(14, 0, 48),
    Leg(40, 48, 50),
    Leg(11, 50, 0),
    Leg(28, 0, 0, (1, 2)),
    Leg(18, 0, 68),
    Leg(55, 68, 70),
    Leg(15, 70, 0),
    Leg(32, 0, 0, (1,)),
    Leg(10, 0, 35),
    Leg(22, 35, 38),
    Leg(9, 38, 0),
    Leg(22, 0, 0, (1, 2)),
)
FAULTS = (
    (95.0, 185.0, TroubleCode(spn=110, fmi=16, occurrence=1)),  # coolant temp. high
    (130.0, 160.0, TroubleCode(spn=1761, fmi=18, occurrence=1)),  # DEF tank level low
)


@dataclass
class State:
    t: float = 0.0
    speed_kmh: float = 0.0
    accel: float = 0.0
    rpm: float = 650.0
    distance_m: float = 412_345_675.0
    trip_m: float = 0.0
    fuel_l: float = 152_340.3
    trip_fuel_l: float = 0.0
    level_pct: float = 62.0
    hours: float = 8_123.45
    revolutions: float = 312_456_000.0
    doors_open: tuple[int, ...] = ()
    closing: bool = False
    stopped: bool = True


def _u16(v: int) -> bytes:
    return (v & 0xFFFF).to_bytes(2, "little")


def _u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


class FmsBus:
    """Generates the frames of `profile` (looped as needed) from `start` (epoch seconds)."""

    def __init__(
        self,
        profile: tuple[Leg, ...] = DEFAULT_PROFILE,
        *,
        start: float = 1_715_671_800.0,
        seed: int = 4,
    ) -> None:
        self.profile = profile
        self.start = start
        self.rng = random.Random(seed)
        self.state = State()
        self.length_s = sum(leg.duration_s for leg in profile)

    def _leg_at(self, t: float) -> tuple[Leg, float]:
        t %= self.length_s
        for leg in self.profile:
            if t < leg.duration_s:
                return leg, t
            t -= leg.duration_s
        return self.profile[-1], self.profile[-1].duration_s

    def _step(self, dt: float) -> None:
        s = self.state
        leg, into = self._leg_at(s.t)
        f = into / leg.duration_s
        target = leg.v0 + (leg.v1 - leg.v0) * (0.5 - 0.5 * math.cos(math.pi * f))
        if leg.v0 == leg.v1 and leg.v0 > 0:
            target += 0.8 * math.sin(s.t / 3.0) + self.rng.gauss(0, 0.1)
        target = max(0.0, target)
        s.accel = (target - s.speed_kmh) / dt / 3.6  # m/s²
        s.speed_kmh = target
        s.stopped = target == 0.0
        opened = leg.doors and 3.0 <= into <= leg.duration_s - 4.0
        s.doors_open = leg.doors if opened else ()
        s.closing = bool(leg.doors) and leg.duration_s - 4.0 < into <= leg.duration_s - 3.0
        metres = target / 3.6 * dt
        s.distance_m += metres
        s.trip_m += metres
        litres = metres / 1000 * FUEL_L_PER_KM if target else IDLE_L_PER_H * dt / 3600
        s.fuel_l += litres
        s.trip_fuel_l += litres
        s.level_pct = max(0.0, s.level_pct - litres / TANK_L * 100)
        s.rpm = 650.0 if target < 1 else min(2100.0, 800.0 + target * 18 + max(0.0, s.accel) * 300)
        s.rpm += self.rng.gauss(0, 4)
        s.hours += dt / 3600
        s.revolutions += s.rpm / 60 * dt
        s.t += dt

    # -- payloads ----------------------------------------------------------------------

    def eec1(self) -> bytes:
        s = self.state
        torque = 125 + (min(100, int(20 + s.accel * 40)) if not s.stopped else 8)
        return bytes([0xF1, torque, torque, *_u16(int(s.rpm / 0.125)), ENGINE, 0xFF, torque])

    def ccvs1(self) -> bytes:
        s = self.state
        parking = 1 if s.stopped else 0
        brake = 1 if s.accel < -0.2 or s.stopped else 0
        b1 = 0b11000000 | 0b00 << 4 | parking << 2 | 0b00
        b4 = 0b11 << 6 | brake << 4 | 0b00 << 2 | 0b00
        return bytes([b1, *_u16(int(s.speed_kmh * 256)), b4, 0xFF, 0xFF, 0xFF, 0xFF])

    def vdhr(self) -> bytes:
        s = self.state
        return _u32(int(s.distance_m // 5)) + _u32(int(s.trip_m // 5))

    def lfc(self) -> bytes:
        s = self.state
        return _u32(int(s.trip_fuel_l / 0.5)) + _u32(int(s.fuel_l / 0.5))

    def dd(self) -> bytes:
        s = self.state
        return bytes([200, int(s.level_pct / 0.4), 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])

    def hours_msg(self) -> bytes:
        s = self.state
        return _u32(int(s.hours / 0.05)) + _u32(int(s.revolutions / 1000))

    def dc1(self) -> bytes:
        s = self.state
        position = 0 if s.doors_open else (1 if s.closing else 2)
        enabled = 1 if s.stopped else 0
        return bytes([enabled << 6 | 0b00 << 4 | position, *b"\xff" * 7])

    def dc2(self) -> bytes:
        s = self.state
        bits = 0
        for door in range(1, 11):
            base = (door - 1) * 6
            if door <= 2:
                lock, opened, enable = 0, 1 if door in s.doors_open else 0, 1 if s.stopped else 0
            else:
                lock, opened, enable = 3, 3, 3  # a bus with two doors: the rest not available
            bits |= lock << base | opened << (base + 2) | enable << (base + 4)
        bits |= 0xF << 60
        return bits.to_bytes(8, "little")

    def dm1_codes(self) -> list[TroubleCode]:
        t = self.state.t % self.length_s
        return [code for start, end, code in FAULTS if start <= t < end]

    # -- the bus -----------------------------------------------------------------------

    def frames(self, duration_s: float) -> Iterator[Frame]:
        """Every frame of `duration_s` seconds of bus, in time order."""
        ticks = round(duration_s / TICK_S)
        periodic = (
            # (period in ticks, phase, pgn, source, priority, payload)
            (5, 0, EEC1, ENGINE, 3, self.eec1),
            (10, 1, CCVS1, ENGINE, 6, self.ccvs1),
            (20, 3, DC1, BODY, 6, self.dc1),
            (20, 4, DC2, BODY, 6, self.dc2),
            (100, 11, VDHR, TACHOGRAPH, 6, self.vdhr),
            (100, 23, LFC, ENGINE, 6, self.lfc),
            (100, 37, DD, CLUSTER, 6, self.dd),
            (100, 41, HOURS, ENGINE, 6, self.hours_msg),
            (5, 2, TCO1, TACHOGRAPH, 3, lambda: self._noise(8)),
            (5, 3, ETC1, TRANSMISSION, 3, lambda: self._noise(8)),
            (10, 6, EBC1, BRAKES, 6, lambda: self._noise(8)),
            (10, 7, TSC1, TRANSMISSION, 3, lambda: self._noise(8)),
            (100, 53, ET1, ENGINE, 6, lambda: self._noise(8)),
            (100, 67, AMB, CLUSTER, 6, lambda: self._noise(8)),
        )
        queue: list[Frame] = []
        for k in range(ticks):
            self._step(TICK_S)
            now = self.start + k * TICK_S
            for period, phase, pgn, source, prio, payload in periodic:
                if k % period == phase:
                    dest = ENGINE if pgn == TSC1 else 0xFF
                    jitter = self.rng.uniform(0, 0.0009)
                    can_id = make_id(pgn, source, priority=prio, destination=dest)
                    queue.append((now + jitter, can_id, payload()))
            if k % 100 == 71:
                queue += self._dm1(now)
            if k % 3000 == 500:  # software identification, every 30 s, over BAM
                soft = b"*EDC17 4.2.1*TCU 7.0*"
                queue += _bam(now, SOFT, ENGINE, soft, 6)
            queue.sort()
            due = [f for f in queue if f[0] < now + TICK_S]
            queue = queue[len(due) :]
            yield from due
        yield from sorted(queue)

    def _noise(self, n: int) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(n))

    def _dm1(self, now: float) -> list[Frame]:
        codes = self.dm1_codes()
        lamps = {"amber_warning": 1} if codes else {}
        payload = encode_dm1(lamps, codes)
        if len(payload) <= 8:
            return [(now, make_id(DM1, ENGINE, priority=6), payload)]
        return _bam(now, DM1, ENGINE, payload, 6)


def _bam(now: float, pgn: int, source: int, payload: bytes, priority: int) -> list[Frame]:
    """A TP.CM BAM and its TP.DT packets, 50 ms apart as J1939-21 asks of a sender."""
    return [
        (now + i * 0.05, can_id, data)
        for i, (can_id, data) in enumerate(bam_frames(pgn, source, payload, priority=priority))
    ]


def bam_frames(
    pgn: int, source: int, payload: bytes, *, priority: int = 7
) -> list[tuple[int, bytes]]:
    """(identifier, data) of a BAM transfer of `payload` (9..1785 bytes)."""
    size = len(payload)
    packets = -(-size // 7)
    cm = bytes(
        [32, size & 0xFF, size >> 8, packets, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16]
    )
    out = [(make_id(PGN_TP_CM, source, priority=priority), cm)]
    dt_id = make_id(PGN_TP_DT, source, priority=priority)
    for seq in range(1, packets + 1):
        chunk = payload[(seq - 1) * 7 : seq * 7]
        out.append((dt_id, bytes([seq]) + chunk + b"\xff" * (7 - len(chunk))))
    return out


def rts_cts_frames(
    pgn: int, originator: int, responder: int, payload: bytes, *, per_cts: int = 2
) -> list[tuple[int, bytes]]:
    """(identifier, data) of both sides of an RTS/CTS transfer of `payload` (9..1785 bytes)
    from `originator` to `responder`: RTS, then `per_cts` packets per CTS, then the
    acknowledgement, as J1939-21 connection mode exchanges them."""
    size = len(payload)
    packets = -(-size // 7)
    tail = bytes([pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16])
    to_responder = make_id(PGN_TP_CM, originator, priority=7, destination=responder)
    to_originator = make_id(PGN_TP_CM, responder, priority=7, destination=originator)
    dt_id = make_id(PGN_TP_DT, originator, priority=7, destination=responder)
    out = [(to_responder, bytes([16, size & 0xFF, size >> 8, packets, per_cts]) + tail)]
    for first in range(1, packets + 1, per_cts):
        count = min(per_cts, packets - first + 1)
        out.append((to_originator, bytes([17, count, first, 0xFF, 0xFF]) + tail))
        for seq in range(first, first + count):
            chunk = payload[(seq - 1) * 7 : seq * 7]
            out.append((dt_id, bytes([seq]) + chunk + b"\xff" * (7 - len(chunk))))
    out.append((to_originator, bytes([19, size & 0xFF, size >> 8, packets, 0xFF]) + tail))
    return out


def flood(count: int, *, seed: int = 1) -> list[tuple[int, bytes]]:
    """`count` frames of a saturated bus, every other one a PGN edged does not decode."""
    bus = FmsBus(seed=seed)
    relevant = [
        (can_id, data)
        for _, can_id, data in bus.frames(120.0)
        if (can_id >> 8) & 0x3FFFF in (EEC1, CCVS1, DC1, DC2, VDHR, LFC, DD, HOURS, DM1)
    ]
    rng = random.Random(seed)
    others = (ETC1, EBC1, TCO1, ET1, AMB, 65131, 65198, 64777)
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        if i % 2:
            pgn = others[i % len(others)]
            out.append(
                (make_id(pgn, rng.randrange(0x40)), bytes(rng.randrange(256) for _ in range(8)))
            )
        else:
            out.append(relevant[(i // 2) % len(relevant)])
    return out

"""Every fix epoch of every receiver log in corpus/ becomes exactly one right position.

The logs (corpus/*.nmea) were written by hand from receiver manuals and standards'
examples, one burst per paragraph (a blank line is the receiver's quiet spell between
epochs); each has its expected positions in corpus/*.toml, written from the sentences, not
produced by this parser: the coordinates are the NMEA text itself ("4717.11437 N"),
turned into degrees here by a dozen lines of decimal arithmetic. See corpus/README.md.

Three ways through:
- the parser directly, fed burst by burst with the time each burst arrives (every field
  of every position checked);
- the parser directly, fed the whole log in one read, without any timing (times and
  positions checked: the GSA of a GSA-first receiver can only be placed by timing);
- the real `gps.nmea-serial` driver on a pty fed by the HIL emulator, every Fix through
  the real position service set to publish every fix: the `position` payloads checked.
"""

import asyncio
import math
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.events import Fix, FixMode
from drivers.gps.decoder import NmeaDecoder
from edged.config.services import PositionServiceConfig, ReportingConfig
from edged.payloads import Position
from edged.services.position import PositionService
from tests.drivers.gps.fakes import CORPUS, recording, through_driver
from tests.helpers.host import TestHost

LOGS = sorted(p.stem for p in CORPUS.glob("*.nmea"))
BURST_S = 0.25
"""Real seconds between bursts when replayed: the shortest interval of a log maps to it."""
NOW = datetime(2026, 2, 1, tzinfo=UTC)  # the node's clock for epochs without a date


@dataclass(frozen=True)
class Point:
    """A position as expected from the log's .toml, or as the parser or service gave it."""

    time: datetime
    lat: float
    lon: float
    date_unknown: bool
    alt: float | None
    satellites: int | None
    mode: str
    quality: int

    @staticmethod
    def expected(f: dict[str, Any]) -> "Point":
        return Point(
            time=datetime.fromisoformat(f["time"]),
            lat=degrees(f["lat"]),
            lon=degrees(f["lon"]),
            date_unknown=f.get("date_unknown", False),
            alt=f.get("alt"),
            satellites=f.get("satellites"),
            mode=f["mode"],
            quality=f["quality"],
        )

    @staticmethod
    def of_fix(fix: Fix) -> "Point":
        mode = "3D" if fix.mode is FixMode.THREE_D else "2D"
        return Point(
            fix.fix_time,
            fix.lat,
            fix.lon,
            not fix.date_known,
            fix.alt,
            fix.satellites,
            mode,
            fix.quality,
        )

    @staticmethod
    def of_position(p: Position) -> "Point":
        return Point(
            p.fix_time, p.lat, p.lon, bool(p.date_unknown), p.alt, p.satellites, p.mode, p.quality
        )


@dataclass
class Log:
    name: str
    bursts: list[bytes]  # each burst's lines with their CRLF
    fixes: list[Point]
    voids: int
    counts: dict[str, int] = field(default_factory=dict)


def degrees(text: str) -> float:
    """'4717.11437 N' -> 47.285239…: (d)ddmm.mmmm and hemisphere, in decimal arithmetic."""
    value, hemi = text.split()
    dot = value.index(".")
    deg = Decimal(value[: dot - 2]) + Decimal(value[dot - 2 :]) / 60
    return float(-deg if hemi in "SW" else deg)


def load(name: str) -> Log:
    spec = tomllib.loads((CORPUS / f"{name}.toml").read_text())
    fixes = [Point.expected(f) for f in spec["fix"]]
    return Log(name, recording(name), fixes, spec.get("voids", 0), spec.get("counts", {}))


def key(when: datetime, date_unknown: bool) -> tuple[date | None, timedelta]:
    """What a fix time must match: the time of day always, the day when it is known."""
    midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
    return (None if date_unknown else when.date()), when - midnight


def mismatches(log: Log, got: list[Point], *, fields: bool = True) -> list[str]:
    """Every way `got` differs from the log's expected positions (empty: all right)."""
    problems: list[str] = []
    by_key: dict[tuple[date | None, timedelta], list[Point]] = {}
    for g in got:
        by_key.setdefault(key(g.time, False), []).append(g)
    claimed: set[int] = set()
    for e in log.fixes:
        if e.date_unknown:
            matches = [g for g in got if key(g.time, True) == key(e.time, True)]
        else:
            matches = by_key.get(key(e.time, False), [])
        claimed.update(id(g) for g in matches)
        if len(matches) != 1:
            problems.append(f"{log.name} {e.time}: {len(matches)} positions, not 1")
            continue
        g = matches[0]
        if not (
            math.isclose(g.lat, e.lat, abs_tol=1e-10) and math.isclose(g.lon, e.lon, abs_tol=1e-10)
        ):
            problems.append(f"{log.name} {e.time}: at {g.lat}, {g.lon}, not {e.lat}, {e.lon}")
        if g.date_unknown != e.date_unknown:
            problems.append(f"{log.name} {e.time}: date_unknown {g.date_unknown}")
        if not fields:
            continue
        want = (e.alt, e.satellites, e.mode, e.quality)
        have = (g.alt, g.satellites, g.mode, g.quality)
        if have != want:
            problems.append(
                f"{log.name} {e.time}: (alt, satellites, mode, quality) {have} != {want}"
            )
    extra = [g.time for g in got if id(g) not in claimed]
    if extra:
        problems.append(f"{log.name}: positions no epoch expects at {extra}")
    return problems


def decoder() -> tuple[NmeaDecoder, Counter[str]]:
    counts: Counter[str] = Counter()

    def count(k: str, n: int) -> None:
        counts[k] += n

    return NmeaDecoder(count=count, now=lambda: NOW), counts


def decode_timed(log: Log) -> tuple[list[Fix], Counter[str]]:
    """Burst by burst, BURST_S apart, then quiet: as the receiver sends them."""
    d, counts = decoder()
    fixes: list[Fix] = []
    at = 100.0
    for burst in log.bursts:
        fixes += d.poll(at)
        fixes += d.feed(burst, at)
        at += BURST_S
    fixes += d.poll(at + 1.0)
    assert d.flush() is None, "the quiet spell after the last burst emits the last epoch"
    return fixes, counts


@pytest.mark.parametrize("name", LOGS)
def test_every_fix_epoch_is_one_right_position_fed_burst_by_burst(name: str) -> None:
    log = load(name)
    fixes, counts = decode_timed(log)
    valid = [Point.of_fix(f) for f in fixes if f.valid]
    assert mismatches(log, valid) == []
    assert len(fixes) - len(valid) == log.voids
    assert dict(counts) == log.counts


@pytest.mark.parametrize("name", LOGS)
def test_every_fix_epoch_is_one_position_at_its_time_fed_in_one_read(name: str) -> None:
    log = load(name)
    d, counts = decoder()
    fixes = d.feed(b"".join(log.bursts), 100.0)
    if (last := d.flush()) is not None:
        fixes.append(last)
    valid = [Point.of_fix(f) for f in fixes if f.valid]
    assert mismatches(log, valid, fields=False) == []
    assert "parser_error" not in counts


def test_the_corpus_covers_the_receiver_quirks_it_is_meant_to() -> None:
    text = {name: (CORPUS / f"{name}.nmea").read_text() for name in LOGS}
    talkers = {line[1:3] for t in text.values() for line in t.splitlines() if line[:1] == "$"}
    assert {"GN", "GP", "GL", "GA", "GB", "BD"} <= talkers
    assert any("ZDA" in t and "RMC" not in t for t in text.values())  # dated by ZDA only
    assert any(t.lstrip().startswith("$GPGSA") for t in text.values())  # GSA first
    assert any(",2208-1," in t or ",220899," in t for t in text.values())  # week rollover
    ten_hz = load("ublox-m10-10hz")
    assert {f.time.microsecond for f in ten_hz.fixes} >= {100_000 * i for i in range(10)}
    short_gga = [line for t in text.values() for line in t.splitlines() if "GGA," in line]
    assert any(len(line.split("*")[0].split(",")) == 14 for line in short_gga)
    assert sum(len(load(n).fixes) for n in LOGS) >= 90


# -- the real driver on a pty ------------------------------------------------------------


def every_fix() -> PositionServiceConfig:
    rule = ReportingConfig(min_period_s=0, max_period_s=0.001)
    return PositionServiceConfig(moving=rule, stopped=rule)


async def replay(name: str, link: Path) -> tuple[list[Point], Counter[str]]:
    """The log replayed on a pty at BURST_S per shortest interval; its `position` payloads."""
    log = load(name)
    raw = (CORPUS / f"{name}.nmea").read_bytes().splitlines()
    node = TestHost()  # the driver and a real position service on one bus, as in a node
    PositionService(node, every_fix())
    await through_driver(
        raw, link, node, fixes=len(log.fixes) + log.voids, burst_s=BURST_S, what=f"{name}: epochs"
    )
    counts = Counter(
        {k.removeprefix("driver.gps."): n for k, n in node.counters.snapshot().items()}
    )
    return [Point.of_position(b) for b in node.bodies("position")], counts


async def test_every_fix_epoch_of_every_log_is_one_right_position_through_the_driver(
    tmp_path: Path,
) -> None:
    results = await asyncio.gather(*(replay(n, tmp_path / f"{n}.gps") for n in LOGS))
    problems: list[str] = []
    for name, (got, counts) in zip(LOGS, results, strict=True):
        problems += mismatches(load(name), got)
        assert "parser_error" not in counts and "noise" not in counts, (name, counts)
    assert problems == []

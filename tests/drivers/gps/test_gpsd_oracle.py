"""Real receivers' logs from gpsd's regression suite, edged's positions held to gpsd's TPVs.

corpus/gpsd/NAME.chk is an excerpt of gpsd's test/daemon/NAME.log.chk: the sentences gpsd
read from the log, each as it echoed it, and the TPV reports it made of them (its other
reports left out). corpus/gpsd/NAME.nmea is the same sentences with CRLF line ends, as the
receiver sent them. corpus/gpsd/NAME.toml names the receiver and the source, the sentence
that opens each of the receiver's once-a-second bursts (`opener`), and every deliberate
difference between edged and gpsd (`[[differ]]`: the epoch, the kind, why). See
corpus/README.md.

gpsd reports a TPV after each sentence that changes its fix; an epoch's last TPV is gpsd's
word on it. An epoch is the time of day of the TPV, or of the timed sentence before it when
gpsd, having no date yet, gave no time. gpsd's epochs with mode 2 or 3 are the positions
edged must make: the same epochs, lat/lon within 1e-7 degrees (gpsd prints 9 decimals),
the same 2D/3D, and the same date when both have one. Any other difference is a defect
unless the .toml declares it.
"""

import json
import math
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from core.events import Fix, FixMode
from drivers.gps.decoder import NmeaDecoder

GPSD = Path(__file__).resolve().parent / "corpus" / "gpsd"
LOGS = sorted(p.stem for p in GPSD.glob("*.chk"))
NOW = datetime(2026, 2, 1, tzinfo=UTC)  # the node's clock
PERIOD_S = 1.0  # every log here is of a 1 Hz receiver
ROLLOVER_BEFORE = date(2017, 1, 1)
WEEKS_1024 = 1024 * 7  # days
TIME_FIELD = {"GGA": 1, "RMC": 1, "GNS": 1, "ZDA": 1, "GLL": 5}


@dataclass(frozen=True)
class Seen:
    """One epoch's position, as gpsd's last TPV or edged's Fix gave it."""

    day: date | None  # None: no date (gpsd without time; edged's date_unknown is kept)
    lat: float
    lon: float
    mode: int  # 2 or 3


def time_of_day(hhmmss: str) -> str:
    """'235724.02' -> '23:57:24.020'."""
    whole, _, frac = hhmmss.partition(".")
    ms = (frac + "000")[:3]
    return f"{whole[0:2]}:{whole[2:4]}:{whole[4:6]}.{ms}"


def sentence_time(line: str) -> str | None:
    body = line.split("*")[0]
    fields = body.split(",")
    kind = fields[0][3:6] if fields[0].startswith("$") else ""
    i = TIME_FIELD.get(kind)
    if i is None or len(fields) <= i or len(fields[i]) < 6 or not fields[i][:6].isdigit():
        return None
    return time_of_day(fields[i])


def gpsd_epochs(chk: list[str]) -> dict[str, Seen | None]:
    """Each epoch's last TPV (None: no fix), keyed by time of day."""
    last: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in chk:
        if not line.startswith("{"):
            current = sentence_time(line) or current
            continue
        tpv = json.loads(line)
        assert tpv["class"] == "TPV", line
        when = tpv.get("time")
        key = when[11:23] if when else current
        if key is not None:
            last[key] = tpv
    epochs: dict[str, Seen | None] = {}
    for key, tpv in last.items():
        if tpv.get("mode", 0) < 2 or "lat" not in tpv:
            epochs[key] = None
            continue
        when = tpv.get("time")
        day = date.fromisoformat(when[:10]) if when else None
        epochs[key] = Seen(day, tpv["lat"], tpv["lon"], tpv["mode"])
    return epochs


def bursts(log: bytes, opener: str) -> list[bytes]:
    """The log cut before each line that starts with `opener`: one burst per second."""
    out: list[bytes] = []
    for line in log.splitlines(keepends=True):
        if not out or line.startswith(opener.encode()):
            out.append(b"")
        out[-1] += line
    return out


def edged_epochs(log: bytes, opener: str) -> dict[str, list[Seen]]:
    """The valid fixes of the parser fed one burst a second, as a 1 Hz receiver sends."""
    errors: list[str] = []
    decoder = NmeaDecoder(now=lambda: NOW, count=lambda k, n: errors.append(k))
    fixes: list[Fix] = []
    at = 100.0
    for burst in bursts(log, opener):
        fixes += decoder.poll(at)
        fixes += decoder.feed(burst, at)
        at += PERIOD_S
    fixes += decoder.poll(at + PERIOD_S)
    assert "parser_error" not in errors
    got: dict[str, list[Seen]] = {}
    for f in fixes:
        if not f.valid:
            continue
        key = f.fix_time.strftime("%H:%M:%S.%f")[:12]
        mode = 3 if f.mode is FixMode.THREE_D else 2
        got.setdefault(key, []).append(Seen(f.fix_time.date(), f.lat, f.lon, mode))
    return got


def differences(name: str) -> set[tuple[str, str]]:
    """(time of day, kind) of every way edged's positions differ from gpsd's."""
    chk = (GPSD / f"{name}.chk").read_text().splitlines()
    spec = tomllib.loads((GPSD / f"{name}.toml").read_text())
    want = {k: v for k, v in gpsd_epochs(chk).items() if v is not None}
    got = edged_epochs((GPSD / f"{name}.nmea").read_bytes(), spec["opener"])
    found: set[tuple[str, str]] = set()
    for key in sorted(want.keys() | got.keys()):
        g, w = got.get(key, []), want.get(key)
        if len(g) > 1:
            found.add((key, "twice"))
        if w is None or not g:
            found.add((key, "extra" if w is None else "missing"))
            continue
        e = g[0]
        if not (
            math.isclose(e.lat, w.lat, abs_tol=1e-7) and math.isclose(e.lon, w.lon, abs_tol=1e-7)
        ):
            found.add((key, "position"))
        if e.mode != w.mode:
            found.add((key, "mode"))
        if w.day is not None and e.day != w.day:
            moved = (e.day - w.day).days
            rollover = w.day < ROLLOVER_BEFORE and moved > 0 and moved % WEEKS_1024 == 0
            found.add((key, "rollover" if rollover else "date"))
    return found


def declared(name: str) -> set[tuple[str, str]]:
    spec = tomllib.loads((GPSD / f"{name}.toml").read_text())
    return {(d["at"], d["kind"]) for d in spec.get("differ", [])}


@pytest.mark.parametrize("name", LOGS)
def test_every_gpsd_fix_is_one_edged_position_at_its_time_and_place(name: str) -> None:
    found = differences(name)
    assert sorted(d for d in found if d[1] != "rollover") == sorted(declared(name))


@pytest.mark.parametrize("name", LOGS)
def test_a_date_before_2017_is_moved_by_1024_weeks_only_where_the_log_says_so(
    name: str,
) -> None:
    """docs/drivers.md, Dates: a date before 2017 is taken for the GPS week rollover and
    moved forward by whole 1024-week periods when the clock (2026 here) allows it (a 2006
    date becomes 2026), else kept as sent and date_unknown (2010-2016 would pass 2028).
    gpsd, replaying its logs, keeps the date: every epoch whose date edged moved this way
    is one difference, declared once per log as `rollover`."""
    spec = tomllib.loads((GPSD / f"{name}.toml").read_text())
    moved = {d[0] for d in differences(name) if d[1] == "rollover"}
    assert bool(moved) == bool(spec.get("rollover")), sorted(moved)


@pytest.mark.parametrize("name", LOGS)
def test_the_log_read_in_one_go_gives_the_same_positions(name: str) -> None:
    """Without timing (a log file, a reader that fell behind), time alone splits epochs."""
    spec = tomllib.loads((GPSD / f"{name}.toml").read_text())
    log = (GPSD / f"{name}.nmea").read_bytes()
    decoder = NmeaDecoder(now=lambda: NOW)
    fixes = decoder.feed(log, 100.0)
    if (last := decoder.flush()) is not None:
        fixes.append(last)
    got: dict[str, list[Seen]] = {}
    for f in fixes:
        if f.valid:
            key = f.fix_time.strftime("%H:%M:%S.%f")[:12]
            mode = 3 if f.mode is FixMode.THREE_D else 2
            got.setdefault(key, []).append(Seen(f.fix_time.date(), f.lat, f.lon, mode))
    assert got == edged_epochs(log, spec["opener"])


@pytest.mark.parametrize("name", LOGS)
def test_the_log_is_the_sentences_gpsd_read(name: str) -> None:
    chk = (GPSD / f"{name}.chk").read_text().splitlines()
    sentences = [line for line in chk if not line.startswith("{")]
    log = (GPSD / f"{name}.nmea").read_bytes()
    assert log == b"".join(s.encode() + b"\r\n" for s in sentences)


def test_every_declared_difference_says_why() -> None:
    for name in LOGS:
        spec = tomllib.loads((GPSD / f"{name}.toml").read_text())
        assert spec["source"] and spec["receiver"], name
        for d in spec.get("differ", []):
            assert d["kind"] in {"extra", "missing", "twice", "position", "mode", "date"}, d
            assert len(d["why"]) > 20, d
    assert len(LOGS) >= 15

"""NMEA 0183 to `Fix`: line splitting, checksums, six sentence types, epoch merging.

Hand-written rather than pynmea2, for three reasons checked against pynmea2 1.19:

- robustness: pynmea2 raises on leading junk before `$` instead of resynchronising, accepts
  a sentence without checksum unless asked not to, and turns a void RMC into latitude 0.0 —
  each of those needs a wrapper that re-does its work;
- speed: the aim is 50,000 sentences/s through parsing, epoch merging and the position
  service in CPython. pynmea2 builds an object per sentence and converts fields through
  properties on access; `python -m bench.gps` measures pynmea2 parsing plus reading the
  fields a Fix needs at about 0.6 times the rate of this whole chain (merging and the
  position service included);
- scope: six sentence types (GGA, RMC, VTG, GSA, GNS, GLL) from any talker take a few hundred lines
  that are fully property-tested here, with no dependency to pin on a Pi.

No input makes this module raise: bad lines are dropped and counted under a key
(`noise`, `too_long`, `no_checksum`, `bad_checksum`, `malformed`), and a number that is not
a plain decimal (`nan`, `1e9`, `1_0`) or a value out of range makes its sentence malformed.

Epoch rule (a receiver sends one burst of sentences per measurement epoch):

1. GGA, RMC, GNS and GLL carry the UTC time of the epoch; a sentence whose time differs from
   the open epoch's, or whose type the open epoch already has, closes it (it is emitted) and
   opens the next one.
2. VTG and GSA carry no time: they join the open epoch, or are dropped when none is open.
3. The open epoch is emitted as soon as it holds every type in `complete_on` (default
   RMC, GGA and GSA, which u-blox, MediaTek and SiRF all send), saving one epoch of latency;
   the timed sentences of that epoch that come after it (a GLL) are dropped as late.
   A receiver that lacks one of those types is emitted on rule 1, one epoch later.

Merging: the position comes from GGA or GNS, else RMC, else GLL; speed and course from RMC,
else VTG; altitude, satellites used and HDOP from GGA or GNS, else from GSA (the PRNs of
every GSA of the epoch, one per constellation on multi-GNSS receivers); the 2D/3D mode from
GSA (the highest of the epoch), else 3D when the epoch has an altitude, 2D otherwise.
An epoch is void when any of its sentences says so (RMC or GLL status V or mode N, GGA
quality 0, GNS mode all N, GSA mode 1) or when it has no position: it is emitted as a
`Fix` with mode NONE, quality 0 and lat = lon = 0, so the services see that the fix is lost.

fix_time is the receiver's time of day on the RMC date of the epoch; without an RMC in the
epoch, on the date of the last dated epoch (moved by a day when the time of day wrapped past
midnight), or, before any date, on the system's UTC date, picking the day that puts the fix
closest to the system clock. A receiver without time yet (cold start: empty time field)
gives void epochs stamped with the system clock.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from edged.events import Fix, FixMode

NMEA_MAX_LINE = 82
"""The standard's bound, `$` to line end; receivers exceed it (u-blox GSV with signal ids)."""

DEFAULT_MAX_LINE = 120
SentenceType = Literal["GGA", "RMC", "VTG", "GSA", "GNS", "GLL"]
DEFAULT_COMPLETE_ON: tuple[SentenceType, ...] = ("RMC", "GGA", "GSA")

KNOT_MS = 1852 / 3600  # 0.514444… m/s, exact by the definition of the knot
KMH_MS = 1 / 3.6
_DAY_US = 86_400_000_000
_HALF_DAY = timedelta(hours=12)

# GGA quality values for RMC/GLL/GNS mode indicators (NMEA 2.3+); N means no fix.
_MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8, "N": 0}
_HEX = {f"{i:02X}".encode(): i for i in range(256)} | {f"{i:02x}".encode(): i for i in range(256)}

Count = Callable[[str, int], None]


def _no_count(key: str, n: int) -> None:
    """Counters not wired (benchmarks)."""


class BadSentence(Exception):
    """A sentence to drop; `key` is the counter it is counted under."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(key, detail)
        self.key = key


# -- lines --------------------------------------------------------------------------------


class LineSplitter:
    """Bytes from the wire to candidate sentences, each starting at `$`, without line end.

    Resynchronises on every `$`: junk or a sentence cut in half before it is dropped with
    its line. A line longer than `max_line` is dropped whole, even while it arrives, so a
    port spewing noise without line ends holds at most `max_line` bytes.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, count: Count = _no_count) -> None:
        self.max_line = max_line
        self.count = count
        self._rest = b""
        self._discarding = False  # inside an over-long line, until its end

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._rest + data if self._rest else data
        lines = buf.split(b"\n")
        rest = lines.pop()
        out: list[bytes] = []
        max_line = self.max_line
        for line in lines:
            start = line.rfind(b"$")
            if self._discarding:
                self._discarding = False
                if start < 0:
                    continue  # the tail of the over-long line, already counted
                line = line[start:]
                start = 0
            if start != 0:
                if start < 0:
                    if line.strip():
                        self.count("noise", 1)
                    continue
                self.count("noise", 1)
                line = line[start:]
            line = line.rstrip(b"\r")
            if len(line) > max_line:
                self.count("too_long", 1)
                continue
            out.append(line)
        if len(rest) > max_line:
            start = rest.rfind(b"$")
            if start >= 0 and len(rest) - start <= max_line:
                if not self._discarding:
                    self.count("noise", 1)
                rest = rest[start:]
                self._discarding = False
            else:
                if not self._discarding:
                    self.count("too_long" if rest.startswith(b"$") else "noise", 1)
                rest = b""
                self._discarding = True
        self._rest = rest
        return out


# -- sentences ----------------------------------------------------------------------------


@dataclass(slots=True)
class Sentence:
    """What one sentence says, in SI units; None where it says nothing."""

    kind: str  # GGA, RMC, VTG, GSA, GNS, GLL (the talker is dropped)
    time_us: int | None = None  # UTC time of day in µs, the epoch key; None for VTG/GSA
    void: bool = False  # this sentence says there is no fix
    lat: float | None = None
    lon: float | None = None
    quality: int | None = None
    satellites: int | None = None
    hdop: float | None = None
    alt: float | None = None
    speed: float | None = None  # m/s
    course: float | None = None
    day: date | None = None
    mode: int | None = None  # GSA fix type 1..3


def verify(line: bytes) -> list[str]:
    """A `$…*hh` line with a correct checksum to its fields; raises BadSentence."""
    n = len(line)
    if n < 4 or line[n - 3] != 0x2A:  # '*'
        if b"*" in line:
            raise BadSentence("bad_checksum", "checksum not at the end")
        raise BadSentence("no_checksum")
    expected = _HEX.get(line[n - 2 :])
    if expected is None:
        raise BadSentence("bad_checksum", "checksum is not two hex digits")
    body = line[1 : n - 3]
    checksum = 0
    for byte in body:
        checksum ^= byte
    if checksum != expected:
        raise BadSentence("bad_checksum")
    try:
        return body.decode("ascii").split(",")
    except UnicodeDecodeError:
        raise BadSentence("malformed", "not ASCII") from None


def _float(s: str, low: float, high: float) -> float | None:
    """An optional plain decimal within [low, high]: no exponent, nan, inf or underscores."""
    if not s:
        return None
    if not (s[1:] if s[0] == "-" else s).replace(".", "", 1).isdigit():
        raise BadSentence("malformed", f"not a number: {s!r}")
    value = float(s)
    if not low <= value <= high:
        raise BadSentence("malformed", f"out of range: {s!r}")
    return value


def _int(s: str, low: int, high: int) -> int | None:
    if not s:
        return None
    if not s.isdigit() or not low <= (value := int(s)) <= high:
        raise BadSentence("malformed", f"not an integer in {low}..{high}: {s!r}")
    return value


def _time_us(s: str) -> int | None:
    """`hhmmss[.sss]` to µs since midnight; a leap second 60 is kept (it rolls to 00:00)."""
    if not s:
        return None
    if len(s) < 6 or not s[:6].isdigit():
        raise BadSentence("malformed", f"bad time {s!r}")
    frac = s[6:]
    micros = 0
    if frac:
        digits = frac[1:7]
        if frac[0] != "." or not (frac[1:].isdigit() or frac == "."):
            raise BadSentence("malformed", f"bad time {s!r}")
        micros = int(digits.ljust(6, "0")) if digits else 0
    h, m, sec = int(s[0:2]), int(s[2:4]), int(s[4:6])
    if h > 23 or m > 59 or sec > 60:
        raise BadSentence("malformed", f"bad time {s!r}")
    return ((h * 60 + m) * 60 + sec) * 1_000_000 + micros


def _date(s: str) -> date | None:
    """`ddmmyy`; two-digit years 80..99 are 19yy (GPS began in 1980), the others 20yy."""
    if not s:
        return None
    if len(s) != 6 or not s.isdigit():
        raise BadSentence("malformed", f"bad date {s!r}")
    try:
        yy = int(s[4:6])
        return date(yy + (1900 if yy >= 80 else 2000), int(s[2:4]), int(s[0:2]))
    except ValueError:
        raise BadSentence("malformed", f"bad date {s!r}") from None


def _angle(value: str, hemi: str, positive: str, negative: str, limit: float) -> float | None:
    """`(d)ddmm.mmmm` + hemisphere to signed degrees, at full precision (no rounding)."""
    if not value and not hemi:
        return None
    dot = value.find(".")
    if dot < 0:
        dot = len(value)
    whole, frac = value[:dot], value[dot + 1 :]
    if dot < 2 or not whole.isdigit() or not (frac.isdigit() or not frac):
        raise BadSentence("malformed", f"bad coordinate {value!r}")
    minutes = float(value[dot - 2 :])
    if minutes >= 60:
        raise BadSentence("malformed", f"bad coordinate {value!r}")
    degrees = (int(whole[: dot - 2]) if dot > 2 else 0) + minutes / 60
    if degrees > limit:
        raise BadSentence("malformed", f"coordinate out of range {value!r}")
    if hemi == positive:
        return degrees
    if hemi == negative:
        return -degrees
    raise BadSentence("malformed", f"bad hemisphere {hemi!r}")


def _position(f: list[str], i: int) -> tuple[float | None, float | None]:
    lat = _angle(f[i], f[i + 1], "N", "S", 90.0)
    lon = _angle(f[i + 2], f[i + 3], "E", "W", 180.0)
    if (lat is None) != (lon is None):
        raise BadSentence("malformed", "latitude without longitude")
    return lat, lon


def _need(f: list[str], n: int) -> None:
    if len(f) < n:
        raise BadSentence("malformed", f"{len(f)} fields, expected at least {n}")


def _course(s: str) -> float | None:
    course = _float(s, 0.0, 360.0)
    return None if course is None else course % 360.0


def _gga(f: list[str]) -> Sentence:
    _need(f, 15)
    return _fix_fields("GGA", f, _int(f[6], 0, 9))


def _fix_fields(kind: str, f: list[str], quality: int | None) -> Sentence:
    """GGA and GNS share their layout (time, position, satellites, HDOP, altitude) and
    differ only in how field 6 gives the fix quality."""
    time_us = _time_us(f[1])
    lat, lon = _position(f, 2)
    return Sentence(
        kind,
        time_us,
        void=not quality,
        lat=lat,
        lon=lon,
        quality=quality,
        satellites=_int(f[7], 0, 99),
        hdop=_float(f[8], 0.0, 100.0),
        alt=_float(f[9], -10_000.0, 1_000_000.0),
    )


def _rmc(f: list[str]) -> Sentence:
    _need(f, 12)
    time_us = _time_us(f[1])
    status = f[2]
    if status not in ("A", "V"):
        raise BadSentence("malformed", f"bad RMC status {status!r}")
    lat, lon = _position(f, 3)
    mode = f[12] if len(f) > 12 else ""
    quality = 0 if status == "V" else _MODE_QUALITY.get(mode, 1)
    return Sentence(
        "RMC",
        time_us,
        void=not quality,
        lat=lat,
        lon=lon,
        quality=quality,
        speed=None if (kn := _float(f[7], 0.0, 10_000.0)) is None else kn * KNOT_MS,
        course=_course(f[8]),
        day=_date(f[9]),
    )


def _vtg(f: list[str]) -> Sentence:
    if len(f) >= 9 and f[2] == "T":  # $--VTG,course,T,course,M,knots,N,kmh,K[,mode]
        course, knots, kmh = f[1], f[5], f[7]
    elif len(f) >= 5:  # NMEA 1.x: $--VTG,course,course_magnetic,knots,kmh
        course, knots, kmh = f[1], f[3], f[4]
    else:
        raise BadSentence("malformed", "short VTG")
    if (kn := _float(knots, 0.0, 10_000.0)) is not None:
        speed: float | None = kn * KNOT_MS
    elif (km := _float(kmh, 0.0, 20_000.0)) is not None:
        speed = km * KMH_MS
    else:
        speed = None
    return Sentence("VTG", speed=speed, course=_course(course))


def _gsa(f: list[str]) -> Sentence:
    _need(f, 18)
    mode = _int(f[2], 1, 3)
    prns = f[3:15]
    if not "".join(prns).isdigit() and any(prns):
        raise BadSentence("malformed", "bad satellite number in GSA")
    used = 12 - prns.count("")
    return Sentence("GSA", mode=mode, satellites=used, hdop=_float(f[16], 0.0, 100.0))


def _gns(f: list[str]) -> Sentence:
    _need(f, 13)
    modes = f[6]
    if not modes.isalpha():
        raise BadSentence("malformed", f"bad GNS mode {modes!r}")
    return _fix_fields("GNS", f, max(_MODE_QUALITY.get(c, 1) for c in modes))


def _gll(f: list[str]) -> Sentence:
    _need(f, 7)
    lat, lon = _position(f, 1)
    time_us = _time_us(f[5])
    status = f[6]
    if status not in ("A", "V"):
        raise BadSentence("malformed", f"bad GLL status {status!r}")
    mode = f[7] if len(f) > 7 else ""
    quality = 0 if status == "V" else _MODE_QUALITY.get(mode, 1)
    return Sentence("GLL", time_us, void=not quality, lat=lat, lon=lon, quality=quality)


_PARSERS: dict[str, Callable[[list[str]], Sentence]] = {
    "GGA": _gga,
    "RMC": _rmc,
    "VTG": _vtg,
    "GSA": _gsa,
    "GNS": _gns,
    "GLL": _gll,
}


def parse_sentence(line: bytes) -> Sentence | None:
    """One `$…*hh` line to a Sentence; None for a good sentence of another type (GSV, TXT,
    proprietary `$P…`). Raises BadSentence with the counter key for a line to drop."""
    fields = verify(line)
    head = fields[0]
    if len(head) != 5 or head[0] == "P":
        return None
    parser = _PARSERS.get(head[2:])
    if parser is None:
        return None
    try:
        return parser(fields)
    except (ValueError, IndexError) as exc:  # a gap in the checks above: still just malformed
        raise BadSentence("malformed", str(exc)) from exc


# -- epochs -------------------------------------------------------------------------------


@dataclass(slots=True)
class Epoch:
    """The sentences of one epoch, merged field by field (see the module docstring)."""

    time_us: int | None
    kinds: set[str] = field(default_factory=set)
    void: bool = False
    lat: float | None = None
    lon: float | None = None
    primary: bool = False  # position from GGA/GNS: RMC/GLL do not override it
    quality: int | None = None
    satellites: int | None = None
    gsa_used: int | None = None
    hdop: float | None = None
    gsa_hdop: float | None = None
    alt: float | None = None
    speed: float | None = None
    course: float | None = None
    day: date | None = None
    mode: int | None = None

    def add(self, s: Sentence) -> None:
        self.kinds.add(s.kind)
        self.void = self.void or s.void
        primary = s.kind == "GGA" or s.kind == "GNS"
        if s.lat is not None and (self.lat is None or (primary and not self.primary)):
            self.lat, self.lon = s.lat, s.lon
            self.primary = primary
        if s.quality is not None and (self.quality is None or primary):
            self.quality = s.quality
        if s.kind == "GSA":
            if s.mode is not None:
                self.mode = s.mode if self.mode is None else max(self.mode, s.mode)
            self.gsa_used = (self.gsa_used or 0) + (s.satellites or 0)
            self.gsa_hdop = self.gsa_hdop if s.hdop is None else s.hdop
            return
        if s.satellites is not None:
            self.satellites = s.satellites
        if s.hdop is not None:
            self.hdop = s.hdop
        if s.alt is not None:
            self.alt = s.alt
        if s.speed is not None and (self.speed is None or s.kind == "RMC"):
            self.speed = s.speed
        if s.course is not None and (self.course is None or s.kind == "RMC"):
            self.course = s.course
        if s.day is not None:
            self.day = s.day


class EpochMerger:
    """Sentences in, one `Fix` per epoch out (the rule is in the module docstring)."""

    def __init__(
        self,
        complete_on: Iterable[str] = DEFAULT_COMPLETE_ON,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.complete_on = frozenset(complete_on)
        self.now = now
        self._open: Epoch | None = None
        self._closed_time: int | None = None
        self._closed_kinds: set[str] = set()
        self._last: datetime | None = None  # fix_time of the last epoch with a time

    def add(self, s: Sentence) -> Fix | None:
        """Merge one sentence; returns the Fix of an epoch this sentence completed or closed."""
        out: Fix | None = None
        epoch = self._open
        if s.kind == "VTG" or s.kind == "GSA":
            if epoch is None:
                return None
        elif epoch is None:
            if (
                s.time_us is not None
                and s.time_us == self._closed_time
                and s.kind not in self._closed_kinds
            ):
                return None  # late sentence of an epoch already emitted
            epoch = self._open = Epoch(s.time_us)
        elif s.time_us != epoch.time_us or s.kind in epoch.kinds:
            out = self._close(epoch)
            epoch = self._open = Epoch(s.time_us)
        epoch.add(s)
        if self.complete_on and self.complete_on <= epoch.kinds:
            return self._close(epoch)  # at most one Fix: the closed one above had other kinds
        return out

    def flush(self) -> Fix | None:
        """Emit the open epoch now (end of a log)."""
        return None if self._open is None else self._close(self._open)

    def _close(self, epoch: Epoch) -> Fix:
        self._open = None
        self._closed_time = epoch.time_us
        self._closed_kinds = epoch.kinds
        return self._fix(epoch)

    def _fix_time(self, epoch: Epoch) -> datetime:
        if epoch.time_us is None:
            return self.now()
        offset = timedelta(microseconds=epoch.time_us)
        if epoch.day is not None:
            when = datetime(epoch.day.year, epoch.day.month, epoch.day.day, tzinfo=UTC) + offset
        else:
            ref = self._last or self.now()
            when = datetime(ref.year, ref.month, ref.day, tzinfo=UTC) + offset
            if when < ref - _HALF_DAY:
                when += timedelta(days=1)
            elif when > ref + _HALF_DAY:
                when -= timedelta(days=1)
        self._last = when
        return when

    def _fix(self, e: Epoch) -> Fix:
        when = self._fix_time(e)
        satellites = e.satellites if e.satellites is not None else e.gsa_used
        hdop = e.hdop if e.hdop is not None else e.gsa_hdop
        if e.void or e.lat is None or e.lon is None or e.mode == 1 or not e.quality:
            return Fix(
                fix_time=when,
                lat=0.0,
                lon=0.0,
                mode=FixMode.NONE,
                quality=0,
                satellites=satellites,
                hdop=hdop,
            )
        if e.mode is not None:
            mode = FixMode.THREE_D if e.mode == 3 else FixMode.TWO_D
        else:
            mode = FixMode.TWO_D if e.alt is None else FixMode.THREE_D
        return Fix(
            fix_time=when,
            lat=e.lat,
            lon=e.lon,
            alt=e.alt,
            speed=e.speed,
            course=e.course,
            mode=mode,
            quality=e.quality,
            satellites=satellites,
            hdop=hdop,
        )


# -- the whole chain ----------------------------------------------------------------------


class NmeaDecoder:
    """Bytes from a receiver to Fixes: what the serial driver runs on each read.

    Never raises: every bad line is counted through `count(key, n)` and dropped. An error
    in this module itself would be counted as `parser_error` (the property tests demand
    none) rather than stop the driver.
    """

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        complete_on: Iterable[str] = DEFAULT_COMPLETE_ON,
        count: Count = _no_count,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.count = count
        self.splitter = LineSplitter(max_line, count)
        self.merger = EpochMerger(complete_on, now)
        self.sentences = 0  # lines with a good checksum: the receiver is talking to us

    def feed(self, data: bytes) -> list[Fix]:
        fixes: list[Fix] = []
        for line in self.splitter.feed(data):
            try:
                sentence = parse_sentence(line)
                self.sentences += 1
                if sentence is not None and (fix := self.merger.add(sentence)) is not None:
                    fixes.append(fix)
            except BadSentence as exc:
                self.count(exc.key, 1)
            except Exception:  # a parser bug must cost one line, not the driver
                self.count("parser_error", 1)
        return fixes

    def flush(self) -> Fix | None:
        return self.merger.flush()

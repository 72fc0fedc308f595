"""NMEA 0183 text to `Sentence`: line splitting, checksums, the sentence types a fix needs.

Hand-written rather than pynmea2, for three reasons checked against pynmea2 1.19:

- robustness: pynmea2 raises on leading junk before `$` instead of resynchronising, accepts
  a sentence without checksum unless asked not to, and turns a void RMC into latitude 0.0 —
  each of those needs a wrapper that re-does its work;
- speed: the aim is 50,000 sentences/s through parsing, epoch merging and the position
  service in CPython. pynmea2 builds an object per sentence and converts fields through
  properties on access; `python -m bench.gps` measures pynmea2 parsing plus reading the
  fields a Fix needs at about 0.6 times the rate of this whole chain (merging and the
  position service included);
- scope: seven sentence types (GGA, RMC, GNS, GLL, ZDA, VTG, GSA) from any talker take a
  few hundred lines that are fully property-tested here, with no dependency to pin on a Pi.

No input makes this module raise anything but `BadSentence`. A line is dropped and counted
under a key (`noise`, `too_long`, `no_checksum`, `bad_checksum`, `malformed`) only when it
cannot be used at all: no valid checksum, fewer fields than its type needs, or a time that
is not a time (the time is what places a sentence in its epoch). Any other field that is
not a plain decimal (`nan`, `1e9`, `1_0`), is out of range or garbled is left out and the
rest of the sentence is kept: `Sentence.bad` says how many fields were refused (counted as
`bad_field`). A garbled status or quality makes the sentence's fix status unknown: it
neither voids nor vouches for its epoch.

Receivers' dialects read here: sentences shorter than the standard (a GGA without the
station field, 14 fields; a GSA without DOPs; an RMC before NMEA 2.3 without mode), the
NMEA 4.10/4.11 additions (RMC and GNS navigational status: U, unsafe, voids the fix; GSA
system id, one GNS mode letter per constellation), one GSA list per constellation in an
epoch, ZDA with a 4-digit year and empty zone fields, 99.99 as "no DOP". The epoch rules
are in drivers.gps.epochs.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from core.events import MEASURED

NMEA_MAX_LINE = 82
"""The standard's bound, `$` to line end; receivers exceed it (u-blox GSV with signal ids)."""

DEFAULT_MAX_LINE = 120

KNOT_MS = 1852 / 3600  # 0.514444… m/s, exact by the definition of the knot
KMH_MS = 1 / 3.6
NO_DOP = 99.0
"""A DOP at or above this is the receiver saying it has none (99.99, BT-451 and others)."""

# GGA quality values for RMC/GLL/GNS/VTG mode indicators (NMEA 2.3+); N means no fix.
MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8, "N": 0}
NAV_STATUS = frozenset("SCUV")
"""NMEA 4.10 navigational status (RMC and GNS field 13): S safe, C caution (integrity not
verifiable), U unsafe (the integrity monitor's alarm: the error may exceed its limit), V
"the equipment gives no navigational status" — u-blox sends V with every valid fix."""
_HEX = {f"{i:02X}".encode(): i for i in range(256)} | {f"{i:02x}".encode(): i for i in range(256)}

TIMED = frozenset({"GGA", "RMC", "GNS", "GLL", "ZDA"})
"""Sentence types that carry the UTC time of their epoch."""

Count = Callable[[str, int], None]


def _no_count(key: str, n: int) -> None:
    """Counters not wired (benchmarks)."""


class BadSentence(Exception):
    """A sentence to drop; `key` is the counter it is counted under."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(key, detail)
        self.key = key


# -- lines --------------------------------------------------------------------------------


PADDING = b" \t\x00\x0b\x0c"
"""Stripped from both ends of a line: NMEA 0183 frames a sentence as `$` to `*hh` followed
at once by <CR><LF>, and allows only printable ASCII inside, so spaces, tabs or NULs outside
`$...*hh` are padding added on the way, never part of what the checksum covers."""


class LineSplitter:
    """Bytes from the wire to candidate sentences, each starting at `$` (or at `!`, NMEA's
    encapsulation sentences: AIS `!AIVDM` from a transponder's GPS), without line end.

    A line ends at CR or LF, whichever the receiver sends: CRLF (the standard), CR alone,
    LF alone or LFCR all give the same sentences, and the empty pieces between two line-end
    bytes are nothing, not noise. Padding (`PADDING`) around a sentence is stripped before
    its checksum is checked. Resynchronises on every `$`: junk or a sentence cut in half
    before it is dropped with its line. A line longer than `max_line` is dropped whole,
    even while it arrives, so a port spewing noise without line ends holds at most
    `max_line` bytes.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, count: Count = _no_count) -> None:
        self.max_line = max_line
        self.count = count
        self._rest = b""
        self._discarding = False  # inside an over-long line, until its end

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._rest + data if self._rest else data
        if b"\r" in buf:  # CRLF first: no empty piece per line to skip
            buf = buf.replace(b"\r\n", b"\n")
            if b"\r" in buf:
                buf = buf.replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        rest = lines.pop()
        out: list[bytes] = []
        max_line = self.max_line
        for line in lines:
            line = line.strip(PADDING)
            start = line.rfind(b"$")
            if start < 0 and line[:1] == b"!" and not self._discarding:
                start = 0  # NMEA's encapsulation sentence (AIS !AIVDM): checked, skipped
            if self._discarding:
                self._discarding = False
                if start < 0:
                    continue  # the tail of the over-long line, already counted
                line = line[start:]
                start = 0
            if start != 0:
                if start < 0:
                    if line:
                        self.count("noise", 1)
                    continue
                self.count("noise", 1)
                line = line[start:]
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
    """What one sentence says, in SI units; None where it says nothing (or nothing usable)."""

    kind: str  # GGA, RMC, GNS, GLL, ZDA, VTG, GSA (the talker is apart)
    talker: str  # GP, GN, GL, GA, GB, BD, GQ, QZ, GI…
    time_us: int | None = None  # UTC time of day in µs, the epoch key; None for VTG/GSA
    time_digits: int = 0  # decimals of the seconds as sent: the precision of time_us
    quality: int | None = None  # 0: says no fix; None: says nothing about the fix
    lat: float | None = None
    lon: float | None = None
    digits: int = 0  # decimals of the minutes of lat/lon (the fewer of the two)
    satellites: int | None = None
    hdop: float | None = None
    alt: float | None = None
    speed: float | None = None  # m/s
    course: float | None = None
    day: date | None = None  # RMC, ZDA
    mode: int | None = None  # GSA fix type 1..3
    prns: tuple[str, ...] = ()  # GSA: the satellites used, as the sentence numbers them
    system: int | None = None  # GSA: NMEA 4.10 GNSS system id (1 GPS ... 6 NavIC), if sent
    bad: int = 0  # fields refused, the rest kept


_PAD = [""] * 20


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
    if b"\x00" in body:  # XOR cannot see a NUL: the checksum does not vouch for this line
        raise BadSentence("malformed", "NUL inside")
    try:
        return body.decode("ascii").split(",")
    except UnicodeDecodeError:
        raise BadSentence("malformed", "not ASCII") from None


def _float(s: str, low: float, high: float) -> float | None:
    """An optional plain decimal within [low, high]: no exponent, nan, inf or underscores."""
    if not s:
        return None
    if not (s[1:] if s[0] in "-+" else s).replace(".", "", 1).isdigit():
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


def _dop(s: str) -> float | None:
    value = _float(s, 0.0, 100.0)
    return None if value is None or value >= NO_DOP else value


def _time_digits(s: str) -> int:
    """Decimals of the seconds of `hhmmss[.sss]` (a time _time_us read)."""
    return max(0, len(s) - 7)


def _time_us(s: str) -> int | None:
    """`hhmmss[.sss]` to µs since midnight. A leap second is only ever the last second of a
    UTC day, 23:59:60: it is kept as the 86,400th second (its own epoch, after 23:59:59;
    drivers.gps.dating puts it on the clock); a second 60 at any other minute is no time."""
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
    if h > 23 or m > 59 or sec > 60 or (sec == 60 and (h, m) != (23, 59)):
        raise BadSentence("malformed", f"bad time {s!r}")
    return ((h * 60 + m) * 60 + sec) * 1_000_000 + micros


def _ddmmyy(s: str) -> date | None:
    """`ddmmyy`; two-digit years 80..99 are 19yy (GPS began in 1980), the others 20yy."""
    if not s:
        return None
    if len(s) != 6 or not s.isdigit():
        raise BadSentence("malformed", f"bad date {s!r}")
    yy = int(s[4:6])
    return _day(yy + (1900 if yy >= 80 else 2000), s[2:4], s[0:2])


def _day(year: int, month: str, day: str) -> date:
    if not (month.isdigit() and day.isdigit()):
        raise BadSentence("malformed", f"bad date {day}/{month}/{year}")
    try:
        return date(year, int(month), int(day))
    except ValueError:
        raise BadSentence("malformed", f"bad date {day}/{month}/{year}") from None


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


def _decimals(value: str) -> int:
    dot = value.find(".")
    return 0 if dot < 0 else len(value) - dot - 1


def _position(s: Sentence, f: list[str], i: int) -> None:
    """Latitude and longitude from fields i..i+3 into `s`; both or neither (one bad field)."""
    try:
        lat = _angle(f[i], f[i + 1], "N", "S", 90.0)
        lon = _angle(f[i + 2], f[i + 3], "E", "W", 180.0)
    except BadSentence:
        s.bad += 1
        return
    if (lat is None) != (lon is None):
        s.bad += 1
        return
    s.lat, s.lon = lat, lon
    if lat is not None:
        s.digits = min(_decimals(f[i]), _decimals(f[i + 2]))


def _course(s: str) -> float | None:
    course = _float(s, 0.0, 360.0)
    return None if course is None else course % 360.0


def _mode_quality(letters: str, default: int | None) -> int | None:
    """The best quality among mode letters (one per constellation in GNS), by
    `_quality_rank` ("AE" is 1, not 6); 0 if all are N; `default` when the letters say
    nothing (empty, or a receiver's own letters)."""
    best: int | None = None
    for c in letters:
        q = MODE_QUALITY.get(c)
        if q is not None and (best is None or _quality_rank(q) > _quality_rank(best)):
            best = q
    return default if best is None else best


def _quality_rank(q: int) -> tuple[int, int]:
    """Measured first, the higher the better (RTK over DGPS over GPS), then estimated,
    manual input, simulator, and no fix last."""
    if q in MEASURED:
        return 2, q
    return (1, -q) if q else (0, 0)


def _nav_status(s: Sentence, status: str) -> None:
    """NMEA 4.10's navigational status (`NAV_STATUS`): U voids the sentence's fix."""
    if not status:
        return
    if status not in NAV_STATUS:
        s.bad += 1
    elif status == "U":
        s.quality = 0


def _fix_fields(s: Sentence, f: list[str]) -> Sentence:
    """Position, satellites, HDOP and altitude: GGA and GNS share their layout from field 2
    and differ only in how field 6 gives the fix quality. (Each field has its own `try`
    here and in the parsers below rather than a helper: a call per field costs about 5 %
    of the parse, and a failed `try` costs nothing when no exception is raised.)"""
    _position(s, f, 2)
    try:
        s.satellites = _int(f[7], 0, 99)
    except BadSentence:
        s.bad += 1
    try:
        s.hdop = _dop(f[8])
    except BadSentence:
        s.bad += 1
    try:
        s.alt = _float(f[9], -10_000.0, 1_000_000.0)
    except BadSentence:
        s.bad += 1
    return s


def _need(f: list[str], n: int, kind: str, full: int) -> list[str]:
    """At least `n` fields (header included), padded with empty ones to the `full` layout."""
    have = len(f)
    if have < n:
        raise BadSentence("malformed", f"{kind} with {have} fields, at least {n} needed")
    return f if have >= full else f + _PAD[: full - have]


def _gga(f: list[str]) -> Sentence:
    f = _need(f, 7, "GGA", 15)  # up to the quality: older receivers stop after the age (14)
    s = Sentence("GGA", f[0][:2], _time_us(f[1]), _time_digits(f[1]))
    try:
        s.quality = _int(f[6], 0, 9)
    except BadSentence:
        s.bad += 1
    return _fix_fields(s, f)


def _gns(f: list[str]) -> Sentence:
    f = _need(f, 7, "GNS", 14)
    s = Sentence("GNS", f[0][:2], _time_us(f[1]), _time_digits(f[1]))
    modes = f[6]
    if modes and not modes.isalpha():
        s.bad += 1
    else:
        s.quality = _mode_quality(modes, None if not modes else 1)
    _nav_status(s, f[13])
    return _fix_fields(s, f)


def _rmc(f: list[str]) -> Sentence:
    f = _need(f, 3, "RMC", 13)
    s = Sentence("RMC", f[0][:2], _time_us(f[1]), _time_digits(f[1]))
    status = f[2]
    if status == "V":
        s.quality = 0
    elif status in ("A", "D"):
        s.quality = _mode_quality(f[12], 2 if status == "D" else 1)
    elif status:
        s.bad += 1  # fix status unknown: the epoch's other sentences decide
    if len(f) > 13:
        _nav_status(s, f[13])
    _position(s, f, 3)
    try:
        kn = _float(f[7], 0.0, 10_000.0)
        s.speed = None if kn is None else kn * KNOT_MS
    except BadSentence:
        s.bad += 1
    try:
        s.course = _course(f[8])
    except BadSentence:
        s.bad += 1
    try:
        s.day = _ddmmyy(f[9])
    except BadSentence:
        s.bad += 1
    return s


def _gll(f: list[str]) -> Sentence:
    f = _need(f, 6, "GLL", 8)  # up to the time: NMEA 1.x GLL without it cannot be placed
    s = Sentence("GLL", f[0][:2], _time_us(f[5]), _time_digits(f[5]))
    status = f[6]
    if status == "V":
        s.quality = 0
    elif status == "A":
        s.quality = _mode_quality(f[7], 1)
    elif status:
        s.bad += 1
    _position(s, f, 1)
    return s


def _zda(f: list[str]) -> Sentence:
    """`$--ZDA,hhmmss.ss,dd,mm,yyyy,zh,zm`: the date of the epoch of that time."""
    f = _need(f, 5, "ZDA", 5)
    s = Sentence("ZDA", f[0][:2], _time_us(f[1]), _time_digits(f[1]))
    day, month, year = f[2], f[3], f[4]
    if day or month or year:
        if len(year) == 4 and year.isdigit() and 1980 <= int(year) <= 2200:
            try:
                s.day = _day(int(year), month, day)
            except BadSentence:
                s.bad += 1
        else:
            s.bad += 1
    return s


def _vtg(f: list[str]) -> Sentence:
    if len(f) >= 9 and f[2] == "T":  # $--VTG,course,T,course,M,knots,N,kmh,K[,mode]
        course, knots, kmh, mode = f[1], f[5], f[7], f[9] if len(f) > 9 else ""
    elif len(f) >= 5:  # NMEA 1.x: $--VTG,course,course_magnetic,knots,kmh
        course, knots, kmh, mode = f[1], f[3], f[4], ""
    else:
        raise BadSentence("malformed", "short VTG")
    s = Sentence("VTG", f[0][:2])
    if mode == "N":
        return s  # the receiver says this speed and course are not valid
    try:
        if (kn := _float(knots, 0.0, 10_000.0)) is not None:
            s.speed = kn * KNOT_MS
        elif (km := _float(kmh, 0.0, 20_000.0)) is not None:
            s.speed = km * KMH_MS
    except BadSentence:
        s.bad += 1
    try:
        s.course = _course(course)
    except BadSentence:
        s.bad += 1
    return s


def _gsa(f: list[str]) -> Sentence:
    """`$--GSA,mode,fix,12 PRN slots,PDOP,HDOP,VDOP[,system id]`. Some receivers list only
    the satellites used ($GPGSA,A,3,16,18,22,24,3.6,2.1,2.2; $GPGSA,A,1,,,,): with fewer
    than 18 fields, the last three are the DOPs and the ones between are the PRNs. A GSA
    lists the satellites of one constellation (NMEA 4.10 says which in its last field, one
    hex digit, kept in `system`): the numbers are kept as sent (text), the epoch adds the
    lists of different constellations up. A receiver with more than 12 slots (NAVIOR-24:
    24) ends the sentence with the DOPs too, and sends no system id."""
    n = len(f)
    f = _need(f, 3, "GSA", 18)
    s = Sentence("GSA", f[0][:2])
    try:
        s.mode = _int(f[2], 1, 3)
    except BadSentence:
        s.bad += 1  # E (Antaris dead reckoning) and the like: fix type unknown
    if n in (18, 19):  # the standard 12 slots, 19: and the NMEA 4.10 system id
        slots, hdop = f[3:15], f[16]
    else:  # only the slots used, or more than 12 (NAVIOR-24 sends 24): the DOPs end it
        slots, hdop = f[3 : max(3, n - 3)], f[n - 2] if n >= 6 else ""
    prns = tuple(filter(None, slots))
    if prns and not "".join(prns).isdigit():
        kept = tuple(p for p in prns if p.isdigit())
        s.bad += len(prns) - len(kept)
        prns = kept
    s.prns = prns
    try:
        s.hdop = _dop(hdop)
    except BadSentence:
        s.bad += 1
    if n == 19 and (system := f[18]):
        if len(system) == 1 and system in "123456789ABCDEFabcdef":
            s.system = int(system, 16)
        else:
            s.bad += 1
    return s


_PARSERS: dict[str, Callable[[list[str]], Sentence]] = {
    "GGA": _gga,
    "RMC": _rmc,
    "VTG": _vtg,
    "GSA": _gsa,
    "GNS": _gns,
    "GLL": _gll,
    "ZDA": _zda,
}
SENTENCE_TYPES = frozenset(_PARSERS)


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

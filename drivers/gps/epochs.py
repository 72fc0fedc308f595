"""NMEA sentences to one `Fix` per receiver epoch, whatever the talkers and constellations.

A receiver sends one burst of sentences per measurement epoch, then is quiet until the next.

Which sentences form an epoch:

1. The UTC time is the key. GGA, RMC, GNS, GLL and ZDA carry it: every sentence with the
   same time joins the same epoch, from any talker ($GPGGA + $GLGGA, $GNRMC + $GARMC, a ZDA
   before a GNS…), and a sentence with another time starts the next epoch. Times sent to
   different precisions are the same time when the finer rounds to the coarser
   (`same_instant`; a time in whole seconds only when equal); the epoch takes the time of
   its RMC, else GGA/GNS, else GLL. A sentence with the time of an epoch already emitted,
   or less than a second before the last one (`LATE_WINDOW_US`), is late: it is dropped and
   counted `late` (its date is still noted). Receivers without time yet (cold start, empty
   time fields) start a new epoch when a sentence type repeats.
2. GSA and VTG carry no time. Before any timed sentence of a burst they open it (a receiver
   that sends GSA first); after one they wait: the next sentence with the epoch's time
   takes them into the epoch; a quiet spell after them proves they ended it; the next
   epoch's time takes them when the receiver's bursts have been seen to start with their
   type (learned from the quiet spells), else they end the epoch they follow. An epoch has
   one GSA per constellation (more only when a constellation has over 12 satellites in use:
   the next GSA continues a full list) and one VTG per talker: a second one, untimed, is
   the next epoch's (whose timed sentences were lost to a bad checksum, or are still to
   come), never merged into the epoch before it.
3. An epoch is emitted as soon as it is known to be over: on the next epoch's time, or when
   the receiver has sent nothing for `quiet` seconds: a quarter of its period as measured
   between bursts (clamped to 0.05-0.5 s; 0.15 s until two bursts were seen), so the last
   fix before a tunnel or an unplugged antenna is emitted 0.05-0.5 s after it arrived.
   An epoch that reaches `MAX_EPOCH_SENTENCES` is emitted then (a time standing still).
   Any byte counts as the receiver talking, not only good sentences: a binary (UBX, SiRF)
   message between the sentences of a burst, arriving slowly at 9600 baud, or a sentence
   still arriving, is not a quiet spell.

What the epoch says (each field from the best sentence that has it; among sentences of the
same type from several talkers the GN one, else a valid one, else the first):

- position: the RMC's, when the RMC says the fix is valid: the sentence that carries the
  date and the fix status together, as gpsd and pynmea2 users read it. A GGA/GNS of the same
  epoch that gives the same point to more decimals (its minutes round to the RMC's)
  refines it; a GGA/GNS that differs more is outvoted. Without a valid RMC: GGA/GNS, else
  GLL. Full precision: degrees are computed from the minutes as sent, never rounded.
- void: the epoch is a void fix (mode NONE, lat = lon = 0) when a sentence type that
  carries a fix status says there is none (RMC or GLL status V or mode N, GGA quality 0,
  GNS all N, the highest GSA fix type 1), or none says there is one, or there is no
  position.
- quality: GGA's fix quality (GNS, RMC, GLL mode letters mapped to it).
- satellites used: the largest of the GGA/GNS counts (a GN one is the receiver's total;
  u-blox NMEA 4.0 caps GGA at 12) and the number of satellites the epoch's GSAs list. The
  lists of one constellation (NMEA 4.10 system id, else the talker; for a $GNGSA without
  id, a satellite in common) are merged as a set; those of different constellations add
  up — Galileo 12 and GPS 12 are two satellites; an identical list repeated under another
  talker, as SiRFstarV sends GPGSA and GLGSA, counts once.
  When GGA comes from several talkers ($GPGGA, $GLGGA) and even the largest of their
  counts is below what the GSAs list, each is its own constellation's count (SiRFstarV)
  and their sum is the total. GSV (satellites in view, not used) is not read.
- altitude and HDOP from GGA/GNS (HDOP from GSA without them); speed and course from the
  valid RMC, else VTG.
- 2D/3D: a 3D fix has an altitude. The highest GSA fix type decides when the epoch has
  GSAs: 3 with an altitude is 3D; 2 is 2D and the altitude the receiver held is dropped.
  Without GSA: 3D when the epoch has an altitude and at least 4 satellites (if counted).
- date: see drivers.gps.dating.
"""

import statistics
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, timedelta

from core.events import Fix, FixMode
from drivers.gps.dating import Dating
from drivers.gps.nmea import TIMED, Count, Sentence, _no_count

QUIET_FRACTION = 0.25
QUIET_MIN_S = 0.05
QUIET_MAX_S = 0.5
QUIET_DEFAULT_S = 0.15
MIN_INTERVAL_S = 0.01
"""Bursts closer than this arrived in the same read: they say nothing of the period."""
RECENT = 4
"""Times of emitted epochs remembered, to know a late sentence."""
LATE_WINDOW_US = 1_000_000
"""A time less than this before the last emitted epoch's is late too, whichever epochs
are remembered: a 10 Hz receiver sending one sentence in whole seconds (`123519`) sends
it in all ten epochs of the second, and once 123519.00 was no longer among the `RECENT`
ones it made a position dated back to it."""
MAX_EPOCH_SENTENCES = 256
"""Sentences an open epoch (with the untimed ones after it) holds at most. A real epoch has
a few dozen (GGA, RMC, GSA... per talker and constellation); past this it is a receiver
whose time stands still while it talks without a pause, or a line looped back to it: the
epoch is emitted then (counted `overlong_epoch`), and what follows with its time is late.
Without the bound such an epoch took every sentence for as long as it lasted (72 MB after
200,000 GGAs) and never made a fix."""
GSA_SLOTS = 12
"""Satellites one GSA can list: a receiver using more of one constellation sends another."""
TALKER_SYSTEM = {"GP": 1, "GL": 2, "GA": 3, "GB": 4, "BD": 4, "GQ": 5, "QZ": 5, "GI": 6}
"""NMEA 4.10 system ids of the constellation talkers (GN is all of them: no id)."""

TIME_RANK = {"RMC": 0, "GGA": 1, "GNS": 1, "GLL": 2, "ZDA": 3}
"""Whose time an epoch takes when its sentences give it to different precisions: the
sentence its position and date come from first."""


DAY_US = 86_400_000_000
"""A UTC day in µs (one with the leap second 23:59:60 has a second more)."""


def same_instant(t1: int, digits1: int, t2: int, digits2: int) -> bool:
    """Whether two times of day (µs) sent with `digits` decimals of the second are one
    instant: equal, or, when sent to different precisions, the finer one rounding to the
    coarser (a Magellan eXplorist 210 sends GLL at `200619.295`, GGA and RMC at
    `200619.30`), across midnight too (`235959.995` is the next day's `000000.00`). Two
    times of one precision are one instant only when equal: 10 Hz
    epochs a tenth apart stay apart. A time in whole seconds is only ever the instant it
    equals: a 5 or 10 Hz receiver sending one sentence in whole seconds (`123519`) sends
    it in every epoch of that second, and `123519.10`, `123519.40` are epochs of their
    own, not `123519`'s."""
    if t1 == t2:
        return True
    if digits1 == digits2:
        return False
    coarse = min(digits1, digits2)
    if coarse == 0:
        return False
    d = abs(t1 - t2)
    if 2 * d > DAY_US:  # on either side of midnight (after a leap second, 23:59:60.995)
        d = DAY_US + (1_000_000 if max(t1, t2) >= DAY_US else 0) - d
    unit: int = 10 ** (6 - min(coarse, 6))
    return 2 * d <= unit


def _day_at(s: Sentence, day: date, time_us: int) -> date:
    """The date `s` gives (`day`, of its own time) at the epoch's time `time_us`: the day
    after when `s` was sent just before midnight and the epoch takes a time just after it
    (`235959.995` of the 20th is `000000.00` of the 21st), the day before the other way."""
    t = s.time_us
    if t is None or 2 * abs(t - time_us) <= DAY_US:
        return day
    return day + timedelta(days=1 if t > time_us else -1)


def _rank(s: Sentence) -> tuple[bool, int, bool]:
    """Which of several sentences of one type speaks for the epoch: GN, valid, positioned."""
    q = s.quality
    return s.talker == "GN", 2 if q else (0 if q == 0 else 1), s.lat is not None


def _best(sentences: list[Sentence]) -> Sentence | None:
    if not sentences:
        return None
    if len(sentences) == 1:
        return sentences[0]
    return max(sentences, key=_rank)  # the first of equals


def _first_hdop(best: Sentence | None, others: list[Sentence]) -> float | None:
    for s in (best, *others):
        if s is not None and s.hdop is not None:
            return s.hdop
    return None


def _system(gsa: Sentence) -> int | None:
    """The constellation a GSA lists: its system id, else its talker's; None for a $GNGSA
    without id (NMEA 4.0: the satellite numbers alone tell)."""
    return gsa.system if gsa.system is not None else TALKER_SYSTEM.get(gsa.talker)


def _one_constellation(sa: int | None, sb: int | None, a: set[str], b: set[str]) -> bool:
    """Whether two lists of satellites (`a` of system `sa`, `b` of `sb`) are of one
    constellation: the same system, or, when one cannot say, a satellite in common (before
    NMEA 4.10 each constellation has its own numbers)."""
    if sa is not None and sb is not None:
        return sa == sb
    return not a.isdisjoint(b)


def _same_constellation(a: Sentence, b: Sentence) -> bool:
    """Whether two GSAs list one constellation (the satellites compared only when a system
    is not known: this runs for every GSA between two epochs)."""
    sa, sb = _system(a), _system(b)
    if sa is not None and sb is not None:
        return sa == sb
    return not set(a.prns).isdisjoint(b.prns)


def _continues(gsa: Sentence, full: Sentence) -> bool:
    """Whether `gsa` goes on with the list of `full`: that one used all 12 slots and this one
    names other satellites (a receiver using more than 12 of one constellation)."""
    return len(full.prns) >= GSA_SLOTS and set(gsa.prns).isdisjoint(full.prns)


def _rounds_to(fine: Sentence, coarse: Sentence) -> bool:
    """`fine`'s position, in minutes rounded to `coarse`'s decimals, is `coarse`'s."""
    if fine.lat is None or fine.lon is None or coarse.lat is None or coarse.lon is None:
        return False
    half = 0.5 * 10.0**-coarse.digits + 1e-9
    return abs(fine.lat - coarse.lat) * 60 <= half and abs(fine.lon - coarse.lon) * 60 <= half


def _listed(gsas: list[Sentence]) -> int:
    """Satellites several GSAs list: one set per constellation (its lists merged, so a list
    sent twice counts once), the sets of different constellations added up; an identical
    set under two talkers without system id (SiRFstarV's GPGSA = GLGSA) counts once."""
    every = [p for g in gsas for p in g.prns]
    systems = [s for g in gsas if (s := _system(g)) is not None]
    if len(set(every)) == len(every) and len(set(systems)) == len(systems):
        return len(every)  # the usual case, one list per constellation: they add up
    sets: list[tuple[int | None, bool, set[str]]] = []  # system, from an id, satellites
    for g in gsas:
        system, prns = _system(g), set(g.prns)
        for known, _, members in sets:
            if _one_constellation(system, known, prns, members):
                members |= prns
                break
        else:
            sets.append((system, g.system is not None, prns))
    total = 0
    for i, (_, by_id, members) in enumerate(sets):
        if not any(m == members and not (by_id and b) for _, b, m in sets[:i]):
            total += len(members)
    return total


class Epoch:
    """The sentences of one epoch, kept by type until it is emitted."""

    __slots__ = (
        "first_at",
        "fixes",
        "glls",
        "gsas",
        "rmcs",
        "size",
        "time_digits",
        "time_rank",
        "time_us",
        "timed",
        "vtgs",
        "zdas",
    )

    def __init__(self, at: float) -> None:
        self.first_at = at  # arrival of its first sentence
        self.size = 0  # sentences added
        self.time_us: int | None = None
        self.time_digits = 0  # decimals of the seconds of the sentence time_us comes from
        self.time_rank = len(TIME_RANK)  # TIME_RANK of that sentence
        self.timed = False  # has a timed sentence (with or without a time)
        self.rmcs: list[Sentence] = []
        self.fixes: list[Sentence] = []  # GGA and GNS
        self.glls: list[Sentence] = []
        self.gsas: list[Sentence] = []
        self.vtgs: list[Sentence] = []
        self.zdas: list[Sentence] = []

    def repeats(self, s: Sentence) -> bool:
        """Whether untimed `s` comes from a source the epoch has heard already: a GSA of a
        constellation it has the list of (unless it continues a full one), a VTG of the same
        talker. It is then another epoch's: an epoch has one of each."""
        kind = s.kind
        if kind == "GSA":
            return any(_same_constellation(s, g) and not _continues(s, g) for g in self.gsas)
        if kind == "VTG":
            return any(v.talker == s.talker for v in self.vtgs)
        return False

    def sources(self) -> frozenset[tuple[str, str]]:
        """(type, talker) of its timed sentences."""
        return frozenset(
            (s.kind, s.talker)
            for group in (self.rmcs, self.fixes, self.glls, self.zdas)
            for s in group
        )

    def has(self, kind: str) -> bool:
        """Whether a sentence of this type is in the epoch already."""
        if kind == "GGA" or kind == "GNS":
            return any(s.kind == kind for s in self.fixes)
        return bool({"RMC": self.rmcs, "GLL": self.glls, "ZDA": self.zdas}.get(kind))

    def add(self, s: Sentence) -> None:
        self.size += 1
        kind = s.kind
        if kind == "GSA":
            self.gsas.append(s)
        elif kind == "RMC":
            self.rmcs.append(s)
        elif kind == "GGA" or kind == "GNS":
            self.fixes.append(s)
        elif kind == "VTG":
            self.vtgs.append(s)
        elif kind == "GLL":
            self.glls.append(s)
        else:
            self.zdas.append(s)


class EpochMerger:
    """Sentences in (with their arrival time), one `Fix` per epoch out; see the module doc."""

    def __init__(
        self,
        now: Callable[[], datetime] | None = None,
        count: Count = _no_count,
        synced: Callable[[], bool | None] | None = None,
    ) -> None:
        self.count = count
        self.dating = Dating(now, count, synced)
        self._open: Epoch | None = None
        self._tail: list[Sentence] = []  # untimed, after the open epoch's timed sentences
        self._closed: deque[tuple[int, int]] = deque(maxlen=RECENT)  # (time_us, digits)
        self._last_at: float | None = None  # arrival of the last sentence of any type
        self._gap = 0.0  # the last quiet spell seen, in s
        self._after_gap = False  # the next parsed sentence opens a burst
        self._lead: str | None = None  # the type that opens the receiver's bursts
        self._lead_before: str | None = None  # before the last quiet spell taught `_lead`
        self._quiet_closed: tuple[int, int] | None = None  # the last epoch closed by a quiet
        self._quiet_sources: frozenset[tuple[str, str]] = frozenset()  # its (type, talker)
        self._newest: int | None = None  # the time of the last epoch emitted
        self._last_start: float | None = None
        self._intervals: deque[float] = deque(maxlen=9)
        self._floor = 0.0  # raised by quiet spells that proved to be inside a burst
        self.quiet = QUIET_DEFAULT_S

    # -- arrival ------------------------------------------------------------------------

    def add(self, s: Sentence, at: float, out: list[Fix]) -> None:
        """Merge one sentence that arrived at `at` (monotonic s); closed epochs go to `out`."""
        if at != self._last_at:
            self._arrive(at, out)
        e = self._open
        if e is not None and e.size + len(self._tail) >= MAX_EPOCH_SENTENCES:
            self._overlong(out)
        if self._after_gap:
            self._after_gap = False
            self._lead_before, self._lead = self._lead, s.kind
        if s.kind in TIMED:
            self._timed(s, at, out)
            return
        e = self._open
        if e is None or (not e.timed and e.repeats(s)):
            # the head of the next epoch (GSA first); a head that already has this source
            # lost its timed sentences (bad checksums): it cannot be placed, it is dropped
            e = self._open = Epoch(at)
            e.add(s)
        elif not e.timed:
            e.add(s)
        else:
            self._tail.append(s)

    def _arrive(self, at: float, out: list[Fix]) -> None:
        last = self._last_at
        if last == at:
            return  # the same read: no time passed
        self._last_at = at
        if last is not None and at - last >= self.quiet:
            self._gap = at - last
            self._after_gap = True
            if self._open is not None and self._open.timed:
                self._close(out, quiet=True)

    def _overlong(self, out: list[Fix]) -> None:
        """The open epoch is full (`MAX_EPOCH_SENTENCES`): emit it as it stands (an untimed
        one makes no fix: it is dropped)."""
        self.count("overlong_epoch", 1)
        assert self._open is not None
        if self._open.timed:
            self._close(out)
        else:
            self._open = None
            self._tail = []

    def _inside_burst(self) -> None:
        """A sentence of the epoch a quiet spell closed came after it, of a source that
        epoch had not sent yet (a repeat is no sign: a 10 Hz receiver sends its RMC in whole
        seconds, `123519`, at the start of each burst of that second): the spell was a
        pause inside a burst (a stalled reader, a receiver that pauses). Wait longer from
        now on, forget what it taught, and drop the untimed sentences that followed it:
        they were the emitted epoch's, not the next one's."""
        self._floor = min(QUIET_MAX_S, max(self._floor, 2 * self._gap))
        self.quiet = max(self.quiet, self._floor)
        self._lead = self._lead_before
        if self._open is not None and not self._open.timed:
            self._open = None
        self._quiet_closed = None

    def _timed(self, s: Sentence, at: float, out: list[Fix]) -> None:
        t = s.time_us
        digits = s.time_digits
        if t is not None and self._late(t, digits):
            self.count("late", 1)
            q = self._quiet_closed
            if (
                q is not None
                and same_instant(t, digits, *q)
                and (s.kind, s.talker) not in self._quiet_sources
            ):  # the rest of its burst, not a sentence it has already sent again
                self._inside_burst()
            if s.day is not None and (s.kind == "ZDA" or s.quality):
                self.dating.note(t, s.day, at)
            return
        e = self._open
        if e is None:
            e = self._open = Epoch(at)
        elif e.timed:
            if (t == e.time_us and (t is not None or not e.has(s.kind))) or (
                t is not None
                and e.time_us is not None
                and same_instant(t, digits, e.time_us, e.time_digits)
            ):
                for untimed in self._tail:  # sandwiched: they belong here
                    e.add(untimed)
                self._tail.clear()
            else:
                head = self._split_tail()
                self._close(out)
                e = self._open = Epoch(at)
                for untimed in head:
                    e.add(untimed)
        rank = TIME_RANK[s.kind]
        if not e.timed or rank < e.time_rank:  # the epoch's time: its best sentence's
            e.time_us, e.time_digits, e.time_rank = t, digits, rank
        e.timed = True
        e.add(s)

    def _late(self, t: int, digits: int) -> bool:
        """Whether a sentence of time `t` (`digits` decimals) is of an epoch emitted already,
        or less than `LATE_WINDOW_US` before the last one (a loop, not any() over a
        generator of same_instant calls: this runs for every timed sentence, and a call per
        emitted epoch cost the merge 15 %)."""
        for closed, closed_digits in self._closed:
            if closed == t or (
                closed_digits != digits and same_instant(t, digits, closed, closed_digits)
            ):
                return True
        newest = self._newest
        if newest is None:
            return False
        day = DAY_US + 1_000_000 if newest >= DAY_US else DAY_US  # a leap second's day
        return 0 < (newest - t) % day < LATE_WINDOW_US

    def _split_tail(self) -> list[Sentence]:
        """The untimed sentences between two epochs that open the next one: from the first
        of the learned type that opens bursts, or the first the open epoch has from that
        source already; the ones before it join the open epoch."""
        tail = self._tail
        self._tail = []
        lead = self._lead
        if lead in TIMED:
            lead = None
        e = self._open
        assert e is not None
        for i, s in enumerate(tail):
            if s.kind == lead or e.repeats(s):
                return tail[i:]
            e.add(s)
        return []

    # -- closing ------------------------------------------------------------------------

    heard = _arrive
    """Bytes arrived at `at`, whatever they are (a sentence, a binary message, noise): the
    receiver is still talking, so its epoch is not over."""

    def deadline(self) -> float | None:
        """When the open epoch is over if nothing else arrives (monotonic s), or None."""
        if self._open is None or not self._open.timed or self._last_at is None:
            return None
        return self._last_at + self.quiet

    def poll(self, now: float, out: list[Fix]) -> None:
        """Emit the open epoch into `out` if the receiver has been quiet long enough."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            self._close(out, quiet=True)

    def flush(self) -> Fix | None:
        """Emit the open epoch now (end of a log)."""
        out: list[Fix] = []
        if self._open is not None and self._open.timed:
            self._close(out)
        self._open = None
        self._tail = []
        return out[0] if out else None

    def _close(self, out: list[Fix], *, quiet: bool = False) -> None:
        e = self._open
        assert e is not None
        self._open = None
        for untimed in self._tail:
            if e.repeats(untimed):
                break  # from here, an epoch whose timed sentences were lost: unplaceable
            e.add(untimed)
        self._tail = []
        self._measure(e.first_at)
        fix = self._fix(e)
        self._quiet_closed = None
        if fix is None:
            return  # nothing emitted (a ZDA alone): its time may still come with a fix
        out.append(fix)
        if e.time_us is not None:
            closed = (e.time_us, e.time_digits)
            self._closed.append(closed)
            self._newest = e.time_us
            if quiet:
                self._quiet_closed = closed
                self._quiet_sources = e.sources()

    def _measure(self, start: float) -> None:
        """Learn the receiver's period from the arrival of its bursts."""
        last = self._last_start
        self._last_start = start
        if last is None or start - last < MIN_INTERVAL_S:
            return
        self._intervals.append(start - last)
        period = statistics.median(self._intervals)
        quiet = min(QUIET_MAX_S, max(QUIET_MIN_S, QUIET_FRACTION * period))
        self.quiet = max(quiet, self._floor)

    # -- what the epoch says ------------------------------------------------------------

    def _fix(self, e: Epoch) -> Fix | None:
        rmcs, fixes, glls = e.rmcs, e.fixes, e.glls
        rmc = _best(rmcs)
        fix = _best(fixes)
        gll = _best(glls)
        if rmc is None and fix is None and gll is None:
            if e.time_us is not None and e.zdas:  # a ZDA of its own: it still dates
                zda = e.zdas[0]
                if zda.day is not None:
                    self.dating.note(e.time_us, zda.day, e.first_at)
            return None
        gsa_mode = None
        for g in e.gsas:
            if g.mode is not None and (gsa_mode is None or g.mode > gsa_mode):
                gsa_mode = g.mode
        void = gsa_mode == 1
        valid = False
        quality = 0
        for b in (fix, rmc, gll):  # GGA's quality first: it says the most
            if b is not None and b.quality is not None:
                if b.quality == 0:
                    void = True
                else:
                    valid = True
                    quality = quality or b.quality
        satellites = self._satellites(e)
        hdop = _first_hdop(fix, fixes)
        if hdop is None and e.gsas:
            hdop = _first_hdop(_best(e.gsas), e.gsas)
        position = self._position(rmc, fix, e)
        when, known = self._when(e, rmc, valid and not void)
        if void or not valid or position is None:
            return Fix(
                fix_time=when,
                lat=0.0,
                lon=0.0,
                mode=FixMode.NONE,
                quality=0,
                satellites=satellites,
                hdop=hdop,
                date_known=known,
                received=e.first_at,
            )
        alt = fix.alt if fix is not None else None
        if alt is None:
            for s in fixes:
                if s.alt is not None:
                    alt = s.alt
                    break
        if gsa_mode is not None:
            three_d = gsa_mode == 3
            if gsa_mode == 2:
                alt = None  # the receiver held it: a 2D fix has no altitude of its own
        else:
            three_d = satellites is None or satellites >= 4
        speed = course = None
        if rmc is not None and rmc.quality:
            speed, course = rmc.speed, rmc.course
        if speed is None or course is None:
            for s in (*e.vtgs, *rmcs):
                if speed is None:
                    speed = s.speed
                if course is None:
                    course = s.course
        return Fix(
            fix_time=when,
            lat=position[0],
            lon=position[1],
            alt=alt,
            speed=speed,
            course=course,
            mode=FixMode.THREE_D if three_d and alt is not None else FixMode.TWO_D,
            quality=quality,
            satellites=satellites,
            hdop=hdop,
            date_known=known,
            received=e.first_at,
        )

    @staticmethod
    def _position(
        rmc: Sentence | None, fix: Sentence | None, e: Epoch
    ) -> tuple[float, float] | None:
        if rmc is not None and rmc.quality and rmc.lat is not None and rmc.lon is not None:
            if fix is not None and fix.digits > rmc.digits and _rounds_to(fix, rmc):
                rmc = fix
            assert rmc.lat is not None and rmc.lon is not None
            return rmc.lat, rmc.lon
        for s in (fix, *e.fixes, *e.glls, *e.rmcs):
            if s is not None and s.lat is not None and s.lon is not None:
                return s.lat, s.lon
        return None

    @staticmethod
    def _satellites(e: Epoch) -> int | None:
        best: int | None = None
        for s in e.fixes:
            n = s.satellites
            if n is not None and (best is None or n > best):
                best = n
        gsas = e.gsas
        if not gsas:
            return best
        listed = len(set(gsas[0].prns)) if len(gsas) == 1 else _listed(gsas)
        if best is not None and best >= listed:
            return best
        # no count reaches what the GSAs list: per-constellation counts ($GPGGA, $GLGGA)
        # of several talkers add up to the total
        by_talker: dict[str, int] = {}
        for s in e.fixes:
            if s.satellites is not None and s.talker != "GN":
                by_talker.setdefault(s.talker, s.satellites)
        if len(by_talker) > 1:
            return max(listed, sum(by_talker.values()))
        return listed

    def _when(self, e: Epoch, rmc: Sentence | None, valid: bool) -> tuple[datetime, bool]:
        if e.time_us is None:
            return self.dating.now(), False
        for z in e.zdas:  # a void epoch's ZDA may be the RTC default (06,01,1980) like RMC's
            if z.day is not None:
                zday = _day_at(z, z.day, e.time_us)
                return self.dating.stamp(e.time_us, zday, e.first_at, reference=valid)
        day: date | None = None
        for r in (rmc, *e.rmcs) if rmc is not None else e.rmcs:
            if r.day is not None:
                day = _day_at(r, r.day, e.time_us)
                break
        return self.dating.stamp(e.time_us, day, e.first_at, reference=valid)

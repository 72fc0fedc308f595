"""Whatever the talkers, sentence order, reads and pauses: one Fix per receiver epoch."""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Fix
from drivers.gps.decoder import NmeaDecoder
from tests.drivers.gps.fakes import nmea

START = datetime(2026, 2, 12, 23, 59, 50, tzinfo=UTC)  # some runs cross midnight
TALKERS = ["GN", "GP", "GL", "GA", "GB", "BD"]
FIX_TYPES = ["GGA", "RMC", "GNS", "GLL"]


def hms(t: datetime) -> str:
    return t.strftime("%H%M%S.") + f"{t.microsecond // 10_000:02d}"


def sentence(kind: str, talker: str, t: datetime) -> str:
    """A valid sentence of `kind` for the epoch at `t` (same position throughout)."""
    pos = "4553.12345,N,00210.54321,E"
    if kind == "GGA":
        return f"{talker}GGA,{hms(t)},{pos},1,09,0.9,450.0,M,49.2,M,,"
    if kind == "RMC":
        return f"{talker}RMC,{hms(t)},A,{pos},1.0,45.0,{t:%d%m%y},,,A,V"
    if kind == "GNS":
        return f"{talker}GNS,{hms(t)},{pos},AANN,09,0.9,450.0,49.2,,,V"
    if kind == "GLL":
        return f"GNGLL,{pos},{hms(t)},A,A"
    if kind == "ZDA":
        return f"GNZDA,{hms(t)},{t:%d},{t:%m},{t:%Y},,"
    if kind == "VTG":
        return "GNVTG,45.0,T,,M,1.0,N,1.9,K,A"
    return f"{talker}GSA,A,3,02,05,12,15,18,21,24,25,29,,,,1.6,0.9,1.3"


@dataclass(frozen=True)
class Burst:
    kinds: list[tuple[str, str]]  # (type, talker) in the order sent
    pauses: list[float]  # seconds before each sentence (0 but for a stalled reader)


def burst() -> st.SearchStrategy[Burst]:
    fixes = st.lists(
        st.tuples(st.sampled_from(FIX_TYPES), st.sampled_from(TALKERS)), min_size=1, max_size=5
    )
    others = st.lists(
        st.tuples(st.sampled_from(["GSA", "VTG", "ZDA"]), st.sampled_from(TALKERS)), max_size=5
    )
    return st.builds(lambda a, b: a + b, fixes, others).flatmap(
        lambda kinds: st.builds(
            Burst,
            st.permutations(kinds),
            st.lists(
                st.one_of(st.just(0.0), st.just(0.0), st.floats(0.0, 2.0)),
                min_size=len(kinds),
                max_size=len(kinds),
            ),
        )
    )


@settings(deadline=None, max_examples=300)
@given(
    bursts=st.lists(burst(), min_size=1, max_size=8),
    period=st.sampled_from([0.1, 0.2, 1.0]),
    same_read=st.booleans(),
)
def test_every_epoch_gives_exactly_one_fix_at_its_time(
    bursts: list[Burst], period: float, same_read: bool
) -> None:
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    d = NmeaDecoder(count=count, now=lambda: START)
    fixes: list[Fix] = []
    at = 1000.0
    for i, b in enumerate(bursts):
        t = START + timedelta(seconds=period * i)
        for (kind, talker), pause in zip(b.kinds, b.pauses, strict=True):
            at += 0 if same_read else pause
            fixes += d.poll(at)  # the driver's quiet timer
            fixes += d.feed(nmea(sentence(kind, talker, t)), at)
        at += 0 if same_read else period
    fixes += d.poll(at + 10.0)
    assert d.flush() is None
    assert all(f.valid for f in fixes)
    times = [START + timedelta(seconds=period * i) for i in range(len(bursts))]
    # the time of day of every epoch, once; the day where the receiver said it
    assert sorted(f.fix_time.time() for f in fixes) == sorted(t.time() for t in times)
    dated = [f.fix_time for f in fixes if f.date_known]
    assert set(dated) <= set(times)
    assert "parser_error" not in counts and "bad_field" not in counts


ORDERS = {  # where each receiver family puts its GSA: between timed sentences of its epoch
    "mtk": ["GGA", "GSA", "RMC", "ZDA"],  # MediaTek MT3339 (gpsd's mt3339.log)
    "ublox": ["RMC", "VTG", "GGA", "GSA", "GLL"],  # u-blox, GP talker
}


def gp_sentence(kind: str, t: datetime, prns: list[int]) -> str:
    """One sentence of an epoch at `t` whose GSA lists `prns` (and GGA counts them)."""
    pos = "4404.1305,N,12118.8515,W"
    if kind == "GGA":
        return f"GPGGA,{hms(t)},{pos},1,{len(prns):02d},0.9,1127.7,M,-19.6,M,,"
    if kind == "GSA":
        slots = [f"{p:02d}" for p in prns] + [""] * (12 - len(prns))
        return "GPGSA,A,3," + ",".join(slots) + ",1.6,0.9,1.3"
    if kind == "RMC":
        return f"GPRMC,{hms(t)},A,{pos},0.1,12.0,{t:%d%m%y},,,A"
    if kind == "ZDA":
        return f"GPZDA,{hms(t)},{t:%d},{t:%m},{t:%Y},,"
    if kind == "GLL":
        return f"GPGLL,{pos},{hms(t)},A,A"
    return "GPVTG,12.0,T,,M,0.1,N,0.2,K,A"


@st.composite
def sky(draw: st.DrawFn) -> list[list[int]]:
    """The satellites used epoch after epoch: one set, a satellite gained or lost at times."""
    used = sorted(draw(st.sets(st.integers(1, 32), min_size=4, max_size=11)))
    epochs = [used]
    for _ in range(draw(st.integers(1, 7))):
        change = draw(st.sampled_from(["same", "same", "gain", "lose"]))
        if change == "gain" and len(used) < 12:
            used = sorted({*used, draw(st.integers(1, 32))})
        elif change == "lose" and len(used) > 4:
            used = used[:-1]
        epochs.append(used)
    return epochs


@settings(deadline=None, max_examples=300)
@given(order=st.sampled_from(sorted(ORDERS)), skies=sky(), data=st.data())
def test_lost_timed_sentences_never_lend_a_gsa_to_another_epoch(
    order: str, skies: list[list[int]], data: st.DataObject
) -> None:
    kinds = ORDERS[order]
    timed = [k for k in kinds if k not in ("GSA", "VTG")]
    stream = b""
    for i, prns in enumerate(skies):
        t = START + timedelta(seconds=i)
        keep = data.draw(st.sets(st.sampled_from(timed), min_size=1), label=f"kept {i}")
        for kind in kinds:
            line = nmea(gp_sentence(kind, t, prns))
            if kind not in keep and kind in timed:
                line = line.replace(b"*", b"0*")  # one garbled byte: a bad checksum
            stream += line
    d = NmeaDecoder(now=lambda: START)
    fixes = d.feed(stream, 0.0)  # no quiet spell to help: all in one read
    fixes += [f for f in [d.flush()] if f is not None]
    listed = {(START + timedelta(seconds=i)).time(): len(p) for i, p in enumerate(skies)}
    for fix in fixes:
        assert fix.satellites == listed[fix.fix_time.time()]


def clock(t: datetime, digits: int) -> tuple[str, datetime]:
    """`t` as a receiver sends it to `digits` decimals of the second: rounded (its date
    with it: 23:59:59.995 to hundredths is 00:00:00.00 of the next day)."""
    unit = 10 ** (6 - digits)
    us = (t.microsecond + unit // 2) // unit * unit
    r = t.replace(microsecond=0) + timedelta(microseconds=us)
    text = r.strftime("%H%M%S")
    return (text + "." + f"{r.microsecond:06d}"[:digits] if digits else text), r


def mixed_sentence(kind: str, t: datetime, digits: int) -> str:
    hhmmss, r = clock(t, digits)
    pos = "5313.2228,N,00634.4228,E"
    if kind == "GGA":
        return f"GPGGA,{hhmmss},{pos},1,05,2.6,10.0,M,,,,"
    if kind == "RMC":
        return f"GPRMC,{hhmmss},A,{pos},00.0,000.0,{r:%d%m%y},,"
    if kind == "ZDA":
        return f"GPZDA,{hhmmss},{r:%d},{r:%m},{r:%Y},00,00"
    return f"GPGLL,{pos},{hhmmss},A"


@settings(deadline=None, max_examples=200)
@given(
    hz=st.sampled_from([1, 2, 5, 10]),
    offset_ms=st.sampled_from([0, 3, -3, 300]),
    kinds=st.lists(st.sampled_from(["GGA", "GLL", "ZDA"]), max_size=3, unique=True).map(
        lambda k: ["RMC", *k]
    ),
    data=st.data(),
)
def test_times_sent_to_several_precisions_by_one_clock_make_one_fix_per_epoch(
    hz: int, offset_ms: int, kinds: list[str], data: st.DataObject
) -> None:
    # a receiver rounding one time to each sentence's precision (a Magellan eXplorist: GLL
    # to the ms, GGA and RMC to the hundredth), its sentences in any order, across
    # midnight. Whole seconds only from a clock on the whole second at 1 Hz: at 5 Hz they
    # cannot tell the epochs apart, and off the whole second they are another instant
    if hz > 1 and offset_ms == 300:
        offset_ms = 30
    least = 0 if hz == 1 and offset_ms == 0 else 1
    digits = {k: data.draw(st.integers(least, 3), label=k) for k in kinds}
    order = data.draw(st.permutations(kinds), label="order")
    first = datetime(2026, 2, 12, 23, 59, 58, tzinfo=UTC) + timedelta(milliseconds=offset_ms)
    d = NmeaDecoder(now=lambda: first)
    fixes: list[Fix] = []
    at = 1000.0
    for i in range(3 * hz):
        t = first + timedelta(seconds=i / hz)
        fixes += d.poll(at)
        fixes += d.feed(b"".join(nmea(mixed_sentence(k, t, digits[k])) for k in order), at)
        at += 1 / hz
    fixes += d.poll(at + 1.0)
    times = [f.fix_time for f in fixes]
    assert len(times) == 3 * hz and times == sorted(times)

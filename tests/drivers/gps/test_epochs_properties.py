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

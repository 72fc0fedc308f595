"""No byte sequence makes the NMEA decoder raise or emit a valid Fix out of range."""

import contextlib
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Fix, FixMode
from drivers.gps.decoder import NmeaDecoder
from drivers.gps.nmea import BadSentence, parse_sentence
from tests.drivers.gps.fakes import nmea

LOGS = Path(__file__).resolve().parents[3] / "hil" / "gps" / "logs"
NOW = datetime(2025, 6, 12, 12, 0, tzinfo=UTC)
SAMPLE = (LOGS / "ublox-m8-gn.nmea").read_bytes()[:4000]
T = TypeVar("T")
TYPES = ["GGA", "RMC", "VTG", "GSA", "GNS", "GLL", "GSV", "ZDA"]
TALKERS = ["GP", "GN", "GL", "GA", "GB", "BD", "QZ", "P"]

# Field text close to what receivers send, plus the characters that break naive parsers.
field_text = st.text(alphabet="0123456789.-+NSEWAVDTMKFRPe_ nai", max_size=14)
sentence_body = st.builds(
    lambda talker, kind, fields: f"{talker}{kind}," + ",".join(fields),
    st.sampled_from(TALKERS),
    st.sampled_from(TYPES),
    st.lists(field_text, max_size=20),
)


# Fields of the right shape whose values may be out of range (a latitude of 150°, a speed
# of 10^9 knots, a course of 400°, minute 70): they must be refused, never passed on.
def mostly(usual: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`usual` four times in five: most sentences must parse for their values to reach a Fix."""
    return st.integers(0, 4).flatmap(lambda i: rare if i == 4 else usual)


def hundredths(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low * 100, high * 100).map(lambda i: f"{i / 100:.2f}")


number = mostly(
    hundredths(0, 99),
    st.one_of(
        hundredths(-1000, 1000),
        st.integers(-(10**15), 10**15).map(lambda i: f"{i / 1000:.3f}"),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
    ),
)
course = mostly(hundredths(0, 359), hundredths(-720, 720))
hms = st.builds(
    "{:02d}{:02d}{:02d}{}".format,
    mostly(st.integers(0, 23), st.integers(0, 99)),
    mostly(st.integers(0, 59), st.integers(0, 99)),
    mostly(st.integers(0, 60), st.integers(0, 99)),
    st.sampled_from(["", ".", ".5", ".10", ".123456789"]),
)
ddmmyy = st.builds(
    "{:02d}{:02d}{:02d}".format,
    mostly(st.integers(1, 28), st.integers(0, 99)),
    mostly(st.integers(1, 12), st.integers(0, 99)),
    st.integers(0, 99),
)
minutes = mostly(
    st.floats(0, 59.99999, allow_nan=False).map("{:08.5f}".format),
    st.floats(0, 99.99999, allow_nan=False).map("{:08.5f}".format),
)
lat = st.builds("{:02d}{}".format, mostly(st.integers(0, 89), st.integers(0, 199)), minutes)
lon = st.builds("{:03d}{}".format, mostly(st.integers(0, 179), st.integers(0, 399)), minutes)
position = st.builds(lambda *f: ",".join(f), lat, st.sampled_from("NS"), lon, st.sampled_from("EW"))
status = st.sampled_from("AV")
mode = st.sampled_from("ADNERFPMS")
small = st.integers(0, 12).map(str)
prns = st.lists(st.one_of(st.just(""), st.integers(1, 200).map(str)), min_size=12, max_size=12)


def body(kind: str, *parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda talker, values: ",".join([f"{talker}{kind}", *values]),
        st.sampled_from(TALKERS[:-1]),
        st.tuples(*parts),
    )


M, EMPTY = st.just("M"), st.just("")
typed_body = st.one_of(
    body("GGA", hms, position, small, small, number, number, M, number, M, EMPTY, EMPTY),
    body("RMC", hms, status, position, number, course, ddmmyy, EMPTY, EMPTY, mode),
    body("VTG", course, st.just("T"), course, M, number, st.just("N"), number, st.just("K"), mode),
    body(
        "GSA",
        st.just("A"),
        mostly(st.sampled_from("123"), st.sampled_from("04")),
        prns.map(",".join),
        number,
        number,
        number,
    ),
    body(
        "GNS",
        hms,
        position,
        st.text("ADNREFPMS", min_size=1, max_size=5),
        small,
        number,
        number,
        number,
        EMPTY,
        EMPTY,
    ),
    body("GLL", position, hms, status, mode),
    # NMEA 4.10/4.11 and receivers' dialects: ZDA, GSA with a system id or only the PRNs
    # used, GNS with one mode letter per constellation and a navigational status
    body(
        "ZDA",
        hms,
        st.integers(0, 40).map(str),
        st.integers(0, 14).map(str),
        st.integers(1970, 2300).map(str),
        EMPTY,
        EMPTY,
    ),
    body(
        "GSA",
        st.sampled_from("AM"),
        mostly(st.sampled_from("123"), st.sampled_from("0E")),
        prns.map(",".join),
        number,
        number,
        number,
        st.integers(0, 16).map(str),
    ),
    st.builds(
        lambda talker, used, dops: ",".join([f"{talker}GSA", "A", "3", *used, *dops]),
        st.sampled_from(TALKERS[:-1]),
        st.lists(st.integers(1, 440).map(str), max_size=14),
        st.lists(number, min_size=0, max_size=3),
    ),
    body(
        "RMC",
        hms,
        status,
        position,
        number,
        course,
        ddmmyy,
        EMPTY,
        EMPTY,
        mode,
        st.sampled_from("SCUV"),
    ),
    body(
        "GNS",
        hms,
        position,
        st.text("ADNREFPMS", min_size=1, max_size=6),
        small,
        number,
        number,
        number,
        EMPTY,
        EMPTY,
        st.sampled_from("SCUV"),
    ),
)


def mangle(sentence: str, index: int, junk: str) -> str:
    """`sentence` with field `index` (mod its length) replaced by `junk`."""
    fields = sentence.split(",")
    fields[1 + index % (len(fields) - 1)] = junk
    return ",".join(fields)


chunk_sizes = st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=40)


def decode(data: bytes, sizes: list[int]) -> tuple[list[Fix], Counter[str]]:
    """Feed `data` in chunks of the given sizes (cycled), then flush."""
    counts: Counter[str] = Counter()

    def count(key: str, n: int) -> None:
        counts[key] += n

    d = NmeaDecoder(count=count, now=lambda: NOW)
    fixes: list[Fix] = []
    i = 0
    while i < len(data):
        for size in sizes:
            fixes += d.feed(data[i : i + size], 0.0)  # reads, not timing
            i += size
    if (last := d.flush()) is not None:
        fixes.append(last)
    return fixes, counts


def assert_sane(fixes: list[Fix], counts: Counter[str]) -> None:
    assert "parser_error" not in counts
    for fix in fixes:
        assert fix.fix_time.utcoffset() == timedelta(0)
        if not fix.valid:
            assert (fix.lat, fix.lon, fix.mode) == (0.0, 0.0, FixMode.NONE)
            continue
        assert math.isfinite(fix.lat) and -90 <= fix.lat <= 90
        assert math.isfinite(fix.lon) and -180 <= fix.lon <= 180
        assert fix.speed is None or (math.isfinite(fix.speed) and fix.speed >= 0)
        assert fix.course is None or 0 <= fix.course < 360
        assert fix.alt is None or math.isfinite(fix.alt)
        assert fix.hdop is None or (math.isfinite(fix.hdop) and fix.hdop >= 0)
        assert fix.satellites is None or fix.satellites >= 0
        assert fix.mode in (FixMode.TWO_D, FixMode.THREE_D) and fix.quality > 0


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=3000), chunk_sizes)
def test_arbitrary_bytes_never_raise_nor_give_an_insane_fix(data: bytes, sizes: list[int]) -> None:
    assert_sane(*decode(data, sizes))


@settings(deadline=None, max_examples=150)
@given(st.lists(sentence_body, max_size=25), chunk_sizes)
def test_checksummed_sentences_with_arbitrary_fields_never_give_an_insane_fix(
    bodies: list[str], sizes: list[int]
) -> None:
    assert_sane(*decode(b"".join(nmea(b) for b in bodies), sizes))


@settings(deadline=None, max_examples=600)
@given(typed_body)
def test_one_sentence_of_the_six_types_with_values_out_of_range_never_gives_an_insane_fix(
    body: str,
) -> None:
    assert_sane(*decode(nmea(body), [4096]))


@settings(deadline=None, max_examples=250)
@given(
    st.lists(
        st.one_of(typed_body, st.builds(mangle, typed_body, st.integers(0, 30), field_text)),
        min_size=1,
        max_size=8,
    )
)
def test_sentences_of_the_six_types_with_fuzzed_fields_never_give_an_insane_fix(
    bodies: list[str],
) -> None:
    assert_sane(*decode(b"".join(nmea(b) for b in bodies), [4096]))


@settings(deadline=None, max_examples=200)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.binary(max_size=30)), max_size=12))
def test_real_log_with_bytes_spliced_in_never_gives_an_insane_fix(
    splices: list[tuple[int, bytes]],
) -> None:
    data = SAMPLE
    for at, junk in sorted(splices, reverse=True):
        data = data[:at] + junk + data[at:]
    assert_sane(*decode(data, [4096]))


@settings(deadline=None, max_examples=200)
@given(chunk_sizes)
def test_how_reads_split_the_stream_does_not_change_the_fixes(sizes: list[int]) -> None:
    assert decode(SAMPLE, sizes) == decode(SAMPLE, [len(SAMPLE)])


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=200).map(lambda b: b + b"\n"))
def test_noise_ending_a_line_does_not_lose_the_sentences_after_it(junk: bytes) -> None:
    clean, _ = decode(SAMPLE, [len(SAMPLE)])
    noisy, _ = decode(junk + SAMPLE, [len(SAMPLE)])
    assert noisy == clean


LINES = [line for line in SAMPLE.split(b"\r\n")[1:-1] if line]  # whole lines only
framing = st.tuples(
    st.sampled_from([b"", b"\x00", b" ", b"\x00\x00", b"\t "]),  # padding before
    st.sampled_from([b"", b"\x00", b" ", b"  \x00"]),  # padding after
    st.sampled_from([b"\r\n", b"\r", b"\n", b"\n\r", b"\r\n\x00"]),  # line end
)


@settings(deadline=None, max_examples=150)
@given(st.lists(framing, min_size=len(LINES), max_size=len(LINES)), chunk_sizes)
def test_any_line_ends_and_padding_give_the_fixes_and_counts_of_crlf(
    frames: list[tuple[bytes, bytes, bytes]], sizes: list[int]
) -> None:
    framed = b"".join(a + line + b + end for line, (a, b, end) in zip(LINES, frames, strict=True))
    crlf = b"".join(line + b"\r\n" for line in LINES)
    assert decode(framed, sizes) == decode(crlf, [len(crlf)])


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=120))
def test_parse_sentence_raises_only_bad_sentence(line: bytes) -> None:
    with contextlib.suppress(BadSentence):
        parse_sentence(b"$" + line)


# Every field of every type, one at a time, set to a value that must be refused or kept
# in range: deterministic, so a lost range check fails every run, not one run in ten.
NASTY = [
    "",
    "-1",
    "-22.4",
    "-0.0",
    "360.5",
    "720",
    "1e5",
    "nan",
    "inf",
    "-inf",
    "1_0",
    " 1",
    "99999999999",
    "9100.000",
    "18100.000",
    "4860.000",
    "00-1.000",
    "246060",
    "320199",
    "A",
    "N",
    "V",
    "Z",
    "4",
    "9",
    "..",
    "0x1F",
]
RMC, VTG, GGA, GSA, GNS, GLL = (
    "GNRMC,081530.00,A,4553.14206,N,00210.51052,E,26.998,12.67,120625,,,A",
    "GNVTG,12.67,T,,M,26.998,N,50.000,K,A",
    "GNGGA,081530.00,4553.14206,N,00210.51052,E,1,12,0.87,451.1,M,49.2,M,,",
    "GNGSA,A,3,12,13,15,18,19,20,24,,,,,,1.52,0.87,1.25",
    "GNGNS,081530.00,4553.14206,N,00210.51052,E,AAN,12,0.87,451.1,49.2,,,V",
    "GNGLL,4553.14206,N,00210.51052,E,081530.00,A,A",
)
EPOCHS = {  # which sentence supplies a value depends on what else the epoch has
    "all": [RMC, VTG, GGA, GSA, GNS, GLL],
    "gga-vtg-gsa": [GGA, VTG, GSA],
    "rmc-gsa": [RMC, GSA],
    "gns-vtg": [GNS, VTG],
    "gll-vtg-gsa": [GLL, VTG, GSA],
}


@pytest.mark.parametrize("name", EPOCHS)
def test_each_field_set_to_a_nasty_value_never_gives_an_insane_fix(name: str) -> None:
    bodies = EPOCHS[name]
    for index, sentence in enumerate(bodies):
        fields = sentence.split(",")
        for i in range(1, len(fields)):
            for value in NASTY:
                changed = nmea(",".join([*fields[:i], value, *fields[i + 1 :]]))
                assert_sane(*decode(changed, [4096]))
                epoch = b"".join(changed if j == index else nmea(b) for j, b in enumerate(bodies))
                assert_sane(*decode(epoch, [4096]))

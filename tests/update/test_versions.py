"""The order of release versions (edged/update/versions.py): PEP 440's, through `packaging`,
on every spelling PEP 440 normalises and on hostile text; what is no version sorts first."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import InvalidVersion, Version

from edged.release.launcher import VERSION_NAME
from edged.update.versions import NOT_A_VERSION, release_key


def oracle(text: str) -> tuple[Any, ...]:
    """packaging's order, with what it rejects before every version (as release_key)."""
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0,)


SEP = st.sampled_from(["", ".", "-", "_"])
NUM = st.one_of(st.integers(0, 3), st.integers(0, 10**20)).map(str)
ZERO_PADDED = st.tuples(st.sampled_from(["", "0", "00"]), NUM).map("".join)


def cased(words: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(words).flatmap(
        lambda w: st.lists(st.booleans(), min_size=len(w), max_size=len(w)).map(
            lambda up: "".join(c.upper() if u else c for c, u in zip(w, up, strict=True))
        )
    )


@st.composite
def spelled(draw: st.DrawFn) -> str:
    """A PEP 440 version in any of the spellings it normalises (and sometimes not quite)."""
    out = draw(st.sampled_from(["", "", "v", "V"]))
    if draw(st.integers(0, 9)) == 0:
        out += draw(NUM) + "!"
    out += ".".join(draw(st.lists(ZERO_PADDED, min_size=1, max_size=4)))
    if draw(st.booleans()):
        label = draw(cased(["a", "alpha", "b", "beta", "c", "rc", "pre", "preview"]))
        out += draw(SEP) + label + draw(SEP) + draw(st.sampled_from(["", *draw(st.lists(NUM))]))
    if draw(st.booleans()):
        if draw(st.booleans()):
            out += "-" + draw(NUM)
        else:
            out += draw(SEP) + draw(cased(["post", "rev", "r"])) + draw(SEP) + draw(NUM)
    if draw(st.booleans()):
        out += draw(SEP) + draw(cased(["dev"])) + draw(SEP) + draw(st.sampled_from(["", "7"]))
    if draw(st.booleans()):
        segment = st.from_regex(r"[a-zA-Z0-9]{1,4}", fullmatch=True)
        segments = draw(st.lists(segment, min_size=1, max_size=3))
        out += "+" + "".join(s + draw(SEP.filter(bool)) for s in segments[:-1]) + segments[-1]
    return out


FRAGMENTS = st.sampled_from(
    ["1", "0", "2", "10", ".", "-", "_", "+", "!", "v", "a", "b", "c", "rc", "pre", "post",
     "r", "rev", "dev", "alpha", "beta", "x", "local", " ", "..", "++", "0" * 30]
)  # fmt: skip
NEAR = st.lists(FRAGMENTS, max_size=12).map("".join)
"""Pieces of the grammar in any order: mostly what PEP 440 rejects, by a character."""
HOSTILE = st.one_of(spelled(), NEAR, st.text(st.characters(codec="ascii"), max_size=80))


def test_a_release_candidate_is_older_than_its_release() -> None:
    """Only the leading numbers were compared: 1.2.0rc1 was 1.2.0, so a node on 1.2.0 took
    its own release candidate without allow_downgrade."""
    assert release_key("1.2.0rc1") < release_key("1.2.0")


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.2.0.dev1", "1.2.0a1"), ("1.2.0a1", "1.2.0a2.dev0"), ("1.2.0a2", "1.2.0b1"),
     ("1.2.0b1", "1.2.0rc1"), ("1.2.0rc2", "1.2.0"), ("1.2.0", "1.2.0.post1.dev0"),
     ("1.2.0", "1.2.0+local"), ("1.2.0+zzz", "1.2.0.post0"), ("1.2.0+abc", "1.2.0+1"), ("1.2.0", "1.2.1.dev0"),
     ("0.9.9", "0.10.0"), ("nightly", "0.0.1")],
)  # fmt: skip
def test_versions_sort_as_pep_440_orders_them(older: str, newer: str) -> None:
    assert release_key(older) < release_key(newer)


@pytest.mark.parametrize(
    ("a", "b"), [("1.2", "1.2.0"), ("1.2.0-rc.1", "1.2.0rc1"), ("v1.0-1", "1.0.post1"),
             ("1.0.0preview2", "1.0rc2"), ("1.0a", "1.0a0"), ("1.0+A.1", "1.0+a-1")],
)  # fmt: skip
def test_spellings_pep_440_normalises_compare_equal(a: str, b: str) -> None:
    assert release_key(a) == release_key(b)


@given(HOSTILE, HOSTILE)
def test_any_text_has_a_key_that_orders_and_never_raises(a: str, b: str) -> None:
    """A release name comes from a signed bundle, but the check runs on it before any other:
    whatever it is, the node answers (downgrade or not), never an error."""
    ka, kb = release_key(a), release_key(b)
    assert (ka < kb) + (ka == kb) + (ka > kb) == 1


@given(st.text(st.characters(codec="ascii"), max_size=80))
def test_a_name_that_is_no_version_is_never_newer_than_one_that_is(text: str) -> None:
    """So an update.apply of such a release name is a downgrade of any running version."""
    if oracle(text) == (0,):
        assert release_key(text) == NOT_A_VERSION < release_key("0")


@given(st.from_regex(VERSION_NAME, fullmatch=True))
def test_every_release_name_the_launcher_takes_has_a_key(name: str) -> None:
    key = release_key(name)
    assert key == oracle(name) or key == NOT_A_VERSION

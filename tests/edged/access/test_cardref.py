import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from edged.access.cardref import CardRefs, random_uid

SECRET = b"0123456789abcdef0123"


def test_card_ref_is_keyed_hex_of_the_configured_length() -> None:
    ref = CardRefs(SECRET, 16)(bytes.fromhex("04a1b2c3"))
    assert len(ref) == 32 and int(ref, 16) >= 0


def test_another_fleet_secret_gives_another_card_ref() -> None:
    uid = bytes.fromhex("04a1b2c3")
    assert CardRefs(SECRET)(uid) != CardRefs(SECRET + b"x")(uid)


@given(uid=st.binary(min_size=4, max_size=10))
def test_card_ref_never_contains_the_uid(uid: bytes) -> None:
    ref = CardRefs(SECRET, 16)(uid)
    assert uid.hex() not in ref


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CardRefs(b"short")


def test_secret_file_too_short_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(b"abc\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="urandom"):
        CardRefs.from_file(path)


def test_secret_file_surrounding_whitespace_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_bytes(SECRET + b"\n")
    assert CardRefs.from_file(path)(b"\x04\x01\x02\x03") == CardRefs(SECRET)(b"\x04\x01\x02\x03")


@given(st.binary(min_size=4, max_size=4))
def test_a_single_size_uid_is_random_exactly_when_it_begins_with_08(uid: bytes) -> None:
    assert random_uid(uid) == (uid[0] == 0x08)


@given(st.sampled_from([7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_a_double_or_triple_size_uid_is_never_random(uid: bytes) -> None:
    # its first byte is the manufacturer's code (ISO/IEC 7816-6): 08h there is a maker
    assert not random_uid(b"\x08" + uid[1:])

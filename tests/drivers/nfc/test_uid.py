import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from drivers.nfc.uid import UID_LENGTHS, HexUid, parse_uid

uids = st.sampled_from(UID_LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n))


class Model(BaseModel):
    uid: HexUid


@given(uids, st.sampled_from(["", ":", " ", "-"]), st.booleans())
def test_a_uid_written_in_any_usual_spelling_parses_back(uid: bytes, sep: str, upper: bool) -> None:
    text = sep.join(f"{b:02x}" for b in uid)
    assert parse_uid(text.upper() if upper else text) == uid


@given(st.binary(min_size=1, max_size=12).filter(lambda b: len(b) not in UID_LENGTHS))
def test_any_other_length_is_refused_saying_4_7_or_10(uid: bytes) -> None:
    with pytest.raises(ValueError, match=r"4, 7 or 10 bytes"):
        parse_uid(uid.hex())


def test_a_wrong_length_says_how_long_it_was() -> None:
    with pytest.raises(
        ValueError, match=r"'04A1B2C3D4' is 5 bytes; an ISO 14443A UID is 4, 7 or 10"
    ):
        parse_uid("04A1B2C3D4")


@pytest.mark.parametrize("text", ["04A1B2CG", "04A1B2C", "0x04A1B2C3", "04_A1_B2_C3"])
def test_text_that_is_not_hex_pairs_says_how_to_write_a_uid(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a hex UID: use the digits 0-9 and A-F"):
        parse_uid(text)


def test_an_empty_uid_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"empty string"):
        parse_uid("")


def test_a_model_field_takes_hex_text_and_gives_it_back_upper_case() -> None:
    m = Model(uid="04:a1:b2:c3")
    assert m.uid == b"\x04\xa1\xb2\xc3"
    assert m.model_dump(mode="json") == {"uid": "04A1B2C3"}


def test_a_model_field_names_the_key_and_the_problem() -> None:
    with pytest.raises(ValidationError, match=r"uid\n.*is 3 bytes"):
        Model(uid="04A1B2")
    with pytest.raises(ValidationError, match=r"not int"):
        Model(uid=1234)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "uid"),
    [
        ("4:1:2:3:4:5:A6", "040102030405a6"),  # would read as the 4 bytes 41 23 45 A6
        ("1 2 3 4 5 6 A7 B8 C9 DA", "010203040506a7b8c9da"),  # would read as 7 bytes
    ],
)
def test_bytes_written_without_their_leading_zero_are_refused_not_read_as_another_uid(
    text: str, uid: str
) -> None:
    """ISO/IEC 14443-3 UIDs are whole bytes (UID0..UIDn): a separated group of an odd count of
    digits is a byte missing its leading zero (`print(b, HEX)`), and joining the groups
    anyway shifts every nibble after it, which can land on another valid length."""
    assert len(bytes.fromhex(uid)) in UID_LENGTHS  # what was meant
    with pytest.raises(ValueError, match=r"is not a hex UID: .*two per byte"):
        parse_uid(text)

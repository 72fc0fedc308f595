"""How many combining marks one character may carry on the screen (`edged.kiosk.marks`):
zalgo text is cut to a few, real writing in any script keeps every mark it has."""

import pytest

from edged.kiosk.marks import MAX_MARKS, cap_marks, longest_marks, too_many_marks

ZALGO = "A" + "".join(chr(0x0300 + i % 0x70) for i in range(200))

LEGITIMATE = {
    "vietnamese, decomposed": "Tie\u0302\u0301ng Vie\u0323\u0302t",
    "vietnamese, composed": "Tiếng Việt",
    "devanagari": "क्षत्रिय हिन्दी संस्कृतम्",
    "devanagari with a joiner": "क्\u200dष",
    "hebrew with points and an accent": "בְּרֵאשִׁ֖ית שִּׁ֤",
    "arabic with harakat": "مُحَمَّدٌ",
    "thai": "ภาษาไทย น้ำ",
    "emoji zwj family": "👨‍👩‍👧‍👦",
    "emoji with skin tone and zwj": "👩🏽‍🚒",
    "keycap": "1\ufe0f\u20e3",
    "flag": "🇫🇷",
    "heart on fire": "❤️‍🔥",
}


@pytest.mark.parametrize("text", LEGITIMATE.values(), ids=LEGITIMATE.keys())
def test_real_writing_keeps_every_mark(text: str) -> None:
    assert cap_marks(text) == text and too_many_marks(text) is None


def test_zalgo_keeps_its_letter_and_the_first_marks() -> None:
    assert cap_marks(ZALGO + " fin") == ZALGO[: 1 + MAX_MARKS] + " fin"


def test_each_letter_keeps_its_own_marks() -> None:
    text = ("e" + "\u0301" * 9) * 3
    assert cap_marks(text) == ("e" + "\u0301" * MAX_MARKS) * 3


def test_joiners_between_marks_do_not_reset_the_count() -> None:
    """ZWJ starts no new character: "A" + (mark, ZWJ) x 100 stacks 100 marks on one A."""
    text = "A" + "\u0301\u200d" * 100 + "b"
    assert longest_marks(text) == 100
    capped = cap_marks(text)
    assert longest_marks(capped) == MAX_MARKS and capped.endswith("b") and len(capped) < 12


def test_enclosing_and_spacing_marks_count_too() -> None:
    assert longest_marks("o" + "\u20dd" * 3 + "\u0903" * 3) == 6


def test_a_refusal_says_how_many_and_the_limit() -> None:
    problem = too_many_marks(ZALGO)
    assert (
        problem is not None
        and "200 combining marks" in problem
        and f"at most {MAX_MARKS}" in problem
    )

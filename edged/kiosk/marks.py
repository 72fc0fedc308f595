"""Combining marks on the screen: how many one character may carry.

A letter followed by hundreds of combining marks ("zalgo" text: "A" and 200 of U+0300..U+036F)
is one character to a line breaker: it cannot wrap, and its marks, stacked or set side by
side by a fallback font, widened an announcement past its region and were drawn over the
regions around it. Real writing needs a few: Vietnamese two on a vowel, Arabic a shadda and
a vowel, Hebrew points and an accent, Devanagari a vowel sign and a nasal, a keycap emoji
two (U+FE0F, U+20E3). Unicode's Stream-Safe Text Format (UAX #15) allows 30 in a row; a
screen read from 1.5 m needs far fewer, so every text the kiosk shows keeps at most
`MAX_MARKS` on one character: dispatch's text with more is refused (`edged.kiosk.models`,
`journey.assign`), a name the kiosk does not check is cut to them (`screen_text`), and the
page cuts whatever reaches it the same way (`clean` in kiosk.js).

Joiners (ZWJ, ZWNJ) between marks neither count nor end a run: they do not start a new
character, so "A" + (U+0301 ZWJ) x 100 stacks a hundred marks on one A as surely.
"""

MAX_MARKS = 4
_JOINERS = frozenset("\u200c\u200d")


def longest_marks(text: str) -> int:
    """The most combining marks (categories Mn, Mc, Me) one character of `text` carries."""
    if text.isascii():
        return 0
    import unicodedata  # here: its tables are 0.1 MB a node without this text never needs

    run = best = 0
    for ch in text:
        if ch in _JOINERS:
            continue
        if unicodedata.category(ch)[0] == "M":
            run += 1
            best = max(best, run)
        else:
            run = 0
    return best


def cap_marks(text: str) -> str:
    """`text` with at most `MAX_MARKS` combining marks on each character (the first kept)."""
    if longest_marks(text) <= MAX_MARKS:
        return text
    import unicodedata

    kept = []
    run = 0
    for ch in text:
        if ch in _JOINERS:
            if run > MAX_MARKS:
                continue  # among marks dropped: nothing left for it to join
        elif unicodedata.category(ch)[0] == "M":
            run += 1
            if run > MAX_MARKS:
                continue
        else:
            run = 0
        kept.append(ch)
    return "".join(kept)


def too_many_marks(text: str) -> str | None:
    """Why `text` cannot be shown as written (too many marks on one character), or None."""
    most = longest_marks(text)
    if most <= MAX_MARKS:
        return None
    return (
        f"text has {most} combining marks on one character (at most {MAX_MARKS}): they would "
        "spill over the screen; send plain text"
    )

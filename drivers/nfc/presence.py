"""Which cards are on a reader, from poll to poll, and when a presentation is a new tap.

A reader only answers "these UIDs are in the field now"; a tap is a presentation. The rule:

- a UID not on the reader taps at once, whatever else is on it (a different card taps
  even while the first is still held; two cards held together tap once each, even when
  anticollision shows them alternately);
- a UID held stays one tap however long it is held (unless `repeat_s`: then it taps again
  every `repeat_s` while held);
- a UID counts as taken off once it has been missing `release_s` since it was last seen,
  judged only after completed polls: a read glitch shorter than that (the card at the
  edge of the field, one missed poll) is the same presentation, and a poll that failed
  or stalled is not evidence that the card left. Nor is one poll that saw another card:
  with one target per poll, anticollision shows two cards held together in turn, so a
  held one is missing from every other poll, whatever their pace (a poll late by more
  than `release_s` on a loaded node, and a card held beside another tapped again). It is
  off after `release_s` and either a poll that saw no card or `TURNS` polls in a row
  that saw another. Presented again after that: a new tap.
  A reader reopened is the same: nfc.libnfc keeps one `Presence` per reader across its
  reopens, so a card still there at the first completed poll after an outage is held, and
  one gone by then is off at once (it has been unseen longer than `release_s`), or, when
  the polls after it see another card, at the second of them in a row.

Pure and clock-free (the caller passes `now`), so it is tested without a reader.
"""

from collections.abc import Collection

TURNS = 2
"""Polls in a row that saw another card before a card missing `release_s` is off: two
cards held together, shown in turn."""


class Presence:
    def __init__(self, release_s: float, repeat_s: float | None = None) -> None:
        self.release_s = release_s
        self.repeat_s = repeat_s
        self._last_seen: dict[bytes, float] = {}
        self._last_tap: dict[bytes, float] = {}
        self._missed: dict[bytes, int] = {}  # completed polls in a row without it

    def __len__(self) -> int:
        return len(self._last_seen)

    def __contains__(self, uid: object) -> bool:
        return uid in self._last_seen

    def update(self, seen: Collection[bytes], now: float) -> list[bytes]:
        """A completed poll saw `seen`: returns the UIDs that tap now (new presentations)."""
        taps: list[bytes] = []
        for uid in seen:
            last_tap = self._last_tap.get(uid)
            if last_tap is None or (self.repeat_s is not None and now - last_tap >= self.repeat_s):
                taps.append(uid)
                self._last_tap[uid] = now
            self._last_seen[uid] = now
            self._missed[uid] = 0
        for uid, last in list(self._last_seen.items()):
            if uid in seen:
                continue
            missed = self._missed[uid] = self._missed[uid] + 1
            if now - last >= self.release_s and (not seen or missed >= TURNS):
                del self._last_seen[uid]
                del self._last_tap[uid]
                del self._missed[uid]
        return taps

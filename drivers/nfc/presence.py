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
  or stalled is not evidence that the card left. Presented again after that: a new tap.
  A reader reopened is the same: nfc.libnfc keeps one `Presence` per reader across its
  reopens, so a card still there at the first completed poll after an outage is held, and
  one gone by then is off at once (it has been unseen longer than `release_s`).

Pure and clock-free (the caller passes `now`), so it is tested without a reader.
"""

from collections.abc import Collection


class Presence:
    def __init__(self, release_s: float, repeat_s: float | None = None) -> None:
        self.release_s = release_s
        self.repeat_s = repeat_s
        self._last_seen: dict[bytes, float] = {}
        self._last_tap: dict[bytes, float] = {}

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
        for uid, last in list(self._last_seen.items()):
            if uid not in seen and now - last >= self.release_s:
                del self._last_seen[uid]
                del self._last_tap[uid]
        return taps

"""Bytes from a receiver to Fixes: what `gps.nmea-serial` runs on each read and timer."""

import time
from collections.abc import Callable
from datetime import datetime

from core.events import Fix
from drivers.gps.epochs import EpochMerger
from drivers.gps.nmea import (
    DEFAULT_MAX_LINE,
    BadSentence,
    Count,
    LineSplitter,
    _no_count,
    parse_sentence,
)


class NmeaDecoder:
    """Line splitting, parsing and epoch merging, with the arrival time of every read.

    Never raises: every bad line is counted through `count(key, n)` and dropped, every
    refused field counted as `bad_field`. An error in the parser itself would be counted
    as `parser_error` (the property tests demand none) rather than stop the driver.
    """

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        count: Count = _no_count,
        now: Callable[[], datetime] | None = None,
        synced: Callable[[], bool | None] | None = None,
    ) -> None:
        """`now`, `synced`: the system clock and whether it is synchronised (the week
        rollover rule's bounds, drivers.gps.dating; default the kernel's)."""
        self.count = count
        self.splitter = LineSplitter(max_line, count)
        self.merger = EpochMerger(now, count, synced)
        self.sentences = 0  # lines with a good checksum: the receiver is talking to us

    def feed(self, data: bytes, at: float | None = None) -> list[Fix]:
        """The Fixes of the epochs these bytes closed; `at`: when they arrived (monotonic
        seconds, default now), so a quiet spell between reads can close an epoch."""
        if at is None:
            at = time.monotonic()
        fixes: list[Fix] = []
        merger = self.merger
        if data:  # any byte, sentence or not (UBX, a line still arriving): still talking
            merger.heard(at, fixes)
        for line in self.splitter.feed(data):
            try:
                sentence = parse_sentence(line)
                self.sentences += 1
                if sentence is None:  # GSV, TXT, proprietary: heard above
                    continue
                if sentence.bad:
                    self.count("bad_field", sentence.bad)
                merger.add(sentence, at, fixes)
            except BadSentence as exc:
                self.count(exc.key, 1)
            except Exception:  # a parser bug must cost one line, not the driver
                self.count("parser_error", 1)
        return fixes

    def deadline(self) -> float | None:
        """When the open epoch will be over if nothing more arrives (monotonic s)."""
        return self.merger.deadline()

    def poll(self, now: float | None = None) -> list[Fix]:
        """The Fix of the open epoch if the receiver has been quiet long enough."""
        fixes: list[Fix] = []
        self.merger.poll(time.monotonic() if now is None else now, fixes)
        return fixes

    def flush(self) -> Fix | None:
        """The open epoch, now (end of a log)."""
        return self.merger.flush()

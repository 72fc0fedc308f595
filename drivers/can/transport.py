"""J1939-21 transport protocol, broadcast (BAM) reassembly, as a passive listener does it.

A message longer than 8 bytes (DM1 with more than one code, for instance) is announced by
a TP.CM BAM (PGN 60416, control byte 32: total size, packet count, PGN) and follows as
TP.DT packets (PGN 60160: sequence number 1..n, then 7 data bytes). Senders interleave,
so sessions are keyed by source address; a source has at most one BAM open, so a new
announcement from it aborts the old one. Anything inconsistent drops the session and is
counted: a bus with a flaky ECU must cost a counter, never a wrong value or a crash.
"""

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

TP_BAM = 32
T1_S = 0.75
"""J1939-21 T1: the longest a receiver waits between two packets of a BAM."""
MAX_SIZE = 1785
"""255 packets of 7 bytes: the most the transport protocol can carry."""
MIN_SIZE = 9
"""A message of 8 bytes or fewer fits in one frame and is never sent over TP."""


@dataclass(slots=True)
class _Session:
    pgn: int
    size: int
    packets: int
    last: float
    wanted: bool
    next_seq: int = 1
    data: bytearray = field(default_factory=bytearray)


class BamReassembler:
    """Turns TP.CM/TP.DT frames into complete (PGN, payload) messages.

    `counts` receives the reasons things went wrong, by key: bam_refused (an impossible
    announcement), bam_aborted (a new BAM from the same source replaced an open one),
    bam_sequence (packet out of order, repeated or missing), bam_timeout (more than T1
    between packets), bam_orphan (a packet with no announcement), bam_malformed (a frame
    too short to be a TP frame), bam_complete.
    """

    def __init__(
        self,
        counts: MutableMapping[str, int],
        *,
        wanted: Callable[[int], bool] = lambda pgn: True,
        timeout_s: float = T1_S,
        max_size: int = MAX_SIZE,
    ) -> None:
        self.counts = counts
        self.wanted = wanted
        self.timeout_s = timeout_s
        self.max_size = min(max_size, MAX_SIZE)
        self.sessions: dict[int, _Session] = {}

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def on_cm(self, source: int, data: bytes | bytearray, now: float) -> None:
        """A TP.CM to the global address: only BAM announcements matter to a listener."""
        if len(data) < 8:
            self._count("bam_malformed")
            return
        if data[0] != TP_BAM:
            return  # RTS/CTS or abort: a session addressed to someone else
        if source in self.sessions:
            del self.sessions[source]
            self._count("bam_aborted")
        size = data[1] | data[2] << 8
        packets = data[3]
        pgn = data[5] | data[6] << 8 | data[7] << 16
        if not MIN_SIZE <= size <= self.max_size or packets != -(-size // 7) or pgn > 0x3FFFF:
            self._count("bam_refused")
            return
        wanted = self.wanted(pgn)
        self.sessions[source] = _Session(pgn, size, packets, now, wanted)

    def on_dt(self, source: int, data: bytes | bytearray, now: float) -> tuple[int, bytes] | None:
        """A TP.DT to the global address; returns (PGN, payload) when a message completes."""
        session = self.sessions.get(source)
        if session is None:
            self._count("bam_orphan")
            return None
        if now - session.last > self.timeout_s:
            del self.sessions[source]
            self._count("bam_timeout")
            return None
        if not data or data[0] != session.next_seq:
            del self.sessions[source]
            self._count("bam_sequence")
            return None
        remaining = session.size - (session.next_seq - 1) * 7
        if len(data) < 1 + min(7, remaining):
            del self.sessions[source]
            self._count("bam_malformed")
            return None
        if session.wanted:
            session.data += data[1:8]
        session.last = now
        if session.next_seq < session.packets:
            session.next_seq += 1
            return None
        del self.sessions[source]
        self._count("bam_complete")
        if not session.wanted:
            return None
        return session.pgn, bytes(session.data[: session.size])

    def expire(self, now: float) -> None:
        """Drop sessions whose sender went quiet for longer than T1, so they are counted."""
        stale = [s for s, session in self.sessions.items() if now - session.last > self.timeout_s]
        for source in stale:
            del self.sessions[source]
            self._count("bam_timeout")

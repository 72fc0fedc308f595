"""J1939-21 transport protocol reassembly, as a passive listener does it: BAM and RTS/CTS.

A message longer than 8 bytes (DM1 with more than one code, for instance) is announced by
a TP.CM (PGN 60416: total size, packet count, PGN) and follows as TP.DT packets (PGN 60160:
sequence number 1..n, then 7 data bytes).

- Broadcast (BAM, control byte 32, to the global address): the sender announces and sends
  the packets to everyone. Senders interleave, so sessions are keyed by source address; a
  source has at most one BAM open, so a new announcement from it aborts the old one.
- Connection mode (RTS/CTS, to one node): the originator asks (RTS, 16), the responder
  grants packets (CTS, 17: how many and from which one; 0 means wait), the originator sends
  them to the responder, the responder acknowledges the whole (EndOfMsgAck, 19) or either
  side aborts (255). A listener that never transmits can still read such a message by
  watching both sides: sessions are keyed by (originator, responder), each CTS says which
  packet comes next (a retransmission included), and the message is complete when every
  packet arrived.

Both refuse the same things and count them: an impossible announcement (`*_refused`), a new
announcement over an open session or an abort (`*_aborted`), a message given up for a
packet out of order or missing (`*_sequence`), silence beyond the protocol's timeout
(`*_timeout`), a packet or grant without announcement (`*_orphan`), a frame too short to be
a TP frame (`*_malformed`), with `bam_` or `rts_` in front. A bus with a flaky ECU, or a
peer that floods announcements, must cost a counter, never a wrong value, a crash or
unbounded memory: RTS/CTS sessions are capped (`rts_busy` beyond).

A packet that is not the next one is not always the end of the message (`*_ignored`: the
packet is left out, the session goes on):

- a CAN frame reaches its receivers twice when an error hits the last bit of its end of
  frame (the sender sends it again, the receivers had it already): a BAM packet that
  repeats the last one byte for byte is ignored; any other is the end of the message;
- in RTS/CTS the responder sees the same bus and decides: a packet out of order, repeated
  or beyond its grant is the reason it asks for packets again (a CTS naming the next one
  it wants), and it acknowledges the message or aborts. The listener ignores such a packet
  and follows the responder's next word; an EndOfMsgAck while packets are missing here is
  the loss (`rts_sequence`), and so is a packet it holds sent again, unasked, with other
  bytes (which copy the responder kept is not on the bus).

The Linux J1939 stack keeps a session through such packets too (net/can/j1939/transport.c,
j1939_xtp_rx_dat_one: a packet other than the next is stored, the count of packets in
order does not move, only a packet beyond the last ends the session).

Every `now` is the caller's clock. The pipeline gives the bus's time (each frame's own
timestamp, made safe by drivers/can/busclock.py, or a replayed log's time), not when a frame
is processed: a receiver that stalls must not time out packets that were on time.
"""

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

TP_RTS = 16
TP_CTS = 17
TP_END_OF_MSG_ACK = 19
TP_BAM = 32
TP_ABORT = 255
T1_S = 0.75
"""J1939-21 T1: the longest a receiver waits between two packets of a BAM."""
T2_S = 1.25
"""J1939-21 T2/T3: the longest anyone waits for the other side of an RTS/CTS session."""
MAX_SIZE = 1785
"""255 packets of 7 bytes: the most the transport protocol can carry."""
MIN_SIZE = 9
"""A message of 8 bytes or fewer fits in one frame and is never sent over TP."""
MAX_CONNECTIONS = 64
"""RTS/CTS sessions followed at once (a vehicle has a handful; 64 x 1785 bytes at most)."""


def announcement(data: bytes | bytearray, max_size: int) -> tuple[int, int, int] | None:
    """(size, packets, PGN) of a BAM or RTS, or None when impossible: size outside 9..max,
    a packet count that does not fit the size, a PGN beyond 18 bits."""
    size = data[1] | data[2] << 8
    packets = data[3]
    pgn = data[5] | data[6] << 8 | data[7] << 16
    if not MIN_SIZE <= size <= max_size or packets != -(-size // 7) or pgn > 0x3FFFF:
        return None
    return size, packets, pgn


@dataclass(slots=True)
class _Session:
    pgn: int
    size: int
    packets: int
    last: float
    wanted: bool
    next_seq: int = 1
    data: bytearray = field(default_factory=bytearray)


class _Reassembler:
    """What both reassemblers share: counters, the PGNs worth keeping, the limits."""

    def __init__(
        self,
        counts: MutableMapping[str, int],
        *,
        wanted: Callable[[int], bool],
        timeout_s: float,
        max_size: int,
    ) -> None:
        self.counts = counts
        self.wanted = wanted
        self.timeout_s = timeout_s
        self.max_size = min(max_size, MAX_SIZE)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1


class BamReassembler(_Reassembler):
    """Turns TP.CM BAM / TP.DT frames to the global address into (PGN, payload) messages.

    `counts` receives the bam_* keys of the module docstring, and bam_complete.
    """

    def __init__(
        self,
        counts: MutableMapping[str, int],
        *,
        wanted: Callable[[int], bool] = lambda pgn: True,
        timeout_s: float = T1_S,
        max_size: int = MAX_SIZE,
    ) -> None:
        super().__init__(counts, wanted=wanted, timeout_s=timeout_s, max_size=max_size)
        self.sessions: dict[int, _Session] = {}

    def on_cm(self, source: int, data: bytes | bytearray, now: float) -> None:
        """A TP.CM to the global address: only BAM announcements matter to a listener."""
        if len(data) < 8:
            self._count("bam_malformed")
            return
        if data[0] != TP_BAM:
            return  # connection management is never sent to the global address
        if source in self.sessions:
            del self.sessions[source]
            self._count("bam_aborted")
        announced = announcement(data, self.max_size)
        if announced is None:
            self._count("bam_refused")
            return
        size, packets, pgn = announced
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
            if data and _repeats_the_last(session, data):
                self._count("bam_ignored")  # the same frame received twice
                return None
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


def _same_as_held(session: _Session, data: bytes | bytearray) -> bool:
    """Whether a TP.DT of a packet already stored has the stored bytes (a message nobody
    decodes keeps no bytes: its sequence number has to do)."""
    seq = data[0]
    return not session.wanted or bytes(data[1:8]) == session.data[(seq - 1) * 7 : seq * 7]


def _repeats_the_last(session: _Session, data: bytes | bytearray) -> bool:
    """Whether a TP.DT is the packet just received, again, byte for byte."""
    return 1 <= data[0] == session.next_seq - 1 and _same_as_held(session, data)


@dataclass(slots=True)
class _Connection(_Session):
    """`next_seq`: the packet the originator sends next, as the last CTS says."""

    granted: int = 0  # the last packet the last CTS allows
    received: int = 0  # packets stored, in order


class ConnectionReassembler(_Reassembler):
    """Turns RTS/CTS sessions between two other nodes into (PGN, payload) messages, by
    watching both sides (the module docstring says how). `counts` receives the rts_* keys
    and rts_complete."""

    def __init__(
        self,
        counts: MutableMapping[str, int],
        *,
        wanted: Callable[[int], bool] = lambda pgn: True,
        timeout_s: float = T2_S,
        max_size: int = MAX_SIZE,
        max_sessions: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(counts, wanted=wanted, timeout_s=timeout_s, max_size=max_size)
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[int, int], _Connection] = {}  # (originator, responder)

    def _drop(self, key: tuple[int, int], reason: str) -> None:
        del self.sessions[key]
        self._count(reason)

    def on_cm(self, source: int, destination: int, data: bytes | bytearray, now: float) -> None:
        """A TP.CM from `source` to `destination` (not the global address)."""
        if len(data) < 8:
            self._count("rts_malformed")
            return
        control = data[0]
        if control == TP_RTS:
            self._rts((source, destination), data, now)
            return
        key = (destination, source)  # CTS, EndOfMsgAck: from the responder
        pgn = data[5] | data[6] << 8 | data[7] << 16
        if control == TP_ABORT:  # by either side: the session of the PGN it names
            for k in ((source, destination), key):
                if k in self.sessions and self.sessions[k].pgn == pgn:
                    self._drop(k, "rts_aborted")
            return
        session = self.sessions.get(key)
        if control not in (TP_CTS, TP_END_OF_MSG_ACK):
            return  # reserved control bytes, or a BAM sent to one node: not ours to judge
        if session is None:
            if control == TP_CTS:
                self._count("rts_orphan")
            return  # an EndOfMsgAck of a message already complete (or never seen)
        if pgn != session.pgn:
            self._drop(key, "rts_sequence")
            return
        if now - session.last > self.timeout_s:
            self._drop(key, "rts_timeout")
            return
        session.last = now
        if control == TP_END_OF_MSG_ACK:
            self._drop(key, "rts_sequence")  # acknowledged, but packets never reached us
            return
        count, first = data[1], data[2]
        if count == 0:
            return  # hold: the responder will grant more later
        if not 1 <= first <= session.received + 1:
            self._drop(key, "rts_sequence")  # beyond what we hold
            return
        session.next_seq = first
        # a count is bounded by the RTS (its packets, its packets per CTS), not by what is
        # left: a window past the last packet grants the rest (originators clamp it so)
        session.granted = min(first + count - 1, session.packets)

    def _rts(self, key: tuple[int, int], data: bytes | bytearray, now: float) -> None:
        if key in self.sessions:
            self._drop(key, "rts_aborted")
        announced = announcement(data, self.max_size)
        if announced is None:
            self._count("rts_refused")
            return
        if len(self.sessions) >= self.max_sessions:
            self.expire(now)
            if len(self.sessions) >= self.max_sessions:
                self._count("rts_busy")
                return
        size, packets, pgn = announced
        self.sessions[key] = _Connection(pgn, size, packets, now, self.wanted(pgn))

    def on_dt(
        self, source: int, destination: int, data: bytes | bytearray, now: float
    ) -> tuple[int, bytes] | None:
        """A TP.DT from `source` to `destination`; returns (PGN, payload) when complete."""
        key = (source, destination)
        session = self.sessions.get(key)
        if session is None:
            self._count("rts_orphan")
            return None
        if now - session.last > self.timeout_s:
            self._drop(key, "rts_timeout")
            return None
        if not data:
            self._drop(key, "rts_malformed")
            return None
        seq = data[0]
        if seq != session.next_seq or (session.granted and seq > session.granted):
            if seq <= session.received and not _same_as_held(session, data):
                # a packet we hold, sent again with other bytes and not asked for: which
                # copy the responder kept is not on the bus
                self._drop(key, "rts_sequence")
                return None
            # ahead of the next one, beyond the grant, or one we hold sent again byte for
            # byte: the responder saw it too, and its next CTS, acknowledgement or abort
            # says what becomes of the message
            self._count("rts_ignored")
            return None
        remaining = session.size - (seq - 1) * 7
        if len(data) < 1 + min(7, remaining):
            self._drop(key, "rts_malformed")
            return None
        if session.wanted:
            del session.data[(seq - 1) * 7 :]  # a retransmission replaces what followed
            session.data += data[1:8]
        session.received = seq
        session.next_seq = seq + 1
        session.last = now
        if seq < session.packets:
            return None
        del self.sessions[key]
        self._count("rts_complete")
        if not session.wanted:
            return None
        return session.pgn, bytes(session.data[: session.size])

    def expire(self, now: float) -> None:
        """Drop sessions whose two sides went quiet for longer than T2/T3."""
        stale = [k for k, s in self.sessions.items() if now - s.last > self.timeout_s]
        for key in stale:
            self._drop(key, "rts_timeout")

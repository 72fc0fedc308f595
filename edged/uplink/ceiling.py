"""A Maximum Packet Size the broker does not announce, learned from the sessions it ends.

An MQTT 5 broker announces its limit in its CONNACK, and the drain holds back a publish over
it (`edged.uplink.sender`). An MQTT 3.1.1 broker cannot (Mosquitto's `max_packet_size` for a
3.1.1 client, a cloud broker's message size limit): it closes the connection when a bigger
packet comes. The outbox sends in order, so that message came first again in every
session: the node reconnected every second, nothing behind it moved, and three such
sessions in a row were taken for another client with our id.

A session over MQTT 3.1.1 that the broker ended by closing the connection (no DISCONNECT,
no time-out of ours) names a suspect: the largest publish of the drain's still
unacknowledged (or the retained message being restored), when it is larger than any QoS 1
publish the broker acknowledged since edged started or since the broker last lost the
node's session (a packet the broker took proves its limit is not below it; a broker that
lost the session may have restarted with another limit). The same
publish suspected at the end of LEARN_AFTER sessions in a row teaches a limit one byte
under it: a publish over it is held back as under an announced one (kept in the outbox,
counted, said once a session) and the rest goes. A batch of samples suspected teaches
nothing about single messages: batches are then kept to the largest publish the broker
acknowledged, a size it surely takes.

What is learned lasts FORGET_S, then what was held back goes again: a broker whose limit
was raised takes it; one that still closes the connection at it teaches the same at once,
without LEARN_AFTER sessions. A restart of edged forgets it all. A link that drops twice
with the same large publish in flight teaches a wrong limit: the publishes over it wait
in the outbox for FORGET_S, nothing is lost. Over MQTT 5 a close teaches nothing: the
broker says its limit in its CONNACK, and that it refused a packet for its size
(DISCONNECT 0x95); there a close with a publish in flight is a lost link.
"""

import math
from dataclasses import dataclass

LEARN_AFTER = 2
"""Sessions in a row ended with the same suspect before it teaches a limit: one may be a
link lost while a large message was in flight."""
SMALLEST_SUSPECT = 1024
"""A publish of this many bytes or fewer is never taken for too large: the node's birth, a
panic alarm, a door event are a few hundred bytes, and a broker that refused them would be
no broker edged could use. A close with one in flight is a lost link (over a flaky link,
twice in a row with the panic alarm in flight taught a limit under it, and held the
alarm back for an hour)."""
FORGET_S = 3600.0
"""How long a learned limit holds before what it held back is tried again."""


def least(a: int | None, b: int | None) -> int | None:
    """The smaller of two packet limits, None being none (an announced one, a learned one)."""
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True)
class Suspect:
    """A publish unacknowledged when the broker closed the connection."""

    row: int | str  # the outbox id of the (first) message it carries; a restored topic
    topic: str
    size: int  # bytes of its PUBLISH packet
    batch: bool  # it carries several samples


class PacketCeiling:
    def __init__(self) -> None:
        self.acked = 0
        """Bytes of the largest QoS 1 publish of the drain's the broker acknowledged."""
        self._limit: int | None = None  # a publish over it is held back, until `_until`
        self._until = -math.inf
        self._batch_until = -math.inf  # batches kept to `acked` until then
        self._known: int | None = None  # the smallest publish taken for too large
        self._batch_known = False
        self._last: Suspect | None = None
        self._times = 0

    def limit(self, now: float) -> int | None:
        """The largest publish the broker is taken to accept; None: nothing learned."""
        return self._limit if now < self._until else None

    def batch_limit(self, now: float) -> int | None:
        """The largest batch of samples to send; None: as large as the limits allow."""
        if now >= self._batch_until:
            return None
        limit = self.limit(now)
        return self.acked if limit is None else min(self.acked, limit)

    def acknowledged(self, size: int) -> None:
        self.acked = max(self.acked, size)

    def broker_changed(self) -> None:
        """The broker lost the session it kept for the node: restarted without its store,
        or another in its place, whose limit may be smaller. What the last one took proves
        nothing of it (a restored message the old one took, over the new one's limit, was
        never a suspect: every session ended at it)."""
        self.acked = 0

    def ended(self, suspect: Suspect | None, now: float) -> bool:
        """A session the broker ended by closing the connection, with `suspect` the largest
        publish it left unacknowledged; True when this teaches a limit."""
        if suspect is None or suspect.size <= max(self.acked, SMALLEST_SUSPECT):
            self._last, self._times = None, 0
            return False
        same = self._last is not None and self._last.row == suspect.row
        self._times = self._times + 1 if same else 1
        self._last = suspect
        if suspect.batch:
            known = self._batch_known
        else:
            known = self._known is not None and suspect.size >= self._known
        if self._times < LEARN_AFTER and not known:
            return False
        self._last, self._times = None, 0
        if suspect.batch:
            self._batch_known = True
            self._batch_until = now + FORGET_S
            return True
        limit = suspect.size - 1
        current = self.limit(now)
        self._limit = limit if current is None else min(current, limit)
        self._known = suspect.size if self._known is None else min(self._known, suspect.size)
        self._until = now + FORGET_S
        return True

"""One frame in, at most one event out: J1939 identifier, throttle, transport protocol, DBC/DM1.

This runs in the receive thread, frame by frame, so it is written for the hot path: a frame
of a PGN nobody decodes costs two flag checks, a shift, a mask and a dict lookup; a frame
held back by the throttle costs two more dict operations and no decoding. It never raises
on frame content (any id, any length, any bytes): what it cannot use is counted, and the
receiver hands the counters to `ctx.count` from the event loop.

Throttle (`min_interval_s`, default 0.1 s): a vehicle bus repeats most parameter groups
every 10-100 ms, and nothing downstream needs them faster than a few times a second, so
per PGN and source address a J1939Signals is made at most about once per interval. A frame
is let through once 3/4 of the interval has passed since the last one, so a sender's jitter
around a period equal to the interval does not halve the rate. The latest frame held back
is not lost: it is decoded and emitted when its interval is over (by `tick`), so the last
value before a sender goes quiet (a door closing, the engine stopping) always arrives, at
most an interval plus a tick late. A DM1 is skipped only when it repeats the previous
one of its source, byte for byte, within the interval, and never past DM1's own 1 s period
(`DM1_PERIOD_S`): a change in the active faults goes through at once, and an ECU that
still talks is heard at least that often (at the usual 1 s period nothing is ever skipped).
"""

import enum
import logging
import time
from collections.abc import Iterable
from typing import Final

import can

from core.events import ActiveFaults, J1939Signals
from drivers.can.busclock import BusClock
from drivers.can.decoder import Decoders, MessageDecoder
from drivers.can.dm1 import parse_dm1
from drivers.can.j1939 import GLOBAL, PGN_DM1, PGN_TP_CM, PGN_TP_DT, pgn_of
from drivers.can.transport import BamReassembler, ConnectionReassembler

log = logging.getLogger(__name__)

Event = J1939Signals | ActiveFaults
Data = bytes | bytearray

# SocketCAN error frame classes (linux/can/error.h), in the identifier of an error frame
CAN_ERR_CRTL = 0x004
CAN_ERR_BUSOFF = 0x040
CAN_ERR_RESTARTED = 0x100
CAN_ERR_CRTL_RX_OVERFLOW = 0x01


class _Route(enum.Enum):
    TRANSPORT_OR_DM1 = 1


_TRANSPORT_OR_DM1: Final = _Route.TRANSPORT_OR_DM1

_monotonic = time.monotonic

LET_THROUGH = 0.75
"""Fraction of min_interval_s after which the next frame of a PGN and source is decoded."""
DM1_PERIOD_S = 1.0
"""J1939-73's DM1 broadcast period: a repeat is its ECU saying it is still there (the
vehicle service lists an ECU whose DM1 stops as silent), so the throttle never holds one
back for longer, whatever `min_interval_s`."""
PROMPT_PGNS = frozenset({65102, 64933})
"""DC1 and DC2, the doors: a frame of theirs whose door status changed since the last
decoded of its PGN and source goes through the throttle at once, if a door's value in it
was not let through in the last 3/4 interval (`PROMPT_CHANGES`). The GPIO driver gates the
counting beams by each door status (drivers/gpio/candoor.py); held back, the door
controller's "open" among a device's flood of "closed" under its source address (on the
FMS port) never reached the gate, the throttle letting through whichever frame came first
after each interval, and riders walking in were dropped. A door's status changes a few
times a stop, so this costs nothing on a sound bus. Which bits are a door status is the
`doors` of the Pipeline (the signals `[services.vehicle.doors]` names); not told, every
bit of DC1 and DC2, as one door."""
PROMPT_CHANGES = 4
"""Values of one door of one PGN and source let through at once per 3/4 interval: a
status flapping with every frame (2000 frames a second fill a 250 kbit/s bus) is decoded a
few dozen times a second per door, not at the bus's rate. A 2-bit status has 4 values, so
its every value fits: a device under the door controller's address that flaps the door's
bits (closed, not available…) cannot use up the passes before the controller's "open",
which had 4 passes per interval counted over every change (0 of 10 decoded); each value
the device repeats waits its turn. Only the bits of the doors in use are a change: a device
flipping any other byte of DC2 used these passes up just as well, and so did a door
controller's own counter or ramp byte. A wider status keeps room for each of its values,
up to `PROMPT_VALUES_MAX` (DC1's 4-bit PositionOfDoors: 16), or a device cycling 4 other
values held the controller's back every interval (0 of 10 decoded)."""
PROMPT_VALUES_MAX = 16
"""The most values of one door kept (a status of 5 bits or more: a device cycling this
many others can still hold a value back, as when the pipeline is not told the doors)."""


class Pipeline:
    """Frames to events. Counter keys (health `driver.{name}.{key}`):

    frames (every frame read; the receive loop counts them), decoded (J1939Signals made),
    faults (ActiveFaults made), throttled (frames not decoded thanks to min_interval_s),
    short_frame (shorter than its DBC message: the missing signals are None), decode_error
    (the DBC could not decode it), dm1_malformed, not_j1939 (11-bit, remote or CAN FD
    frame), error_frame, bus_off, bus_restarted, rx_overflow (the controller lost frames),
    and the bam_* and rts_* keys of drivers.can.transport.
    """

    def __init__(
        self,
        decoders: Decoders,
        *,
        min_interval_s: float = 0.0,
        pace: float = 1.0,
        frame_clock: bool = False,
        doors: "Iterable[str] | None" = None,
    ) -> None:
        """`doors`: the door status signals in use, as `"MESSAGE.Signal"`: a change of
        theirs goes through the throttle at once; None, any change of DC1 or DC2 does."""
        self.decoders = decoders
        self.pace = pace  # a replay's speed: the bus's seconds per second (J1939Signals.pace)
        self.frame_clock = frame_clock
        """Transport timeouts (T1, T2) on each frame's own timestamp as it is: a replay
        stamps its frames with the log's time (made monotonic by its sender), so that a
        sender's pause in the log is judged as on the bus whatever the replay's speed.
        Otherwise (a live bus) on the bus time `BusClock` makes of the frames' timestamps
        and the monotonic clock: a stalled receive thread does not time out packets that
        were on time on the bus, a frame clock that steps or stops cannot hold a session."""
        self._frame_now: float | None = None  # the latest transport frame's timestamp
        self.bus_clock = BusClock()
        self.by_pgn: dict[int, MessageDecoder] = dict(decoders.by_pgn)
        self.dm1 = decoders.dm1
        self.interval = min_interval_s
        self._let_through = min_interval_s * LET_THROUGH
        self._dm1_let_through = min(min_interval_s, DM1_PERIOD_S) * LET_THROUGH
        self.counts: dict[str, int] = {}
        self.frames = 0
        self.decoded = 0
        self.throttled = 0
        self.bus_off_at: float | None = None  # cleared by the next frame of a PGN in use
        self._last: dict[int, float] = {}  # identifier less priority -> when last decoded
        # the latest frame held back per key, and when: the frame keeps its own timestamp,
        # which is the bus's clock (BusClock), not the node's
        self._held: dict[int, tuple[can.Message, float]] = {}
        # door PGN -> (the frame's bits that are door statuses, the message's length, each
        # door's bits)
        self.door_bits = _door_bits(self.by_pgn, doors)
        # door PGNs: per key the data last decoded (a repeat of it costs one comparison, as
        # in any flood), its door bits, and per door when each of its values was last let
        # through (PROMPT_CHANGES values at most, more for a wider status)
        self._passed_data: dict[int, bytes] = {}
        self._passed: dict[int, int] = {}
        self._refused: dict[int, tuple[bytes, float]] = {}  # data refused, until when
        self._recent: dict[int, tuple[dict[int, float], ...]] = {}
        self._last_dm1: dict[int, tuple[float, bytes]] = {}  # source -> (when, payload)
        wanted = decoders.pgns()
        self.bam = BamReassembler(self.counts, wanted=wanted.__contains__)
        self.rts = ConnectionReassembler(self.counts, wanted=wanted.__contains__)
        special = {PGN_TP_CM, PGN_TP_DT} if wanted else set()
        if self.dm1:
            special.add(PGN_DM1)
        # one lookup per frame tells "not ours" (None), "decode" and "transport or DM1"
        routes: dict[int, MessageDecoder | _Route] = {
            **self.by_pgn,
            **dict.fromkeys(special, _TRANSPORT_OR_DM1),
        }
        self.route = routes.get
        """PGN -> what to do with it: None (not ours), a decoder, or transport/DM1."""

    def pgns_in_use(self) -> set[int]:
        """The PGNs worth receiving at all: the decoded ones and the transport protocol."""
        return self.decoders.pgns() | {PGN_TP_CM, PGN_TP_DT}

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        """Counters so far (cumulative); safe to call from another thread."""
        out = self.counts.copy()
        out["frames"] = self.frames
        out["decoded"] = self.decoded
        out["throttled"] = self.throttled
        return out

    def process(self, msg: can.Message, now: float | None = None) -> Event | None:
        """A python-can message: the event it completes, if any. `now` (monotonic seconds)
        is read from the clock only for frames that need it, unless given (tests). The
        caller counts frames (`frames`): the receive loop does it in a local variable."""
        pgn = (msg.arbitration_id >> 8) & 0x3FFFF
        if (pgn & 0xFF00) < 0xF000:  # PDU1: the low byte is the destination, not the PGN
            pgn &= 0x3FF00
        return self.routed(msg, pgn, self.route(pgn), now)

    def routed(
        self,
        msg: can.Message,
        pgn: int,
        route: "MessageDecoder | _Route | None",
        now: float | None = None,
    ) -> Event | None:
        """`process` once the PGN is looked up in `route`: the receive loop does that
        inline and calls this only for PGNs in use, error frames and 11-bit frames. A
        remote or CAN FD frame of a PGN in use is no J1939 frame either: it is counted
        before the throttle, so it neither replaces a held frame nor takes a decoding slot."""
        if msg.is_error_frame or not msg.is_extended_id:
            self._unusual(msg, _monotonic() if now is None else now)
            return None
        if route is None:
            return None
        if msg.is_remote_frame or msg.is_fd:
            self._count("not_j1939")
            return None
        if now is None:
            now = _monotonic()
        if self.bus_off_at is not None:
            self.bus_off_at = None  # frames flow again: the controller recovered
        if route is _TRANSPORT_OR_DM1:
            return self._special_frame(msg, pgn, now)
        if self.interval:
            key = msg.arbitration_id & 0x3FFFFFF  # PGN (with a PDU1 destination), source
            last = self._last.get(key)
            door = self.door_bits.get(pgn)
            if (
                last is not None
                and now - last < self._let_through
                and not (door is not None and self._change(key, door, msg.data, now))
            ):
                self._held[key] = (msg, now)
                self.throttled += 1
                return None
            self._last[key] = now
            self._held.pop(key, None)
            if door is not None:
                self._let_door(key, door, msg.data, now)
        return self._decode(route, msg, now)

    def _change(self, key: int, door: "DoorBits", data: Data, now: float) -> bool:
        """Whether a frame of a door PGN goes through the throttle at once: its door bits
        changed since the last decoded, and a door's value in it was not let through in
        the last 3/4 interval, with room for it (`PROMPT_CHANGES`)."""
        if self._passed_data.get(key) == data:
            return False
        refused = self._refused.get(key)
        if refused is not None and now < refused[1] and refused[0] == data:
            return False  # a flood of the frame just refused: as cheap as a repeat
        mask, length, doors, rooms = door  # `_masked`, inline: this is every changed frame
        full = data if len(data) >= length else bytes(data).ljust(length, b"\xff")
        bits = int.from_bytes(full, "little") & mask
        if self._passed.get(key) == bits:
            return False
        recent = self._recent.get(key)
        if recent is None:
            return True
        until = float("inf")  # when a door's value in it is no longer recent
        for bits_of_door, room, seen in zip(doors, rooms, recent, strict=True):
            at = seen.get(bits & bits_of_door)
            if at is not None:
                if now - at >= self._let_through:
                    return True
            elif len(seen) < room or self._forget(seen, now, room):
                return True
            else:
                at = min(seen.values())
            until = min(until, at + self._let_through)
        self._refused[key] = (bytes(data), until)
        return False

    def _forget(self, seen: dict[int, float], now: float, room: int) -> bool:
        """Drop a door's values not let through recently: whether there is room now."""
        for value in [v for v, at in seen.items() if now - at >= self._let_through]:
            del seen[value]
        return len(seen) < room

    def _let_door(self, key: int, door: "DoorBits", data: Data, now: float) -> None:
        """A frame of a door PGN let through: its door bits, and each door's value, noted."""
        self._passed_data[key] = bytes(data)
        bits = self._passed[key] = _masked(door, data)
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = tuple({} for _ in door[2])
        for mask, room, seen in zip(door[2], door[3], recent, strict=True):
            value = bits & mask
            if value in seen or len(seen) < room or self._forget(seen, now, room):
                seen[value] = now

    def _decode(self, decoder: MessageDecoder, msg: can.Message, now: float) -> J1939Signals | None:
        return self._signals(decoder, msg.arbitration_id & 0xFF, msg.data, now)

    def _special_frame(self, msg: can.Message, pgn: int, now: float) -> Event | None:
        can_id = msg.arbitration_id
        source = can_id & 0xFF
        if pgn == PGN_DM1:
            return self._faults(source, msg.data, now)
        destination = (can_id >> 8) & 0xFF
        # the transport's timeouts are on the bus's time; the events keep `now`
        if self.frame_clock:
            clock = self._frame_now = msg.timestamp
        else:
            clock = self.bus_clock.frame(msg.timestamp, now)
        if destination == GLOBAL:
            if pgn == PGN_TP_CM:
                self.bam.on_cm(source, msg.data, clock)
                return None
            done = self.bam.on_dt(source, msg.data, clock)
        else:  # an RTS/CTS session between two other nodes: read by watching both sides
            if pgn == PGN_TP_CM:
                self.rts.on_cm(source, destination, msg.data, clock)
                return None
            done = self.rts.on_dt(source, destination, msg.data, clock)
        if done is None:
            return None
        inner, payload = done
        decoder = self.by_pgn.get(inner)
        if decoder is not None:
            return self._signals(decoder, source, payload, now)
        if inner == PGN_DM1 and self.dm1:
            return self._faults(source, payload, now)
        return None

    def _signals(
        self, decoder: MessageDecoder, source: int, data: Data, now: float
    ) -> J1939Signals | None:
        if len(data) < decoder.length:
            self._count("short_frame")
        try:
            signals = decoder.decode(data)
        except Exception as exc:  # MultiplexerError: a multiplexer value the DBC does not list
            self._count("decode_error")
            log.debug("cannot decode %s from %#x: %s", decoder.name, source, exc)
            return None
        self.decoded += 1
        return J1939Signals(
            pgn=decoder.pgn,
            name=decoder.name,
            source=source,
            signals=signals,
            ts=now,
            pace=self.pace,
        )

    def _faults(self, source: int, data: Data, now: float) -> ActiveFaults | None:
        payload = bytes(data)
        if self.interval:
            last = self._last_dm1.get(source)
            if last is not None and last[1] == payload and now - last[0] < self._dm1_let_through:
                self.throttled += 1
                return None
        faults = parse_dm1(source, payload, now)
        if faults is None:  # refused whole: the ECU's last good list stands
            self._count("dm1_malformed")
            return None
        if self.interval:
            self._last_dm1[source] = (now, payload)
        self._count("faults")
        return faults

    def _unusual(self, msg: can.Message, now: float) -> None:
        if not msg.is_error_frame:
            self._count("not_j1939")
            return
        self._count("error_frame")
        cls = msg.arbitration_id
        if cls & CAN_ERR_BUSOFF:
            self._count("bus_off")
            if self.bus_off_at is None:
                self.bus_off_at = now
        if cls & CAN_ERR_RESTARTED:
            self._count("bus_restarted")
            self.bus_off_at = None
        if cls & CAN_ERR_CRTL and len(msg.data) > 1 and msg.data[1] & CAN_ERR_CRTL_RX_OVERFLOW:
            self._count("rx_overflow")

    def tick(
        self, now: float, latest: can.Message | None = None, *, garbled: bool = False
    ) -> list[Event]:
        """Housekeeping a few times a second: time out silent transport sessions, and emit
        the frames the throttle held back whose interval is over. `latest`: the frame the
        receiver just read (more may wait), or None when it found none waiting, so that a
        session is timed out on the bus's time, never for packets still in the queue.
        `garbled`: what the receiver read was a line it could not parse, which tells
        neither the bus's time nor that nothing waits behind it: no session is timed out
        (the next frame, or the receiver finding none, does it)."""
        if self.frame_clock:  # only as far as the frames went
            bus_now = self._frame_now
        elif garbled or not (self.bam.sessions or self.rts.sessions):
            bus_now = None
        elif latest is None:
            bus_now = self.bus_clock.idle(now)
        else:
            bus_now = self.bus_clock.frame(latest.timestamp, now)
        if bus_now is not None:
            if self.bam.sessions:
                self.bam.expire(bus_now)
            if self.rts.sessions:
                self.rts.expire(bus_now)
        out: list[Event] = []
        if self._held:
            due = [k for k, held in self._held.items() if now - self._last[k] >= self.interval]
            for key in due:
                msg, held_at = self._held.pop(key)
                self._last[key] = now
                door = self.door_bits.get(pgn_of(key))
                if door is not None:
                    self._let_door(key, door, msg.data, now)
                event = self._decode(self.by_pgn[pgn_of(key)], msg, held_at)
                if event is not None:
                    out.append(event)
        return out


DoorBits = tuple[int, int, tuple[int, ...], tuple[int, ...]]
"""The bits of a frame that are door statuses in use (of the frame read as a little-endian
int), the message's length, each door's bits, and how many of each door's values are kept
(`PROMPT_CHANGES`, more for a status of more than 2 bits)."""


def _masked(door: DoorBits, data: Data) -> int:
    """The door bits of a frame (`Pipeline.door_bits`), read as the decoder reads them: a
    short frame padded with 0xFF (its missing statuses are not available)."""
    bits, length = door[0], door[1]
    if len(data) < length:
        data = bytes(data).ljust(length, b"\xff")
    return int.from_bytes(data, "little") & bits


def _door_bits(
    by_pgn: dict[int, MessageDecoder], doors: "Iterable[str] | None"
) -> dict[int, DoorBits]:
    """Per PGN decoded that carries a door status in use, `DoorBits` of those statuses
    (`MessageDecoder.bits`). `doors` None: every bit of DC1 and DC2 (`PROMPT_PGNS`), as one
    door; a signal the DBC lacks or that is not decoded adds nothing (the config check
    reports a misspelt one)."""
    if doors is None:
        every = {pgn: (1 << 8 * d.length) - 1 for pgn, d in by_pgn.items() if pgn in PROMPT_PGNS}
        return {
            pgn: (bits, by_pgn[pgn].length, (bits,), (PROMPT_CHANGES,))
            for pgn, bits in every.items()
        }
    by_name = {decoder.name: decoder for decoder in by_pgn.values()}
    each: dict[int, set[int]] = {}
    for ref in doors:
        message, _, signal = ref.partition(".")
        decoder = by_name.get(message)
        bits = decoder.bits(signal) if decoder is not None else None
        if decoder is not None and bits is not None:
            each.setdefault(decoder.pgn, set()).add(bits)
    out: dict[int, DoorBits] = {}
    for pgn, masks in each.items():
        union = 0
        for bits in masks:
            union |= bits
        ordered = tuple(sorted(masks))
        rooms = tuple(
            max(PROMPT_CHANGES, min(1 << bits.bit_count(), PROMPT_VALUES_MAX)) for bits in ordered
        )
        out[pgn] = (union, by_pgn[pgn].length, ordered, rooms)
    return out

"""A PN532 NFC reader on a pseudo-terminal, so libnfc's real `pn532_uart` driver reads cards.

The driver under test opens `pn532_uart:<port>` through libnfc exactly as it opens
/dev/ttyS0 on a Pi; the emulator answers on the master side of the pty, in a thread, frame
by frame as the PN532 User Manual describes: ACK first, then the answer (hil.nfc.frames).
A test puts a card on the antenna (`put`), takes it off (`remove`), and the next poll
(InListPassiveTarget, or InAutoPoll for `nfc-poll`) sees the change.

Several cards in the field (`add` one beside those there): a poll lists one target, and the
card the chip selected last does not answer the next activation while another one does (on
a PN532 the selected card, ACTIVE, drops back to IDLE on that REQA and stays silent), so two
cards held together are listed in turn — A, B, A, B — as a real chip with two ISO 14443A
cards shows them. Among the cards that answer, anticollision settles on the one put down
first (with three cards the third is never listed, as happens on the chip with MaxTg 1).

What libnfc 1.8 sends is answered: the HSU wake-up (0x55 0x55 00 00 00), SAMConfiguration,
Diagnose (communication test and card presence), GetFirmwareVersion (a PN532 v1.6),
GetGeneralStatus, ReadRegister/WriteRegister (kept in a register file), SetParameters,
RFConfiguration (field on/off, retries: with MxRtyPassiveActivation 0xFF a poll waits for a
card, as the chip does), PowerDown, InListPassiveTarget (106 kbps type A; other baud rates
find nothing), InAutoPoll, InDeselect, InRelease, InSelect, InDataExchange (Ultralight
READ; anything else times out), InCommunicateThru (status 0x01, timeout: answering raw
frames with success makes `nfc-list` report phantom cards), and an ACK from the host aborts
the command being answered. Anything else is logged and answered with the chip's syntax
error frame. Other baud rates and DEP find no target.

Unplug: the master and the emulator's own handle on the slave are closed, so the driver's
reads fail (EIO) and the path (with `link`, a symlink as udev makes) disappears; replug opens
a fresh pty behind the same link, with the chip's state reset as after a power cycle.

Faults, for the poll answers (InListPassiveTarget, InAutoPoll) — `inject(fault, count)` for
the next polls, or a probability per poll in `Faults` (seeded):

- `garbage`: random bytes instead of a frame;
- `bad_checksum` / `bad_length_checksum`: a frame with its data or length checksum wrong;
- `wrong_code`: a good frame answering another command;
- `error_frame`: the chip's syntax error frame;
- `garbage_payload`: a good frame whose target data is random (kept within what libnfc can
  decode without crashing: its decoder trusts the ATS length byte, and 0 there makes it copy
  SIZE_MAX bytes — a real PN532 never sends that, so neither does the emulator);
- `bad_uid_length`: a well-formed target whose UID is 0–3, 5, 6, 8 or 9 bytes long (not 11
  or 12: libnfc 1.8 strips those as if they held cascade tags and reports 10 bytes);
- `truncated`: the first half of the answer, then nothing (the host waits until it aborts);
- `no_answer`: ACK, then nothing; `no_ack`: nothing at all;
- `slow`: the right answer after `slow_s`.

`silent = True` makes the chip deaf (a hung PN532: no ACK, no answer) until set back.
`glitch(polls)` hides the card from the next polls, as a card at the edge of the field does.

Counters: `polls` (polls answered), `card_polls` (of them, with a card), `commands` (by
name), `unknown` (by code), `bad_frames`, `aborts` (host ACKs that cancelled an answer),
`served` (faults served, by name). `wait_polls(n)` blocks until n more polls are answered;
`wait_let_go(uid, release_s)` until a host has surely seen a card taken off.
"""

import contextlib
import logging
import os
import random
import select
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, get_args

from hil.nfc import frames
from hil.nfc.cards import Card, CardKind
from hil.nfc.frames import Ack, BadFrame, Frame, FrameReader, Nack
from hil.pty import open_raw_pty, staged_link

log = logging.getLogger("hil.nfc")

Fault = Literal[
    "garbage",
    "bad_checksum",
    "bad_length_checksum",
    "wrong_code",
    "error_frame",
    "garbage_payload",
    "bad_uid_length",
    "truncated",
    "no_answer",
    "no_ack",
    "slow",
]
FAULTS: tuple[Fault, ...] = get_args(Fault)
# not 11 or 12: libnfc 1.8 takes those as cascade-tagged and cuts them to 10 good-looking bytes
BAD_UID_LENGTHS = (0, 1, 2, 3, 5, 6, 8, 9)

FIRMWARE = bytes([0x32, 0x01, 0x06, 0x07])  # PN532, v1.6, ISO 14443A + B + 18092
AUTO_RATS = 0x10  # SetParameters fAutomaticRATS
AUTOPOLL_PERIOD_S = 0.15  # InAutoPoll's Period unit

COMMANDS = {
    0x00: "Diagnose",
    0x02: "GetFirmwareVersion",
    0x04: "GetGeneralStatus",
    0x06: "ReadRegister",
    0x08: "WriteRegister",
    0x0C: "ReadGPIO",
    0x0E: "WriteGPIO",
    0x10: "SetSerialBaudRate",
    0x12: "SetParameters",
    0x14: "SAMConfiguration",
    0x16: "PowerDown",
    0x32: "RFConfiguration",
    0x40: "InDataExchange",
    0x42: "InCommunicateThru",
    0x44: "InDeselect",
    0x46: "InJumpForPSL",
    0x4A: "InListPassiveTarget",
    0x4E: "InPSL",
    0x50: "InATR",
    0x52: "InRelease",
    0x54: "InSelect",
    0x56: "InJumpForDEP",
    0x60: "InAutoPoll",
}
POLLS = (0x4A, 0x60)


@dataclass(frozen=True)
class Faults:
    """Probability per poll of each fault; `seed` makes a run repeatable."""

    garbage: float = 0.0
    bad_checksum: float = 0.0
    bad_length_checksum: float = 0.0
    wrong_code: float = 0.0
    error_frame: float = 0.0
    garbage_payload: float = 0.0
    bad_uid_length: float = 0.0
    truncated: float = 0.0
    no_answer: float = 0.0
    no_ack: float = 0.0
    slow: float = 0.0
    seed: int | None = None


@dataclass
class _Pending:
    """An answer not sent yet: due at `due`, or as soon as a card shows up (`on_card`)."""

    due: float | None
    answer: Callable[[], bytes | None]
    on_card: Callable[[Card], bytes] | None = None
    final: bool = False  # an answer only held back (delay): send it as it is when due


class Pn532Emulator:
    """A PN532 on a pty; `start()` serves it in a thread, `close()` stops and unplugs it."""

    def __init__(
        self,
        link: Path | None = None,
        *,
        delay_s: float = 0.0,
        slow_s: float = 2.0,
        faults: Faults = Faults(),
        firmware: bytes = FIRMWARE,
    ) -> None:
        self.link = link
        self.delay_s = delay_s  # every answer this late (a slow UART, a busy chip)
        self.slow_s = slow_s
        self.faults = faults
        self.firmware = firmware
        self.rng = random.Random(faults.seed)
        self.silent = False
        # counters
        self.polls = 0
        self.card_polls = 0
        self.commands: Counter[str] = Counter()
        self.unknown: Counter[int] = Counter()
        self.served: Counter[str] = Counter()  # faults served, by name
        self.bad_frames = 0
        self.aborts = 0
        # the antenna
        self._cards: list[Card] = []  # in the order they were put down
        self._glitch = 0
        self._injected: deque[Fault] = deque()
        # the host's sight of cards taken off: uid -> when its first poll after that came
        self._taken_off: dict[bytes, float | None] = {}
        self._recent_polls: deque[float] = deque(maxlen=2)  # when the last poll commands came
        # the chip
        self._registers: dict[int, int] = {}
        self._parameters = 0
        self._field = True
        self._passive_retries = 0xFF
        self._selected: Card | None = None  # the target the last poll listed, until released
        self._pending: _Pending | None = None
        self._last_answer = b""
        # the link
        self._master: int | None = None
        self._slave: int | None = None
        self._pts = ""
        self._reader = FrameReader()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._turns = 0  # loops of the serving thread, to know it has let go of a closed pty
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------

    def start(self) -> "Pn532Emulator":
        self.replug()
        self._thread = threading.Thread(target=self._serve, name="pn532-emulator", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> "Pn532Emulator":
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> str:
        """The path a driver opens: the link when there is one, else the pty (/dev/pts/N)."""
        return str(self.link) if self.link is not None else self._pts

    @property
    def connstring(self) -> str:
        return f"pn532_uart:{self.port}"

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def card(self) -> Card | None:
        """The card on the antenna (the first put down, when there are several)."""
        cards = self._cards
        return cards[0] if cards else None

    @property
    def cards(self) -> tuple[Card, ...]:
        """Every card in the field, in the order they were put down."""
        return tuple(self._cards)

    def put(self, uid: bytes, kind: CardKind | None = None) -> float:
        """A card on the antenna (replacing any); returns `time.monotonic()` at that instant."""
        return self._place(Card.make(uid, kind), replace=True)

    def add(self, uid: bytes, kind: CardKind | None = None) -> float:
        """Another card in the field, beside those already there (a second card in a wallet
        held to the reader); returns `time.monotonic()` at that instant."""
        return self._place(Card.make(uid, kind), replace=False)

    def _place(self, card: Card, *, replace: bool) -> float:
        with self._lock:
            self._taken_off.pop(card.uid, None)
            if replace:
                self._cards = [card]
                self._selected = None
            elif all(c.uid != card.uid for c in self._cards):
                self._cards.append(card)
            self._changed.notify_all()
            at = time.monotonic()
        self._wake()
        return at

    def remove(self, uid: bytes | None = None) -> None:
        """The card with `uid` leaves the field; without one, every card does."""
        with self._lock:
            for c in self._cards:
                if uid is None or c.uid == uid:
                    self._taken_off[c.uid] = None
            self._cards = [c for c in self._cards if uid is not None and c.uid != uid]
            if self._selected not in self._cards:
                self._selected = None

    def glitch(self, polls: int = 1) -> None:
        """The card (if any) is missed by the next `polls` polls, then seen again."""
        with self._lock:
            self._glitch = polls

    def inject(self, fault: Fault, count: int = 1) -> None:
        """The next `count` polls are answered with `fault` (after any queued before)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._injected.extend([fault] * count)

    def wait_let_go(self, uid: bytes, release_s: float, timeout: float = 10.0) -> None:
        """Block until a host that takes a card off once unseen for `release_s`, judged at its
        completed polls (nfc.libnfc), has surely seen `uid` go; at once if it was not taken
        off. A test puts a card back after this, as a rider lifts a card away before tapping
        again: a host whose polls stalled while the card was briefly off saw one presentation.

        A host polls in sequence, so a poll command arriving means it has read the answer
        before: its last sight of the card came before the first poll after the card left;
        a poll asked `release_s` after that one, then another (the host has read that empty
        answer) leave it no doubt."""
        with self._changed:

            def let_go() -> bool:
                if uid not in self._taken_off:
                    return True
                first, recent = self._taken_off[uid], self._recent_polls
                return first is not None and len(recent) == 2 and recent[0] >= first + release_s

            if not self._changed.wait_for(let_go, timeout):
                raise TimeoutError(f"the host did not poll {uid.hex()} away within {timeout} s")

    def wait_polls(self, n: int = 1, timeout: float = 5.0) -> None:
        """Block until `n` more polls have been answered (a driver's poll loop has turned)."""
        with self._changed:
            target = self.polls + n
            if not self._changed.wait_for(lambda: self.polls >= target, timeout):
                raise TimeoutError(f"{n} polls not served within {timeout} s")

    def unplug(self) -> None:
        """The reader vanishes: link removed, pty closed, the driver's reads fail."""
        with self._lock:
            if self.link is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.link.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None
            self._pending = None
            turns = self._turns
        self._wake()
        # the serving thread's select() holds the closed master until it returns: the slave
        # only reads EIO once it has, so wait for its next turn (it is quick: it was woken)
        if self._thread is not None and self._thread is not threading.current_thread():
            with self._changed:
                self._changed.wait_for(lambda: self._turns > turns or self._stop.is_set(), 1.0)

    def replug(self) -> None:
        """A fresh pty (behind the same link, if any) and a chip just powered on."""
        master, slave, name = open_raw_pty()
        tmp = staged_link(self.link, name) if self.link is not None else None
        with self._lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            # the slave stays open here too: without a holder, the master reads EIO between
            # the driver's sessions and select() would spin
            self._master, self._slave, self._pts = master, slave, name
            self._reader = FrameReader()
            self._reset_chip()
            if self.link is not None and tmp is not None:
                os.replace(tmp, self.link)
        self._wake()

    # -- serving ------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                master = self._master
                pending = self._pending
                self._turns += 1
                self._changed.notify_all()
            timeout = 0.5
            if pending is not None and pending.due is not None:
                timeout = max(0.0, min(timeout, pending.due - time.monotonic()))
            watch = [self._wake_r] + ([master] if master is not None else [])
            try:
                ready, _, _ = select.select(watch, [], [], timeout)
            except (OSError, ValueError):  # the master closed under us (unplug)
                continue
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if master is not None and master in ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    data = b""
                with self._lock:
                    if master == self._master:
                        for event in self._reader.feed(data):
                            self._on_event(event)
            with self._lock:
                self._service_pending()

    def _on_event(self, event: Frame | Ack | Nack | BadFrame) -> None:
        if self.silent:
            return
        if isinstance(event, Ack):
            if self._pending is not None:
                self._pending = None
                self.aborts += 1
            return
        if isinstance(event, Nack):
            self._send(self._last_answer)
            return
        if isinstance(event, BadFrame) or event.tfi != frames.HOST_TFI or not event.data:
            self.bad_frames += 1
            return
        self._command(event.data[0], event.data[1:])

    def _command(self, code: int, params: bytes) -> None:
        name = COMMANDS.get(code)
        if name is None:
            self.unknown[code] += 1
            log.warning("PN532 emulator: unknown command 0x%02X %s", code, params.hex(" "))
            self._send(frames.ACK)
            self._answer(frames.ERROR)
            return
        self.commands[name] += 1
        self._pending = None  # a new command ends the previous one, answered or not
        if code in POLLS:
            now = time.monotonic()
            self._recent_polls.append(now)
            for uid, first in self._taken_off.items():
                if first is None:
                    self._taken_off[uid] = now
            self._changed.notify_all()
        fault = self._fault() if code in POLLS else None
        if fault == "no_ack":
            return
        self._send(frames.ACK)
        if fault == "no_answer":
            return
        handler = getattr(self, f"_cmd_{name}")
        result: bytes | _Pending = handler(params)
        if isinstance(result, _Pending):
            self._pending = result
            self._service_pending()
            return
        if fault is not None:
            self._answer_faulty(fault, code, result)
        else:
            self._answer(result)

    def _answer(self, data: bytes, delay_s: float = 0.0) -> None:
        delay_s += self.delay_s
        if delay_s > 0:
            self._pending = _Pending(time.monotonic() + delay_s, lambda: data, final=True)
        else:
            self._last_answer = data
            self._send(data)

    def _service_pending(self) -> None:
        p = self._pending
        if p is None:
            return
        data: bytes | None = None
        if p.on_card is not None and (card := self._visible()) is not None:
            data = p.on_card(card)
        elif p.due is not None and time.monotonic() >= p.due:
            data = p.answer()
        else:
            return
        self._pending = None
        if data is None:
            return
        if p.final:
            self._last_answer = data
            self._send(data)
        else:
            self._answer(data)

    def _send(self, data: bytes) -> None:
        master = self._master
        if master is None or not data:
            return
        deadline = time.monotonic() + 1.0
        while data:
            try:
                n = os.write(master, data)
            except BlockingIOError:  # the host is not reading: wait a little, then drop
                if time.monotonic() > deadline:
                    return
                time.sleep(0.001)
                continue
            except OSError:
                return
            data = data[n:]

    # -- faults -------------------------------------------------------------------------

    def _fault(self) -> Fault | None:
        if self._injected:
            fault = self._injected.popleft()
        else:
            f, rng = self.faults, self.rng
            fault = None
            for name in FAULTS:
                p: float = getattr(f, name)
                if p and rng.random() < p:
                    fault = name
                    break
        if fault is not None:
            self.served[fault] += 1
        return fault

    def _answer_faulty(self, fault: Fault, code: int, good: bytes) -> None:
        rng = self.rng
        if fault == "garbage":
            # never 00 first: libnfc reads 5 bytes, sees no 00 00 FF and gives up at once
            data = bytes([rng.randint(1, 255)]) + rng.randbytes(rng.randint(7, 40))
        elif fault == "bad_checksum":
            data = good[:-2] + bytes([good[-2] ^ 0x5A]) + good[-1:]
        elif fault == "bad_length_checksum":
            data = good[:4] + bytes([good[4] ^ 0x5A]) + good[5:]
        elif fault == "wrong_code":
            data = frames.answer(code + 2, b"\x00")
        elif fault == "error_frame":
            data = frames.ERROR
        elif fault == "garbage_payload":
            data = frames.answer(code, self._garbage_targets())
        elif fault == "bad_uid_length":
            n = rng.choice(BAD_UID_LENGTHS)
            uid = bytes([rng.randint(0, 0x87)]) + rng.randbytes(n - 1) if n else b""
            target = Card(uid, bytes([0x00, 0x04]), 0x08).target_data()
            data = frames.answer(code, b"\x01" + self._autopoll_wrap(code, target))
        elif fault == "truncated":
            data = good[: max(1, len(good) // 2)]
        else:  # slow
            self._answer(good, self.slow_s)
            return
        self._answer(data)

    def _garbage_targets(self) -> bytes:
        """Random target data that libnfc 1.8 still decodes without running off its buffers."""
        rng = self.rng
        payload = bytearray(rng.randbytes(rng.randint(1, 40)))
        payload[0] = rng.randint(1, 2)  # NbTg
        if len(payload) > 6:
            uid_len = payload[5] = min(payload[5], len(payload) - 6)
            ats_at = 6 + uid_len
            if ats_at < len(payload) and payload[ats_at] == 0:
                payload[ats_at] = 1  # libnfc copies (ATS length - 1) bytes: 0 is SIZE_MAX
        return bytes(payload)

    # -- the chip -----------------------------------------------------------------------

    def _reset_chip(self) -> None:
        self._registers.clear()
        self._parameters = 0
        self._field = True
        self._passive_retries = 0xFF
        self._selected = None
        self._pending = None
        self._last_answer = b""

    def _visible(self, initiator: bytes = b"") -> Card | None:
        """The card that answers an activation now (with `initiator`, only that UID)."""
        if not self._field:
            return None
        cards = [c for c in self._cards if not initiator or initiator in (c.uid, c.cascaded())]
        # the card left selected stays silent when another answers; alone, it answers the
        # chip's next try
        fresh = [c for c in cards if c != self._selected] or cards
        return fresh[0] if fresh else None

    def _talking(self) -> Card | None:
        """The selected target, while it is still in the field with the field on."""
        card = self._selected
        return card if card is not None and self._field and card in self._cards else None

    def _poll(self, initiator: bytes = b"") -> Card | None:
        """One poll of the antenna: counted, glitches applied."""
        card = self._visible(initiator)
        if card is not None and self._glitch > 0:
            self._glitch -= 1
            card = None
        return card

    def _polled(self, card: Card | None) -> None:
        self.polls += 1
        if card is not None:
            self.card_polls += 1
            self._selected = card
        self._changed.notify_all()

    def _autopoll_wrap(self, code: int, target: bytes) -> bytes:
        """InAutoPoll wraps each target in (type, length); InListPassiveTarget does not."""
        return bytes([0x10, len(target)]) + target if code == 0x60 else target

    def _cmd_Diagnose(self, params: bytes) -> bytes:
        test = params[0] if params else 0x00
        if test == 0x00:  # communication line test: echo
            return frames.answer(0x00, params)
        if test == 0x06:  # card presence
            present = self._talking() is not None
            return frames.answer(0x00, b"\x00" if present else b"\x01")
        return frames.answer(0x00, b"\x00")

    def _cmd_GetFirmwareVersion(self, params: bytes) -> bytes:
        return frames.answer(0x02, self.firmware)

    def _cmd_GetGeneralStatus(self, params: bytes) -> bytes:
        targets = b"\x01\x01\x00\x00\x10" if self._selected is not None else b"\x00"
        return frames.answer(0x04, bytes([0x00, int(self._field)]) + targets + b"\x00")

    def _cmd_ReadRegister(self, params: bytes) -> bytes:
        addresses = [(params[i] << 8) | params[i + 1] for i in range(0, len(params) - 1, 2)]
        return frames.answer(0x06, bytes(self._registers.get(a, 0) for a in addresses))

    def _cmd_WriteRegister(self, params: bytes) -> bytes:
        for i in range(0, len(params) - 2, 3):
            self._registers[(params[i] << 8) | params[i + 1]] = params[i + 2]
        return frames.answer(0x08)

    def _cmd_ReadGPIO(self, params: bytes) -> bytes:
        return frames.answer(0x0C, b"\xff\xff\x00")

    def _cmd_WriteGPIO(self, params: bytes) -> bytes:
        return frames.answer(0x0E)

    def _cmd_SetSerialBaudRate(self, params: bytes) -> bytes:
        return frames.answer(0x10)

    def _cmd_SetParameters(self, params: bytes) -> bytes:
        self._parameters = params[0] if params else 0
        return frames.answer(0x12)

    def _cmd_SAMConfiguration(self, params: bytes) -> bytes:
        return frames.answer(0x14)

    def _cmd_PowerDown(self, params: bytes) -> bytes:
        self._selected = None
        return frames.answer(0x16, b"\x00")

    def _cmd_RFConfiguration(self, params: bytes) -> bytes:
        item = params[0] if params else -1
        if item == 0x01 and len(params) > 1:  # RF field
            self._field = bool(params[1] & 0x01)
            if not self._field:
                self._selected = None
        elif item == 0x05 and len(params) > 3:  # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
            self._passive_retries = params[3]
        return frames.answer(0x32)

    def _cmd_InListPassiveTarget(self, params: bytes) -> bytes | _Pending:
        if len(params) < 2:
            return frames.ERROR
        baud, initiator = params[1], params[2:]
        rats = bool(self._parameters & AUTO_RATS)

        def found(card: Card) -> bytes:
            self._polled(card)
            return frames.answer(0x4A, b"\x01" + card.target_data(rats=rats))

        def none() -> bytes:
            self._polled(None)
            return frames.answer(0x4A, b"\x00")

        card = self._poll(initiator) if baud == 0x00 else None
        if card is not None:
            return found(card)
        if baud == 0x00 and self._passive_retries == 0xFF and not self._cards:
            return _Pending(None, none, on_card=found)  # the chip retries until a card comes
        return none()

    def _cmd_InAutoPoll(self, params: bytes) -> bytes | _Pending:
        if len(params) < 3:
            return frames.ERROR
        rounds, period, types = params[0], params[1], params[2:]
        rats = bool(self._parameters & AUTO_RATS)

        def found(card: Card) -> bytes:
            self._polled(card)
            kind = 0x20 if card.sak & 0x20 and 0x20 in types else 0x10
            target = card.target_data(rats=rats or kind == 0x20)
            return frames.answer(0x60, bytes([1, kind, len(target)]) + target)

        def none() -> bytes:
            self._polled(None)
            return frames.answer(0x60, b"\x00")

        if not {0x00, 0x10, 0x20} & set(types):
            return none()
        card = self._poll()
        if card is not None:
            return found(card)
        due = None if rounds == 0xFF else time.monotonic() + rounds * period * AUTOPOLL_PERIOD_S
        return _Pending(due, none, on_card=found)

    def _status(self, code: int, ok: bool) -> bytes:
        return frames.answer(code, b"\x00" if ok else b"\x01")

    def _cmd_InDeselect(self, params: bytes) -> bytes:
        self._selected = None
        return self._status(0x44, True)

    def _cmd_InRelease(self, params: bytes) -> bytes:
        self._selected = None
        return self._status(0x52, True)

    def _cmd_InSelect(self, params: bytes) -> bytes:
        self._selected = self._talking()
        return self._status(0x54, self._selected is not None)

    def _cmd_InDataExchange(self, params: bytes) -> bytes:
        card = self._talking()
        data = params[1:]
        if card is None or not data:
            return self._status(0x40, False)
        if data[0] == 0x30 and len(data) > 1:  # Ultralight READ: four pages
            pages = b"".join(card.page(data[1] + i) for i in range(4))
            return frames.answer(0x40, b"\x00" + pages)
        if data[0] in (0x60, 0x61):  # MIFARE Classic AUTH: no keys here
            return frames.answer(0x40, b"\x14")
        return self._status(0x40, False)

    def _cmd_InCommunicateThru(self, params: bytes) -> bytes:
        return self._status(0x42, False)

    def _cmd_InJumpForDEP(self, params: bytes) -> bytes:
        return self._status(0x56, False)

    def _cmd_InJumpForPSL(self, params: bytes) -> bytes:
        return self._status(0x46, False)

    def _cmd_InATR(self, params: bytes) -> bytes:
        return self._status(0x50, False)

    def _cmd_InPSL(self, params: bytes) -> bytes:
        return self._status(0x4E, False)

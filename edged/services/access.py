"""From a tap to an open door in a millisecond, from local lists, then the record of it.

Order matters on a tap: decide, record (the tap journal: one write to a file allocated in
advance, so a door that opened always has its record), actuate (relay, light, buzzer), then
count. Nothing on that path waits for the network or for a commit: the outbox makes the
event durable before it is sent, but the door does not wait for it.

The raw UID is used once, here, to compute the card_ref, and then dropped: it is not kept
in memory, logged, stored or published.

A repeat (the same card within `repeat_window_s`, at a reader of the same role) shows its
feedback again and is neither charged nor counted; it does not pulse the lock unless
`repeat_unlocks` (a slow venue door), and then only when the card may pass now (a booking
that ended since the first tap does not reopen the door) and was presented again, not
read again while still at the reader (`STILL_THERE_S`): otherwise a card handed back
through the door would let a second rider board. The same role, not the same reader: a
card handed back through a bus's front door and tapped at the rear one is still the same
card boarding; but a tap at an `exit` reader right after the `entry` one is someone going
back out, decided as such.
A list update keeps the repeat memory (a routine delta must not let a card board twice);
a repeat is answered only while the lists in force still grant what was remembered, so
a card denied or withdrawn by the update is decided anew, and refused, at once.

A random UID (ISO/IEC 14443-3: a phone, a privacy card; `random_uid`) names no card: it
is refused with reason `random_uid` and counted (`access.random_uid`), never matched
against the lists nor counted as a person. Read within `TOGETHER_S` after a card at the
same reader, it is a phone carrying that card in its wallet case (the reader lists both,
a poll or two apart): recorded and refused as ever, but with no light of its own, so the
card's verdict stays on the reader instead of a red light and three beeps after a green.

Two cards held to a reader together (a wallet) are one presentation: the driver reports
each, a poll or two apart; another card granted at that reader within `together_s` of a
grant is refused `together` (no door, fare, count nor light of its own).

Lists past the `expires` dispatch signed into them flag every tap (`lists_expired`) and
follow `expired_lists`; their age is judged by `edged.access.freshness`, never on a
clock that can be set back, and goes to `health.access`.

A list update is checked (signature, canonical JSON, validation, the stored form) in a
worker thread, in small pieces, while taps go on being decided on the old lists; then
the new lists replace them in one step on the event loop. Updates apply one at a time,
in the order they came.

What it needs of the others comes on the bus (`OccupancyChanged`: a venue at capacity,
`ModeChanged`: a shuttle out of service, `OccupancyReset`: who is still inside); what it decided
goes out as `AccessDecided` (the occupancy service counts it) and as `Unlock` and
`Feedback` for the GPIO driver.
"""

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.errors import ConfigError, EdgedError
from core.events import Feedback, Tap, Unlock
from core.ratelimit import TokenBucket
from edged.access.cardref import CardRefs, random_uid
from edged.access.decide import Decision, NodeProfile, Situation, decide, unknown_card_policy
from edged.access.freshness import Age, ListsAge
from edged.access.lasttrusted import SAVE_EVERY_S, LastTrustedTime, Reading
from edged.access.lists import (
    EMPTY,
    LIST_BYTES,
    AccessLists,
    apply,
    digest,
    digest_of,
    dump,
    parse_update,
    stored_forms,
    with_validity,
)
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.config.access import AccessServiceConfig, ReaderRole
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import AccessHealth, TapEvent
from edged.security.signing import public_key_from_text
from edged.services.base import Service
from edged.services.events import AccessDecided, ModeChanged, OccupancyChanged, OccupancyReset
from edged.services.mode import OUT_OF_SERVICE
from edged.topics import TAP

log = logging.getLogger(__name__)

LISTS_KEY = "access.lists"
VALIDITY_KEY = "access.lists.validity"
"""Beside the stored lists: their `issued` and `expires`, with the version and fleet of the
lists they belong to (`stored_forms`: the lists stay in the form the release before reads)."""
MADE_FOR_KEY = "access.lists.made_for"
"""Beside the stored lists: the card_ref of a UID no card has (`_card_ref_check`), under the
secret and length the node had when they came. A different one at start means the fleet
secret or `card_ref_bytes` changed since: the lists' card_refs can match no card."""
PROBE_UID = bytes(13)
"""13 bytes: no ISO/IEC 14443 UID has that length, so its card_ref names no card."""
INSIDE_KEY = "access.inside"
PROVIDER_KEY = "access.provider"
MAX_INSIDE = 10_000
TOGETHER_S = 0.5
"""A random UID read this soon after a card, at the same reader, was in the field with it:
nfc.libnfc reads two targets on alternate polls (50 ms apart by default), and a card is
held longer than this. Not longer: a phone presented just after someone else's card was
lifted (tailgating) must still show red."""
MAX_RECENT = 1_000
STRANGERS_BURST = 10
STRANGERS_EVERY_S = 2.0
"""Cards a reader does not know (not on the lists, or a random UID): at most
`STRANGERS_BURST` in a row, then one per `STRANGERS_EVERY_S` (a token bucket per reader).
A queue of riders with unregistered cards never taps faster; a card emulator that changes
its UID at each presentation (20 a second with the default poll) does: each would be a
new person counted on board (a truck admits unknown cards: "full" turns real riders away)
and a record in the outbox (its hard cap within hours offline, then real events refused).
Past the budget such a card is refused `too_many_unknown`: no door, no count, red. A repeat
spends none (a card left at the reader is one stranger, not one per read), nor does the one
random UID read beside a card (`TOGETHER_S`: the phone of its wallet case). A card on the
lists that is refused spends none either; its refusals repeated, as its repeats, are
recorded once a minute (`_said_again`), but for a repeat presented again (pass-back)."""
STILL_THERE_S = 2.0
"""A repeat read this soon after the card's previous read is the same card still at the
reader (at the edge of its field, in a bag leaning on it: read, lost for more than the
driver's `release_s`, read again), whatever the window: it was charged and counted at each
`repeat_window_s` for as long as it stayed. Handing a card back to another rider takes
longer, and a repeat opens no door unless `repeat_unlocks`."""
FLOOD_RECORD_S = 60.0
"""Of the refusals past the budget, one record per reader in this time (dispatch sees the
flood as it starts); the others are counted (`access.too_many_unknown`), not recorded.
Likewise a card refused, or answered `repeat`, again and again (`_said_again`): one
record in this time."""


@dataclass(slots=True)
class _Recent:
    """A granted tap, for the repeat window: when, at which kind of reader, what was
    decided and on what (the situation, so the lists in force can be asked again), and
    when the card was last read as its repeat (`last`: a card flickering in the field)."""

    ts: float
    role: ReaderRole
    decision: Decision
    situation: Situation
    last: float


@dataclass(slots=True)
class _Said:
    """A card's last recorded refusal or repeat, for `_said_again`: when it was recorded, at
    which kind of reader, its reason, and when the card was last read since."""

    recorded: float
    role: ReaderRole
    reason: str
    last: float


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An update checked off the loop, ready to be put in force in one step."""

    lists: AccessLists
    digest: str
    stored: dict[str, Any]
    validity: dict[str, Any]
    kind: Literal["full", "delta"]


def _stored_version(raw: Any, fleet: str) -> int:
    """The version of stored lists of this node's fleet, readable or not (a release that
    wrote a field this one does not know): 0 when it cannot be told."""
    if not isinstance(raw, dict) or raw.get("fleet") != fleet:
        return 0
    version = raw.get("version")
    return version if type(version) is int and version > 0 else 0


class AccessService(Service):
    def __init__(
        self,
        host: Host,
        config: AccessServiceConfig,
        *,
        last_trusted: LastTrustedTime | None = None,
        lists_age: ListsAge | None = None,
    ) -> None:
        super().__init__(host)
        if config.secret_file is None:
            raise ConfigError("[services.access]", ["secret_file is required"])
        self.config = config
        self.profile: NodeProfile = host.node.profile.value
        self.fleet = host.node.fleet
        self.zone = ZoneInfo(host.node.timezone)
        self.full = False  # a venue at capacity (from the occupancy service)
        self.out_of_service = False  # the mode (from the mode service)
        self.time = last_trusted or LastTrustedTime(host.clock, host.state.get, host.state.set)
        self.card_ref = CardRefs.from_file(config.secret_file, config.card_ref_bytes)
        self.key = (
            public_key_from_text(config.lists_public_key) if config.lists_public_key else None
        )
        self._floor = 0  # the version of lists set aside at start: none older is taken
        self.lists = self._restore_lists()
        self.age = lists_age or ListsAge(host.state.get, host.state.set)
        self.age.restore(self.lists.version)
        self._expired_said: int | None = None  # the version whose expiry was logged
        inside = host.state.get(INSIDE_KEY, [])
        self.inside: set[str] = set(inside) if isinstance(inside, list) else set()
        self._entered: set[str] = set()  # of `inside`, those who entered since this start
        provider = host.state.get(PROVIDER_KEY)
        self.provider: str | None = provider if isinstance(provider, str) else None
        self._recent: OrderedDict[str, _Recent] = OrderedDict()
        self._said: OrderedDict[str, _Said] = OrderedDict()  # card_ref -> last recorded
        self._card_read: dict[str, float] = {}  # reader -> Tap.ts of its last card's tap
        self._granted: dict[str, tuple[float, str]] = {}  # reader -> its last new grant
        self._phone_spared: set[str] = set()  # readers whose last card's phone spent no budget
        self._strangers: dict[str, TokenBucket] = {}  # reader -> its budget, in Tap.ts time
        self._again: dict[str, TokenBucket] = {}  # reader -> its budget of repeats recorded
        self._flood_recorded: dict[str, float] = {}  # reader -> Tap.ts of its last record
        self._digest: tuple[AccessLists, str] | None = None  # the lists in force's, once known
        self._updating = asyncio.Lock()  # one update at a time, in the order they came
        self.taps = 0
        self.undecided = 0  # taps whose card validity no clock could decide
        self.last_decision_s = 0.0  # tap read -> relay and lights commanded (bench.tap)
        bus = host.bus
        bus.subscribe(Tap, self.on_tap)
        bus.subscribe(OccupancyChanged, self._on_occupancy)
        bus.subscribe(ModeChanged, self._on_mode)
        bus.subscribe(OccupancyReset, self._everyone_left)

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("access.update", self.command_update, scope="access", max_bytes=LIST_BYTES),
            CommandSpec("access.status", self.command_status, scope="read"),
        ]

    def _on_occupancy(self, event: OccupancyChanged) -> None:
        self.full = event.full

    def _on_mode(self, event: ModeChanged) -> None:
        self.out_of_service = event.mode == OUT_OF_SERVICE

    def _card_ref_check(self) -> str:
        return self.card_ref(PROBE_UID)

    def _restore_lists(self) -> AccessLists:
        """The lists stored by the last update, if they can still match a card. Made under
        another fleet secret or `card_ref_bytes`, none of their card_refs can: a denied
        card would then pass where unknown cards do, silently. They are left out (the
        version in force is 0, which taps and `access.status` report, so dispatch sends a
        full list) and kept on disk, to be used again if the config goes back. Set aside,
        or unreadable (written by a newer release), their version stays the oldest one
        taken (`_floor`): version 0 in force must not let an older signed list be played
        back."""
        raw = self.host.state.get(LISTS_KEY)
        if raw is None:
            return EMPTY
        self._floor = _stored_version(raw, self.fleet)
        try:
            lists = AccessLists.model_validate(raw)
        except ValueError:
            log.error("the stored access lists are unreadable: deciding on empty lists")
            return EMPTY
        try:
            lists = with_validity(lists, self.host.state.get(VALIDITY_KEY))
        except ValueError:
            # theirs, but damaged: the lists still decide (their deny list the first);
            # read as if dispatch had signed no validity, which ops sees in health.access
            log.error(
                "the stored validity of the access lists (version %d) is unreadable: "
                "they are held as never expiring until dispatch sends new lists",
                lists.version,
            )
        made_for = self.host.state.get(MADE_FOR_KEY)
        chars = 2 * self.config.card_ref_bytes
        refs = itertools.chain(lists.cards, lists.deny, lists.bookings)
        wrong = next((r for r in refs if len(r) != chars), None)
        if wrong is not None:
            why = (
                f"their card_refs have {len(wrong) // 2} bytes and this node makes "
                f"{self.config.card_ref_bytes} ([services.access] card_ref_bytes changed)"
            )
        elif made_for is not None and made_for != self._card_ref_check():
            why = "the fleet secret ([services.access] secret_file) changed since they came"
        else:
            return lists
        self.host.counters.inc("access.lists_unusable")
        log.error(
            "the stored access lists (version %d) can match no card: %s. Deciding on empty "
            "lists (unknown cards: %s) until dispatch sends a full list made for this node",
            lists.version,
            why,
            unknown_card_policy(self.config, self.profile),
        )
        return EMPTY

    # -- taps -------------------------------------------------------------------------

    def _now(self, reading: Reading | None = None) -> tuple[datetime | None, datetime | None]:
        """(trusted local time, or None; else the last trusted time as a lower bound)."""
        reading = reading or self.time.read()
        if reading.ms is None:
            return None, None
        moment = datetime.fromtimestamp(reading.ms / 1000, self.zone)
        return (moment, None) if reading.trusted else (None, moment)

    async def run(self) -> None:
        """Keep the last trusted time on disk while the node runs, tap or no tap."""
        try:
            while True:
                await asyncio.sleep(SAVE_EVERY_S)
                self._age(self.time.read())  # the lists' held time too, and their expiry said
        finally:
            # a clean stop (the ignition off): the time since the last save is kept too,
            # committed with the outbox's last commit; only a power cut loses it
            self.time.save(force=True)
            self.age.save(force=True)

    def _age(self, reading: Reading) -> Age:
        """The lists' age now; the first time lists are found expired, a warning."""
        lists = self.lists
        age = self.age.age(lists, reading)
        if age.expired and self._expired_said != lists.version:
            self._expired_said = lists.version
            log.warning(
                "the access lists (version %d) expired at %s: dispatch has not renewed them "
                "since; cards revoked meanwhile are not refused here. Taps go on flagged "
                "lists_expired ([services.access] expired_lists = %r)",
                lists.version,
                lists.expires,
                self.config.expired_lists,
            )
        return age

    def _repeat(self, ref: str, role: ReaderRole, ts: float) -> Decision | None:
        """The answer to a repeat, or None when this tap is to be decided as new: none
        within the window, another kind of reader, or lists that no longer grant it."""
        recent = self._recent.get(ref)
        if recent is None:
            return None
        window = self.config.repeat_window_s
        still_there = window > 0 and 0 <= ts - recent.last < STILL_THERE_S
        if ts - recent.ts >= window and not still_there:
            return None
        if recent.role != role:  # entry then exit: someone going back out, not a bounce
            return None
        # the lists may have changed since (an update keeps the repeat memory): asked
        # again on the same situation, they must still grant it; a card denied, withdrawn
        # or whose booking was removed is decided anew, and refused, at once
        if not decide(self.lists, self.config, ref, recent.situation).granted:
            del self._recent[ref]
            return None
        recent.last = ts
        before = recent.decision
        unlock = False
        if before.unlock and self.config.repeat_unlocks and not still_there:
            # the lock opens again only for a card that may pass now: a booking that ended
            # (or a pass that expired, or a clock lost) since the first tap does not reopen
            # the door for as long as the window lasts (up to an hour); and only for a card
            # presented again, not one still at the reader (a badge on a lanyard resting on
            # it, a card in a bag left leaning on it: read, lost, read again each second or
            # so, it pulsed the lock at each read, and held the door open for anyone)
            reading = self.time.read()
            now, bound = self._now(reading)
            expired = self.age.age(self.lists, reading).expired
            again = replace(recent.situation, now=now, bound=bound, lists_expired=expired)
            unlock = decide(self.lists, self.config, ref, again).unlock
        return Decision(True, "repeat", before.action, before.profile, None, 0, unlock)

    def on_tap(self, tap: Tap) -> None:
        ref = self.card_ref(tap.uid)  # a random UID's too: the record has a card_ref
        self.taps += 1
        reading = self.time.read()
        expired = self._age(reading).expired
        role = self.config.readers.get(tap.reader, "both")
        situation: Situation | None = None
        phone = random_uid(tap.uid)  # a phone or a privacy card: not a card's identity
        # a phone held with a card in its case: the card's light stays (past the budget too)
        card_at = self._card_read.get(tap.reader)
        beside = phone and card_at is not None and 0 <= tap.ts - card_at < TOGETHER_S
        shown = not beside  # the reader shows this tap's verdict
        # the one phone a card travels in is no stranger of its own: it spends no budget
        spared = beside and tap.reader not in self._phone_spared
        if spared:
            self._phone_spared.add(tap.reader)
        # a repeat is no new stranger either (an unknown card left at a truck's reader)
        repeat = None if phone else self._repeat(ref, role, tap.ts)
        if repeat is not None:
            decision = repeat
            # a granted card read again is the first card of a wallet presented again as
            # much as a new grant is: the card read with it is not a second rider
            self._granted[tap.reader] = (tap.ts, ref)
        elif not spared and self._stranger(tap.uid, ref) and not self._welcome(tap.reader, tap.ts):
            decision = Decision(False, "too_many_unknown")
            self.host.counters.inc("access.too_many_unknown")
        elif phone:
            decision = Decision(False, "random_uid")
            self.host.counters.inc("access.random_uid")
        else:
            inside = ref in self.inside if self.profile == "venue" else ref == self.provider
            now, bound = self._now(reading)
            situation = Situation(
                profile=self.profile,
                now=now,
                role=role,
                inside=inside,
                full=self.full,
                out_of_service=self.out_of_service,
                bound=bound,
                lists_expired=expired,
            )
            decision = decide(self.lists, self.config, ref, situation)
            if decision.granted and self._together(ref, tap.reader, tap.ts):
                # one presentation, one rider: the second card of a wallet held to the reader
                # is not charged nor counted, and leaves the first one's light alone
                decision = Decision(False, "together", profile=decision.profile)
                self.host.counters.inc("access.together")
                shown = False
        if decision.reason not in ("random_uid", "too_many_unknown"):
            self._card_read[tap.reader] = tap.ts
            self._phone_spared.discard(tap.reader)
        if decision.reason == "too_many_unknown":
            recorded = self._record_flood(tap.reader, tap.ts)
        else:
            recorded = not self._said_again(ref, tap.reader, role, decision, tap.ts)
        if not recorded:  # never a tap that opens the door, charges or counts
            if decision.reason != "too_many_unknown":
                again = "repeat_again" if decision.granted else "refused_repeat"
                self.host.counters.inc(f"access.{again}")
                self._count_validity(decision)
            if shown:
                light = Feedback("granted" if decision.granted else "denied", time.monotonic())
                self.host.bus.emit(light)
            return
        # the record first (the tap journal: one write, microseconds), so a door that opened
        # is never without its record; then the door and the lights; then the counting
        event = TapEvent(
            card_ref=ref,
            reader=tap.reader,
            decision="granted" if decision.granted else "denied",
            reason=decision.reason,
            action=decision.action,
            profile=decision.profile,
            fare_cents=decision.fare_cents,
            lists_version=self.lists.version,
            unlocked=decision.unlock,
            validity=decision.validity,
            lists_expired=True if expired else None,
        )
        try:
            self.host.publish(TAP, event)
        except EdgedError as exc:  # shutting down: the door still answers the card
            log.error("a tap could not be recorded: %s", exc)
        now_s = time.monotonic()
        bus = self.host.bus
        if decision.unlock:
            bus.emit(Unlock(self.config.pulse_s, now_s))
        if shown:
            bus.emit(Feedback("granted" if decision.granted else "denied", now_s))
        self.last_decision_s = time.monotonic() - tap.ts
        if expired:
            self.host.counters.inc("access.lists_expired")
        if decision.granted and situation is not None:  # a new grant, not a repeat
            self._granted[tap.reader] = (tap.ts, ref)
            self._recent[ref] = _Recent(tap.ts, role, decision, situation, tap.ts)
            self._recent.move_to_end(ref)
            while len(self._recent) > MAX_RECENT:
                self._recent.popitem(last=False)
            self._remember(ref, decision)
        self._count_validity(decision)

    def _together(self, ref: str, reader: str, ts: float) -> bool:
        """Whether another card was granted at `reader` just before: two cards
        held to it together (a wallet), which the driver reports as two taps, one poll or
        two apart (`together_s`, default `HELD_TOGETHER_S`). The first read boards."""
        last, window = self._granted.get(reader), self.config.together_s
        return last is not None and last[1] != ref and 0 <= ts - last[0] < window

    def _count_validity(self, decision: Decision) -> None:
        if decision.validity is not None:
            self.host.counters.inc(f"access.validity.{decision.validity}")
            if decision.validity == "undecided":
                self.undecided += 1

    def _stranger(self, uid: bytes, ref: str) -> bool:
        """A card the lists do not know: a random UID, or one neither listed nor denied."""
        lists = self.lists
        return random_uid(uid) or (ref not in lists.cards and ref not in lists.deny)

    def _said_again(
        self, ref: str, reader: str, role: ReaderRole, decision: Decision, ts: float
    ) -> bool:
        """Whether this refusal, or this `repeat` that opens nothing, says again what was
        recorded for the card less than `FLOOD_RECORD_S` ago, the card read again each time
        within `repeat_window_s` (the same reason, at a reader of the same role): shown,
        counted (`access.refused_repeat`, `access.repeat_again`), not recorded again.
        A refusal is decided anew all the same (let in as soon as it may be). A card on the
        lists, refused (lost, expired) or granted (a rider's own pass), spends no budget for
        strangers: held at the edge of the field, or presented again and again by a card
        emulator switching its field on and off, each read was a record, ~2-3 a second (the
        outbox's hard cap in two days offline, then real taps' records refused).
        But a `repeat` of a card presented again (away `STILL_THERE_S` or more since its
        last read) is a rider's act: a pass handed back through the door to rider after
        rider (pass-back), each shown green, is a record each, for dispatch to count, within
        a per-reader budget (`_presented`) that clones of a few passes read in turn by an
        emulator soon spend."""
        if decision.unlock or (decision.granted and decision.reason != "repeat"):
            self._said.pop(ref, None)  # a door that opens, a charge, a count: recorded
            return False
        window = self.config.repeat_window_s
        before = self._said.get(ref)
        again = (
            window > 0
            and before is not None
            and before.role == role
            and before.reason == decision.reason
            and 0 <= ts - before.last < window
            and 0 <= ts - before.recorded < FLOOD_RECORD_S
        )
        if again:
            assert before is not None
            away = ts - before.last >= STILL_THERE_S
            before.last = ts
            if not (decision.reason == "repeat" and away and self._presented(reader, ts)):
                return True
            before.recorded = ts
            return False
        self._said[ref] = _Said(ts, role, decision.reason, ts)
        self._said.move_to_end(ref)
        while len(self._said) > MAX_RECENT:
            self._said.popitem(last=False)
        return False

    def _presented(self, reader: str, ts: float) -> bool:
        """One more repeat of a card presented again recorded at `reader`, within its budget
        (as the strangers', apart from theirs)."""
        return _within(self._again, reader, ts)

    def _welcome(self, reader: str, ts: float) -> bool:
        """One more stranger at `reader` within its budget (`STRANGERS_BURST`, then one per
        `STRANGERS_EVERY_S`)."""
        return _within(self._strangers, reader, ts)

    def _record_flood(self, reader: str, ts: float) -> bool:
        """Whether this refusal past the budget is recorded (one per `FLOOD_RECORD_S`)."""
        last = self._flood_recorded.get(reader)
        if last is not None and 0 <= ts - last < FLOOD_RECORD_S:
            return False
        self._flood_recorded[reader] = ts
        log.warning(
            "reader %s: more cards it does not know than riders tap (a card emulator?): "
            "refused past %d in a row, then one per %g s (access.too_many_unknown)",
            reader,
            STRANGERS_BURST,
            STRANGERS_EVERY_S,
        )
        return True

    def _remember(self, ref: str, decision: Decision) -> None:
        self.host.bus.emit(AccessDecided(decision.action, decision.delta))
        if self.profile == "venue" and decision.action in ("enter", "exit"):
            if decision.action == "enter" and len(self.inside) < MAX_INSIDE:
                self.inside.add(ref)
                self._entered.add(ref)
            else:
                self.inside.discard(ref)
                self._entered.discard(ref)
            self.host.state.set(INSIDE_KEY, sorted(self.inside))
        elif decision.action in ("login", "logout"):
            self.provider = ref if decision.action == "login" else None
            self.host.state.set(PROVIDER_KEY, self.provider)

    def _everyone_left(self, event: OccupancyReset) -> None:
        """Occupancy was reset: to zero (end of day, a trip's end), nobody is inside; to the
        count ops gave, whoever is known inside stays so (their tap out counts them out,
        not in again: the count would drift up by two a person); by a daily reset made up
        at start, only those who entered since this start stay inside, as they stay
        counted."""
        if event.count > 0 and not event.since_start:
            return
        kept = self.inside & self._entered if event.count > 0 else set()
        self._entered = set(kept)
        if kept != self.inside:
            self.inside = kept
            self.host.state.set(INSIDE_KEY, sorted(kept))

    # -- commands -----------------------------------------------------------------------

    async def _digest_of(self, lists: AccessLists) -> str:
        """The digest of `lists`, computed once (off the loop: it dumps all of them)."""
        if self._digest is None or self._digest[0] is not lists:
            value = await asyncio.to_thread(digest, lists)
            if lists is self.lists:
                self._digest = (lists, value)
            return value
        return self._digest[1]

    def _health(self) -> AccessHealth:
        age = self._age(self.time.read())
        return AccessHealth(
            version=self.lists.version,
            issued=age.issued,
            expires=age.expires,
            received=age.received,
            received_clock=age.received_clock,
            held_s=int(age.held_s),
            age_s=None if age.age_s is None else int(age.age_s),
            expired=age.expired,
        )

    async def report(self) -> dict[str, AccessHealth]:
        return {"access": self._health()}

    def _status(self, lists: AccessLists, lists_digest: str) -> dict[str, Any]:
        health = self._health().to_json_dict()
        return {
            **{k: v for k, v in health.items() if k != "version"},
            "version": lists.version,
            "digest": lists_digest,
            "cards": len(lists.cards),
            "deny": len(lists.deny),
            "bookings": len(lists.bookings),
            "fares": len(lists.fares),
            "taps": self.taps,
            "undecided": self.undecided,
        }

    def _prepare(self, args: dict[str, Any], current: AccessLists, floor: int | None) -> _Prepared:
        """Everything an update needs that takes time (the signature over the canonical
        JSON, validation, the delta applied, the stored form, the digest): in a worker
        thread, on lists nobody modifies. CommandError when it is refused."""
        update = parse_update(
            args, key=self.key, fleet=self.fleet, card_ref_chars=2 * self.config.card_ref_bytes
        )
        if update.version < self._floor and current.version < self._floor:
            # lists set aside at start leave version 0 in force, which any signed list
            # passes: an old one played back (a card revoked since still allowed) too.
            # (Lists in force at or above the floor refuse it themselves, in `apply`.)
            raise CommandError(
                "stale_version",
                f"version {update.version} is older than the lists this node had before "
                f"they were set aside at start ({self._floor})",
            )
        if update.expires is not None and floor is not None and current.version == 0:
            expires = int(update.expires.timestamp() * 1000)
            if floor > expires:
                # played back by whoever kept it (any certificate may write `cmd/`): on a
                # node that lost its lists, it would let in every card revoked since. Over
                # lists in force, newer ones lose no revocation however old (a clock ahead
                # held every list dispatch signed expired): taken, and flagged expired
                raise CommandError(
                    "expired",
                    f"these lists expired at {update.expires.isoformat()} and it is at least "
                    f"{datetime.fromtimestamp(floor / 1000, UTC).isoformat()} here: dispatch "
                    "signs lists with a later expires (is this node's clock right?)",
                )
        new = apply(current, update)
        dumped = dump(new)
        stored, validity = stored_forms(dumped)
        return _Prepared(new, digest_of(dumped), stored, validity, update.kind)

    async def command_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """`access.update {"lists": {...}, "sig": "..."}`: all of it, or nothing."""
        async with self._updating:
            current = self.lists
            reading = self.time.read()
            ready = await asyncio.to_thread(self._prepare, args, current, reading.ms)
            # one step on the loop: a tap before it was decided on the old lists, any tap
            # after it on the new ones (the repeat memory stays: see `_repeat`)
            assert self.lists is current, "the lists changed outside an update"
            self.lists, self._digest = ready.lists, (ready.lists, ready.digest)
            self.host.state.set(MADE_FOR_KEY, self._card_ref_check())
            self.host.state.set(LISTS_KEY, ready.stored)
            self.host.state.set(VALIDITY_KEY, ready.validity)  # the same commit
            # the same version is the same content (`apply`): sent again (a retry, a peer
            # playing it back), it is no reason to count its held time from zero; nor is
            # a change under the same `issued` (a revocation, not a renewal)
            if ready.lists.issued is not None and ready.lists.issued == current.issued:
                self.age.renamed(ready.lists.version)
            elif ready.lists.version != current.version:
                ms, source = self.host.clock.now()
                self.age.taken(ready.lists.version, (ms, source.value), reading)
        log.info("access lists version %d in force (%s)", ready.lists.version, ready.kind)
        return {"applied": ready.kind, **self._status(ready.lists, ready.digest)}

    async def command_status(self, args: dict[str, Any]) -> dict[str, Any]:
        only("access.status", args)
        lists = self.lists
        return self._status(lists, await self._digest_of(lists))


def _within(budgets: dict[str, TokenBucket], reader: str, ts: float) -> bool:
    """One more taken from `reader`'s budget (made at its first use), if it has one left."""
    budget = budgets.get(reader)
    if budget is None:
        budget = budgets[reader] = TokenBucket(STRANGERS_BURST, 60.0 / STRANGERS_EVERY_S, ts)
    if budget.wait_s(ts) > 0:
        return False
    budget.take()
    return True

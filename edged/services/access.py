"""From a tap to an open door in a millisecond, from local lists, then the record of it.

Order matters on a tap: decide, record (the tap journal: one write to a file allocated in
advance, so a door that opened always has its record), actuate (relay, light, buzzer), then
count. Nothing on that path waits for the network or for a commit: the outbox makes the
event durable before it is sent, but the door does not wait for it.

The raw UID is used once, here, to compute the card_ref, and then dropped: it is not kept
in memory, logged, stored or published.

A repeat (the same card within `repeat_window_s`) shows its feedback again and is neither
charged nor counted; it does not pulse the lock unless `repeat_unlocks` (a slow venue
door): otherwise a card handed back through the door would let a second rider board.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.errors import ConfigError, EdgedError
from core.events import Feedback, Tap, Unlock
from edged.access.cardref import CardRefs
from edged.access.decide import Decision, NodeProfile, Situation, decide
from edged.access.lasttrusted import SAVE_EVERY_S, LastTrustedTime
from edged.access.lists import (
    EMPTY,
    AccessLists,
    apply,
    digest,
    parse_update,
)
from edged.commands.admin import MODE_KEY
from edged.commands.args import only
from edged.config.access import AccessServiceConfig
from edged.payloads import TapEvent
from edged.security.signing import public_key_from_text
from edged.services.base import NodeApi
from edged.services.occupancy import OccupancyService
from edged.topics import TAP

log = logging.getLogger(__name__)

LISTS_KEY = "access.lists"
INSIDE_KEY = "access.inside"
PROVIDER_KEY = "access.provider"
MAX_INSIDE = 10_000
MAX_RECENT = 1_000


class AccessService:
    def __init__(
        self,
        node: NodeApi,
        config: AccessServiceConfig,
        *,
        profile: NodeProfile,
        fleet: str,
        timezone: str,
        emit: Any,
        occupancy: OccupancyService | None = None,
        count: Callable[[str], None] | None = None,
        last_trusted: LastTrustedTime | None = None,
    ) -> None:
        if config.secret_file is None:
            raise ConfigError("[services.access]", ["secret_file is required"])
        self.node = node
        self.config = config
        self.profile = profile
        self.fleet = fleet
        self.zone = ZoneInfo(timezone)
        self.emit = emit
        self.occupancy = occupancy
        self.count = count or (lambda key: None)
        self.time = last_trusted or LastTrustedTime(node.clock, node.get_state, node.set_state)
        self.card_ref = CardRefs.from_file(config.secret_file, config.card_ref_bytes)
        self.key = (
            public_key_from_text(config.lists_public_key) if config.lists_public_key else None
        )
        self.lists = self._restore_lists()
        inside = node.get_state(INSIDE_KEY, [])
        self.inside: set[str] = set(inside) if isinstance(inside, list) else set()
        provider = node.get_state(PROVIDER_KEY)
        self.provider: str | None = provider if isinstance(provider, str) else None
        self._recent: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
        self.taps = 0
        self.undecided = 0  # taps whose card validity no clock could decide
        self.last_decision_s = 0.0  # tap read -> relay and lights commanded (bench.tap)
        node.subscribe(Tap, self.on_tap)
        if occupancy is not None:
            occupancy.on_reset.append(self._everyone_left)

    def _restore_lists(self) -> AccessLists:
        raw = self.node.get_state(LISTS_KEY)
        if raw is None:
            return EMPTY
        try:
            lists = AccessLists.model_validate(raw)
        except ValueError:
            log.error("the stored access lists are unreadable: deciding on empty lists")
            return EMPTY
        return lists

    # -- taps -------------------------------------------------------------------------

    def _now(self) -> tuple[datetime | None, datetime | None]:
        """(trusted local time, or None; else the last trusted time as a lower bound)."""
        reading = self.time.read()
        if reading.ms is None:
            return None, None
        moment = datetime.fromtimestamp(reading.ms / 1000, self.zone)
        return (moment, None) if reading.trusted else (None, moment)

    async def run(self) -> None:
        """Keep the last trusted time on disk while the node runs, tap or no tap."""
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            self.time.read()

    def on_tap(self, tap: Tap) -> None:
        ref = self.card_ref(tap.uid)
        self.taps += 1
        role = self.config.readers.get(tap.reader, "both")
        recent = self._recent.get(ref)
        if recent is not None and tap.ts - recent[0] < self.config.repeat_window_s:
            before = recent[1]
            unlock = before.unlock and self.config.repeat_unlocks
            decision = Decision(True, "repeat", before.action, before.profile, None, 0, unlock)
        else:
            inside = ref in self.inside if self.profile == "venue" else ref == self.provider
            now, bound = self._now()
            situation = Situation(
                profile=self.profile,
                now=now,
                role=role,
                inside=inside,
                full=self.occupancy.full if self.occupancy is not None else False,
                out_of_service=self.node.get_state(MODE_KEY) == "out-of-service",
                bound=bound,
            )
            decision = decide(self.lists, self.config, ref, situation)
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
        )
        try:
            self.node.publish(TAP, event)
        except EdgedError as exc:  # shutting down: the door still answers the card
            log.error("a tap could not be recorded: %s", exc)
        now_s = time.monotonic()
        if decision.unlock:
            self.emit(Unlock(self.config.pulse_s, now_s))
        self.emit(Feedback("granted" if decision.granted else "denied", now_s))
        self.last_decision_s = time.monotonic() - tap.ts
        if decision.granted and decision.reason != "repeat":
            self._recent[ref] = (tap.ts, decision)
            self._recent.move_to_end(ref)
            while len(self._recent) > MAX_RECENT:
                self._recent.popitem(last=False)
            self._remember(ref, decision)
        if decision.validity is not None:
            self.count(f"access.validity.{decision.validity}")
            if decision.validity == "undecided":
                self.undecided += 1

    def _remember(self, ref: str, decision: Decision) -> None:
        if self.occupancy is not None and self.occupancy.counts_taps and decision.delta:
            self.occupancy.add(decision.delta, "tap")
        if self.profile == "venue" and decision.action in ("enter", "exit"):
            if decision.action == "enter" and len(self.inside) < MAX_INSIDE:
                self.inside.add(ref)
            else:
                self.inside.discard(ref)
            self.node.set_state(INSIDE_KEY, sorted(self.inside))
        elif decision.action in ("login", "logout"):
            self.provider = ref if decision.action == "login" else None
            self.node.set_state(PROVIDER_KEY, self.provider)

    def _everyone_left(self) -> None:
        """Occupancy was reset (end of day, by ops): nobody is counted as inside."""
        if self.inside:
            self.inside.clear()
            self.node.set_state(INSIDE_KEY, [])

    # -- commands -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        lists = self.lists
        return {
            "version": lists.version,
            "digest": digest(lists),
            "cards": len(lists.cards),
            "deny": len(lists.deny),
            "bookings": len(lists.bookings),
            "fares": len(lists.fares),
            "taps": self.taps,
            "undecided": self.undecided,
        }

    async def command_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """`access.update {"lists": {...}, "sig": "..."}`: all of it, or nothing."""
        update = parse_update(
            args, key=self.key, fleet=self.fleet, card_ref_chars=2 * self.config.card_ref_bytes
        )
        new = apply(self.lists, update)
        self.node.set_state(LISTS_KEY, new.model_dump(mode="json"))
        self.lists = new
        self._recent.clear()  # a card blocked a second ago must not pass as a repeat
        kind: Literal["full", "delta"] = update.kind
        log.info("access lists version %d in force (%s)", new.version, kind)
        return {"applied": kind, **self.status()}

    async def command_status(self, args: dict[str, Any]) -> dict[str, Any]:
        only("access.status", args)
        return self.status()

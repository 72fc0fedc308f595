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

What it needs of the others comes on the bus (`OccupancyChanged`: a venue at capacity,
`ModeChanged`: a shuttle out of service, `OccupancyReset`: nobody inside); what it decided
goes out as `AccessDecided` (the occupancy service counts it) and as `Unlock` and
`Feedback` for the GPIO driver.
"""

import asyncio
import logging
import time
from collections import OrderedDict
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
    LIST_BYTES,
    AccessLists,
    apply,
    digest,
    parse_update,
)
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.config.access import AccessServiceConfig
from edged.host import Host
from edged.payloads import TapEvent
from edged.security.signing import public_key_from_text
from edged.services.base import Service
from edged.services.events import AccessDecided, ModeChanged, OccupancyChanged, OccupancyReset
from edged.services.mode import OUT_OF_SERVICE
from edged.topics import TAP

log = logging.getLogger(__name__)

LISTS_KEY = "access.lists"
INSIDE_KEY = "access.inside"
PROVIDER_KEY = "access.provider"
MAX_INSIDE = 10_000
MAX_RECENT = 1_000


class AccessService(Service):
    def __init__(
        self,
        host: Host,
        config: AccessServiceConfig,
        *,
        last_trusted: LastTrustedTime | None = None,
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
        self.lists = self._restore_lists()
        inside = host.state.get(INSIDE_KEY, [])
        self.inside: set[str] = set(inside) if isinstance(inside, list) else set()
        provider = host.state.get(PROVIDER_KEY)
        self.provider: str | None = provider if isinstance(provider, str) else None
        self._recent: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
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

    def _restore_lists(self) -> AccessLists:
        raw = self.host.state.get(LISTS_KEY)
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
                full=self.full,
                out_of_service=self.out_of_service,
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
            self.host.publish(TAP, event)
        except EdgedError as exc:  # shutting down: the door still answers the card
            log.error("a tap could not be recorded: %s", exc)
        now_s = time.monotonic()
        bus = self.host.bus
        if decision.unlock:
            bus.emit(Unlock(self.config.pulse_s, now_s))
        bus.emit(Feedback("granted" if decision.granted else "denied", now_s))
        self.last_decision_s = time.monotonic() - tap.ts
        if decision.granted and decision.reason != "repeat":
            self._recent[ref] = (tap.ts, decision)
            self._recent.move_to_end(ref)
            while len(self._recent) > MAX_RECENT:
                self._recent.popitem(last=False)
            self._remember(ref, decision)
        if decision.validity is not None:
            self.host.counters.inc(f"access.validity.{decision.validity}")
            if decision.validity == "undecided":
                self.undecided += 1

    def _remember(self, ref: str, decision: Decision) -> None:
        self.host.bus.emit(AccessDecided(decision.action, decision.delta))
        if self.profile == "venue" and decision.action in ("enter", "exit"):
            if decision.action == "enter" and len(self.inside) < MAX_INSIDE:
                self.inside.add(ref)
            else:
                self.inside.discard(ref)
            self.host.state.set(INSIDE_KEY, sorted(self.inside))
        elif decision.action in ("login", "logout"):
            self.provider = ref if decision.action == "login" else None
            self.host.state.set(PROVIDER_KEY, self.provider)

    def _everyone_left(self, _event: OccupancyReset) -> None:
        """Occupancy was reset (end of day, by ops): nobody is counted as inside."""
        if self.inside:
            self.inside.clear()
            self.host.state.set(INSIDE_KEY, [])

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
        self.host.state.set(LISTS_KEY, new.model_dump(mode="json"))
        self.lists = new
        self._recent.clear()  # a card blocked a second ago must not pass as a repeat
        kind: Literal["full", "delta"] = update.kind
        log.info("access lists version %d in force (%s)", new.version, kind)
        return {"applied": kind, **self.status()}

    async def command_status(self, args: dict[str, Any]) -> dict[str, Any]:
        only("access.status", args)
        return self.status()

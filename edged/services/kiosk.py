"""The kiosk: what the rider screen shows, the rider requests it sends, and its page.

Dispatch feeds it with commands (`kiosk.schedule`, `kiosk.message`, `kiosk.ack`); the other
services feed it with events on the bus, from which it keeps its own view of the node: the
last fix and whether it is lost, the fences and the stop it is at, the mode, the run from
`journey.assign` (the page shows its line), the occupancy (without an occupancy service, or
with a capacity that is not a positive int, or a count the node doubts, the page hides its
gauge), and the link. Every
change becomes a new *view* (a JSON-ready dict) handed to listeners — the HTTP server
(`edged.kiosk.server`, run by `run`) pushes it to the pages. Schedule, messages and
requests are kept in the node's state, so a restart shows the same screen; a rider request
is written in the same outbox commit as its message, so a request the kiosk remembers is a
request dispatch will get.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as day_time
from typing import Any, TypeGuard, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from core.events import Fix
from edged.clock import ClockSource
from edged.commands.spec import CommandSpec
from edged.config.geofences import Geofence
from edged.config.kiosk import Button, KioskConfig
from edged.errors import CommandError
from edged.host import Host
from edged.kiosk.models import (
    AckArgs,
    Asked,
    ClearArgs,
    Message,
    MessageArgs,
    RequestRecord,
    RequestRefused,
    RiderPost,
    Schedule,
    ScheduleArgs,
    ServiceSlot,
    parse_args,
    screen_text,
)
from edged.kiosk.payloads import KioskRequest
from edged.kiosk.server import KioskServer
from edged.outbox import PutResult
from edged.services import mode
from edged.services.base import Service
from edged.services.events import (
    FixStatus,
    GeofencesChanged,
    JourneyChanged,
    LinkChanged,
    ModeChanged,
    OccupancyChanged,
    PositionUpdated,
)
from edged.services.geofences import signed_distance
from edged.topics import KIOSK_REQUESTS

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

SCHEDULE_KEY = "kiosk.schedule"
MESSAGES_KEY = "kiosk.messages"
REQUESTS_KEY = "kiosk.requests"

KEEP_REQUESTS = 50
"""Requests remembered for `kiosk.ack`; older ones are forgotten (dispatch has them)."""
STOP_KINDS = ("stop", "market", "venue")
NEAR_M = 5000.0
"""Farther than this from every stop, the screen says "on the way", not "near X"."""
PASSED_GRACE_MS = 120_000
"""A stop stays listed this long after its ETA: buses are late more often than early."""
MESSAGE_MAX_MS = 7 * 86_400_000
"""The longest a message is shown (`kiosk.message`'s `expires_at` is capped to it)."""
NEVER_MS = 2**63 - 1
"""Later than any time: the end of a day after which the calendar has none."""
TICK_S = 0.5
STORE_WAIT_S = 2.0


def default_buttons(profile: str) -> list[Button]:
    """On board a shuttle nobody needs a pickup; at a truck or venue door they may."""
    if profile == "shuttle":
        return ["mediator", "service"]
    return ["pickup", "mediator", "service"]


class KioskService(Service):
    def __init__(
        self,
        host: Host,
        config: KioskConfig,
        *,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(host)
        if config.timezone is None:  # the node's local time, as its days and bookings
            config = config.model_copy(update={"timezone": host.node.timezone})
        self.config = config
        self._now_ms = now_ms or (lambda: host.clock.now()[0])
        self.buttons: list[Button] = (
            list(config.buttons)
            if config.buttons is not None
            else default_buttons(host.node.profile.value)
        )
        self.zone = ZoneInfo(config.timezone or host.node.timezone)
        self.schedule = self._load(SCHEDULE_KEY, Schedule, Schedule())
        self._date_services()  # a schedule stored by an older release kept no day
        self.messages: list[Message] = self._load_list(MESSAGES_KEY, Message)
        self.requests: list[RequestRecord] = self._load_list(REQUESTS_KEY, RequestRecord)
        for r in self.requests:
            if r.status == "saving":
                r.status = "sent"  # stored with its message in one commit: it is durable
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._near: tuple[object, dict[str, Any] | None] = (None, None)
        # the node as the other services tell it on the bus
        self.fix: Fix | None = None
        self.fix_lost = False
        self.fences: tuple[Geofence, ...] = ()
        self.inside: tuple[str, ...] = ()
        self.mode = mode.DEFAULT
        self.journey: dict[str, Any] | None = None
        self.occupancy: OccupancyChanged | None = None
        self.connected = False
        bus = host.bus
        bus.subscribe(PositionUpdated, self._on_position)
        bus.subscribe(FixStatus, self._on_fix_status)
        bus.subscribe(GeofencesChanged, self._on_geofences)
        bus.subscribe(ModeChanged, self._on_mode)
        bus.subscribe(JourneyChanged, self._on_journey)
        bus.subscribe(OccupancyChanged, self._on_occupancy)
        bus.subscribe(LinkChanged, self._on_link)
        self._view: dict[str, Any] = self.view()
        self.server = KioskServer(self, config, host.counters)

    def commands(self) -> list[CommandSpec]:
        return [
            CommandSpec("kiosk.schedule", self.command_schedule),
            CommandSpec("kiosk.message", self.command_message),
            CommandSpec("kiosk.ack", self.command_ack),
        ]

    # -- what the other services say ----------------------------------------------------

    def _on_position(self, event: PositionUpdated) -> None:
        if event.suspect is None:  # a spoofer's place is not shown to riders as near a stop
            self.fix = event.fix

    def _on_fix_status(self, event: FixStatus) -> None:
        self.fix_lost = event.lost

    def _on_geofences(self, event: GeofencesChanged) -> None:
        self.fences, self.inside = event.fences, event.inside

    def _on_mode(self, event: ModeChanged) -> None:
        self.mode = event.mode

    def _on_journey(self, event: JourneyChanged) -> None:
        self.journey = event.run

    def _on_occupancy(self, event: OccupancyChanged) -> None:
        self.occupancy = event

    def _on_link(self, event: LinkChanged) -> None:
        self.connected = event.connected

    # -- persistence ------------------------------------------------------------------

    def _load(self, key: str, model: type[M], default: M) -> M:
        raw = self.host.state.get(key)
        if raw is None:
            return default
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.host.counters.inc("kiosk.bad_state")
            log.warning("kiosk: stored %s is unreadable, starting without it: %s", key, exc)
            return default

    def _load_list(self, key: str, model: type[M]) -> list[M]:
        raw = self.host.state.get(key)
        if not isinstance(raw, list):
            return []
        out: list[M] = []
        for item in raw:
            try:
                out.append(model.model_validate(item))
            except ValidationError:
                self.host.counters.inc("kiosk.bad_state")
                log.warning("kiosk: dropped an unreadable entry of %s", key)
        return out

    def _save_schedule(self) -> None:
        self.host.state.set(SCHEDULE_KEY, self.schedule.model_dump(mode="json"))

    def _save_messages(self) -> None:
        self.host.state.set(MESSAGES_KEY, [m.model_dump(mode="json") for m in self.messages])

    def _save_requests(self) -> None:
        self.host.state.set(REQUESTS_KEY, [r.model_dump(mode="json") for r in self.requests])

    # -- the view ---------------------------------------------------------------------

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """`listener(view)` is called with each new view (never twice with the same one)."""
        self._listeners.append(listener)

    @property
    def current(self) -> dict[str, Any]:
        return self._view

    def refresh(self) -> None:
        """Recompute the view; tell the listeners when it changed."""
        view = self.view()
        if view == self._view:
            return
        self._view = view
        for listener in self._listeners:
            try:
                listener(view)
            except Exception:
                self.host.counters.inc("kiosk.error")
                log.exception("kiosk: a view listener failed")

    def view(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data; no clock (the page ticks its own)."""
        now = self._now_ms()
        node = self.host.node
        return {
            "node": {
                "id": node.id,
                "name": screen_text(node.name) or node.id,
                "profile": node.profile.value,
            },
            "mode": self.mode,
            "connected": self.connected,
            "timezone": self.config.timezone,
            "idle_reset_s": self.config.idle_reset_s,
            "buttons": list(self.buttons),
            "where": self._where(),
            "place": self.schedule.place,
            "stops": [
                {"name": s.name, "eta_ms": _ms(s.eta)}
                for s in sorted(self.schedule.stops, key=lambda s: s.eta)
                if _ms(s.eta) >= now - PASSED_GRACE_MS
            ],
            "services": [self._slot_view(s) for s in self.schedule.services if self._open(s, now)],
            "messages": [
                m.model_dump(mode="json", exclude={"received_ms", "dated", "ttl_ms"})
                for m in sorted(
                    self.messages,
                    key=lambda m: (_PRIORITY_ORDER[m.priority], -m.received_ms),
                )
                if m.expires_ms > now
            ],
            "occupancy": self._occupancy(),
            "requests": self._requests_view(now),
            "journey": self._journey(),
        }

    def _open(self, s: ServiceSlot, now: int) -> bool:
        """Whether `s` is still on today's programme: before its `until`; without one, before
        the end of its day in the kiosk's time zone (the day of its `start`, else the day
        dispatch sent it). "Services today" are a day's: one sent with no closing time
        stayed on screen for ever."""
        if s.until is not None:
            return _ms(s.until) > now
        anchor = _ms(s.start) if s.start is not None else self.schedule.services_ms
        return anchor is None or now < self._end_of_day(anchor)

    def _end_of_day(self, ms: int) -> int:
        """The next local midnight after `ms` in the kiosk's time zone, in ms; none (the
        largest ms) after the calendar's last day, 9999-12-31, which a time from dispatch
        may be on: raising here froze the screen at every view of the stored schedule."""
        try:
            day = datetime.fromtimestamp(ms / 1000, self.zone).date() + timedelta(days=1)
        except (OverflowError, ValueError, OSError):  # OSError: a platform's time_t
            return NEVER_MS
        return _ms(datetime.combine(day, day_time(0), self.zone))

    def _slot_view(self, s: ServiceSlot) -> dict[str, Any]:
        return {
            "id": s.id,
            "provider": s.provider,
            "what": s.what,
            "where": s.where,
            "start_ms": _ms(s.start) if s.start else None,
            "until_ms": _ms(s.until) if s.until else None,
        }

    def _where(self) -> dict[str, Any]:
        last = self.fix
        fix = "none" if last is None else "lost" if self.fix_lost else "ok"
        stop = None
        near = None
        inside = set(self.inside)
        here = [g for g in self.fences if g.id in inside and g.kind in STOP_KINDS]
        if here:
            g = here[0]
            stop = {"id": g.id, "name": screen_text(g.name) or g.id, "kind": g.kind}
        elif fix == "ok" and last is not None:
            if self._near[0] is not last:  # once per fix, not on every refresh
                self._near = (last, self._nearest(self.fences, last))
            near = self._near[1]
        return {"fix": fix, "stop": stop, "near": near}

    @staticmethod
    def _nearest(fences: tuple[Geofence, ...], fix: Fix) -> dict[str, Any] | None:
        candidates = [
            (signed_distance(g, fix.lat, fix.lon), g) for g in fences if g.kind in STOP_KINDS
        ]
        if not candidates:
            return None
        d, g = min(candidates, key=lambda c: c[0])
        name = screen_text(g.name) or g.id
        return {"name": name, "km": round(max(d, 0) / 1000, 1)} if d <= NEAR_M else None

    def _occupancy(self) -> dict[str, Any] | None:
        """From the occupancy service's count and capacity, when there is one and the node
        does not doubt it (`doubt`: a rider must not wait for a bus the gauge says is full,
        nor board one it says has room, on a count the node knows is wrong)."""
        if self.occupancy is None or self.occupancy.doubt:
            return None
        count, capacity = self.occupancy.count, self.occupancy.capacity
        if not (_is_int(count) and _is_int(capacity)) or capacity <= 0 or count < 0:
            return None
        free = max(0, capacity - count)
        level = "full" if free == 0 else "few" if free <= max(2, capacity // 10) else "available"
        return {"count": count, "capacity": capacity, "free": free, "level": level}

    def _journey(self) -> dict[str, Any] | None:
        """The assigned run's line and headsign (from `journey.assign`)."""
        run = self.journey
        if not isinstance(run, dict):
            return None
        line = run.get("line") or run.get("route_id")
        if not isinstance(line, str):
            return None
        headsign = run.get("headsign")
        return {
            "line": screen_text(line),
            "headsign": screen_text(headsign) if isinstance(headsign, str) else None,
        }

    def _requests_view(self, now: int) -> list[dict[str, Any]]:
        """The latest request per button, while it is recent enough to matter. Each service's
        own "ask" button is a button of its own: its status shows beside it, and a question
        about one service does not hide the status of another or of the general question."""
        latest: dict[tuple[str, str | None], RequestRecord] = {}
        for r in self.requests:
            if now - r.made_ms <= self.config.request_display_s * 1000:
                latest[(r.kind, r.service_id)] = r
        return [
            r.model_dump(mode="json", exclude={"lang"})
            for k in self.buttons
            for (kind, _), r in latest.items()
            if kind == k
        ]

    # -- keeping time -----------------------------------------------------------------

    def _date_services(self) -> None:
        """Give the services their day (`services_ms`) once the node knows the date: sent
        while the clock was unsynced (a Pi at boot on fake-hwclock's saved time, hours or
        days behind), a service with neither start nor until would have been dated that
        day and gone as soon as the clock was set; until then it is shown."""
        if self.schedule.services_ms is not None or not self.schedule.services:
            return
        if self.now()[1] is ClockSource.UNSYNCED:
            return
        self.schedule.services_ms = self._now_ms()
        self._save_schedule()

    def _date_messages(self) -> None:
        """Count the ttl of messages received on an untrusted clock from the first trusted
        look (shown up to the untrusted time longer, never cut short), and cap their
        `expires_at` at a week of the true date."""
        undated = [m for m in self.messages if not m.dated]
        if not undated or self.now()[1] is ClockSource.UNSYNCED:
            return
        now = self._now_ms()
        for m in undated:
            if m.ttl_ms is not None:
                m.expires_ms = now + m.ttl_ms
            else:
                m.expires_ms = min(m.expires_ms, now + MESSAGE_MAX_MS)
            m.dated, m.ttl_ms = True, None
        self._save_messages()

    def expire(self) -> None:
        self._date_services()
        self._date_messages()
        now = self._now_ms()
        kept = [m for m in self.messages if m.expires_ms > now]
        if len(kept) != len(self.messages):
            self.messages = kept
            self._save_messages()

    def now(self) -> tuple[int, ClockSource]:
        """The node's time and the clock it comes from, for the page."""
        return self.host.clock.now()

    async def run(self) -> None:
        """Serve the page, and keep its view fresh alongside."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.tick(), name="kiosk.view")
            tg.create_task(self.server.run(), name="kiosk.http")

    async def tick(self) -> None:
        """Expire messages and notice what changes without telling (the time, each fix)."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.expire()
                self.refresh()
            except Exception:
                self.host.counters.inc("kiosk.error")
                log.exception("kiosk: refreshing the view failed")

    # -- commands from dispatch -------------------------------------------------------

    async def command_schedule(self, args: dict[str, Any]) -> dict[str, Any]:
        """`kiosk.schedule`: each of place, services, stops given replaces that part."""
        new = parse_args(ScheduleArgs, args)
        update = {k: getattr(new, k) for k in new.model_fields_set}
        for part in ("services", "stops"):
            if part in update and update[part] is None:
                update[part] = []  # null clears the list, as [] does
        if "services" in update:
            update["services_ms"] = None  # dated below, or when the clock is known
        self.schedule = self.schedule.model_copy(update=update)
        self._save_schedule()
        self._date_services()
        self.refresh()
        return {
            "place": self.schedule.place is not None,
            "services": len(self.schedule.services),
            "stops": len(self.schedule.stops),
        }

    async def command_message(self, args: dict[str, Any]) -> dict[str, Any]:
        """`kiosk.message`: show or replace an announcement; `{"id", "clear": true}` removes it."""
        now = self._now_ms()
        self.expire()
        if "clear" in args:
            clear = parse_args(ClearArgs, args)
            before = len(self.messages)
            self.messages = [m for m in self.messages if m.id != clear.id]
            self._save_messages()
            self.refresh()
            return {"id": clear.id, "cleared": before - len(self.messages)}
        msg = parse_args(MessageArgs, args)
        # on a clock not trusted yet (a Pi at boot on 1970 or fake-hwclock's saved time,
        # hours or days behind) a ttl counted from it, or the week's cap, ran out as soon
        # as NTP set the clock: such a message is dated again then (`_date_messages`)
        dated = self.now()[1] is not ClockSource.UNSYNCED
        ttl_ms: int | None = None
        if msg.expires_at is not None:
            expires = _ms(msg.expires_at)
            if expires <= now:
                raise CommandError(
                    "bad_args",
                    f"expires_at {msg.expires_at.isoformat()} is already past on the node "
                    f"(node time {_iso(now)}); send a later time or ttl_s",
                )
            if dated:
                expires = min(expires, now + MESSAGE_MAX_MS)
        else:
            ttl_ms = (msg.ttl_s or self.config.message_ttl_s) * 1000
            expires = now + ttl_ms
        msg_id = msg.id or f"m-{secrets.token_hex(4)}"
        others = [m for m in self.messages if (m.id, m.lang) != (msg_id, msg.lang)]
        if len(others) >= self.config.max_messages:
            raise CommandError(
                "too_many",
                f"the kiosk keeps at most {self.config.max_messages} messages; "
                'clear one with {"id": …, "clear": true} or wait for one to expire',
            )
        self.messages = [
            *others,
            Message(
                id=msg_id,
                lang=msg.lang,
                text=msg.text,
                priority=msg.priority,
                expires_ms=expires,
                received_ms=now,
                dated=dated,
                ttl_ms=None if dated else ttl_ms,
            ),
        ]
        self._save_messages()
        self.refresh()
        return {"id": msg_id, "lang": msg.lang, "expires_at": _iso(expires)}

    async def command_ack(self, args: dict[str, Any]) -> dict[str, Any]:
        """`kiosk.ack`: dispatch has a rider request; the screen says "received by dispatch"."""
        ack = parse_args(AckArgs, args)
        record = next((r for r in self.requests if r.request_id == ack.request_id), None)
        if record is None:
            raise CommandError(
                "unknown_request",
                f"no kiosk request {ack.request_id!r} on this node; it keeps the last "
                f"{KEEP_REQUESTS} requests",
            )
        already = record.status == "received"
        if not already:
            record.status = "received"
            record.acked_ms = self._now_ms()
            record.note = ack.note
            self._save_requests()
            self.refresh()
        return {"request_id": record.request_id, "kind": record.kind, "already": already}

    # -- rider requests ---------------------------------------------------------------

    async def ask(self, post: RiderPost, *, wait_s: float = STORE_WAIT_S) -> Asked:
        """Make a rider request: publish it (QoS 1, via the outbox) and wait until it is
        durable, briefly: the page then shows "sent" (or "saved, no network")."""
        if post.kind not in self.buttons:
            raise RequestRefused("not_offered", f"this screen has no {post.kind} button")
        slot: ServiceSlot | None = None
        if post.service_id is not None:
            if post.kind != "service":
                raise RequestRefused("bad_request", "service_id goes with kind service only")
            now = self._now_ms()
            slot = next(
                (
                    s
                    for s in self.schedule.services
                    if s.id == post.service_id and self._open(s, now)
                ),
                None,
            )
            if slot is None:
                raise RequestRefused(
                    "unknown_service", "that service is not in today's schedule any more"
                )
        now = self._now_ms()
        for r in reversed(self.requests):
            if (
                r.kind == post.kind
                and r.service_id == post.service_id
                and r.status != "failed"
                # made "later" than now: the clock stepped back since (a boot on
                # fake-hwclock's saved time); how long ago is unknown, so it is no repeat
                and 0 <= now - r.made_ms < self.config.repeat_after_s * 1000
            ):
                return Asked(r, repeat=True)
        record = RequestRecord(
            request_id=f"k{secrets.token_hex(8)}",
            kind=post.kind,
            service_id=post.service_id,
            service=slot.provider if slot else None,
            lang=post.lang,
            made_ms=now,
            status="saving",
        )
        future = self.host.publish(KIOSK_REQUESTS, self._payload(record))  # may raise: nothing kept
        self.requests = [*self.requests, record][-KEEP_REQUESTS:]
        self._save_requests()  # same commit as the message
        future.add_done_callback(lambda f: self._stored(record, f))
        self.refresh()
        with contextlib.suppress(Exception):  # timed out or refused: `_stored` says which
            async with asyncio.timeout(wait_s):
                await asyncio.shield(future)
        if future.done():
            self._stored(record, future)  # whichever of us runs first settles the status
        return Asked(record, repeat=False)

    def _payload(self, record: RequestRecord) -> KioskRequest:
        where = self._where()
        fix = self.fix
        stop = where["stop"]
        return KioskRequest(
            request_id=record.request_id,
            kind=record.kind,
            service_id=record.service_id,
            service=record.service,
            lang=record.lang,
            mode=self.mode,
            stop=stop["id"] if stop else None,
            stop_name=stop["name"] if stop else None,
            lat=round(fix.lat, 5) if fix else None,
            lon=round(fix.lon, 5) if fix else None,
            fix_time=fix.fix_time if fix else None,
            fix_lost=where["fix"] != "ok",
        )

    def _stored(self, record: RequestRecord, future: "asyncio.Future[PutResult]") -> None:
        if record.status != "saving" or future.cancelled():
            return
        if future.exception() is not None:
            record.status = "failed"
            self.host.counters.inc("kiosk.request_failed")
            log.error(
                "kiosk: a %s request could not be stored: %s", record.kind, future.exception()
            )
        else:
            record.status = "sent"
        self._save_requests()
        self.refresh()


_PRIORITY_ORDER = {"urgent": 0, "important": 1, "info": 2}


def _ms(t: Any) -> int:
    return int(t.timestamp() * 1000)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)

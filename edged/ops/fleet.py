"""What dispatch knows about the fleet, built only from the MQTT messages it receives.

`FleetView.ingest(topic, payload)` takes every message under `{prefix}/#` and keeps the
latest state, position, health, occupancy and alarms of each node. Anyone can publish on a
broker, so every payload is treated as hostile: a message that is not the JSON the contract
promises is counted and dropped, and nothing in it can raise, grow memory without bound or
put terminal escape codes on the operator's screen.
"""

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edged.codec import PayloadError, messages
from edged.config.base import NAME_PATTERN
from edged.ops.screen import printable
from edged.topics import COMMAND_NAME, levels, name_of

log = logging.getLogger(__name__)

NAME = re.compile(NAME_PATTERN)

CONTRACT_TOPICS = frozenset(
    {
        "state",
        "position",
        "occupancy",
        "vehicle",
        "vehicle/faults",
        "trip",
        "journey",
        "events/tap",
        "events/door",
        "events/geofence",
        "alarm",
        "kiosk/requests",
        "health",
        "health/beat",
    }
)
"""Outgoing topics of the MQTT contract (DESIGN.md); `reply/{name}` is matched separately."""

MAX_PAYLOAD = 256 * 1024
MAX_BATCH = 1000
MAX_TEXT = 120
MAX_TOPICS_PER_NODE = 64
MAX_ALARMS_PER_NODE = 32
MAX_DRIVERS = 32
MAX_ERRORS = 64
MAX_FAULTS = 16
MAX_ECUS = 256  # J1939 source addresses: the lamps of a `vehicle/faults` looked at
MAX_SPLITS = 100_000
MAX_TOPIC_TAIL = 2 * (63 + 1) + len("reply/") + 4 * 32 + 3
"""The longest a contract topic runs after `{prefix}/`: a fleet and a node of 63 characters
(NAME_PATTERN), then `alarm/` or `reply/` and a command name of four 32-character words
(COMMAND_NAME). A node may write longer ones (`events/{kind}`, 64 KiB): never remembered."""
OTHER = "(other)"


# -- small, strict readers: wrong types become None, never an exception ---------------------


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A string safe to print (`edged.ops.screen.printable`), bounded length."""
    if not isinstance(value, str):
        return None
    return printable(value[:limit])


def _num(value: Any, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    cls = type(value)
    if cls is float:  # what JSON and CBOR give: the common case first, the same checks
        number: float = value
    elif cls is bool or not isinstance(value, int | float):
        return None
    else:
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            return None
    if not lo <= number <= hi or not math.isfinite(number):  # NaN fails the first
        return None
    return number


def _int(value: Any, lo: int = 0, hi: int = 2**63) -> int | None:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        return None
    return value if lo <= value <= hi else None


def _names(value: Any, most: int = 8) -> tuple[str, ...]:
    """A list of short names (a node's `doubt`), safe to print; anything else is none."""
    if not isinstance(value, list):
        return ()
    names = (_text(v, 40) for v in value[:most])
    return tuple(n for n in names if n)


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _obj(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def _time_ms(value: Any) -> int | None:
    """An ISO 8601 time (as pydantic writes datetimes) to UTC milliseconds."""
    text = _text(value, 64)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # a naive time could be anything; better no age than a wrong one
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return None


def trusted_ts(body: Mapping[str, Any]) -> int | None:
    """The envelope `ts` when a synced clock stamped it: a Pi without a real-time clock that
    has neither GPS nor NTP yet stamps `unsynced` times that can be days or years off."""
    if body.get("clock") not in ("ntp", "gps"):
        return None
    return _int(body.get("ts"), 1)


# -- what the view keeps per node ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a message stands in its stream (`ts`, `seq`, `epoch` of its envelope)."""

    ts: int | None
    seq: int | None
    epoch: str | None


@dataclass(slots=True)
class Position:
    lat: float
    lon: float
    speed_ms: float | None
    course: float | None
    odometer_m: float | None
    satellites: int | None
    hdop: float | None
    fix_ms: int | None
    """The receiver's fix time, else a trusted `ts`: what the fix age is measured from."""
    ts: int | None
    seq: int | None
    epoch: str | None = None

    @property
    def speed_kmh(self) -> float | None:
        return None if self.speed_ms is None else self.speed_ms * 3.6


@dataclass
class DriverState:
    name: str
    state: str
    restarts: int
    last_error: str | None


@dataclass
class ListsInfo:
    """The access lists a node reports (`health.access`): how old they are."""

    version: int
    issued: int | None  # UTC ms, signed by dispatch
    expires: int | None
    held_s: int | None
    expired: bool  # the node proved them past `expires`


@dataclass
class HealthInfo:
    uptime_s: float | None
    rss_mb: float | None
    cpu_pct: float | None
    loop_lag_ms: float | None
    clock: str | None
    connected: bool | None
    reconnects: int | None
    outbox_depth: int | None
    outbox_oldest_age_s: float | None
    drivers: list[DriverState]
    errors: dict[str, int]
    lists: ListsInfo | None = None


@dataclass
class Occupancy:
    count: int
    capacity: int | None
    percent: float | None
    status: str | None
    doubt: tuple[str, ...] = ()
    """The findings that make the node doubt its count (`doubt`); empty: none said."""


@dataclass
class AlarmInfo:
    kind: str
    active: bool
    reason: str
    ts: int | None
    alarm_id: str | None = None
    raised_at: int | None = None
    acked_by: str | None = None


@dataclass
class FaultInfo:
    source: int
    spn: int
    fmi: int


@dataclass
class Faults:
    """Active J1939 trouble codes (the first MAX_FAULTS) and whether a red or amber lamp is on."""

    codes: list[FaultInfo]
    count: int
    red: bool
    amber: bool


@dataclass
class JourneyInfo:
    """The node's `journey` topic: its mode and the run it is on (GTFS ids), all bounded text."""

    mode: str | None
    assigned: bool
    route_id: str | None = None
    trip_id: str | None = None
    start_date: str | None = None
    start_time: str | None = None
    direction_id: int | None = None
    schedule_relationship: str | None = None
    line: str | None = None
    headsign: str | None = None


@dataclass
class NodeView:
    fleet: str
    node: str
    state: str | None = None
    """`online`, `offline`, or None before any `state` message was seen."""
    version: str | None = None
    profile: str | None = None
    name: str | None = None
    config_hash: str | None = None
    drivers: list[str] = field(default_factory=list)
    since: int | None = None
    birth: Mark | None = None
    """The envelope of the birth shown (`_state`): a late will is older than it."""
    state_changed_at: float | None = None
    position: Position | None = None
    positions: int = 0
    health: HealthInfo | None = None
    occupancy: Occupancy | None = None
    alarms: dict[str, AlarmInfo] = field(default_factory=dict)
    faults: Faults | None = None
    journey: JourneyInfo | None = None
    changed: int = 0
    """`FleetView.version` when this node last changed: what changed since a given moment."""
    messages: Counter[str] = field(default_factory=Counter)
    last_received: float | None = None
    last_ts: int | None = None
    """Newest trusted `ts` seen: for retained messages it says how old the news is."""
    marks: dict[str, Mark] = field(default_factory=dict)
    """The envelope of the message each state shown came from (`_ORDERED` topics)."""

    @property
    def key(self) -> str:
        return f"{self.fleet}/{self.node}"

    @property
    def active_alarms(self) -> list[AlarmInfo]:
        return [a for a in self.alarms.values() if a.active]

    @property
    def outbox_depth(self) -> int | None:
        return None if self.health is None else self.health.outbox_depth

    def lists_age_s(self, now: float) -> float | None:
        """How old the node's access lists are: from the `issued` dispatch signed, on this
        machine's clock; without it, the time the node says it has held them."""
        lists = None if self.health is None else self.health.lists
        if lists is None:
            return None
        if lists.issued is not None:
            return max(0.0, now - lists.issued / 1000)
        return None if lists.held_s is None else float(lists.held_s)

    def lists_expired(self, now: float) -> bool:
        """Past their `expires`, as the node proved it or as this machine's clock says (a
        node without a clock, or off for weeks, may not know yet)."""
        lists = None if self.health is None else self.health.lists
        if lists is None:
            return False
        return lists.expired or (lists.expires is not None and now * 1000 > lists.expires)

    def fix_age_s(self, now: float) -> float | None:
        if self.position is None or self.position.fix_ms is None:
            return None
        return max(0.0, now - self.position.fix_ms / 1000)

    def last_seen_age_s(self, now: float) -> float | None:
        """Age of the newest news from the node: its own `ts` when known, else receipt time."""
        if self.last_ts is not None:
            return max(0.0, now - self.last_ts / 1000)
        if self.last_received is not None:
            return max(0.0, now - self.last_received)
        return None


def _lists(access: Mapping[str, Any] | None) -> ListsInfo | None:
    version = None if access is None else _int(access.get("version"))
    if access is None or version is None:
        return None
    return ListsInfo(
        version=version,
        issued=_int(access.get("issued")),
        expires=_int(access.get("expires")),
        held_s=_int(access.get("held_s")),
        expired=access.get("expired") is True,
    )


# -- the view --------------------------------------------------------------------------------


class FleetView:
    """Per-node state from `(topic, payload)` messages under one prefix; hostile input ignored."""

    def __init__(
        self, prefix: str, *, clock: Callable[[], float] = time.time, max_nodes: int = 10_000
    ) -> None:
        self.prefix = prefix.strip("/")
        self.clock = clock
        self.max_nodes = max_nodes
        self.nodes: dict[str, NodeView] = {}
        self.received = 0
        """Every message handed to `ingest`."""
        self.accepted = 0
        self.ignored = 0
        """Messages on topics that are not a node's output (commands, other prefixes, junk)."""
        self.rejected = 0
        """Messages on a contract topic whose payload is not what the contract says."""
        self.internal_errors = 0
        self.version = 0
        """Counts accepted messages; each node keeps the value of its last change."""
        self._splits: dict[str, tuple[str, str, str] | None] = {}

    def node(self, fleet: str, node: str) -> NodeView | None:
        return self.nodes.get(f"{fleet}/{node}")

    def sorted_nodes(self) -> list[NodeView]:
        return [self.nodes[k] for k in sorted(self.nodes)]

    def ingest(self, topic: str, payload: bytes | bytearray | str | None) -> bool:
        """Take one received message; True when it changed or counted towards a node."""
        self.received += 1
        try:
            parsed = self._split(topic)
            if parsed is None:
                self.ignored += 1
                return False
            fleet, node, suffix = parsed
            bodies = self._decode(payload)
            if bodies is None:
                self.rejected += 1
                return False
            key = f"{fleet}/{node}"
            view = self.nodes.get(key)
            if view is None:
                if len(self.nodes) >= self.max_nodes:
                    self.ignored += 1
                    return False
                view = NodeView(fleet, node)
            read = []
            for body in bodies:  # a batch: each message as if it had come alone
                if self._apply(view, suffix, body):
                    read.append(body)
                else:
                    self.rejected += 1
            if not read:
                return False
        except Exception:  # a bug of ours must not end a watch; the tests assert it never happens
            log.exception("could not read a message on %r", topic[:200])
            self.rejected += 1
            self.internal_errors += 1
            return False
        self.nodes[key] = view
        self.accepted += 1
        self.version += 1
        view.changed = self.version
        view.last_received = self.clock()
        for body in read:
            ts = trusted_ts(body)
            if ts is not None and (view.last_ts is None or ts > view.last_ts):
                view.last_ts = ts
        counter = (
            suffix if suffix in view.messages or len(view.messages) < MAX_TOPICS_PER_NODE else OTHER
        )
        view.messages[counter] += 1
        return True

    def node_key(self, topic: str) -> str | None:
        """`fleet/node` of a topic in this view's contract, else None."""
        parsed = self._split(topic)
        return None if parsed is None else f"{parsed[0]}/{parsed[1]}"

    def _split(self, topic: Any) -> tuple[str, str, str] | None:
        """`(fleet, node, suffix)` of a contract topic; remembered per topic (a fleet uses
        a few per node), in a cache emptied when full so no flood of names can grow it, of
        names no longer than a contract topic can be."""
        if not isinstance(topic, str) or len(topic) > len(self.prefix) + 1 + MAX_TOPIC_TAIL:
            return None  # no contract topic is this long: not worth remembering
        cache = self._splits
        if topic in cache:
            return cache[topic]
        if len(cache) >= MAX_SPLITS:
            cache.clear()
        found = cache[topic] = self._split_uncached(topic)
        return found

    def _split_uncached(self, topic: str) -> tuple[str, str, str] | None:
        if not topic.startswith(self.prefix + "/"):
            return None
        parts = topic[len(self.prefix) + 1 :].split("/", 2)
        if len(parts) != 3:
            return None
        fleet, node, suffix = parts
        if not NAME.fullmatch(fleet) or not NAME.fullmatch(node):
            return None
        if suffix in CONTRACT_TOPICS:
            return fleet, node, suffix
        if suffix.startswith("alarm/") and COMMAND_NAME.fullmatch(suffix[len("alarm/") :]):
            return fleet, node, "alarm"  # one retained topic per kind, one handler
        if suffix.startswith("reply/"):  # `reply/a/b`, or an older node's `reply/a.b`
            name = name_of(suffix[len("reply/") :])
            if name is not None:
                return fleet, node, f"reply/{levels(name)}"
        return None  # cmd/* is input to the node, anything else is not in the contract

    @staticmethod
    def _decode(payload: Any) -> list[Mapping[str, Any]] | None:
        """The message(s) of a payload in any encoding (`edged.codec`), a batch's each."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "replace")
        if not isinstance(payload, bytes | bytearray) or not payload:
            return None  # empty: a retained message being cleared, nothing to show
        if len(payload) > MAX_PAYLOAD:
            return None
        try:
            items = messages(payload, MAX_PAYLOAD)
        except PayloadError:  # not JSON, CBOR or deflate; damaged, hostile, too large
            return None
        bodies = [body for item in items[:MAX_BATCH] if (body := _obj(item)) is not None]
        return bodies if bodies and len(bodies) == len(items) else None

    def _apply(self, view: NodeView, suffix: str, body: Mapping[str, Any]) -> bool:
        handler = _HANDLERS.get(suffix)
        if handler is None:
            return True
        if suffix not in _ORDERED:
            return handler(self, view, body)
        key = suffix if suffix != "alarm" else f"alarm/{_text(body.get('kind'), 64)}"
        mark = Mark(_int(body.get("ts"), 1), _int(body.get("seq")), _text(body.get("epoch")))
        if _older(mark.ts, mark.seq, mark.epoch, view.marks.get(key)):
            return True  # sent after a newer one (a replay, a refusal): not what is now
        if not handler(self, view, body):
            return False
        view.marks[key] = mark
        return True

    # -- per topic: return False when the payload is unusable -------------------------------

    def _state(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        state = body.get("state")
        if state not in ("online", "offline"):
            return False
        since = _int(body.get("since"), 1)
        mark = Mark(_int(body.get("ts"), 1), _int(body.get("seq")), _text(body.get("epoch")))
        earlier = since is not None and view.since is not None and since < view.since
        # the will of an earlier session, after this one's birth (a cluster): sent before that
        # birth too. `since` alone is the node's clock, which NTP may step back: the `offline`
        # said at a stop after such a step, or the will of a connection that kept the birth
        # before it (`will_delay_s`), has an earlier `since` and is real
        sent_before = _older(mark.ts, mark.seq, mark.epoch, view.birth)
        if state == "offline" and view.state == "online" and earlier and sent_before:
            return True
        if state != view.state:
            view.state_changed_at = self.clock()
        view.state = state
        view.since = _int(body.get("since"), 1) or view.since
        if state == "online":  # the will says only "offline": keep what the birth told
            view.birth = mark
            view.version = _text(body.get("version"), 40)
            view.profile = _text(body.get("profile"), 40)
            view.name = _text(body.get("name"))
            view.config_hash = _text(body.get("config_hash"), 64)
            drivers = body.get("drivers")
            view.drivers = (
                [t for d in drivers[:MAX_DRIVERS] if (t := _text(d, 80)) is not None]
                if isinstance(drivers, list)
                else []
            )
        return True

    def _position(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        lat = _num(body.get("lat"), -90, 90)
        lon = _num(body.get("lon"), -180, 180)
        if lat is None or lon is None:
            return False
        ts, seq = _int(body.get("ts"), 1), _int(body.get("seq"))
        epoch = _text(body.get("epoch"))
        # a fix whose day the receiver never gave (no RMC or ZDA yet) has a guessed date:
        # only the envelope's trusted time says when it was
        guessed = body.get("date_unknown") is True
        fix_ms = (None if guessed else _time_ms(body.get("fix_time"))) or trusted_ts(body)
        view.positions += 1
        if _older(ts, seq, epoch, view.position):
            return True  # a replayed fix from the outbox: counted, but not the latest position
        if body.get("suspect") is not None:
            # the node does not believe it (a spoofer's stop, a frozen receiver's last place):
            # counted, but the last believed position stands, in the view and in the feed
            return True
        satellites = _int(body.get("satellites"), 0, 1000)
        view.position = Position(
            lat=lat,
            lon=lon,
            speed_ms=_num(body.get("speed"), 0, 1000),
            course=_num(body.get("course"), 0, 360),
            odometer_m=_num(body.get("odometer_m"), 0),
            satellites=satellites,
            hdop=_num(body.get("hdop"), 0),
            fix_ms=fix_ms,
            ts=ts,
            seq=seq,
            epoch=epoch,
        )
        return True

    def _health(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        outbox = _obj(body.get("outbox")) or {}
        drivers_raw = body.get("drivers")
        drivers: list[DriverState] = []
        if isinstance(drivers_raw, list):
            for d in drivers_raw[:MAX_DRIVERS]:
                d = _obj(d)
                name = _text(d.get("name"), 64) if d else None
                state = _text(d.get("state"), 32) if d else None
                if d is None or name is None or state is None:
                    continue
                drivers.append(
                    DriverState(
                        name, state, _int(d.get("restarts")) or 0, _text(d.get("last_error"))
                    )
                )
        errors_raw = _obj(body.get("errors")) or {}
        errors: dict[str, int] = {}
        for k, v in list(errors_raw.items())[:MAX_ERRORS]:
            n, name = _int(v), _text(k, 64)
            if n is not None and name is not None:
                errors[name] = n
        view.health = HealthInfo(
            uptime_s=_num(body.get("uptime_s"), 0),
            rss_mb=_num(body.get("rss_mb"), 0),
            cpu_pct=_num(body.get("cpu_pct"), 0),
            loop_lag_ms=_num(body.get("loop_lag_ms"), 0),
            clock=_text(body.get("clock"), 16),
            connected=_bool(body.get("connected")),
            reconnects=_int(body.get("reconnects")),
            outbox_depth=_int(outbox.get("depth")),
            outbox_oldest_age_s=_num(outbox.get("oldest_age_s"), 0),
            drivers=drivers,
            errors=errors,
            lists=_lists(_obj(body.get("access"))),
        )
        return True

    def _occupancy(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        count = _int(body.get("count"), 0, 1_000_000)
        if count is None:
            return False
        status = body.get("status", body.get("occupancy_status"))
        view.occupancy = Occupancy(
            count=count,
            capacity=_int(body.get("capacity"), 1, 1_000_000),
            percent=_num(body.get("percent"), 0, 1000),
            status=_text(status, 40),
            doubt=_names(body.get("doubt")),
        )
        return True

    def _alarm(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        kind = _text(body.get("kind"), 64)
        active = _bool(body.get("active"))
        if not kind or active is None:
            return False
        if kind not in view.alarms and len(view.alarms) >= MAX_ALARMS_PER_NODE:
            return False
        details = _obj(body.get("details")) or {}
        view.alarms[kind] = AlarmInfo(
            kind,
            active,
            _text(body.get("reason")) or "",
            _int(body.get("ts"), 1),
            alarm_id=_text(details.get("alarm_id"), 64),
            raised_at=_int(details.get("raised_at"), 1),
            acked_by=_text(details.get("acked_by"), 64),
        )
        return True

    def _faults(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        active, lamps = body.get("active"), body.get("lamps")
        if not isinstance(active, list) or not isinstance(lamps, list):
            return False
        codes = [
            FaultInfo(source, spn, fmi)
            for raw in active[:MAX_FAULTS]
            if (c := _obj(raw)) is not None
            and (source := _int(c.get("source"), 0, 255)) is not None
            and (spn := _int(c.get("spn"), 0, 2**19)) is not None
            and (fmi := _int(c.get("fmi"), 0, 31)) is not None
        ]
        # every ECU's lamps count (each sends its DM1, faults or none): a truck has more than
        # MAX_FAULTS of them; the 256 source addresses bound a hostile list
        lit = [lamp for lamp in lamps[:MAX_ECUS] if isinstance(lamp, dict)]
        view.faults = Faults(
            codes=codes,
            count=len(active) + (_int(body.get("omitted"), 0, 2**20) or 0),
            red=any(_int(lamp.get("red_stop")) == 1 for lamp in lit),
            amber=any(_int(lamp.get("amber_warning")) == 1 for lamp in lit),
        )
        return True

    def _journey(self, view: NodeView, body: Mapping[str, Any]) -> bool:
        assigned = _bool(body.get("assigned"))
        if assigned is None:
            return False
        relationship = body.get("schedule_relationship")
        view.journey = JourneyInfo(
            mode=_text(body.get("mode"), 40),
            assigned=assigned,
            route_id=_text(body.get("route_id"), 128) if assigned else None,
            trip_id=_text(body.get("trip_id"), 128) if assigned else None,
            start_date=_text(body.get("start_date"), 8) if assigned else None,
            start_time=_text(body.get("start_time"), 8) if assigned else None,
            direction_id=_int(body.get("direction_id"), 0, 1) if assigned else None,
            schedule_relationship=(
                relationship if assigned and relationship in ("SCHEDULED", "ADDED") else None
            ),
            line=_text(body.get("line"), 40) if assigned else None,
            headsign=_text(body.get("headsign"), 80) if assigned else None,
        )
        return True


def _older(
    ts: int | None, seq: int | None, epoch: str | None, current: "Position | Mark | None"
) -> bool:
    """A replay keeps its original `epoch`, `seq` and `ts`. Within one epoch `seq` orders
    (a clock step moves `ts`, not `seq`); across epochs both must be behind to call it
    older (a node whose counters were lost may count `seq` again from lower)."""
    if current is None or current.ts is None or current.seq is None:
        return False
    if ts is None or seq is None:
        return False
    if epoch is not None and epoch == current.epoch:
        return seq < current.seq
    return seq < current.seq and ts < current.ts


_ORDERED = frozenset({"health", "occupancy", "alarm", "vehicle/faults", "journey"})
"""Topics whose state a message older than the one shown must not replace: a node sends a
retained topic's older message after a newer one without the retain flag (docs/topics.md),
and replays keep their envelope. Not `state` (the will is stamped when the session began,
before the birth it ends) nor `position` (its own check: `_position`)."""

_Handler = Callable[[FleetView, NodeView, Mapping[str, Any]], bool]
_HANDLERS: dict[str, _Handler] = {
    "state": FleetView._state,
    "position": FleetView._position,
    "health": FleetView._health,
    "occupancy": FleetView._occupancy,
    "alarm": FleetView._alarm,
    "vehicle/faults": FleetView._faults,
    "journey": FleetView._journey,
}

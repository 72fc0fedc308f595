"""Every MQTT topic edged uses, in one table, and the one place that builds topic strings.

A publication can only be made from a `TopicSpec` in `TOPICS`, so this table is the
complete list of what a node can publish; a test checks it against `docs/topics.md`.
"""

import re
from dataclasses import dataclass
from enum import IntEnum

from pydantic import BaseModel

from edged import payloads as p
from edged.kiosk.payloads import KioskRequest
from edged.payloads import UpdateStatus


class Priority(IntEnum):
    """Outbox classes, highest first: what leaves first when the link comes back."""

    ALARM = 0
    EVENT = 1
    STATE = 2
    TRIP = 3
    SAMPLE = 4
    HEALTH = 5


@dataclass(frozen=True)
class TopicSpec:
    name: str  # topic under the node base; "{name}" marks a per-command level
    body: type[BaseModel]
    priority: Priority | None  # None: published by the uplink itself, not via the outbox
    qos: int
    retain: bool
    latest_only: bool = False  # the outbox keeps only the newest unsent message of a topic
    journal: bool = False  # in the tap journal before the caller acts (edged.outbox.journal)
    version: int = 1
    direction: str = "out"

    def suffix(self, name: str | None = None) -> str:
        """The topic under the node base; on an outgoing topic a dotted `{name}` is written
        with `/` (`reply/config/get`): some brokers rewrite dots, none rewrites slashes."""
        if "{name}" in self.name:
            if name is None or not (COMMAND_NAME.fullmatch(name) or name == INVALID_COMMAND):
                raise ValueError(f"{self.name} needs a valid command name, got {name!r}")
            return self.name.replace("{name}", name if self.direction == "in" else levels(name))
        return self.name


COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,31}){0,3}")
INVALID_COMMAND = "_invalid"
"""Replies to commands whose name is not a valid command name go to `reply/_invalid`."""


UNKNOWN_COMMANDS_STREAM = "reply/_unknown"
"""The one `seq` counter of the replies to commands the node does not know: each keeps its
topic (`reply/{name}`), but a name anyone allowed on `cmd/#` makes up must not add a counter
the node writes to disk, and into every commit's seq marks, for ever (a script that sends
`cmd/x1`, `cmd/x2`... grew the outbox's `streams`, the state store's `seqs` and memory by one
each, and past ~500 names the full-disk seq marks gave up)."""


def levels(name: str) -> str:
    """A dotted name as topic levels: `config.get` -> `config/get`."""
    return name.replace(".", "/")


def name_of(levels_or_dots: str) -> str | None:
    """The command name a topic tail spells, `config/get` or `config.get`; None if invalid."""
    name = levels_or_dots.replace("/", ".")
    return name if COMMAND_NAME.fullmatch(name) else None


STATE = TopicSpec("state", p.State, None, qos=1, retain=True)
POSITION = TopicSpec("position", p.Position, Priority.SAMPLE, qos=0, retain=False)
# {name}: the kind; journaled: a panic pressed just before a power cut is not lost
ALARM = TopicSpec("alarm/{name}", p.Alarm, Priority.ALARM, qos=1, retain=True, journal=True)
OCCUPANCY = TopicSpec(
    "occupancy", p.Occupancy, Priority.STATE, qos=1, retain=True, latest_only=True
)
TAP = TopicSpec("events/tap", p.TapEvent, Priority.EVENT, qos=1, retain=False, journal=True)
DOOR = TopicSpec("events/door", p.DoorEvent, Priority.EVENT, qos=1, retain=False)
GEOFENCE = TopicSpec("events/geofence", p.GeofenceEvent, Priority.EVENT, qos=1, retain=False)
FIX = TopicSpec("events/fix", p.FixEvent, Priority.EVENT, qos=1, retain=False)
VEHICLE = TopicSpec("vehicle", p.Vehicle, Priority.SAMPLE, qos=0, retain=False)
FAULTS = TopicSpec("vehicle/faults", p.Faults, Priority.STATE, qos=1, retain=True, latest_only=True)
TRIP = TopicSpec("trip", p.Trip, Priority.TRIP, qos=1, retain=False)
HEALTH = TopicSpec("health", p.Health, Priority.HEALTH, qos=0, retain=True, latest_only=True)
HEALTH_BEAT = TopicSpec(
    "health/beat", p.HealthBeat, Priority.HEALTH, qos=0, retain=False, latest_only=True
)
JOURNEY = TopicSpec("journey", p.Journey, Priority.STATE, qos=1, retain=True, latest_only=True)
KIOSK_REQUESTS = TopicSpec("kiosk/requests", KioskRequest, Priority.EVENT, qos=1, retain=False)
UPDATE = TopicSpec("update", UpdateStatus, Priority.STATE, qos=1, retain=True, latest_only=True)
REPLY = TopicSpec("reply/{name}", p.Reply, Priority.EVENT, qos=1, retain=False)
COMMAND = TopicSpec("cmd/{name}", p.Command, None, qos=1, retain=False, direction="in")

URGENT_ALARMS = frozenset({"panic"})
"""Alarms a person raised: one waiting unsent cuts the uplink's reconnect backoff short
(`edged.uplink.client.ALARM_RETRY_S`). Not the node's own (`outbox_full`, `outbox_lost`):
a broker down for days raises them on a whole fleet at once, which would then try it every
few seconds, each attempt a TCP (or TLS) handshake on every SIM."""


def urgent(priority: int, topic: str) -> bool:
    """Whether a message of this class on this (whole) topic is an URGENT_ALARMS alarm."""
    return priority == Priority.ALARM and topic.rsplit("/", 1)[-1] in URGENT_ALARMS


COPY_FROM = "node"
"""MQTT 5 user property on each copy of a reply on a commander's response topic: the base
(`{prefix}/{fleet}/{node}`) of the node that wrote it. Every node may write the response
topics (`{prefix}/{fleet}/_replies/+`), and whoever may write `cmd/` can make any node answer
there with the correlation data it saw on another's command: the copy says which node it is
from, so a commander takes only the one it asked (docs/topics.md, `reply/{name}`)."""

TOPICS: dict[str, TopicSpec] = {
    s.name: s
    for s in (
        STATE,
        POSITION,
        ALARM,
        OCCUPANCY,
        TAP,
        DOOR,
        GEOFENCE,
        FIX,
        VEHICLE,
        FAULTS,
        TRIP,
        HEALTH,
        HEALTH_BEAT,
        JOURNEY,
        KIOSK_REQUESTS,
        UPDATE,
        REPLY,
        COMMAND,
    )
}


class Topics:
    """Topic strings of one node: `{prefix}/{fleet}/{node}/...`."""

    def __init__(self, prefix: str, fleet: str, node: str) -> None:
        self.base = f"{prefix}/{fleet}/{node}"
        self._head = f"{self.base}/"
        # the base as a broker that rewrites `.` to `/` delivers it (a dotted prefix)
        self._heads = tuple(dict.fromkeys((f"{self.base}/cmd/", f"{levels(self.base)}/cmd/")))

    def of(self, spec: TopicSpec, name: str | None = None) -> str:
        return f"{self.base}/{spec.suffix(name)}"

    @property
    def commands(self) -> str:
        """Subscription filter for every command to this node."""
        return f"{self.base}/cmd/#"

    def command_name(self, topic: str) -> str | None:
        """What a command topic names, as sent (`config.get` or `config/get`, maybe not a
        valid name at all); None when the topic is not one of our command topics."""
        for head in self._heads:
            if topic.startswith(head):
                return topic[len(head) :]
        return None

    def owns(self, topic: str) -> bool:
        """Whether `topic` is one of this node's (not, say, a commander's response topic)."""
        return topic.startswith(self._head)

    def spec_name(self, topic: str) -> str | None:
        """The `TOPICS` entry one of this node's topics is of (`reply/{name}` for every
        reply), None for another's: a name from the code whatever a commander names, to
        tell kinds of topic apart where a topic itself would be too many (a log's flood key)."""
        if not self.owns(topic):
            return None
        tail = topic[len(self._head) :]
        for name in TOPICS:
            before, braces, _ = name.partition("{name}")
            if tail == name or (braces and tail.startswith(before)):
                return name
        return None

    def command_topic(self, name: str) -> str:
        """The canonical (dotted) topic of a command: what signatures cover, however the
        command was spelled on the way."""
        return self.of(COMMAND, name)

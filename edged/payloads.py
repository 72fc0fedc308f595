"""Payload bodies, one model per topic. `edged schema` prints their JSON Schemas.

Every outgoing payload is one of these plus the envelope (`v`, `epoch`, `seq`, `ts`,
`clock`) that the outbox adds when it stores the message, so the envelope is the same for
every topic.
"""

import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from core.events import CountDoubtName

ERROR_TEXT_MAX = 500
"""Characters of an error said in health: the text can hold what a device, a broker or an
exception put in it, and health carries it in every report until the next error."""


def clip_error(text: str) -> str:
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


ErrorText = Annotated[str, AfterValidator(clip_error)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_null: ClassVar[frozenset[str]] = frozenset()
    """Fields sent as null when unknown; other unknown (None) fields are left out."""

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        for name in self.keep_null:
            data.setdefault(name, None)
        return data


class Envelope(BaseModel):
    """Fields every outgoing payload carries; a replay keeps its original `epoch`, `seq`
    and `ts`, so dispatch de-duplicates on (topic, epoch, seq)."""

    model_config = ConfigDict(defer_build=True)  # `edged schema` only: encode() writes it

    v: int = Field(description="schema version of this topic's payload")
    epoch: str = Field(
        description="16 hex digits, new at every start of the daemon: (epoch, seq) is never "
        "reused, even when the seq counters could not be kept"
    )
    seq: int = Field(description="per-stream counter that survives restarts")
    ts: int = Field(description="UTC milliseconds when the node produced the message")
    clock: Literal["ntp", "gps", "unsynced"] = Field(description="which clock stamped `ts`")


def encode(body: dict[str, Any], *, v: int, epoch: str, seq: int, ts: int, clock: str) -> bytes:
    """The payload bytes: the envelope, then the body's fields."""
    envelope = {"v": v, "epoch": epoch, "seq": seq, "ts": ts, "clock": clock}
    return json.dumps({**envelope, **body}, separators=(",", ":"), ensure_ascii=False).encode()


class DriverStatus(Body):
    name: str
    driver: str
    state: Literal["starting", "running", "backoff", "failed", "stopped"]
    restarts: int = 0
    last_error: ErrorText | None = None


class State(Body):
    state: Literal["online", "offline"]
    version: str | None = None
    profile: str | None = None
    name: str | None = None
    config_hash: str | None = None
    drivers: list[str] | None = None
    encoding: Literal["json", "cbor", "deflate"] | None = Field(
        default=None, description="the fleet's payload encoding (birth only)"
    )
    since: int | None = Field(default=None, description="UTC ms when this MQTT session began")


class Position(Body):
    fix_time: datetime = Field(description="the receiver's own fix time, UTC")
    lat: float
    lon: float
    alt: float | None = None
    speed: float | None = Field(default=None, description="m/s")
    course: float | None = Field(default=None, description="degrees from true north")
    mode: Literal["2D", "3D"]
    quality: int
    satellites: int | None = None
    hdop: float | None = None
    odometer_m: float = Field(description="distance from fixes since the odometer was installed")
    date_unknown: Literal[True] | None = Field(
        default=None,
        description="present when the receiver gave no date yet: fix_time's day is a guess",
    )
    suspect: Literal["jump", "wheels", "frozen"] | None = Field(
        default=None,
        description="present when the node does not believe the fix is where the vehicle "
        "is: jump (farther than a road vehicle goes), wheels (farther than the CAN bus's "
        "wheels went), frozen (the receiver repeats itself while the wheels roll); "
        "geofences, the odometer and trips ignore it",
    )


class Alarm(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    kind: str = Field(description="panic, lone_worker, outbox_full...")
    active: bool
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class OutboxHealth(Body):
    depth: int
    bytes: int
    oldest_age_s: float | None
    in_flight: int
    by_class: dict[str, int]
    thin_level: int
    refused: int = Field(description="events refused at the hard cap since start")
    refused_replies: int = Field(
        default=0, description="command replies refused at the soft cap since start"
    )
    thinned: int = Field(description="samples removed by the thinning rule since start")
    dropped: int = Field(
        default=0,
        description="samples and health reports dropped at the hard cap; samples the disk "
        "refused that a newer one replaced in memory",
    )
    write_errors: int = Field(default=0, description="failed commits since start")
    in_memory: int = Field(
        default=0, description="messages the disk refused, kept in memory until sent"
    )
    read_errors: int = Field(default=0, description="failed reads of the outbox since start")


class MqttHealth(Body):
    protocol: Literal["5", "3.1.1"] = Field(description="MQTT version of the current session")
    fallback: bool = Field(description="3.1.1 because the broker refused MQTT 5")
    mqtt5_retry_in_s: int | None = Field(
        default=None,
        description="on a fallback: seconds until MQTT 5 is tried again (0: at the next "
        "connection); none otherwise",
    )
    session_expiry_s: int | None = Field(
        default=None, description="how long the broker keeps our session (MQTT 5, as granted)"
    )
    session_present: bool | None = Field(
        default=None, description="the broker still had our session at the last connection"
    )
    last_error: ErrorText | None = Field(
        default=None, description="why the last connection was refused or lost, with the remedy"
    )
    tls_resumed: bool | None = Field(
        default=None, description="the last TLS connection resumed a session (no certificates)"
    )
    topic_aliases: int | None = Field(
        default=None, description="MQTT 5 topic aliases the broker allows (0: none)"
    )
    retain: bool = Field(
        default=True,
        description="messages go with the retain flag; false: the broker keeps no retained "
        "messages, and edged publishes without it",
    )


class WifiHealth(Body):
    """The riders' hotspot, in counts only: no address, no name, nothing per phone."""

    clients: int = Field(description="phones on the hotspot now (associated, or seen lately)")
    sessions: int = Field(description="phones that accepted the terms and are online now")
    sessions_today: int = Field(description="acceptances since local midnight")
    rx_bytes: int | None = Field(description="bytes received from phones since the radio came up")
    tx_bytes: int | None = Field(description="bytes sent to phones since the radio came up")
    internet: bool = Field(description="riders can reach the internet through the node now")
    pages: int = Field(description="portal pages open with live updates")


class AccessHealth(Body):
    """The access lists in force and how old they are: a node whose lists dispatch has not
    renewed (offline, or refusing them) lets in cards revoked since."""

    version: int = Field(description="version of the access lists in force (0: none)")
    issued: int | None = Field(
        default=None, description="UTC ms dispatch signed them (absent: the lists do not say)"
    )
    expires: int | None = Field(
        default=None, description="UTC ms dispatch vouches for them until (absent: never)"
    )
    received: int | None = Field(
        default=None, description="UTC ms the node took them, on its clock (`received_clock`)"
    )
    received_clock: Literal["ntp", "gps", "unsynced"] | None = None
    held_s: int = Field(description="how long the node has run with them, at least")
    age_s: int | None = Field(
        default=None, description="since issued, at least (never from a clock that can jump)"
    )
    expired: bool = Field(description="proven past expires: [services.access] expired_lists")


class Health(Body):
    uptime_s: float
    rss_mb: float
    cpu_pct: float
    loop_lag_ms: float = Field(description="worst event-loop lag seen since the last report")
    clock: Literal["ntp", "gps", "unsynced"]
    connected: bool
    reconnects: int
    outbox: OutboxHealth
    drivers: list[DriverStatus]
    errors: dict[str, int] = Field(description="counters per edge, e.g. cmd.bad_json")
    mqtt: MqttHealth | None = None
    wifi: WifiHealth | None = Field(default=None, description="with [wifi] enabled only")
    access: AccessHealth | None = Field(default=None, description="with access enabled only")


class HealthBeat(Body):
    """The short `health/beat`: what moves all the time, between full reports."""

    uptime_s: float
    rss_mb: float
    cpu_pct: float = Field(description="since the previous report, beat or full")
    loop_lag_ms: float = Field(description="worst since the previous report, beat or full")
    depth: int = Field(description="messages in the outbox")
    reconnects: int


class ReplyError(Body):
    model_config = ConfigDict(defer_build=True)  # built on the first command (#19)

    code: str
    message: str


class Reply(Body):
    model_config = ConfigDict(defer_build=True)  # built on the first command (#19)

    keep_null: ClassVar[frozenset[str]] = frozenset({"id"})

    id: str | None = Field(description="the command's id; null when the command had none")
    command: str | None = Field(
        default=None,
        description="the command's name, dotted, as the node answered it (`_invalid` for a "
        "name that is not one): a copy on a response topic says which command it answers",
    )
    ok: bool
    result: Any | None = None
    error: ReplyError | None = None


MAX_COMMAND_TS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
TS_RANGE = "ts_range"


class Command(BaseModel):
    """An incoming command on `cmd/{name}`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # on the first command

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    ts: int | None = Field(
        default=None,
        strict=True,  # a JSON integer: not "17…" (text), 1.7e12, true
        description=f"UTC ms when dispatch sent it, 0 to {MAX_COMMAND_TS}",
    )
    args: dict[str, Any] = Field(default_factory=dict)
    sig: str | None = Field(default=None, max_length=256, description="base64 Ed25519 signature")
    kid: str | None = Field(
        default=None, max_length=64, description="id of the signing key in [security.keys]"
    )

    @field_validator("ts")
    @classmethod
    def _ts_is_a_time(cls, ts: int | None) -> int | None:
        """Any JSON integer parses (10**400 too): one that is no time at all is refused
        here, before anything computes with it (`TS_RANGE`: the router answers `stale`)."""
        if ts is not None and not 0 <= ts <= MAX_COMMAND_TS:
            raise PydanticCustomError(
                TS_RANGE,
                "ts must be UTC milliseconds from 0 to {limit} (the year 9999)",
                {"limit": MAX_COMMAND_TS},
            )
        return ts


class DoorEvent(Body):
    door: str = Field(description="door name from config, e.g. front")
    open: bool
    source: str = Field(default="sensor", description="sensor (a GPIO door contact) or can (DC2)")
    disputed: bool | None = Field(
        default=None,
        description="true: ECUs on the CAN bus disagree on the door, whose state is unknown "
        "until an events/door without it; `open` is the state last published",
    )


class GeofenceEvent(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    geofence: str = Field(description="geofence id")
    name: str = ""
    kind: str = Field(description="stop, market, depot, venue or zone")
    event: Literal["arrive", "depart"]
    dwell_s: float | None = Field(
        default=None, description="time spent inside, on depart (receiver time)"
    )
    lat: float
    lon: float
    fix_time: datetime
    removed: bool | None = Field(
        default=None,
        description="true on the depart from a fence removed (by dispatch or from the config) "
        "while the vehicle was in it",
    )


class FixEvent(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    event: Literal["lost", "regained"]
    after_s: float = Field(description="lost: time since the last valid fix; regained: outage")
    last_fix_time: datetime | None = Field(default=None, description="the last valid fix")
    lat: float | None = None
    lon: float | None = None


class Vehicle(Body):
    """What the CAN bus says about the vehicle; a value the ECU does not give is absent."""

    speed_kmh: float | None = None
    total_distance_km: float | None = None
    fuel_level_pct: float | None = None
    fuel_used_l: float | None = Field(default=None, description="engine total, not per trip")
    engine_rpm: float | None = None
    engine_hours: float | None = None
    ignition: bool | None = Field(default=None, description="inferred from engine speed")
    doors: dict[str, Literal["open", "closed", "unknown"]] = Field(
        default_factory=dict, description="unknown: ECUs on the CAN bus disagree on the door"
    )
    extra: dict[str, float | int | None] = Field(
        default_factory=dict, description="signals added in the config's [services.vehicle.extra]"
    )
    trip_id: str | None = Field(default=None, description="the open trip, if any")


class FaultCode(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    source: int = Field(description="J1939 source address of the ECU")
    spn: int
    fmi: int
    occurrence: int
    cm: int = Field(
        default=0,
        description="SPN conversion method: 0 the J1939-73 version 4 layout the spn is read "
        "with; 1 the ECU uses an older layout (versions 1-3), the spn may be in another order",
    )


class EcuLamps(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    source: int
    malfunction: int
    red_stop: int
    amber_warning: int
    protect: int


class Faults(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    active: list[FaultCode] = Field(description="every active DM1 code, all ECUs")
    lamps: list[EcuLamps] = Field(description="lamp states of each ECU whose DM1 is current")
    silent: list[int] = Field(
        default_factory=list,
        description="source addresses of ECUs whose DM1 stopped coming: their faults are "
        "unknown, not cleared",
    )
    omitted: int | None = Field(
        default=None,
        description="active codes left out of `active` beyond its 256 (lowest source "
        "addresses first); absent when none",
    )


class Trip(Body):
    model_config = ConfigDict(defer_build=True)  # built on first use (#19)

    trip_id: str
    started: datetime
    ended: datetime
    trigger: Literal["ignition", "command", "restart"] = Field(description="what opened the trip")
    distance_km: float
    distance_source: Literal["can", "gps"]
    fuel_l: float
    fuel_source: Literal["can", "estimate"]
    fuel: str = Field(description="fuel kind, e.g. diesel")
    co2e_kg: float = Field(description="fuel_l × the fuel's well-to-wheel factor")
    co2e_factor_kg_per_l: float
    passengers: int | None = Field(default=None, description="boarded during the trip")
    passenger_km: float | None = None
    co2e_g_per_passenger_km: float | None = None


class TapEvent(Body):
    keep_null: ClassVar[frozenset[str]] = frozenset({"profile", "fare_cents"})

    card_ref: str = Field(description="HMAC-SHA256(fleet secret, UID), truncated, hex")
    reader: str = Field(description="the reader's driver name")
    decision: Literal["granted", "denied"]
    reason: str = Field(
        description="ok, booking, staff, provider, exit, unknown_allowed, repeat; denied: "
        "blocked, unknown, expired, not_yet_valid, no_booking, full, clock_unsynced, "
        "out_of_service, lists_expired, together"
    )
    action: Literal["board", "enter", "exit", "checkin", "login", "logout"] | None = None
    profile: str | None = Field(description="the card's profile; null for an unknown card")
    fare_cents: int | None = Field(description="fare charged, euro cents; null: none")
    lists_version: int = Field(description="version of the access lists that decided")
    unlocked: bool = Field(
        default=False,
        description="the lock was pulsed (a granted exit or repeat may be recorded without)",
    )
    validity: Literal["clock", "last_trusted", "undecided"] | None = Field(
        default=None,
        description="how the card's validity dates were read: a trusted clock, the last "
        "trusted time (no synced clock), or not decidable (unsynced_validity decided); "
        "absent: no dates to read",
    )
    lists_expired: bool | None = Field(
        default=None,
        description="true: decided on lists past their signed expires; absent otherwise",
    )


class Occupancy(Body):
    keep_null: ClassVar[frozenset[str]] = frozenset({"capacity", "percent"})

    count: int = Field(ge=0, description="people on board or inside now")
    capacity: int | None = Field(description="from config; null: unknown")
    percent: int | None = Field(description="count/capacity, rounded to percent_step")
    status: str = Field(description="GTFS-Realtime OccupancyStatus name")
    entries: int = Field(description="people in since the last reset")
    exits: int = Field(description="people out since the last reset")
    reset_at: int = Field(description="UTC ms of the last reset")
    doubt: list[CountDoubtName] | None = Field(
        default=None,
        min_length=1,
        description="present when the node doubts its count: the findings of its counting "
        "beams that make it so, while they last (beam_stuck, beam_one_sided, "
        "beam_rests_blocked, beam_silent, door_gate_inverted, door_silent; docs/drivers.md)",
    )


class Journey(Body):
    """What the vehicle does for riders: its operating mode and the run dispatch assigned
    (`journey.assign`), as GTFS identifiers so the fleet's feed can name the trip."""

    mode: str = Field(description="operating mode (`mode.set`): on-demand, school, out-of-service")
    assigned: bool = Field(description="a run is assigned; false after `journey.clear`")
    route_id: str | None = Field(default=None, description="GTFS route_id")
    trip_id: str | None = Field(default=None, description="GTFS trip_id (absent: an ADDED run)")
    start_date: str | None = Field(default=None, description="YYYYMMDD, the service day")
    start_time: str | None = Field(default=None, description="HH:MM:SS, may pass 24:00:00")
    direction_id: int | None = Field(default=None, description="GTFS direction_id, 0 or 1")
    schedule_relationship: Literal["SCHEDULED", "ADDED"] | None = None
    line: str | None = Field(default=None, description="line name as riders know it")
    headsign: str | None = Field(default=None, description="destination shown to riders")
    assigned_at: int | None = Field(default=None, description="UTC ms of the assignment")


# -- `update`: where a node is with a software update ---------------------------------

UpdateState = Literal[
    "idle",
    "downloading",
    "verifying",
    "installing",
    "staged",
    "switching",
    "trial",
    "confirmed",
    "rolled_back",
    "failed",
]


class UpdateStatus(Body):
    state: UpdateState
    running: str = Field(description="the release running now")
    id: str | None = Field(default=None, description="the `update.apply` command's id")
    version: str | None = Field(default=None, description="the release being installed or tried")
    previous: str | None = Field(default=None, description="the fallback release")
    bytes: int | None = Field(default=None, description="downloading: bytes on disk")
    total: int | None = Field(default=None, description="downloading: the bundle's size")
    percent: int | None = None
    rate_bps: int | None = Field(default=None, description="downloading: bytes/s lately")
    waiting_for: list[str] | None = Field(
        default=None, description="staged: what keeps the switch from happening now"
    )
    deadline_s: float | None = Field(default=None, description="trial: seconds to come online")
    code: str | None = Field(default=None, description="failed, rolled_back: machine reason")
    reason: str | None = Field(default=None, description="failed, rolled_back: for a person")

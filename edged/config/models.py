"""The shape of an edged config file. Unknown keys are errors: a typo must not pass silently."""

import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from core.driver import DriverOptions
from core.errors import ConfigError
from core.paths import ConfigPath, PrivateConfigPath
from core.zones import check_zone
from edged.codec import Encoding
from edged.config.base import NAME_PATTERN, Strict
from edged.config.security import ClockConfig, SecurityConfig
from edged.config.services import ServicesConfig
from edged.config.topic_names import reaches_a_node_base, topic_name_problem
from edged.config.update import UpdateConfig
from edged.config.wifi import WifiConfig


class Profile(StrEnum):
    SHUTTLE = "shuttle"
    TRUCK = "truck"
    VENUE = "venue"


class NodeConfig(Strict):
    fleet: str = Field(pattern=NAME_PATTERN, description="fleet id, a topic level")
    id: str = Field(pattern=NAME_PATTERN, description="node id, unique in its fleet")
    profile: Profile
    name: str = Field(default="", max_length=120, description="human name shown to dispatch")
    timezone: str = Field(
        default="Europe/Paris",
        description="IANA zone for local times: validity days, bookings, the daily reset",
        validate_default=True,  # looked up at load too: an image without tzdata has none
    )

    _zone_ok = field_validator("timezone")(check_zone)


class TlsConfig(Strict):
    ca_file: ConfigPath
    cert_file: ConfigPath | None = None
    key_file: PrivateConfigPath | None = None
    resume: bool = Field(
        default=True,
        description="resume the last TLS session at a reconnect (no certificates resent)",
    )
    tickets: bool = Field(
        default=True,
        description="resume with a session ticket (true) or by session id from the broker's "
        "session cache (false, TLS 1.2 only: on Mosquitto a resumed handshake is then ~360 "
        "bytes, not ~940, since its tickets carry the node's certificate; docs/budget.md)",
    )
    max_version: Literal["1.2", "1.3"] = Field(
        default="1.3",
        description="highest TLS version offered; 1.2 resumes in fewer bytes on Mosquitto "
        "(docs/budget.md) but sends the node's certificate in clear at a full handshake",
    )
    min_version: Literal["1.2", "1.3"] = Field(
        default="1.2",
        description='lowest TLS version accepted; "1.3" (a broker with TLS 1.3 only) leaves '
        "the TLS 1.2 suites out of every handshake: 42 bytes less (docs/budget.md)",
    )
    middlebox_compat: bool = Field(
        default=True,
        description="TLS 1.3 middlebox compatibility (a fake session id and change cipher "
        "spec records): false saves 70 bytes a handshake where no middlebox inspects TLS",
    )
    ciphers: str | None = Field(
        default=None,
        max_length=1000,
        description="TLS 1.2 cipher suites, an OpenSSL cipher list of ECDHE suites with an "
        'AEAD (e.g. "ECDHE+CHACHA20" on a Pi without AES instructions); unset: OpenSSL\'s '
        "default. TLS 1.3's suites are not chosen here",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        return self

    @model_validator(mode="after")
    def _versions_in_order(self) -> "TlsConfig":
        if self.min_version == "1.3" and self.max_version == "1.2":
            raise ValueError('min_version "1.3" is above max_version "1.2": no TLS version left')
        if not self.tickets and self.max_version != "1.2":
            raise ValueError(
                "tickets = false resumes by session id, which TLS 1.3 does not have: a 1.3 "
                'handshake would never resume. Set max_version = "1.2" too, or keep tickets'
            )
        if not self.tickets and not self.resume:
            raise ValueError(
                "tickets = false chooses how to resume, and resume = false never "
                "does: remove one of the two"
            )
        if self.ciphers is not None and self.min_version == "1.3":
            raise ValueError(
                'ciphers chooses TLS 1.2 suites, and min_version "1.3" leaves TLS 1.2 out: '
                "remove one of the two"
            )
        return self

    @field_validator("ciphers")
    @classmethod
    def _known_ciphers(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.set_ciphers(value)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"OpenSSL knows no TLS 1.2 cipher suite in {value!r} ({exc}); see "
                '`openssl ciphers -v`, e.g. "ECDHE+CHACHA20" or "ECDHE+AESGCM"'
            ) from None
        tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        if not tls12:
            raise ValueError(f"{value!r} leaves no TLS 1.2 cipher suite")
        weak = [c["name"] for c in tls12 if not c["aead"] or c["kea"] != "kx-ecdhe"]
        if weak:
            raise ValueError(
                f"{value!r} lets in {', '.join(weak[:5])}: only ECDHE suites with an AEAD "
                '(forward secrecy, an authenticated cipher) are taken, e.g. "ECDHE+CHACHA20"'
            )
        return value


class BrokerConfig(Strict):
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    protocol_fallback: bool = Field(
        default=True, description="when the broker refuses MQTT 5, use 3.1.1 (said in health)"
    )
    protocol_retry_s: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="after a fallback to 3.1.1, MQTT 5 is tried again this long after, then "
        "twice as long after each try it still refuses, up to protocol_retry_max_s",
    )
    protocol_retry_max_s: float = Field(
        default=14400.0,
        gt=0,
        le=7 * 86400,
        description="the longest wait between two tries of MQTT 5 after a fallback",
    )
    session_expiry_s: int = Field(
        default=86400,
        ge=0,
        le=2**32 - 1,
        description="how long the broker keeps the node's session (and the commands sent "
        "meanwhile) while it is away; 0: no persistent session",
    )
    response_topic_prefix: str | None = Field(
        default=None,
        description="MQTT 5 response topics accepted only under this topic; unset: any topic "
        "outside every node's base",
    )
    prefix: str = Field(default="rnst/v1", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    client_id: str | None = Field(default=None, max_length=64)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    username: str | None = None
    password_file: PrivateConfigPath | None = None
    tls: TlsConfig | None = None
    window: int = Field(
        default=32, ge=1, le=1000, description="QoS 1 publishes awaiting PUBACK at once"
    )
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)
    publish_timeout_s: float = Field(default=15.0, gt=0, le=300)
    encoding: Encoding = Field(
        default="json",
        description="payloads on the wire: json, cbor or deflate (the same for the whole "
        "fleet; the birth says which, every edged tool reads all three)",
    )
    topic_aliases: bool = Field(
        default=True, description="MQTT 5 topic aliases: each topic name sent once a connection"
    )
    batch_s: float = Field(
        default=0.0,
        ge=0,
        le=600,
        description="a live sample (position, vehicle) waits at most this long to share one "
        "message with the next ones of its topic; 0: it goes at once (a backlog is always "
        "batched)",
    )
    batch_max: int = Field(
        default=50, ge=1, le=1000, description="samples in one message at most; 1: never batch"
    )
    will_delay_s: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="MQTT 5 will delay: the broker says `offline` only this long after the "
        "link is lost, and a node back within it over a resumed TLS session sends no birth "
        "again (docs/budget.md); 0: offline at once, a birth at every connection",
    )

    @model_validator(mode="after")
    def _reconnect_order(self) -> "BrokerConfig":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.protocol_retry_max_s < self.protocol_retry_s:
            raise ValueError("protocol_retry_max_s must be at least protocol_retry_s")
        return self

    @model_validator(mode="after")
    def _will_delay_within_session(self) -> "BrokerConfig":
        if self.will_delay_s > self.session_expiry_s:
            raise ValueError(
                f"will_delay_s ({self.will_delay_s}) is longer than session_expiry_s "
                f"({self.session_expiry_s}): the broker says offline when the session ends, "
                "so the delay cannot be longer"
            )
        return self

    @model_validator(mode="after")
    def _response_prefix_outside_nodes(self) -> "BrokerConfig":
        allowed = self.response_topic_prefix
        if allowed is None:
            return self
        problem = topic_name_problem(allowed)
        if problem is not None:
            raise ValueError(f"response_topic_prefix: {problem}")
        if reaches_a_node_base(allowed, self.prefix):
            raise ValueError(
                f"response_topic_prefix {allowed!r} is on the nodes' topics "
                f"({self.prefix}/{{fleet}}/{{node}}/...): replies there could write on a node's "
                "own topics; use a topic outside them (e.g. ops/replies)"
            )
        return self


MIN_CAP_BYTES = 256 * 1024
"""The byte caps count the outbox's pages on disk, and its empty tables and indexes already
take some 56 KiB: a smaller cap would refuse events from the first one."""


class OutboxConfig(Strict):
    path: ConfigPath = Path("/var/lib/edged/outbox.sqlite")
    max_rows: int = Field(default=200_000, ge=10, description="soft cap: samples thinned above")
    max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=MIN_CAP_BYTES,
        description="soft cap on the files (pages in use and the WAL's bound): samples thinned",
    )
    hard_max_rows: int = Field(default=400_000, ge=10, description="events refused above")
    hard_max_bytes: int = Field(
        default=128 * 1024 * 1024, ge=MIN_CAP_BYTES, description="events refused above"
    )
    alarm_reserve_rows: int = Field(default=1000, ge=1, description="room kept for alarms only")
    flush_interval_ms: int = Field(
        default=20, ge=0, le=5000, description="how long writes gather before one commit"
    )
    state_path: ConfigPath | None = Field(
        default=None,
        description="the state store (access lists, counters' marks…); default: beside "
        "the outbox, named like it with `state` for `outbox` (state.sqlite); a new place is "
        "given the store the node ran with at its next start (edged/outbox/moves.py)",
    )
    live_window_s: float = Field(
        default=30.0, ge=0, le=3600, description="messages younger than this go before older"
    )
    wal_max_bytes: int | None = Field(
        default=None,
        ge=8192,
        description="WAL checkpointed and truncated at this size, counted in the byte caps; "
        "default: a quarter of max_bytes, at most 4 MiB",
    )
    journal_sync: bool = Field(
        default=False,
        description="sync each tap's and alarm's journal record to the disk before the door "
        "opens or the alarm light goes on (survives a power cut, costs the sync in the decision)",
    )

    @model_validator(mode="after")
    def _caps_order(self) -> "OutboxConfig":
        if self.hard_max_rows < self.max_rows:
            raise ValueError("hard_max_rows must be at least max_rows")
        if self.hard_max_bytes < self.max_bytes:
            raise ValueError("hard_max_bytes must be at least max_bytes")
        if Path(self.state_file).absolute() == Path(self.path).absolute():
            raise ValueError(
                "state_path names the outbox's own file: the state store lives apart (a "
                "corrupt outbox set aside keeps the access lists); name another file"
            )
        if self.wal_bytes * 2 > self.max_bytes:
            raise ValueError(
                f"wal_max_bytes ({self.wal_bytes}) must be at most half of max_bytes: the WAL "
                "is counted in the caps"
            )
        return self

    @property
    def wal_bytes(self) -> int:
        """The WAL bound in force (each of the two files has its own)."""
        if self.wal_max_bytes is not None:
            return self.wal_max_bytes
        return min(max(8192, min(4 * 1024 * 1024, self.max_bytes // 4)), self.max_bytes // 2)

    @property
    def state_file(self) -> Path:
        if self.state_path is not None:
            return self.state_path
        path = Path(self.path)
        if "outbox" in path.name:
            return path.with_name(path.name.replace("outbox", "state", 1))
        return path.with_name(f"{path.stem}.state{path.suffix or '.sqlite'}")


class HealthConfig(Strict):
    """When `health` (the full report, retained) and `health/beat` (short) are sent."""

    interval_s: float = Field(
        default=30.0, ge=1, le=3600, description="how often health is looked at"
    )
    beat_s: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="a short `health/beat` this often while nothing worth a full report "
        "changed; 0: a full report every interval_s, as edged did before",
    )
    full_every_s: float = Field(
        default=3600.0, ge=1, le=86400, description="a full report at least this often"
    )
    rss_step_mb: float = Field(
        default=10.0, gt=0, description="resident memory moved this much since the last full"
    )
    depth_above: int = Field(
        default=1000, ge=1, description="the outbox holding more than this (or back under)"
    )
    cpu_above_pct: float = Field(default=80.0, gt=0, description="CPU above this (or back)")
    lag_above_ms: float = Field(
        default=1000.0, gt=0, description="event-loop lag above this (or back under)"
    )


class SupervisorConfig(Strict):
    backoff_initial_s: float = Field(default=1.0, gt=0, le=60)
    backoff_max_s: float = Field(default=60.0, gt=0, le=3600)
    stable_after_s: float = Field(
        default=30.0,
        gt=0,
        description="a driver running this long has its backoff reset: failing, it restarts "
        "at once",
    )


class DriverConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="instance name, shown in health")
    driver: str = Field(description='registry name such as "gps.sim"')
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    """As written in the file; `settings` is what the driver's own model made of them."""
    _settings: DriverOptions | None = PrivateAttr(default=None)

    @property
    def settings(self) -> DriverOptions:
        """The options validated by the driver's own model, once, when the config was
        loaded (`edged.config.loader.with_settings`)."""
        if self._settings is None:
            raise ConfigError(
                f"drivers: {self.name}",
                ["its options were never validated: load the config with edged.config.load_config"],
            )
        return self._settings


class RemoteConfig(Strict):
    rollback_after_s: float = Field(
        default=120,
        ge=5,
        le=3600,
        description="a config from config.set that cannot reach the broker this long is undone",
    )


class EdgedConfig(Strict):
    node: NodeConfig
    broker: BrokerConfig = BrokerConfig()
    outbox: OutboxConfig = OutboxConfig()
    health: HealthConfig = HealthConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    drivers: list[DriverConfig] = Field(default_factory=list)
    services: ServicesConfig = ServicesConfig()
    security: SecurityConfig = SecurityConfig()
    clock: ClockConfig = ClockConfig()
    remote: RemoteConfig = RemoteConfig()
    update: UpdateConfig = UpdateConfig()
    wifi: WifiConfig = WifiConfig()

    @model_validator(mode="after")
    def _unique_driver_names(self) -> "EdgedConfig":
        seen: set[str] = set()
        for d in self.drivers:
            if d.name in seen:
                raise ValueError(f"two drivers are named {d.name!r}: names must be unique")
            seen.add(d.name)
        return self

    @model_validator(mode="after")
    def _portal_is_the_kiosk(self) -> "EdgedConfig":
        """The hotspot's captive portal is the kiosk page: it needs the kiosk service."""
        if self.wifi.enabled and not self.services.kiosk.enabled:
            raise ValueError(
                "[wifi] is enabled but [services.kiosk] is not: the captive portal is the "
                "kiosk page; set services.kiosk.enabled = true"
            )
        kiosk = self.services.kiosk
        on_hotspot = kiosk.host in ("0.0.0.0", "::", str(self.wifi.address.ip))
        if self.wifi.enabled and on_hotspot and kiosk.port == self.wifi.portal.port:
            raise ValueError(
                f"services.kiosk.port and wifi.portal.port are both {kiosk.port} on the "
                "hotspot address; give them different ports"
            )
        return self

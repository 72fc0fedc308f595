"""`[services.kiosk]`: where the kiosk page listens and how much riders may press."""

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.zones import check_zone
from edged.config.base import Strict

Button = Literal["pickup", "mediator", "service"]

BROWSER_POLICY = Path("/etc/chromium/policies/managed/edged-kiosk.json")
"""The screen's Chromium policy install.sh writes (systemd/chromium/edged-kiosk.json)."""
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
"""The address the node's own screen opens a page listening on every address at (the server
binds `::` without IPv4): tools/kiosk_policy.py's, which writes it in the policy."""

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def _host_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(_HOSTNAME.fullmatch(value))
    return True


class KioskConfig(Strict):
    """The kiosk page is for the screen next to the Pi: it listens on loopback by default."""

    enabled: bool = True
    host: str = Field(
        default="127.0.0.1",
        description="address to listen on; 0.0.0.0 only for a screen on another device",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="0: any free port (tests)")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Host header names accepted besides localhost, 127.0.0.1, ::1 and `host`",
    )
    buttons: list[Button] | None = Field(
        default=None,
        description="rider buttons; unset: mediator and service on a shuttle, "
        "pickup too on a truck or venue screen",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone the times are shown in; unset: [node] timezone, the zone of "
        "the node's validity days, bookings and daily reset",
    )
    max_body_bytes: int = Field(default=4096, ge=512, le=65536)
    rate_burst: int = Field(default=3, ge=1, le=100, description="presses at once, per screen")
    rate_per_min: float = Field(default=6.0, gt=0, le=600, description="then per screen")
    global_burst: int = Field(default=10, ge=1, le=1000, description="presses at once, all screens")
    global_per_min: float = Field(default=30.0, gt=0, le=6000)
    repeat_after_s: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="the same button pressed again sooner shows the request already made",
    )
    request_display_s: float = Field(
        default=900.0, ge=10, le=86400, description="how long a request's status stays shown"
    )
    message_ttl_s: int = Field(
        default=86400, ge=10, le=7 * 86400, description="expiry of a message that gives none"
    )
    max_messages: int = Field(default=20, ge=1, le=200)
    max_clients: int = Field(default=8, ge=1, le=100, description="pages connected at once")
    idle_reset_s: float = Field(
        default=120.0, ge=10, le=3600, description="untouched this long: back to French"
    )
    heartbeat_s: float = Field(default=15.0, ge=1, le=120, description="clock sync to the page")
    # -- what one visitor can hold (edged/kiosk/limits.py) --
    max_connections: int = Field(
        default=64, ge=4, le=4096, description="HTTP connections at once, all peers together"
    )
    max_connections_per_peer: int = Field(
        default=8, ge=1, le=1024, description="connections at once from one address"
    )
    max_streams_per_peer: int = Field(
        default=2, ge=1, le=100, description="live pages (/api/events) at once from one address"
    )
    screen_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        max_length=16,
        description="the screens' addresses: one peer's share of connections and live pages "
        "is kept for them, whatever other visitors hold",
    )
    header_timeout_s: float = Field(
        default=10.0,
        ge=1,
        le=120,
        description="a request's head (and body) must arrive this soon after the connection "
        "opens or the last answer; an idle connection is closed after it",
    )
    stream_max_s: float = Field(
        default=600.0,
        ge=30,
        le=86400,
        description="a live page's stream is ended after this; the page reconnects at once",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _host_ok(value):
            raise ValueError(f"{value!r} is not an IP address or host name (no scheme, no port)")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _host_ok(v)]
        if bad:
            raise ValueError(f"not host names (no scheme, no port): {bad}")
        return [v.lower() for v in values]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("screen_addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        out = []
        for v in values:
            try:
                ip = ipaddress.ip_address(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address") from None
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped  # as peers are read (edged.web.gate.peer_of)
            out.append(str(ip))
        return out

    @model_validator(mode="after")
    def _shares(self) -> "KioskConfig":
        if self.max_connections_per_peer >= self.max_connections:
            raise ValueError(
                "max_connections_per_peer must be below max_connections (one peer's share is "
                "kept for the screens)"
            )
        return self

    @field_validator("buttons")
    @classmethod
    def _buttons(cls, values: list[Button] | None) -> list[Button] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError("each button once")
        return values


def screen_origin(kiosk: KioskConfig, port: int | None = None) -> str:
    """`http://host:port` of the page as the node's own screen opens it (the one address the
    screen's browser policy allows); `port`: the one bound, where the config's is 0."""
    host, _ = _screen_host(kiosk)
    return f"http://{host}:{port or kiosk.port}"


def browser_filter(kiosk: KioskConfig) -> str:
    """The screen's browser policy's filter for the page (`URLAllowlist`, Chromium's URL
    filter format): `screen_origin`, a host name with a leading dot, which makes Chromium
    match that host alone: without it `http://kiosk.lan:8080` also allows any
    `*.kiosk.lan:8080` a visitor's DNS or the venue's network could answer."""
    host, is_address = _screen_host(kiosk)
    return f"http://{host if is_address else '.' + host}:{kiosk.port}"


def _screen_host(kiosk: KioskConfig) -> tuple[str, bool]:
    """The host the screen opens the page at, as a URL writes it, and whether it is an
    address (not a name)."""
    host = LOOPBACK.get(kiosk.host, kiosk.host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host, False
    return (f"[{host}]" if address.version == 6 else host), True

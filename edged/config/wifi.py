"""`[wifi]`: the riders' hotspot, its captive portal, and what one phone may take.

Everything `edged wifi apply` writes (the access point, DHCP and DNS, the firewall) and
everything the daemon serves on the hotspot (the portal, the captive DNS) comes from here.
A mistake is named with its key: `wifi.channel: ...`.
"""

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.paths import PrivateConfigPath
from edged.config.base import Strict
from edged.config.wifi_countries import CHANNELS_1_TO_11, COUNTRIES

Security = Literal["open", "wpa2", "wpa3", "wpa2-wpa3"]
Backend = Literal["auto", "networkmanager", "hostapd"]

IFNAME = r"^[A-Za-z0-9_.-]{1,15}$"
"""A Linux interface name: at most 15 bytes, no slash, no space (IFNAMSIZ - 1)."""
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
CHANNELS_24 = range(1, 14)
CHANNELS_5 = (36, 40, 44, 48)
"""5 GHz without radar detection (DFS), which an access point on a Pi does not do; in the
EU these are allowed inside road vehicles (Commission decision 2019/1345)."""
PASSPHRASE_CHARS = re.compile(r"[\x20-\x7e]{8,63}")


def read_passphrase(path: Path) -> str:
    """The passphrase in a secret file: one line of 8 to 63 printable ASCII characters
    (what WPA2 and WPA3-SAE both accept and every backend can carry unescaped)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    text = raw.decode("ascii", errors="replace").removesuffix("\n").removesuffix("\r")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{path} holds more than one line; put the passphrase alone in it")
    if not PASSPHRASE_CHARS.fullmatch(text):
        odd = any(not " " <= ch <= "~" for ch in text)
        raise ValueError(
            f"the passphrase in {path} must be 8 to 63 printable ASCII characters (it has "
            f"{len(text)}{', some of them not printable ASCII' if odd else ''})"
        )
    if text != text.strip(" "):
        raise ValueError(
            f"the passphrase in {path} starts or ends with a space; riders would not type it"
        )
    if "|" in text:
        raise ValueError(
            f"the passphrase in {path} has a '|', which hostapd's WPA3 (sae_password) reads "
            "as a separator; choose one without it"
        )
    return text


class PortalConfig(Strict):
    """What phones may hold of the portal: the kiosk's limits, with the phones' own budget.

    The portal is a second listener of the kiosk: the same page and live state, but its own
    connection limits and press budget, so a hundred phones never take what the on-board
    screen needs (docs/wifi.md)."""

    port: int = Field(
        default=8081, ge=1024, le=65535, description="on the hotspot address; tcp/80 goes to it"
    )
    dns_port: int = Field(
        default=8053,
        ge=1024,
        le=65535,
        description="the captive DNS; udp/53 of phones that have not accepted goes to it",
    )
    name: str | None = Field(
        default=None,
        description="a host name for the portal (its address always works); phones that "
        "accepted resolve it to the hotspot address",
    )
    max_connections: int = Field(default=400, ge=8, le=1500)
    max_connections_per_peer: int = Field(default=8, ge=2, le=64)
    max_pages: int = Field(
        default=150, ge=1, le=1000, description="live pages (/api/events) at once, all phones"
    )
    max_pages_per_peer: int = Field(default=2, ge=1, le=16)
    header_timeout_s: float = Field(default=10.0, ge=1, le=120)
    stream_max_s: float = Field(default=600.0, ge=30, le=86400)
    rate_burst: int = Field(default=3, ge=1, le=100, description="presses at once, per phone")
    rate_per_min: float = Field(default=6.0, gt=0, le=600, description="then per phone")
    global_burst: int = Field(default=20, ge=1, le=1000, description="presses at once, all phones")
    global_per_min: float = Field(default=60.0, gt=0, le=6000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a host name with a dot (like portail.navette.example); "
                "no scheme, no port"
            )
        return value.lower() if value else value

    @model_validator(mode="after")
    def _ports(self) -> "PortalConfig":
        if self.port == self.dns_port:
            raise ValueError("port and dns_port must differ")
        if self.max_connections_per_peer >= self.max_connections:
            raise ValueError("max_connections_per_peer must be below max_connections")
        if self.max_pages_per_peer > self.max_pages:
            raise ValueError("max_pages_per_peer must be at most max_pages")
        return self


class WifiConfig(Strict):
    """The riders' hotspot. Off by default; `edged wifi apply` turns the config into the
    access point, DHCP, DNS and firewall of the machine."""

    enabled: bool = False
    interface: str = Field(default="wlan0", pattern=IFNAME, description="the radio")
    ssid: str | None = Field(default=None, description="the network name phones show")
    security: Security = Field(
        default="open",
        description="open (the portal's terms are the door), wpa2, wpa3 or wpa2-wpa3",
    )
    passphrase_file: PrivateConfigPath | None = Field(
        default=None, description="mode 0600, the passphrase alone on one line (wpa*)"
    )
    country: str | None = Field(
        default=None, description="ISO 3166 code of the regulatory domain, like FR"
    )
    channel: int = Field(default=6, description="2.4 GHz 1-13, or 5 GHz 36, 40, 44, 48")
    max_clients: int = Field(default=10, ge=1, le=128, description="phones at once")
    max_flows: int = Field(
        default=2048,
        ge=64,
        le=4_194_304,
        description="flows all phones together may hold open in the node's connection "
        "table: half a Pi Zero 2 W's; `edged doctor` says what this machine's table has "
        "room for",
    )
    client_mbit: float = Field(
        default=2.0, gt=0, le=1000, description="per phone, each way (Mbit/s)"
    )
    total_mbit: float = Field(
        default=10.0, gt=0, le=10000, description="all phones together, each way (Mbit/s)"
    )
    session_min: int = Field(
        default=120, ge=5, le=1440, description="internet access after accepting, minutes"
    )
    address: ipaddress.IPv4Interface = Field(
        default=ipaddress.IPv4Interface("10.42.0.1/24"),
        description="the node's address on the hotspot, with its prefix",
    )
    uplinks: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="interfaces that carry riders to the internet (wwan0, eth0…); "
        "empty: any interface but the hotspot",
    )
    backend: Backend = Field(
        default="auto",
        description="auto: NetworkManager when it runs (Raspberry Pi OS bookworm), "
        "else hostapd + dnsmasq",
    )
    portal: PortalConfig = PortalConfig()

    @field_validator("ssid")
    @classmethod
    def _ssid(cls, value: str | None) -> str | None:
        if value is None:
            return value
        size = len(value.encode("utf-8"))
        if not 1 <= size <= 32:
            raise ValueError(f"an SSID is 1 to 32 bytes of UTF-8; this one is {size} bytes")
        import unicodedata  # here: its tables are 0.1 MB a node without this text never needs

        for ch in value:
            if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
                raise ValueError(
                    f"the SSID has a control or invisible character U+{ord(ch):04X}; "
                    "riders must see the name they join"
                )
        if value != value.strip():
            raise ValueError("the SSID starts or ends with a space; riders would not see it")
        return value

    @field_validator("passphrase_file")
    @classmethod
    def _passphrase(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_passphrase(value)
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return value
        code = value.upper()
        if code not in COUNTRIES:
            raise ValueError(
                f"{value!r} is not an ISO 3166 country code; use the country the vehicle "
                "runs in, like FR (the radio's channels and power depend on it)"
            )
        return code

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: int) -> int:
        if value in CHANNELS_24 or value in CHANNELS_5:
            return value
        if 52 <= value <= 144:
            raise ValueError(
                f"channel {value} needs radar detection (DFS), which an access point on a Pi "
                "does not do; use 36, 40, 44 or 48 (5 GHz) or 1, 6, 11 (2.4 GHz)"
            )
        raise ValueError(
            f"channel {value} is not one an access point here may use; use 1 to 13 (2.4 GHz, "
            "1, 6 and 11 do not overlap) or 36, 40, 44, 48 (5 GHz)"
        )

    @field_validator("address")
    @classmethod
    def _address(cls, value: ipaddress.IPv4Interface) -> ipaddress.IPv4Interface:
        net = value.network
        if not 16 <= net.prefixlen <= 28:
            raise ValueError(f"use a prefix from /16 to /28 (got /{net.prefixlen})")
        if not net.is_private or net.is_loopback or net.is_link_local:
            raise ValueError(
                f"{net} is not a private network; use one like 10.42.0.1/24 (RFC 1918)"
            )
        if value.ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"{value.ip} is the network's own or broadcast address")
        return value

    @field_validator("uplinks")
    @classmethod
    def _uplinks(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not re.fullmatch(IFNAME, v)]
        if bad:
            raise ValueError(f"not interface names: {bad}")
        if len(set(values)) != len(values):
            raise ValueError("each uplink once")
        return values

    @model_validator(mode="after")
    def _whole(self) -> "WifiConfig":
        if self.total_mbit < self.client_mbit:
            raise ValueError("total_mbit must be at least client_mbit")
        if self.interface in self.uplinks:
            raise ValueError(
                f"{self.interface} is the hotspot's radio and cannot be its uplink too"
            )
        if self.channel in (12, 13) and self.country in CHANNELS_1_TO_11:
            raise ValueError(f"channel {self.channel} is not allowed in {self.country}")
        lo, hi = self.dhcp_range
        room = int(hi) - int(lo) + 1
        if room < self.max_clients:
            raise ValueError(
                f"{lo} to {hi} (the addresses beside {self.address.ip}) are {room}, fewer "
                f"than max_clients = {self.max_clients}; use a shorter prefix"
            )
        if self.security == "open" and self.passphrase_file is not None:
            raise ValueError(
                'passphrase_file is set but security = "open"; set security = "wpa2" '
                "(or wpa3) to use it, or remove it"
            )
        if not self.enabled:
            return self
        missing = [k for k in ("ssid", "country") if getattr(self, k) is None]
        if self.security != "open" and self.passphrase_file is None:
            missing.append("passphrase_file")
        if missing:
            raise ValueError(f"an enabled hotspot needs {', '.join(missing)}")
        return self

    @property
    def band(self) -> Literal["2.4", "5"]:
        return "2.4" if self.channel in CHANNELS_24 else "5"

    @property
    def portal_host(self) -> str:
        """What phones are sent to: the portal's name if it has one, else the address."""
        return self.portal.name or str(self.address.ip)

    @property
    def portal_url(self) -> str:
        return f"http://{self.portal_host}/"

    @property
    def api_url(self) -> str:
        """RFC 8908's API, announced by DHCP option 114 (RFC 8910)."""
        return f"http://{self.portal_host}/api/captive"

    @property
    def session_s(self) -> int:
        return self.session_min * 60

    @property
    def dhcp_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """The larger run of host addresses beside the node's own."""
        net, ip = self.address.network, self.address.ip
        first, last = net.network_address + 1, net.broadcast_address - 1
        if int(last) - int(ip) >= int(ip) - int(first):
            return ip + 1, last
        return first, ip - 1

    def passphrase(self) -> str | None:
        """Read when the files are generated, never kept in the config object."""
        if self.passphrase_file is None:
            return None
        return read_passphrase(self.passphrase_file)

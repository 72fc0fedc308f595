"""Whether riders can reach the internet through the node right now, said honestly.

Two things must hold: a default route through an uplink interface (not the hotspot), and
the node's own MQTT link is up (its broker is on the far side of the same uplink, so the
link is the proof that packets actually get through; a cellular modem can keep its route
in a dead zone). A venue whose broker is down but whose internet works is shown as "no
internet": the page may undersell, it never promises what is not there.
"""

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROUTES = Path("/proc/net/route")


@dataclass(frozen=True)
class Route:
    iface: str
    network: ipaddress.IPv4Network
    up: bool


def route_table(table: Path = ROUTES) -> list[Route]:
    """The kernel's IPv4 routes (/proc/net/route: addresses as little-endian hex)."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        p = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if len(p) < 8:
            continue
        try:
            dest = ipaddress.IPv4Address(int(p[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(p[7], 16).to_bytes(4, "little"))
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
            out.append(Route(p[0], net, bool(int(p[3], 16) & 0x1)))  # RTF_UP
        except ValueError:
            continue
    return out


def default_route_interfaces(table: Path = ROUTES) -> list[str]:
    """Interfaces that carry an IPv4 default route."""
    return [r.iface for r in route_table(table) if r.up and r.network.prefixlen == 0]


class Internet:
    def __init__(
        self,
        hotspot: str,
        uplinks: Sequence[str],
        connected: Callable[[], bool],
        *,
        routes: Path = ROUTES,
    ) -> None:
        self.hotspot = hotspot
        self.uplinks = list(uplinks)
        self.connected = connected
        self.routes = routes

    def route(self) -> str | None:
        """The uplink interface with a default route, if any."""
        for iface in default_route_interfaces(self.routes):
            if iface == self.hotspot:
                continue
            if not self.uplinks or iface in self.uplinks:
                return iface
        return None

    def available(self) -> bool:
        return self.route() is not None and bool(self.connected())

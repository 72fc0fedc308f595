"""Whether riders can reach the internet through the node right now, said honestly.

Two things must hold: a default route through an uplink interface (not the hotspot), and
the node's own MQTT link is up (its broker is on the far side of the same uplink, so the
link is the proof that packets actually get through; a cellular modem can keep its route
in a dead zone). A venue whose broker is down but whose internet works is shown as "no
internet": the page may undersell, it never promises what is not there.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

ROUTES = Path("/proc/net/route")


def default_route_interfaces(table: Path = ROUTES) -> list[str]:
    """Interfaces that carry an IPv4 default route, from the kernel's table."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if len(parts) >= 8 and parts[1] == "00000000" and parts[7] == "00000000":
            flags = int(parts[3], 16)
            if flags & 0x1:  # RTF_UP
                out.append(parts[0])
    return out


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

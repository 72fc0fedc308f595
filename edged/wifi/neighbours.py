"""Which MAC address the kernel sees behind a phone's IPv4 address on the hotspot, and
which devices are on the hotspot now.

Read from /proc/net/arp when a phone accepts the terms (and when the portal is asked about
it), never stored: a phone that takes another's address shows its own MAC here, so it does
not get the other's session.
"""

import ipaddress
import re
from pathlib import Path

from edged.wifi.tool import find, run_tool

ARP = Path("/proc/net/arp")
SYS_NET = Path("/sys/class/net")
COMPLETE = 0x2
STATION = re.compile(rb"^Station ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})(?: |$)")
IW_TIMEOUT_S = 5.0


def mac_of(ip: ipaddress.IPv4Address, interface: str, *, table: Path = ARP) -> str | None:
    """The MAC of `ip` on `interface` (lower case), or None when the kernel has none."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = str(ip)
    for line in lines:
        parts = line.split()
        # IP address, HW type, Flags, HW address, Mask, Device
        if len(parts) < 6 or parts[0] != wanted or parts[5] != interface:
            continue
        try:
            complete = int(parts[2], 16) & COMPLETE
        except ValueError:
            continue
        if complete and parts[3] != "00:00:00:00:00:00":
            return parts[3].lower()
    return None


def count_neighbours(interface: str, *, table: Path = ARP) -> int:
    """Devices with a resolved address on the hotspot (the kernel forgets them a few minutes
    after they go quiet): a count only."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return 0
    n = 0
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[5] == interface:
            try:
                n += bool(int(parts[2], 16) & COMPLETE)
            except ValueError:
                continue
    return n


def neighbour_macs(interface: str, *, table: Path = ARP) -> set[str] | None:
    """MACs the kernel has resolved on `interface` (None when the table cannot be read)."""
    resolved = _resolved(interface, table)
    return None if resolved is None else set(resolved.values())


def macs_by_address(interface: str, *, table: Path = ARP) -> dict[str, str]:
    """{address: MAC} the kernel has resolved on `interface` (empty when the table cannot be
    read)."""
    return _resolved(interface, table) or {}


def _resolved(interface: str, table: Path) -> dict[str, str] | None:
    """{address: MAC} of the complete entries of `table` on `interface`; None: unreadable."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    macs = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[5] != interface:
            continue
        try:
            complete = int(parts[2], 16) & COMPLETE
        except ValueError:
            continue
        if complete and parts[3] != "00:00:00:00:00:00":
            macs[parts[0]] = parts[3].lower()
    return macs


async def stations(interface: str, *, sys_net: Path = SYS_NET) -> set[str] | None:
    """MACs associated with the radio (`iw dev IF station dump`); None without a radio on
    `interface`, without `iw`, or when it fails."""
    iw = find("iw")
    if iw is None or not (sys_net / interface / "wireless").exists():
        return None
    try:
        ran = await run_tool(iw, "dev", interface, "station", "dump", timeout_s=IW_TIMEOUT_S)
    except TimeoutError:
        return None
    if ran is None or ran.code != 0:
        return None
    found = (STATION.match(line) for line in ran.out.splitlines())
    return {m.group(1).decode().lower() for m in found if m}


async def on_hotspot(
    interface: str, *, table: Path = ARP, sys_net: Path = SYS_NET
) -> set[str] | None:
    """The devices on the hotspot now: the radio's stations (the access point forgets a
    device minutes after it leaves); without a radio `iw` can list, the neighbours the
    kernel has resolved (it may keep one that left for long: never too few, maybe too
    many). None when neither can be read."""
    listed = await stations(interface, sys_net=sys_net)
    return listed if listed is not None else neighbour_macs(interface, table=table)

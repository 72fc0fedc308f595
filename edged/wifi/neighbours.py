"""Which MAC address the kernel sees behind a phone's IPv4 address on the hotspot.

Read from /proc/net/arp when a phone accepts the terms (and when the portal is asked about
it), never stored: a phone that takes another's address shows its own MAC here, so it does
not get the other's session.
"""

import ipaddress
from pathlib import Path

ARP = Path("/proc/net/arp")
COMPLETE = 0x2


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

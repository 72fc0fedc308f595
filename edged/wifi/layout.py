"""Where the hotspot's generated files live, and the names they share.

Root reads and loads these files (hostapd, dnsmasq, nft run as root), so none of them is
under /etc/edged: that directory is writable by the daemon's user (for `config.set`), who
could otherwise swap a file root runs. They go under /etc/edged-hotspot (root, 0755) and
the places each tool reads.
"""

from dataclasses import dataclass, replace
from pathlib import Path

TABLE = "edged_hotspot"
"""The nftables table (family inet) holding every rule of the hotspot."""
TIMEOUTS_TABLE = "edged_hotspot_timeouts"
"""The nftables table (family inet) giving the phones' flows shorter conntrack timeouts;
apart from TABLE: a kernel without conntrack timeouts refuses it, not the firewall."""
ALLOWED_SET = "allowed"
"""Phones that accepted the terms: `ether_addr . ipv4_addr`, each with its session timeout."""
OWNERS_SET = "owners"
"""In table `arp edged_hotspot`: the same (MAC, address) pairs as ALLOWED_SET, each the only
device whose ARP may claim its address."""
HELD_SET = "held"
"""In table `arp edged_hotspot`: the addresses of accepted phones heard lately (HOLD_S)."""
HELD_BY_SET = "held_by"
"""In table `arp edged_hotspot`: the (MAC, address) pair of each held address, kept as long:
the phone that held an address is still heard at it once its session ended (to accept again)."""
HOLD_S = 300
"""How long an accepted phone's address stays held after its last ARP: well under half a
DHCP lease (15 min with hostapd, 60 with NetworkManager), so a phone that left frees its
address before DHCP can give it to the next phone."""
CONNECTION = "edged-hotspot"
"""The NetworkManager connection id and the hostapd@ instance name."""
FIREWALL_UNIT = "edged-hotspot.service"
DHCP_UNIT = "edged-hotspot-dhcp.service"
HOSTAPD_UNIT = f"hostapd@{CONNECTION}.service"


@dataclass(frozen=True)
class Layout:
    """Paths as the running system sees them (what the files name inside)."""

    etc: Path = Path("/etc")
    run: Path = Path("/run")

    @property
    def dir(self) -> Path:
        return self.etc / "edged-hotspot"

    @property
    def nft(self) -> Path:
        return self.dir / "hotspot.nft"

    @property
    def timeouts(self) -> Path:
        return self.dir / "timeouts.nft"

    @property
    def dnsmasq(self) -> Path:
        return self.dir / "dnsmasq.conf"

    @property
    def hostapd(self) -> Path:
        return self.etc / "hostapd" / f"{CONNECTION}.conf"

    @property
    def nm_keyfile(self) -> Path:
        return self.etc / "NetworkManager" / "system-connections" / f"{CONNECTION}.nmconnection"

    @property
    def nm_dnsmasq(self) -> Path:
        return self.etc / "NetworkManager" / "dnsmasq-shared.d" / f"{CONNECTION}.conf"

    @property
    def sysctl(self) -> Path:
        return self.etc / "sysctl.d" / "90-edged-hotspot.conf"

    @property
    def modprobe(self) -> Path:
        return self.etc / "modprobe.d" / "edged-wifi-country.conf"

    @property
    def units(self) -> Path:
        return self.etc / "systemd" / "system"

    @property
    def firewall_unit(self) -> Path:
        return self.units / FIREWALL_UNIT

    @property
    def dhcp_unit(self) -> Path:
        return self.units / DHCP_UNIT

    @property
    def hostapd_dropin(self) -> Path:
        return self.units / f"{HOSTAPD_UNIT}.d" / "edged.conf"

    @property
    def dropin(self) -> Path:
        return self.units / "edged.service.d" / "hotspot.conf"

    @property
    def pid(self) -> Path:
        return self.run / "edged-hotspot" / "dnsmasq.pid"

    def under(self, etc: Path, run: Path | None = None) -> "Layout":
        return replace(self, etc=etc, run=run or self.run)

"""The riders' hotspot: is there a radio that can be an access point, is the country set,
is there an uplink, and does anything stand in the hotspot's way?

Read from the kernel (/sys, /proc) and from `iw`, `nmcli` and `nft` when they are here;
nothing is changed. Each line says what to do when it is not ok.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from edged.config.wifi import WifiConfig
from edged.doctor.check import Check, fail, ok, skip, warn
from edged.wifi.layout import CONNECTION, TABLE, TIMEOUTS_TABLE, Layout
from edged.wifi.tool import find, run_tool
from edged.wifi.uplink import ROUTES, Internet, default_route_interfaces, route_table

SECTION = "wifi"
SYS_NET = Path("/sys/class/net")
RFKILL = Path("/sys/class/rfkill")
UDP = Path("/proc/net/udp")
FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
TOOL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Machine:
    """Where the checks read; the tests point it at a tree of their own."""

    sys_net: Path = SYS_NET
    rfkill: Path = RFKILL
    routes: Path = ROUTES
    udp: Path = UDP
    forward: Path = FORWARD
    conntrack_max: Path = CONNTRACK_MAX


async def tool(*argv: str) -> tuple[int, str] | None:
    """(exit code, output) of a command, or None when it is not installed or hangs."""
    exe = find(argv[0])
    if exe is None:
        return None
    try:
        ran = await run_tool(exe, *argv[1:], timeout_s=TOOL_TIMEOUT_S)
    except TimeoutError:
        return None
    if ran is None:
        return None
    return ran.code, (ran.out + ran.err).decode(errors="replace")


def ap_mode(phy_info: str) -> bool:
    """Whether `iw phy PHY info` lists AP among the supported interface modes."""
    block = re.search(r"Supported interface modes:\n((?:\s+\* .*\n?)+)", phy_info)
    return bool(block and re.search(r"^\s+\* AP$", block.group(1), re.M))


def reg_countries(reg_get: str) -> dict[str, str]:
    """`iw reg get`: {"global": "FR", "phy#0": "99", ...}."""
    out: dict[str, str] = {}
    where = "global"
    for line in reg_get.splitlines():
        if line.startswith("phy#"):
            where = line.split()[0]
        elif line.strip() == "global":
            where = "global"
        m = re.match(r"country (\w\w):", line)
        if m:
            out[where] = m.group(1)
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


async def radio(wifi: WifiConfig, m: Machine) -> list[Check]:
    iface = m.sys_net / wifi.interface
    if not iface.exists():
        present = sorted(p.name for p in m.sys_net.iterdir()) if m.sys_net.is_dir() else []
        radios = [n for n in present if (m.sys_net / n / "wireless").exists()]
        return [
            fail(
                SECTION,
                "wifi: radio",
                f"no interface {wifi.interface}"
                + (f" (wifi radios here: {', '.join(radios)})" if radios else " (no wifi radio)"),
                "set [wifi] interface to the radio's name, plug the USB adapter in, or check "
                "that the Pi's wifi is not disabled (dtoverlay=disable-wifi in config.txt)",
            )
        ]
    if not ((iface / "wireless").exists() or (iface / "phy80211").exists()):
        return [
            fail(
                SECTION,
                "wifi: radio",
                f"{wifi.interface} is not a wifi radio",
                "set [wifi] interface to the wifi interface (`iw dev` lists them)",
            )
        ]
    phy = _read(iface / "phy80211" / "name") or "phy?"
    info = await tool("iw", "phy", phy, "info")
    return [radio_verdict(wifi, phy, info)]


def radio_verdict(wifi: WifiConfig, phy: str, info: tuple[int, str] | None) -> Check:
    """What `iw phy PHY info` (exit code, output) says of the radio as an access point."""
    if info is None:
        return warn(
            SECTION,
            "wifi: radio",
            f"{wifi.interface} is a wifi radio; whether it can be an access point is "
            "unknown (no `iw`)",
            "apt-get install iw, then run edged doctor again",
        )
    if info[0] != 0:
        return warn(
            SECTION,
            "wifi: radio",
            f"{wifi.interface} is a wifi radio, but `iw` could not read it: "
            f"{info[1].strip().splitlines()[-1] if info[1].strip() else info[0]}",
            "check the radio's driver (`dmesg | grep -i brcmf`, or the adapter's)",
        )
    if not ap_mode(info[1]):
        return fail(
            SECTION,
            "wifi: radio",
            f"{wifi.interface} ({phy}) cannot be an access point (no AP mode in `iw phy "
            f"{phy} info`)",
            "use a radio that supports AP mode (the Pi's own does; so do most USB "
            "adapters with an mt76 or rtl8xxxu driver)",
        )
    return ok(SECTION, "wifi: radio", f"{wifi.interface} ({phy}) can be an access point")


def rfkill(wifi: WifiConfig, m: Machine) -> list[Check]:
    out = []
    for dev in sorted(m.rfkill.glob("rfkill*")) if m.rfkill.is_dir() else []:
        if _read(dev / "type") != "wlan":
            continue
        if _read(dev / "hard") == "1":
            out.append(
                fail(
                    SECTION,
                    "wifi: rfkill",
                    f"wifi is blocked by a switch ({dev.name}, hard block)",
                    "turn the radio's switch on; software cannot lift a hard block",
                )
            )
        elif _read(dev / "soft") == "1":
            out.append(
                fail(
                    SECTION,
                    "wifi: rfkill",
                    f"wifi is blocked ({dev.name}, soft block; Raspberry Pi OS blocks it until "
                    "a country is set)",
                    "sudo rfkill unblock wlan (edged-hotspot.service does it at boot)",
                )
            )
    return out


async def country(wifi: WifiConfig) -> Check:
    got = await tool("iw", "reg", "get")
    return country_verdict(wifi, got)


def country_verdict(wifi: WifiConfig, reg: tuple[int, str] | None) -> Check:
    """What `iw reg get` (exit code, output) says of the regulatory country."""
    if reg is None:
        return warn(
            SECTION,
            "wifi: country",
            "the regulatory country cannot be read (no `iw`)",
            "apt-get install iw, then run edged doctor again",
        )
    current = reg_countries(reg[1]).get("global")
    fix = (
        f"sudo iw reg set {wifi.country}; `sudo edged wifi apply` makes it last (cfg80211 "
        "option, and edged-hotspot.service at boot)"
    )
    if current is None:
        return warn(SECTION, "wifi: country", "`iw reg get` names no country", fix)
    if current == "00":
        return fail(
            SECTION,
            "wifi: country",
            "no regulatory country is set (00, the world domain): an access point will not "
            "start, or only on a few channels",
            fix,
        )
    if current != wifi.country:
        return fail(
            SECTION,
            "wifi: country",
            f"the radio's country is {current}, the config says {wifi.country}",
            fix,
        )
    return ok(SECTION, "wifi: country", f"{current}")


def uplink(wifi: WifiConfig, m: Machine) -> list[Check]:
    out = []
    missing = [u for u in wifi.uplinks if not (m.sys_net / u).exists()]
    if missing:
        out.append(
            warn(
                SECTION,
                "wifi: uplink",
                f"no interface {', '.join(missing)} (named in [wifi] uplinks)",
                "plug the modem in, or fix [wifi] uplinks (`ip link` lists the interfaces)",
            )
        )
    via = Internet(wifi.interface, wifi.uplinks, lambda: True, routes=m.routes).route()
    if via is None:
        out.append(
            warn(
                SECTION,
                "wifi: uplink",
                "no default route through an uplink now: phones get the portal, which says "
                "there is no internet on board",
                "connect the modem (or the venue's network); [wifi] uplinks names the "
                "interfaces that may carry riders out",
            )
        )
    else:
        out.append(ok(SECTION, "wifi: uplink", f"riders go out through {via}"))
    return out


def _udp_wildcard_ports(path: Path) -> set[int]:
    """Ports bound on 0.0.0.0 (UDP): a server there answers on every interface."""
    ports: set[int] = set()
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        parts = line.split()
        if len(parts) > 2:
            addr, _, port = parts[1].partition(":")
            if addr == "00000000":
                ports.add(int(port, 16))
    return ports


def conflicts(wifi: WifiConfig, m: Machine) -> list[Check]:
    out = []
    if wifi.interface in default_route_interfaces(m.routes):
        out.append(
            fail(
                SECTION,
                "wifi: conflicts",
                f"{wifi.interface} carries the default route: this machine is a wifi client "
                "on it, and would lose that link when the hotspot starts",
                "give the uplink to another interface (a modem, ethernet) and list it in "
                "[wifi] uplinks",
            )
        )
    net = wifi.address.network
    for r in route_table(m.routes):
        if r.iface != wifi.interface and r.network.prefixlen > 0 and r.network.overlaps(net):
            out.append(
                fail(
                    SECTION,
                    "wifi: conflicts",
                    f"{r.iface} already uses {r.network}, which overlaps the hotspot's {net}",
                    "choose another [wifi] address, e.g. 10.42.0.1/24 or 172.31.0.1/24",
                )
            )
    taken = _udp_wildcard_ports(m.udp) & {53, 67}
    if taken:
        out.append(
            warn(
                SECTION,
                "wifi: conflicts",
                f"something listens on every address on UDP {sorted(taken)} (DNS/DHCP): it "
                "may answer phones in the hotspot's place",
                "stop it if it is Debian's dnsmasq.service (`sudo systemctl disable --now "
                "dnsmasq`); systemd-resolved on 127.0.0.53 is fine",
            )
        )
    if not out:
        out.append(ok(SECTION, "wifi: conflicts", "none found (routes, address, DNS/DHCP ports)"))
    return out


async def tools_and_firewall(wifi: WifiConfig, backend: str | None, m: Machine) -> list[Check]:
    out = []
    need = ["nft"] + (["nmcli"] if backend == "networkmanager" else ["hostapd", "dnsmasq"])
    missing = [t for t in need if find(t) is None]
    if missing:
        out.append(
            fail(
                SECTION,
                "wifi: tools",
                f"not installed: {', '.join(missing)}",
                "sudo apt-get install "
                + " ".join(
                    {"nft": "nftables", "nmcli": "network-manager", "dnsmasq": "dnsmasq-base"}.get(
                        t, t
                    )
                    for t in missing
                ),
            )
        )
    if os.geteuid() != 0:
        out.append(
            skip(
                SECTION,
                "wifi: firewall",
                "not checked: reading the firewall needs root",
                "sudo edged doctor checks it",
            )
        )
    else:
        got = await tool("nft", "list", "table", "inet", TABLE)
        if got is None or got[0] != 0:
            out.append(
                fail(
                    SECTION,
                    "wifi: firewall",
                    f"the hotspot's firewall (table inet {TABLE}) is not loaded: phones could "
                    "reach the node's own services",
                    "sudo edged wifi apply (it loads it, and edged-hotspot.service at boot)",
                )
            )
        else:
            out.append(ok(SECTION, "wifi: firewall", f"table inet {TABLE} is loaded"))
        got = await tool("nft", "list", "table", "inet", TIMEOUTS_TABLE)
        if got is None or got[0] != 0:
            out.append(
                warn(
                    SECTION,
                    "wifi: conntrack timeouts",
                    f"table inet {TIMEOUTS_TABLE} is not loaded: phones' closed connections "
                    "stay in the node's connection table the kernel's time (120 s), enough "
                    "for two or three phones to fill a small Pi's (the node's own new "
                    "connections then dropped)",
                    f"sudo nft -f {Layout().timeouts} (`sudo edged wifi apply` writes it, "
                    "but loads it only when it changes); if nft refuses the file, the kernel "
                    "lacks CONFIG_NF_CONNTRACK_TIMEOUT (`sudo modprobe configs; zgrep "
                    "NF_CONNTRACK_TIMEOUT /proc/config.gz`): docs/wifi.md, Limits",
                )
            )
        else:
            out.append(
                ok(SECTION, "wifi: conntrack timeouts", f"table inet {TIMEOUTS_TABLE} is loaded")
            )
    if backend == "hostapd" and _read(m.forward) != "1":
        out.append(
            warn(
                SECTION,
                "wifi: forwarding",
                "IPv4 forwarding is off: phones that accept the terms get no internet",
                "sudo edged wifi apply (it writes /etc/sysctl.d/90-edged-hotspot.conf)",
            )
        )
    if backend == "networkmanager":
        got = await tool("nmcli", "-t", "-f", "DEVICE,STATE,CONNECTION", "device")
        for line in got[1].splitlines() if got and got[0] == 0 else []:
            dev, _, rest = line.partition(":")
            state, _, conn = rest.partition(":")
            if dev == wifi.interface and state == "connected" and conn != CONNECTION:
                out.append(
                    warn(
                        SECTION,
                        "wifi: conflicts",
                        f"{wifi.interface} is connected to {conn!r} as a client: the hotspot "
                        "takes the radio over when it starts",
                        "use another interface for the uplink; then `sudo edged wifi apply`",
                    )
                )
    return out


THIS_MACHINE = Machine()


async def check_wifi(
    wifi: WifiConfig, *, backend: str | None = None, machine: Machine = THIS_MACHINE
) -> list[Check]:
    """Every wifi line of the report; nothing when the hotspot is disabled."""
    if not wifi.enabled:
        return []
    if backend is None:
        from edged.wifi.backend import choose_backend

        backend = choose_backend(wifi)
    found = await radio(wifi, machine)
    found += rfkill(wifi, machine)
    found.append(await country(wifi))
    found += uplink(wifi, machine)
    found += conflicts(wifi, machine)
    found += await tools_and_firewall(wifi, backend, machine)
    found += connection_table(wifi, machine)
    return found


def connection_table(wifi: WifiConfig, m: Machine) -> list[Check]:
    """The phones' share (`max_flows`) against this machine's connection table: the kernel
    sizes it from memory (about 4096 entries on a Pi Zero 2 W, 262144 above 4 GB), and a
    full table drops the node's own new connections."""
    name = "wifi: connection table"
    text = _read(m.conntrack_max)
    if text is None or not text.isdigit():
        return [
            skip(
                SECTION,
                name,
                "not checked: no connection tracking here yet (nf_conntrack_max)",
                "sudo edged doctor once the hotspot's firewall is loaded",
            )
        ]
    size, half = int(text), int(text) // 2
    if wifi.max_flows > half:
        return [
            warn(
                SECTION,
                name,
                f"the phones may hold {wifi.max_flows} flows of this machine's "
                f"{size}-entry connection table: with what their closed connections leave, "
                "the node's own new connections (its broker link) may find no room",
                f"set [wifi] max_flows to at most {half} and apply again",
            )
        ]
    return [
        ok(
            SECTION,
            name,
            f"the phones may hold {wifi.max_flows} flows of {size} (up to {half} would "
            "still leave the node half)",
        )
    ]

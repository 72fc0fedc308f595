"""What `edged wifi apply` manages: every file of the hotspot with its content, mode, and the
steps that make a change (or a removal) take effect, in one fixed order.

The plan is pure: it reads the config (and the passphrase file) and says what the system
should hold. Files of the other backend, or of a disabled hotspot, are in the plan as
absent, so switching backend or turning the hotspot off cleans up after itself.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from edged.config.models import EdgedConfig
from edged.wifi.layout import (
    CONNECTION,
    DHCP_UNIT,
    FIREWALL_UNIT,
    HOSTAPD_UNIT,
    TABLE,
    TIMEOUTS_TABLE,
    Layout,
)
from edged.wifi.render.dnsmasq import render_dnsmasq, render_nm_dnsmasq
from edged.wifi.render.hostapd import render_hostapd
from edged.wifi.render.networkmanager import render_keyfile
from edged.wifi.render.nft import render_nft, render_timeouts
from edged.wifi.render.system import (
    render_dhcp_unit,
    render_edged_dropin,
    render_firewall_unit,
    render_hostapd_dropin,
    render_modprobe,
    render_sysctl,
)

BackendName = Literal["networkmanager", "hostapd"]
SYSTEM = Layout()


class Step(Enum):
    """A command that makes files take effect. The value's first item orders them: the radio
    goes down before files are removed, the firewall loads before the radio comes up."""

    NM_DOWN = (10, ("nmcli", "connection", "down", CONNECTION), True)
    HOSTAPD_STOP = (11, ("systemctl", "disable", "--now", HOSTAPD_UNIT), True)
    DHCP_STOP = (12, ("systemctl", "disable", "--now", DHCP_UNIT), True)
    SYSCTL = (20, ("sysctl", "-q", "-p", "{sysctl}"), False)
    REGDOM = (21, ("iw", "reg", "set", "{country}"), True)
    NFT_LOAD = (30, ("nft", "-f", "{nft}"), False)
    NFT_DELETE = (31, ("nft", "delete", "table", "inet", TABLE), True)
    TIMEOUTS_LOAD = (32, ("nft", "-f", "{timeouts}"), True)
    TIMEOUTS_DELETE = (33, ("nft", "delete", "table", "inet", TIMEOUTS_TABLE), True)
    DAEMON_RELOAD = (40, ("systemctl", "daemon-reload"), False)
    FIREWALL_ENABLE = (41, ("systemctl", "enable", FIREWALL_UNIT), False)
    FIREWALL_DISABLE = (42, ("systemctl", "disable", FIREWALL_UNIT), True)
    NM_RELOAD = (50, ("nmcli", "connection", "reload"), False)
    NM_UP = (51, ("nmcli", "connection", "up", CONNECTION), False)
    HOSTAPD_ENABLE = (60, ("systemctl", "enable", HOSTAPD_UNIT), False)
    HOSTAPD_RESTART = (61, ("systemctl", "restart", HOSTAPD_UNIT), False)
    DHCP_ENABLE = (62, ("systemctl", "enable", DHCP_UNIT), False)
    DHCP_RESTART = (63, ("systemctl", "restart", DHCP_UNIT), False)
    EDGED_RESTART = (70, ("systemctl", "try-restart", "edged.service"), False)

    @property
    def order(self) -> int:
        return int(self.value[0])

    @property
    def before_files(self) -> bool:
        """Runs before any file is written or removed (takes the radio down)."""
        return self.order < 20

    @property
    def may_fail(self) -> bool:
        """A failure is reported but does not stop the others (already down, no `iw`)."""
        return bool(self.value[2])

    @property
    def if_failed(self) -> str:
        """What a failure of a step that may fail means."""
        if self is Step.TIMEOUTS_LOAD:
            return (
                "this kernel has no conntrack timeouts (CONFIG_NF_CONNTRACK_TIMEOUT?); the "
                "firewall works without them, but phones' closed connections stay in the "
                "connection table the kernel's time (docs/wifi.md, Limits)"
            )
        return "not needed"

    def argv(self, values: dict[str, str]) -> list[str]:
        return [part.format(**values) for part in self.value[1]]


@dataclass(frozen=True)
class Managed:
    """One file of the hotspot: wanted with `content`, or wanted absent (content None)."""

    path: Path
    content: str | None
    on_change: tuple[Step, ...]
    on_remove: tuple[Step, ...] = ()
    mode: int = 0o644
    secret: bool = False
    """Holds the passphrase: mode 0600, and never shown in a diff."""
    tool: Literal["nft", "nft-optional", "dnsmasq", "nm-dnsmasq", "hostapd", "nmcli"] | None = None
    """The validator that checks the content before it is written (edged.wifi.validate);
    "nft-optional": a refusal is reported, and the file written all the same (what the
    kernel may lack, the rest works without)."""


@dataclass(frozen=True)
class Plan:
    backend: BackendName | None
    """None: the hotspot is disabled and every file is to be absent."""
    files: list[Managed]
    values: dict[str, str] = field(default_factory=dict)
    """What the steps' arguments name (paths, the country)."""


def build_plan(
    config: EdgedConfig,
    backend: BackendName | None,
    *,
    layout: Layout = SYSTEM,
    source: str = "/etc/edged/edged.toml",
) -> Plan:
    """The files for `backend` (None when the hotspot is disabled)."""
    wifi = config.wifi
    enabled = wifi.enabled and backend is not None
    nm = enabled and backend == "networkmanager"
    ap = enabled and backend == "hostapd"
    secret = wifi.passphrase() if enabled else None

    def text(on: bool, render: Callable[[], str]) -> str | None:
        return render() if on else None

    files = [
        Managed(
            layout.nft,
            text(enabled, lambda: render_nft(wifi, source=source)),
            (Step.NFT_LOAD,),
            (Step.NFT_DELETE,),
            tool="nft",
        ),
        Managed(
            layout.timeouts,
            text(enabled, lambda: render_timeouts(wifi, source=source)),
            (Step.TIMEOUTS_LOAD,),
            (Step.TIMEOUTS_DELETE,),
            tool="nft-optional",
        ),
        Managed(
            layout.firewall_unit,
            text(enabled, lambda: render_firewall_unit(wifi, layout, source=source)),
            (Step.DAEMON_RELOAD, Step.FIREWALL_ENABLE),
            (Step.FIREWALL_DISABLE, Step.DAEMON_RELOAD),
        ),
        Managed(
            layout.sysctl,
            text(enabled, lambda: render_sysctl(wifi, forward=ap, source=source)),
            (Step.SYSCTL,),
        ),
        Managed(
            layout.modprobe,
            text(enabled, lambda: render_modprobe(wifi, source=source)),
            (Step.REGDOM,),
        ),
        Managed(
            layout.dropin,
            text(enabled, lambda: render_edged_dropin(source=source)),
            (Step.DAEMON_RELOAD, Step.EDGED_RESTART),
            (Step.DAEMON_RELOAD, Step.EDGED_RESTART),
        ),
        Managed(
            layout.nm_keyfile,
            text(
                nm,
                lambda: render_keyfile(
                    wifi, secret, fleet=config.node.fleet, node=config.node.id, source=source
                ),
            ),
            (Step.NM_RELOAD, Step.NM_UP),
            (Step.NM_DOWN, Step.NM_RELOAD),
            mode=0o600,
            secret=True,
            tool="nmcli",
        ),
        Managed(
            layout.nm_dnsmasq,
            text(nm, lambda: render_nm_dnsmasq(wifi, source=source)),
            (Step.NM_UP,),
            tool="nm-dnsmasq",
        ),
        Managed(
            layout.hostapd,
            text(ap, lambda: render_hostapd(wifi, secret, source=source)),
            (Step.HOSTAPD_ENABLE, Step.HOSTAPD_RESTART),
            (Step.HOSTAPD_STOP,),
            mode=0o600,
            secret=True,
            tool="hostapd",
        ),
        Managed(
            layout.hostapd_dropin,
            text(ap, lambda: render_hostapd_dropin(source=source)),
            (Step.DAEMON_RELOAD, Step.HOSTAPD_RESTART),
            (Step.DAEMON_RELOAD,),
        ),
        Managed(
            layout.dnsmasq,
            text(ap, lambda: render_dnsmasq(wifi, layout, source=source)),
            (Step.DHCP_RESTART,),
            (Step.DHCP_STOP,),
            tool="dnsmasq",
        ),
        Managed(
            layout.dhcp_unit,
            text(ap, lambda: render_dhcp_unit(wifi, layout, source=source)),
            (Step.DAEMON_RELOAD, Step.DHCP_ENABLE, Step.DHCP_RESTART),
            (Step.DHCP_STOP, Step.DAEMON_RELOAD),
        ),
    ]
    values = {
        "nft": str(layout.nft),
        "timeouts": str(layout.timeouts),
        "sysctl": str(layout.sysctl),
        "country": wifi.country or "00",
    }
    return Plan(backend if enabled else None, files, values)

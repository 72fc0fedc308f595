"""The hotspot's side of the daemon: the portal, the captive DNS, the sessions, the counts.

What the radio, DHCP and the firewall are is `edged wifi apply`'s business (run as root);
the daemon serves the phones and lets through those that accept the terms. Nothing here
can stop the node: a listener that cannot bind (the radio is not up yet) retries, a
firewall that cannot be read is counted and logged once in a while.
"""

import asyncio
import ipaddress
import logging
from pathlib import Path

from core.logs import flood_key
from edged.config.kiosk import KioskConfig
from edged.config.wifi import WifiConfig
from edged.host import Host
from edged.kiosk.server import Screen
from edged.payloads import WifiHealth
from edged.services.base import Service
from edged.services.events import LinkChanged
from edged.wifi.conntrack import ConntrackError, forget_redirected
from edged.wifi.dns import CaptiveDns
from edged.wifi.neighbours import ARP, count_neighbours, stations
from edged.wifi.portal import PortalServer
from edged.wifi.sessions import Firewall, FirewallError, NftFirewall, Sessions
from edged.wifi.uplink import ROUTES, Internet

log = logging.getLogger(__name__)

RESYNC_EVERY_S = 15.0
RESYNC_MAX_S = 600.0
BIND_RETRY_S = (2.0, 60.0)
SYS_NET = Path("/sys/class/net")


class WifiService(Service):
    """Built with the kiosk's view (`screen`, the kiosk service) and its settings: the
    portal is the kiosk's page on the phones."""

    def __init__(
        self,
        host: Host,
        wifi: WifiConfig,
        screen: Screen,
        kiosk: KioskConfig,
        *,
        firewall: Firewall | None = None,
        address: str | None = None,
        arp: Path = ARP,
        routes: Path = ROUTES,
        sys_net: Path = SYS_NET,
    ) -> None:
        super().__init__(host)
        self.wifi = wifi
        self.counters = host.counters
        self.arp = arp
        self.sys_net = sys_net
        self.address = address or str(wifi.address.ip)
        self.connected = False  # to the broker: the phones' internet may still be there
        host.bus.subscribe(LinkChanged, self._on_link)
        self.sessions = Sessions(
            firewall or NftFirewall(),
            session_s=wifi.session_s,
            max_sessions=wifi.max_clients,
            counters=host.counters,
            timezone=host.node.timezone,
            get_state=host.state.get,
            set_state=host.state.set,
            # the day on the node's clock (NTP, else GPS), as its other daily things
            wall=lambda: host.clock.now()[0] / 1000,
            forget=self._forget_captive_dns,
        )
        self.internet = Internet(
            wifi.interface, wifi.uplinks, lambda: self.connected, routes=routes
        )
        self.portal = PortalServer(
            screen,
            kiosk,
            wifi,
            host.counters,
            sessions=self.sessions,
            internet=self.internet,
            host=address,
            arp=arp,
        )
        self.dns_port: int | None = None
        self.dns_ready = asyncio.Event()

    async def _forget_captive_dns(self, ip: ipaddress.IPv4Address) -> None:
        """The phone's DNS flows the firewall redirected to the captive DNS stay so while
        they last (conntrack): forgotten, its next query goes to the real resolver."""
        try:
            await asyncio.to_thread(forget_redirected, ip, self.wifi.portal.dns_port)
        except ConntrackError as exc:
            self.counters.inc("portal.conntrack_error")
            log.warning(
                "wifi: a phone's captive DNS flows could not be forgotten (%s); it may get "
                "the node's address for names for up to 2 minutes. The daemon needs "
                "CAP_NET_ADMIN: `sudo edged wifi apply`",
                exc,
                extra=flood_key("wifi.conntrack"),
            )

    def _on_link(self, event: LinkChanged) -> None:
        self.connected = event.connected

    async def report(self) -> dict[str, WifiHealth]:
        return {"wifi": await self.health()}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.portal.run(), name="wifi.portal")
            tg.create_task(self._dns(), name="wifi.dns")
            tg.create_task(self._resync(), name="wifi.sessions")

    async def _dns(self) -> None:
        loop = asyncio.get_running_loop()
        delay = BIND_RETRY_S[0]
        while True:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: CaptiveDns(self.wifi.address.ip, self.counters),
                    local_addr=(self.address, self.wifi.portal.dns_port),
                )
                break
            except OSError as exc:
                self.counters.inc("wifi.dns.listen_error")
                log.warning(
                    "wifi: the captive DNS cannot listen on %s:%d (%s); retrying (is the "
                    "hotspot up? `edged doctor`)",
                    self.address,
                    self.wifi.portal.dns_port,
                    exc.strerror or exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BIND_RETRY_S[1])
        self.dns_port = int(transport.get_extra_info("sockname")[1])
        self.dns_ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            transport.close()

    async def _resync(self) -> None:
        """Every RESYNC_EVERY_S; a firewall that cannot be read is retried (and logged)
        less and less often, up to every 10 min."""
        delay = RESYNC_EVERY_S
        while True:
            try:
                await self.sessions.resync()
                delay = RESYNC_EVERY_S
            except FirewallError as exc:
                self.counters.inc("wifi.firewall_error")
                log.warning("wifi: cannot read the accepted phones: %s", exc)
                delay = min(max(delay, RESYNC_EVERY_S) * 2, RESYNC_MAX_S)
            await asyncio.sleep(delay)

    # -- counts for `health` ------------------------------------------------------------

    def _bytes(self, which: str) -> int | None:
        try:
            return int((self.sys_net / self.wifi.interface / "statistics" / which).read_text())
        except (OSError, ValueError):
            return None

    async def _stations(self) -> int | None:
        """Phones associated with the radio, from `iw` (None without a radio or `iw`)."""
        listed = await stations(self.wifi.interface, sys_net=self.sys_net)
        return None if listed is None else len(listed)

    async def health(self) -> WifiHealth:
        stations = await self._stations()
        clients = (
            stations
            if stations is not None
            else count_neighbours(self.wifi.interface, table=self.arp)
        )
        return WifiHealth(
            clients=clients,
            sessions=self.sessions.active(),
            sessions_today=self.sessions.sessions_today(),
            rx_bytes=self._bytes("rx_bytes"),
            tx_bytes=self._bytes("tx_bytes"),
            internet=self.internet.available(),
            pages=sum(self.portal.limits.streams.values()),
        )

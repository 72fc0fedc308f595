"""The captive portal: the kiosk page on riders' phones, with their wifi access on top.

It is a second listener of the kiosk (`KioskServer`), on the hotspot address only, reading
the kiosk service's view (`Screen`): the same live information as the on-board screen, the
same page (kiosk.js) plus the portal's part (static/portal.*). It serves the kiosk's rider
routes (`KioskServer.add_rider_routes`) and its own, nothing else: a path added to the
kiosk for the screen alone never appears here. Its limits are the kiosk's, with the
phones' own budget (`[wifi.portal]`): connections and live pages per phone and in all,
presses per phone and in all, so the screen keeps what it needs.

Requests for any other host (a phone's captive-portal check, any page it opens before
accepting) are sent to the portal: 302 for GET and HEAD, 511 (RFC 6585) otherwise, and the
connection is closed (a browser must not reuse it for that host once the phone is through).
A request naming no host gets 400: sent to the portal, it would name none there either.

- `/`, `/static/*`, `/api/state`, `/api/events`, `/api/requests`: the kiosk's page, its
  live state and the rider presses;
- `/api/captive`: RFC 8908's API (`application/captive+json`), named by DHCP option 114;
- `/api/portal`: this phone's access (accepted, seconds left, internet now);
- `POST /api/portal/accept`: the terms accepted; the phone's MAC and address enter the
  firewall's set for the session's length (one session per MAC: from another address of
  the same device, the session moves there), and its DNS flows still redirected to the
  captive DNS are forgotten (`Sessions` calls the wifi service's `forget`).
"""

import html
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from core.counters import Counters
from core.errors import EdgedError
from core.logs import flood_key
from edged.config.kiosk import KioskConfig
from edged.config.wifi import WifiConfig
from edged.kiosk.ratelimit import RateLimiter
from edged.kiosk.server import KioskServer, Screen
from edged.web.message import HttpError, Request, Response, json_response
from edged.web.router import Router
from edged.wifi.neighbours import ARP, SYS_NET, mac_of, macs_by_address, on_hotspot
from edged.wifi.sessions import FirewallError, PortalFull, Sessions
from edged.wifi.uplink import Internet

log = logging.getLogger(__name__)

PORTAL_STATIC = {"portal.js": "text/javascript", "portal.css": "text/css"}
CAPTIVE_JSON = "application/captive+json"
ACCEPT_BURST, ACCEPT_PER_MIN = 3, 6.0
MACS_FRESH_S, MACS_MISS_S = 1.0, 0.1
"""The neighbour table behind the budget of requests (`PortalServer._device_of`) is read
again after this, or after that for an address it did not have."""


class AcceptPost(BaseModel):
    """The body of `POST /api/portal/accept`: nothing else is accepted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    accept: Literal[True]


def kiosk_config_for(wifi: WifiConfig, kiosk: KioskConfig, host: str | None) -> KioskConfig:
    """The kiosk server's settings for the portal listener: the phones' own limits (checked
    by `[wifi.portal]`; a hotspot may have more pages open than a kiosk's screens)."""
    p = wifi.portal
    return KioskConfig.model_construct(
        host=host or str(wifi.address.ip),
        port=p.port,
        allowed_hosts=[p.name] if p.name else [],
        buttons=kiosk.buttons,
        timezone=kiosk.timezone,
        max_body_bytes=kiosk.max_body_bytes,
        rate_burst=p.rate_burst,
        rate_per_min=p.rate_per_min,
        global_burst=p.global_burst,
        global_per_min=p.global_per_min,
        repeat_after_s=kiosk.repeat_after_s,
        request_display_s=kiosk.request_display_s,
        max_clients=p.max_pages,
        heartbeat_s=kiosk.heartbeat_s,
        max_connections=p.max_connections,
        max_connections_per_peer=p.max_connections_per_peer,
        max_streams_per_peer=p.max_pages_per_peer,
        screen_addresses=[],  # no screen on the hotspot: nothing is reserved
        header_timeout_s=p.header_timeout_s,
        stream_max_s=p.stream_max_s,
    )


def portal_index(kiosk_index: bytes, fragment: bytes) -> bytes:
    """The kiosk page with the portal's part: its styles, its script, its section."""
    page = kiosk_index.decode("utf-8")
    marks = {
        '<link rel="stylesheet" href="/static/kiosk.css">': (
            '\n<link rel="stylesheet" href="/static/portal.css">'
        ),
        '<script src="/static/kiosk.js" defer></script>': (
            '\n<script src="/static/portal.js" defer></script>'
        ),
    }
    for mark, extra in marks.items():
        if page.count(mark) != 1:
            raise EdgedError(f"the kiosk page changed: the portal cannot find {mark!r} in it")
        page = page.replace(mark, mark + extra)
    board = '<main id="board"'
    if page.count(board) != 1:
        raise EdgedError(f"the kiosk page changed: the portal cannot find {board!r} in it")
    page = page.replace(board, fragment.decode("utf-8") + "\n" + board)
    return page.encode("utf-8")


def load_portal_static() -> dict[str, bytes]:
    root = resources.files("edged.wifi") / "static"
    try:
        return {name: (root / name).read_bytes() for name in (*PORTAL_STATIC, "portal.html")}
    except OSError as exc:
        raise EdgedError(
            f"a portal page file is missing ({exc}); reinstall edged: edged/wifi/static/* "
            "must be in the package data"
        ) from exc


class PortalServer(KioskServer):
    name = "portal"
    pages_advice = "raise [wifi.portal] max_pages or max_pages_per_peer"
    port_key = "[wifi.portal] port (or check that the hotspot is up: `edged doctor`)"
    names_peers = False  # no phone's address or page in the log (docs/wifi.md, Privacy)

    def __init__(
        self,
        service: Screen,
        kiosk: KioskConfig,
        wifi: WifiConfig,
        counters: Counters,
        *,
        sessions: Sessions,
        internet: Internet,
        host: str | None = None,
        arp: Path = ARP,
        sys_net: Path = SYS_NET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wifi = wifi
        self.sessions = sessions
        self.internet = internet
        self.arp = arp
        self.sys_net = sys_net
        self.accepts = RateLimiter(
            burst=ACCEPT_BURST,
            per_min=ACCEPT_PER_MIN,
            global_burst=max(10, 2 * wifi.max_clients),  # each is one `nft` run: bounded
            global_per_min=max(60.0, 4.0 * wifi.max_clients),
            clock=clock,
        )
        super().__init__(service, kiosk_config_for(wifi, kiosk, host), counters, clock=clock)
        extra = load_portal_static()
        self.files["index.html"] = portal_index(self.files["index.html"], extra["portal.html"])
        for name, kind in PORTAL_STATIC.items():
            self.files[name] = extra[name]
            self.types[name] = kind
        self.hosts = frozenset({str(wifi.address.ip), *self.config.allowed_hosts, self.config.host})
        self._macs: dict[str, str] = {}
        self._macs_read = -math.inf
        self.limits.budget_key = self._device_of

    async def run(self) -> None:
        """Serve only: the kiosk's own server keeps the view fresh for both."""
        await self.serve()

    def _make_router(self) -> Router:
        router = Router()
        self.add_rider_routes(router)
        router.get("/api/captive", self._captive)
        router.get("/api/portal", self._portal)
        router.post("/api/portal/accept", self._accept)
        return router

    def presser(self, request: Request) -> str:
        """A phone's presses by its MAC, whatever addresses it takes (each would have a
        share of its own, and together the whole budget: every other phone then 429)."""
        ip, mac = self._phone(request)
        return mac or str(ip)

    def _device_of(self, peer: str) -> str:
        """Whose budget of requests `peer`'s are (`ConnectionLimits.budget_key`): the
        phone's MAC, so that a device taking address after address in the subnet has one
        budget, not a full one at each (through the firewall's 20 new portal connections a
        second, each pipelining a whole budget, the flood the budget is for); its address
        when the kernel has none. The neighbour table is read at most once a second, and
        again for an address it did not have (a new phone, a new alias) at most ten times a
        second: every request of a flood does not read it."""
        now = self.clock()
        mac = self._macs.get(peer)
        if now - self._macs_read >= MACS_FRESH_S or (
            mac is None and now - self._macs_read >= MACS_MISS_S
        ):
            self._macs = macs_by_address(self.wifi.interface, table=self.arp)
            self._macs_read = now
            mac = self._macs.get(peer)
        return mac or peer

    # -- every other host: the portal ---------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """A phone's connectivity check or any page it opens: to the portal (never a 204,
        never a 'Success': the phone must see that this network has a portal). A request
        naming no host is refused (the kiosk's 400): redirected, it would come back to the
        portal's address naming none again, a loop."""
        if request.host in self.hosts or not request.host:
            return await super().handle(request)
        self.counters.inc("portal.redirect")
        url = self.wifi.portal_url
        link = html.escape(url, quote=True)
        body = (
            "<!doctype html><html lang=fr><meta charset=utf-8><title>Wi-Fi</title>"
            f'<p><a href="{link}">Wi-Fi à bord / On-board wifi</a></p></html>'
        ).encode()
        # closed after: the phone's connection to "another host" is the portal's, and NAT
        # keeps it so after the phone accepts; a browser reusing it would get this again
        headers = {"Location": url, "Cache-Control": "no-store", "Connection": "close"}
        status = 302 if request.method in ("GET", "HEAD") else 511
        return self._headers(
            request.path, Response(status, body, "text/html; charset=utf-8", headers)
        )

    def _headers(self, path: str, response: Response) -> Response:
        super()._headers(path, response)
        # a browser ignores (and complains about) COOP on a plain-http origin that is not
        # localhost, which the hotspot's address is
        response.headers.pop("Cross-Origin-Opener-Policy", None)
        return response

    def snapshot(self) -> dict[str, Any]:
        """The kiosk's state, without its reset for the next rider: a phone is one rider's."""
        return {**super().snapshot(), "idle_reset_s": None}

    # -- this phone's access ------------------------------------------------------------

    def _phone(self, request: Request) -> tuple[ipaddress.IPv4Address, str | None]:
        try:
            ip = ipaddress.ip_address(request.peer)
        except ValueError:
            raise HttpError(400, "bad_peer", "the portal answers phones on the hotspot") from None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                raise HttpError(400, "bad_peer", "the hotspot is IPv4 only")
            ip = ip.ipv4_mapped
        return ip, mac_of(ip, self.wifi.interface, table=self.arp)

    def _access(self, ip: ipaddress.IPv4Address, mac: str | None) -> dict[str, Any]:
        left = self.sessions.left(mac, ip)
        return {
            "accepted": left is not None,
            "seconds_left": math.floor(left) if left is not None else None,
            "internet": self.internet.available(),
            "session_min": self.wifi.session_min,
            "client_mbit": self.wifi.client_mbit,
            "timezone": self.config.timezone,
        }

    async def _portal(self, request: Request) -> Response:
        return json_response(self._access(*self._phone(request)))

    async def _captive(self, request: Request) -> Response:
        """RFC 8908: captive until the phone accepted; then the time it has left."""
        ip, mac = self._phone(request)
        left = self.sessions.left(mac, ip)
        body: dict[str, Any] = {"captive": left is None, "user-portal-url": self.wifi.portal_url}
        if left is not None:
            body |= {"seconds-remaining": math.floor(left), "can-extend-session": True}
        return json_response(body, content_type=CAPTIVE_JSON)

    async def _on_hotspot(self) -> set[str] | None:
        return await on_hotspot(self.wifi.interface, table=self.arp, sys_net=self.sys_net)

    async def _accept(self, request: Request) -> Response:
        await self.read_json(request, AcceptPost)
        ip, mac = self._phone(request)
        wait = self.accepts.check(mac or str(ip))  # per device, whatever its addresses
        if wait > 0:
            raise HttpError(
                429,
                "rate_limited",
                "too many tries; wait a moment",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if mac is None:  # not a phone on the hotspot's radio (or it left meanwhile)
            self.counters.inc("portal.unknown_phone")
            raise HttpError(
                409,
                "unknown_phone",
                "the hotspot does not see this phone's address: disconnect and connect again",
            )
        try:
            await self.sessions.accept(mac, ip, present=self._on_hotspot)
        except PortalFull as exc:
            raise HttpError(503, "full", str(exc), {"Retry-After": "60"}) from None
        except FirewallError as exc:
            self.counters.inc("portal.firewall_error")
            log.warning(
                "portal: a phone could not be let through: %s",
                exc,
                extra=flood_key("portal.firewall"),
            )
            raise HttpError(503, "unavailable", "the wifi cannot let phones through now") from None
        self.counters.inc("portal.accepted")
        return json_response(self._access(ip, mac))

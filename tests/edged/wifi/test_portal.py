"""The captive portal on a real port: what it serves (and never), the connectivity checks,
RFC 8908, accepting the terms into the kernel's set (nft in the test's own namespace), and
what a hostile phone gets for trying.

The phones are loopback addresses (127.0.0.x); the kernel's neighbour table is a file in
the same format, so each test says which phone the "radio" sees. The namespace test
(tests/integration/test_hotspot.py) plays the same with real neighbours.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edged.config.kiosk import KioskConfig
from edged.kiosk.server import KioskServer
from edged.logs import BURST
from edged.node import Node
from edged.services.kiosk import KioskService
from edged.services.wifi import WifiService
from edged.web.message import Request, Response, json_response
from edged.web.router import Router
from edged.wifi.portal import PortalServer
from edged.wifi.probes import PROBES
from edged.wifi.render.nft import render_nft
from edged.wifi.sessions import NftFirewall
from tests.edged.wifi.conftest import Make
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.journal import Journal
from tests.helpers.kiosk import Nodes
from tests.helpers.netns import Netns, need_netns
from tests.helpers.nodes import write_config

ARP_HEAD = "IP address       HW type     Flags       HW address            Mask     Device\n"
PORTAL_URL = "http://10.42.0.1/"
JSON = {"Content-Type": "application/json"}


@dataclass
class Portal:
    node: Node
    kiosk: KioskServer
    wifi: WifiService
    arp: Path
    routes: Path
    netns: Netns

    @property
    def server(self) -> PortalServer:
        return self.wifi.portal

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def sees(self, **phones: str) -> None:
        """The radio's neighbours: {"127.0.0.5": "02:..."}; keys are ip with _ for ."""
        lines = [
            f"{ip.replace('_', '.'):<17}0x1         0x2         {mac}     *        hs0\n"
            for ip, mac in phones.items()
        ]
        self.arp.write_text(ARP_HEAD + "".join(lines))

    def uplink(self, up: bool) -> None:
        route = (
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        )
        if up:
            route += "wwan0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        self.routes.write_text(route)


@pytest.fixture
def netns(make: Make, tmp_path: Path) -> Iterator[Netns]:
    need_netns()
    ns = Netns(f"e18-{os.getpid()}-portal")
    rules = tmp_path / "hotspot.nft"
    rules.write_text(render_nft(make(interface="hs0").wifi, source="t"))
    ns.run("nft", "-f", str(rules))
    yield ns
    ns.delete()


async def until(check: Any, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(what)


@pytest.fixture
async def portal(
    make: Make, tmp_path: Path, netns: Netns, broker: Mosquitto
) -> AsyncIterator[Portal]:
    nodes = Nodes(write_config(tmp_path, broker.port, gps=False), tmp_path)
    node = await nodes.start()
    await until(lambda: node.uplink.connected, "the node online")
    service = KioskService(node.host, KioskConfig(port=0, buttons=["mediator", "service"]))
    for spec in service.commands():
        node.router.add(spec)
    kiosk = service.server
    extra = (
        f"\n[wifi.portal]\nport = {free_port()}\ndns_port = {free_port()}\nheader_timeout_s = 1\n"
    )
    wifi = make(interface="hs0", max_clients=3, uplinks=["wwan0"], extra=extra).wifi
    p = Portal(node, kiosk, None, tmp_path / "arp", tmp_path / "route", netns)  # type: ignore[arg-type]
    p.sees()
    p.uplink(False)
    p.wifi = WifiService(
        node.host,
        wifi,
        service,
        service.config,
        firewall=NftFirewall(prefix=netns.prefix),
        address="127.0.0.1",
        arp=p.arp,
        routes=p.routes,
    )
    tasks = [asyncio.create_task(service.run()), asyncio.create_task(p.wifi.run())]
    await asyncio.wait_for(kiosk.listening.wait(), 5)
    await asyncio.wait_for(p.server.listening.wait(), 5)
    try:
        yield p
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await nodes.stop_all()


@contextlib.asynccontextmanager
async def phone(ip: str = "127.0.0.5") -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from `ip`, as one phone's would."""
    connector = aiohttp.TCPConnector(local_addr=(ip, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


async def get(
    p: Portal, path: str, *, host: str = "10.42.0.1", ip: str = "127.0.0.5", method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    async with (
        phone(ip) as s,
        s.request(method, f"{p.base}{path}", headers={"Host": host}, allow_redirects=False) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def accept(
    p: Portal, ip: str = "127.0.0.5", body: Any = None, **headers: str
) -> tuple[int, Any]:
    data = json.dumps({"accept": True} if body is None else body).encode()
    hdrs = {"Host": "10.42.0.1", "Origin": "http://10.42.0.1", **JSON, **headers}
    async with phone(ip) as s, s.post(f"{p.base}/api/portal/accept", data=data, headers=hdrs) as r:
        return r.status, await r.json(content_type=None)


async def in_set(p: Portal) -> set[tuple[str, str]]:
    return {(m, str(ip)) for m, ip, _ in await NftFirewall(prefix=p.netns.prefix).sessions()}


# -- what it serves -------------------------------------------------------------------------


async def test_the_portal_page_is_the_kiosk_page_with_the_portals_part(portal: Portal) -> None:
    status, headers, body = await get(portal, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<script src="/static/kiosk.js" defer></script>' in page
    assert '<script src="/static/portal.js" defer></script>' in page
    assert page.index('<section id="portal"') < page.index('<main id="board"')
    for name, kind in (("portal.js", "text/javascript"), ("portal.css", "text/css")):
        status, headers, _ = await get(portal, f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind)
    status, _, _ = await get(portal, "/static/portal.html")  # a piece of the page, not a file
    assert status == 404


async def test_the_portal_serves_the_rider_routes_and_its_own_and_nothing_else(
    portal: Portal,
) -> None:
    rider = set(portal.kiosk.router.routes())
    assert set(portal.server.router.routes()) == rider | {
        ("GET", "/api/captive"),
        ("GET", "/api/portal"),
        ("POST", "/api/portal/accept"),
    }


async def test_a_path_added_for_the_screen_alone_never_reaches_the_portal(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = KioskServer._make_router

    def with_admin(self: KioskServer) -> Router:
        router = original(self)

        async def admin(_: Request) -> Response:
            return json_response({"admin": True})

        router.get("/api/admin", admin)
        return router

    monkeypatch.setattr(KioskServer, "_make_router", with_admin)
    kiosk = KioskServer(portal.kiosk.service, portal.kiosk.config, portal.node.counters)
    again = PortalServer(
        portal.kiosk.service,
        portal.kiosk.config,
        portal.wifi.wifi,
        portal.node.counters,
        sessions=portal.wifi.sessions,
        internet=portal.wifi.internet,
        host="127.0.0.1",
    )
    paths = {path for _, path in again.router.routes()}
    assert "/api/admin" in {path for _, path in kiosk.router.routes()}
    assert "/api/admin" not in paths


async def test_the_live_state_is_the_screens_and_never_resets_for_the_next_rider(
    portal: Portal,
) -> None:
    await portal.kiosk.service.command_message({"id": "m1", "text": "Arrêt Felletin", "lang": "fr"})
    _, _, body = await get(portal, "/api/state")
    state = json.loads(body)
    assert [m["text"] for m in state["messages"]] == ["Arrêt Felletin"]
    assert state["idle_reset_s"] is None
    assert portal.kiosk.snapshot()["idle_reset_s"] == 120.0


async def test_a_live_page_on_a_phone_gets_the_state_pushed(portal: Portal) -> None:
    async with phone() as s, s.get(f"{portal.base}/api/events", headers={"Host": "10.42.0.1"}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        retry = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        assert retry.startswith(b"retry:") and first.startswith(b"event: state")
        await portal.kiosk.service.command_message({"id": "m2", "text": "Bouchon", "lang": "fr"})
        pushed = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        assert "Bouchon" in pushed.decode()


# -- the connectivity checks, and every other host -------------------------------------------


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: f"{p.host}{p.path}")
async def test_every_connectivity_check_is_sent_to_the_portal(portal: Portal, probe: Any) -> None:
    for method in ("GET", "HEAD"):
        status, headers, _ = await get(portal, probe.path, host=probe.host, method=method)
        assert status == 302 and headers["Location"] == PORTAL_URL
        assert headers["Cache-Control"] == "no-store"  # a phone must ask again after accepting


async def test_a_redirect_to_the_portal_closes_its_connection(portal: Portal) -> None:
    # On the hotspot the connection a browser opened to another host (its name resolved to
    # the node, tcp/80 redirected by NAT) is really the portal's, and conntrack keeps it so
    # after the phone accepts. A browser pools an idle connection by host and reuses it for
    # the next request to that host: kept open, the phone's first page after accepting could
    # come back as the portal again. The answer says so and the portal hangs up at once.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", portal.server.port, local_addr=("127.0.0.5", 0)
    )
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: news.example\r\nConnection: keep-alive\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 0.5)  # to the end: closed, not idle
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 302") and b"\r\nconnection: close" in head


async def test_a_post_to_another_host_is_told_to_sign_in_first(portal: Portal) -> None:
    status, headers, body = await get(portal, "/login", host="bank.example", method="POST")
    assert status == 511 and headers["Location"] == PORTAL_URL
    assert b'href="http://10.42.0.1/"' in body


@pytest.mark.parametrize("head", [b"GET / HTTP/1.0\r\n", b"GET / HTTP/1.1\r\nHost:\r\n"])
async def test_a_request_naming_no_host_is_refused_never_sent_round_to_the_portal_again(
    portal: Portal, head: bytes
) -> None:
    """Sent to the portal's own address with the same (empty) Host, a client that names no
    host would be redirected there again and again: a loop, not a page."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", portal.server.port, local_addr=("127.0.0.5", 0)
    )
    try:
        writer.write(head + b"\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"\r\nlocation:" not in answer.lower()


@pytest.mark.parametrize("host", ["evil.example", "10.42.0.1.evil.example", "127.0.0.1.nip.io"])
async def test_a_foreign_host_never_gets_the_api_dns_rebinding(portal: Portal, host: str) -> None:
    for path in ("/api/state", "/api/portal", "/api/captive"):
        status, _, body = await get(portal, path, host=host)
        assert status == 302 and b"{" not in body


async def test_the_captive_api_says_captive_then_the_time_left(portal: Portal) -> None:
    status, headers, body = await get(portal, "/api/captive")
    assert status == 200 and headers["Content-Type"].startswith("application/captive+json")
    assert json.loads(body) == {"captive": True, "user-portal-url": PORTAL_URL}
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    assert (await accept(portal))[0] == 200
    api = json.loads((await get(portal, "/api/captive"))[2])
    assert api["captive"] is False and api["can-extend-session"] is True
    assert 0 < api["seconds-remaining"] <= portal.wifi.wifi.session_s


# -- accepting the terms ------------------------------------------------------------------------


async def test_accepting_puts_the_phones_mac_and_address_in_the_kernels_set(
    portal: Portal,
) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    portal.uplink(True)
    status, body = await accept(portal)
    assert status == 200 and body["accepted"] is True and body["internet"] is True
    assert await in_set(portal) == {("02:00:00:00:00:05", "127.0.0.5")}
    assert portal.node.counters["portal.accepted"] == 1
    assert portal.node.counters["portal.conntrack_error"] == 0


async def test_without_an_uplink_the_phone_is_told_and_still_let_in(portal: Portal) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    portal.uplink(False)
    before = json.loads((await get(portal, "/api/portal"))[2])
    assert before["internet"] is False and before["accepted"] is False
    status, body = await accept(portal)
    assert status == 200 and body["accepted"] is True and body["internet"] is False


async def test_a_route_without_the_broker_is_not_called_internet(
    portal: Portal, broker: Mosquitto
) -> None:
    portal.uplink(True)
    assert json.loads((await get(portal, "/api/portal"))[2])["internet"] is True
    broker.stop()  # a modem keeping its route in a dead zone
    await until(lambda: not portal.node.uplink.connected, "the node offline")
    assert json.loads((await get(portal, "/api/portal"))[2])["internet"] is False


async def test_a_peer_the_radio_does_not_see_cannot_accept(portal: Portal) -> None:
    status, body = await accept(portal, ip="127.0.0.9")
    assert status == 409 and body["error"] == "unknown_phone"
    assert await in_set(portal) == set()


async def test_another_phone_taking_an_accepted_address_has_no_session(portal: Portal) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    assert (await accept(portal))[0] == 200
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:66"})  # the radio now sees another MAC there
    api = json.loads((await get(portal, "/api/captive"))[2])
    assert api["captive"] is True


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"accept": False}, {}, 422),
        ({"accept": "true"}, {}, 422),
        ({"accept": True, "mac": "02:00:00:00:00:01"}, {}, 422),
        ([True], {}, 422),
        ({"accept": True}, {"Origin": "http://evil.example"}, 403),
        ({"accept": True}, {"Sec-Fetch-Site": "cross-site"}, 403),
        ({"accept": True}, {"Content-Type": "text/plain"}, 415),
    ],
)
async def test_an_accept_that_is_not_the_pages_own_is_refused(
    portal: Portal, body: Any, headers: dict[str, str], status: int
) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    got, _ = await accept(portal, body=body, **headers)
    assert got == status
    assert await in_set(portal) == set()


async def test_accepting_is_rate_limited_per_phone(portal: Portal) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05", "127_0_0_6": "02:00:00:00:00:06"})
    codes = [(await accept(portal))[0] for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert (await accept(portal, ip="127.0.0.6"))[0] == 200  # another phone is not held up


async def test_a_full_hotspot_says_so(portal: Portal) -> None:
    phones = {f"127_0_0_{n}": f"02:00:00:00:00:{n:02x}" for n in range(10, 14)}
    portal.sees(**phones)
    codes = [(await accept(portal, ip=f"127.0.0.{n}"))[0] for n in range(10, 14)]
    assert codes == [200, 200, 200, 503]  # max_clients = 3
    _, body = await accept(portal, ip="127.0.0.13")
    assert body["error"] == "full"


LAPTOP = "02:00:00:00:00:66"


async def accepted_at(p: Portal, ip: str) -> bool:
    return bool(json.loads((await get(p, "/api/portal", ip=ip))[2])["accepted"])


async def test_one_device_at_many_addresses_leaves_room_for_the_next_rider(
    portal: Portal,
) -> None:
    """A laptop adds address aliases and accepts from each: one slot, not all three."""
    phones = {f"127_0_0_{n}": LAPTOP for n in (20, 21, 22)}
    portal.sees(**phones, **{"127_0_0_30": "02:00:00:00:00:30"})  # a rider, arriving after
    codes = [(await accept(portal, ip=f"127.0.0.{n}"))[0] for n in (20, 21, 22)]
    assert codes == [200, 200, 200]
    status, body = await accept(portal, ip="127.0.0.30")
    assert status == 200 and body["accepted"] is True
    assert await in_set(portal) == {(LAPTOP, "127.0.0.22"), ("02:00:00:00:00:30", "127.0.0.30")}
    assert portal.wifi.sessions.active() == 2


async def test_accepting_from_a_new_address_moves_the_session_and_the_old_one_loses_access(
    portal: Portal,
) -> None:
    portal.sees(**{"127_0_0_20": LAPTOP, "127_0_0_21": LAPTOP})
    assert (await accept(portal, ip="127.0.0.20"))[0] == 200
    assert (await accept(portal, ip="127.0.0.21"))[0] == 200
    assert await in_set(portal) == {(LAPTOP, "127.0.0.21")}  # what the forward chain matches
    assert not await accepted_at(portal, "127.0.0.20")
    assert await accepted_at(portal, "127.0.0.21")
    assert portal.wifi.sessions.sessions_today() == 1


async def test_a_phone_accepting_again_at_its_address_keeps_its_one_session(
    portal: Portal,
) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    assert [(await accept(portal))[0] for _ in range(2)] == [200, 200]
    assert await in_set(portal) == {("02:00:00:00:00:05", "127.0.0.5")}
    assert portal.wifi.sessions.sessions_today() == 1
    assert portal.node.counters["wifi.sessions.moved"] == 0


async def test_a_full_hotspot_gives_a_rider_the_slot_of_a_device_that_left(
    portal: Portal,
) -> None:
    """One radio changing its MAC (randomisation) between accepts: each MAC it left is a
    device gone from the hotspot, and a rider who finds the hotspot full takes its slot."""
    macs = [f"02:00:00:00:01:{n:02x}" for n in (20, 21, 22)]
    for n, mac in zip((20, 21, 22), macs, strict=True):
        portal.sees(**{f"127_0_0_{n}": mac})  # only the MAC of the moment is on the radio
        assert (await accept(portal, ip=f"127.0.0.{n}"))[0] == 200
    portal.sees(**{"127_0_0_22": macs[2], "127_0_0_30": "02:00:00:00:00:30"})
    status, _ = await accept(portal, ip="127.0.0.30")
    assert status == 200
    assert (macs[0], "127.0.0.20") not in await in_set(portal)  # the oldest one gave way
    assert portal.wifi.sessions.active() == 3
    assert portal.node.counters["wifi.sessions.reclaimed"] == 1


async def test_accepting_is_rate_limited_per_device_whatever_its_addresses(
    portal: Portal,
) -> None:
    portal.sees(**{f"127_0_0_{n}": LAPTOP for n in range(20, 25)})
    codes = [(await accept(portal, ip=f"127.0.0.{n}"))[0] for n in range(20, 25)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]


async def test_a_firewall_that_cannot_be_changed_is_reported_not_hidden(portal: Portal) -> None:
    portal.netns.run("nft", "delete", "table", "inet", "edged_hotspot")
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05"})
    status, body = await accept(portal)
    assert status == 503 and body["error"] == "unavailable"
    assert portal.node.counters["portal.firewall_error"] == 1


# -- presses and what one phone may hold ----------------------------------------------------------


async def press(p: Portal, ip: str, kind: str = "mediator") -> int:
    hdrs = {"Host": "10.42.0.1", "Origin": "http://10.42.0.1", **JSON}
    data = json.dumps({"kind": kind}).encode()
    async with phone(ip) as s, s.post(f"{p.base}/api/requests", data=data, headers=hdrs) as r:
        return r.status


async def test_rider_presses_are_limited_per_phone_without_touching_the_screens_budget(
    portal: Portal,
) -> None:
    codes = [await press(portal, "127.0.0.5", kind) for kind in ("mediator", "service") * 3]
    assert codes[:3] == [202, 202, 200] and 429 in codes[3:]  # the 3rd is a repeat
    async with (
        aiohttp.ClientSession() as screen,  # the on-board screen, on its own listener
        screen.post(f"{portal.kiosk.url}api/requests", json={"kind": "service"}) as r,
    ):
        assert r.status in (200, 202)


async def test_rider_presses_are_limited_per_device_whatever_its_addresses(
    portal: Portal,
) -> None:
    # one phone taking address after address in the hotspot's subnet (`ip address add`)
    portal.sees(**{f"127_0_0_{n}": LAPTOP for n in range(30, 36)})
    codes = [await press(portal, f"127.0.0.{n}", kind) for n, kind in
             zip(range(30, 36), ("mediator", "service") * 3, strict=True)]  # fmt: skip
    assert codes[:3] == [202, 202, 200] and 429 in codes[3:]  # the 3rd is a repeat
    assert await press(portal, "127.0.0.40", "service") in (200, 202)  # another phone: not 429


async def test_a_device_at_many_addresses_has_one_budget_of_requests(portal: Portal) -> None:
    """Counted by address, a laptop taking address after address in the hotspot's subnet
    (`ip address add`) had a full budget of requests at each: through the firewall's 20
    new portal connections a second, each pipelining its 120, the flood the budget was
    for (2,500 answers a second). Counted by MAC, as presses and accepts are."""
    limits = portal.server.limits
    limits.request_burst, limits.requests_per_s = 5, 1 / 60
    portal.sees(**{f"127_0_0_{n}": LAPTOP for n in range(50, 57)})
    served = 0
    for n in range(50, 57):
        with contextlib.suppress(aiohttp.ClientError):
            served += (await get(portal, "/api/portal", ip=f"127.0.0.{n}"))[0] == 200
    assert served == 5
    assert (await get(portal, "/api/portal", ip="127.0.0.60"))[0] == 200  # another phone


async def test_one_phone_cannot_hold_more_connections_than_its_share(portal: Portal) -> None:
    per_peer = portal.wifi.wifi.portal.max_connections_per_peer
    held = []
    try:
        for _ in range(per_peer + 3):
            s = socket.socket()
            s.bind(("127.0.0.7", 0))
            s.connect(("127.0.0.1", portal.server.port or 0))
            held.append(s)
        await until(
            lambda: portal.node.counters["portal.refused_connection.per_peer"] == 3,
            "three connections refused",
        )
        status, _, _ = await get(portal, "/api/portal", ip="127.0.0.8")  # another phone
        assert status == 200
        async with (
            aiohttp.ClientSession() as screen,  # the screen's own listener too
            screen.get(f"{portal.kiosk.url}api/state") as r,
        ):
            assert r.status == 200
    finally:
        for s in held:
            s.close()


async def test_what_a_phone_is_refused_is_logged_without_its_address_or_page(
    portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/wifi.md: the portal logs no host or page a phone asked for, and no phone's
    address. Its refusals (a connection over the phone's share, a page it does not have)
    named both."""
    per_peer = portal.wifi.wifi.portal.max_connections_per_peer
    held = []
    caplog.set_level(logging.INFO)
    try:
        for _ in range(per_peer + 1):
            s = socket.socket()
            s.bind(("127.0.0.7", 0))
            s.connect(("127.0.0.1", portal.server.port or 0))
            held.append(s)
        await until(
            lambda: portal.node.counters["portal.refused_connection.per_peer"] == 1,
            "a connection refused",
        )
    finally:
        for s in held:
            s.close()
    status, _, _ = await get(portal, "/my-bank/statement", ip="127.0.0.9")
    assert status == 404
    assert portal.node.counters["portal.http_404"] == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.7" not in logged and "127.0.0.9" not in logged
    assert "my-bank" not in logged


async def test_an_oversized_request_is_refused_and_the_portal_carries_on(portal: Portal) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", portal.server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 10.42.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.read(200), 5)
    writer.close()
    assert head.split(b" ")[1].startswith(b"4"), head  # 431: the head is over the limit
    body = b"x" * 10_000
    async with (
        phone() as s,
        s.post(
            f"{portal.base}/api/portal/accept",
            data=body,
            headers={"Host": "10.42.0.1", "Origin": "http://10.42.0.1", **JSON},
        ) as r,
    ):
        assert r.status == 413
    assert (await get(portal, "/api/portal"))[0] == 200


# -- health -----------------------------------------------------------------------------------------


async def test_health_counts_phones_and_sessions_without_naming_any(portal: Portal) -> None:
    portal.sees(**{"127_0_0_5": "02:00:00:00:00:05", "127_0_0_6": "02:00:00:00:00:06"})
    assert (await accept(portal))[0] == 200
    health = (await portal.wifi.health()).to_json_dict()
    assert health["clients"] == 2 and health["sessions"] == 1 and health["sessions_today"] == 1
    assert "02:00:00:00:00:05" not in json.dumps(health) and "127.0.0.5" not in json.dumps(health)
    assert health["internet"] is False
    assert "rx_bytes" not in health  # no radio named hs0 on this machine: no byte counts


async def test_a_half_sent_request_is_closed_after_the_portals_header_timeout(
    portal: Portal,
) -> None:
    """A phone that opens a connection and never finishes its request does not keep it:
    the kiosk's gate and timers hold for the portal's listener too."""
    limit = portal.server.config.header_timeout_s
    reader, writer = await asyncio.open_connection("127.0.0.1", portal.server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 10.42.0.1\r\nX-Slow: ")
    await writer.drain()
    t0 = asyncio.get_running_loop().time()
    closed = await asyncio.wait_for(reader.read(), limit + 5)
    took = asyncio.get_running_loop().time() - t0
    writer.close()
    assert closed in (b"",) or closed.startswith(b"HTTP/1.")
    assert took <= limit + 2


async def test_a_flood_of_the_kiosks_failures_does_not_hold_back_the_portals_first(
    portal: Portal, journal: Journal
) -> None:
    """The kiosk and the portal log a failing request's traceback with one template: without
    a key of each server's, the log's flood guard counted them as one, and the screen's
    failures held back the first word of the riders' portal failing."""

    def broken() -> dict[str, Any]:
        raise RuntimeError("a state that cannot be built")

    portal.kiosk.snapshot = broken  # type: ignore[method-assign]
    async with aiohttp.ClientSession() as http:
        for _ in range(2 * BURST):
            async with http.get(f"{portal.kiosk.url}api/state") as r:
                assert r.status == 500
    portal.server.snapshot = broken  # type: ignore[method-assign]
    status, _, _ = await get(portal, "/api/state")
    assert status == 500
    assert journal.with_("portal: GET /api/state failed"), journal.with_("failed")

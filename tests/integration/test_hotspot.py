"""The hotspot end to end, in network namespaces: a node, four phones and "the internet".

- node: a bridge `hs0` standing for the access point, its phone ports isolated from each
  other (what `ap_isolate=1` does in the radio), the generated nftables rules and sysctls,
  the generated dnsmasq (DHCP with option 114, the resolver for accepted phones), and the
  real daemon (`edged run`, kiosk on 0.0.0.0:8080 as for a screen on another device, portal,
  captive DNS); stand-ins for ssh (22) and a local broker (1883) listen on every address;
- internet: Mosquitto (dispatch's broker), a web server answering the OSes' connectivity
  checks as the real internet does, an upstream DNS naming every host as itself;
- phones: ph1 accepts the terms through the API, ph2 never does, ph3 is the attacker,
  ph4 runs Chromium.

Each phone joins with DHCP, then the tests play what a phone (and a rider's hostile phone)
does. Nothing outside the namespaces is touched.
"""

import asyncio
import functools
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edged.config import parse_config
from edged.wifi.layout import Layout
from edged.wifi.probes import PROBES
from edged.wifi.render.dnsmasq import render_dnsmasq
from edged.wifi.render.nft import FLOWS_PER_PHONE, kbytes, render_nft, render_timeouts
from edged.wifi.render.system import render_sysctl
from hil.broker import Mosquitto
from hil.browser import CHROMIUM
from hil.dispatch import Collector, publish
from tests.helpers import phone
from tests.helpers.netns import Netns, NsThread, namespaces, need_netns, sh, veth
from tests.helpers.nodes import ROOT

NODE_IP, INET_IP, UPLINK_IP = "10.42.0.1", "198.18.0.1", "198.18.0.2"
ROUTER_IP = "192.168.8.1"  # a cellular router's LAN, beside the uplink
PORTAL, DNS_PORT, KIOSK = 8081, 8053, 8080
PHONES = ("ph1", "ph2", "ph3", "ph4")
BASE = "rnst/v1/test/shuttle-07"
CLIENT_MBIT = 4.0
TOTAL_MBIT = 6.0
SHOTS = ROOT / "test-artifacts" / "portal"
CONFIG = f"""
[node]
fleet = "test"
id = "shuttle-07"
profile = "shuttle"
name = "Navette 07"

[broker]
host = "{INET_IP}"
port = 1883
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[outbox]
path = "outbox.sqlite"

[health]
interval_s = 2
beat_s = 0  # a full report at every look: the tests read the hotspot's counts

[services.kiosk]
enabled = true
host = "0.0.0.0"
port = {KIOSK}
buttons = ["mediator", "service"]

[wifi]
enabled = true
interface = "hs0"
ssid = "Navette 07"
country = "FR"
uplinks = ["up0"]
client_mbit = {CLIENT_MBIT}
total_mbit = {TOTAL_MBIT}
session_min = 5
"""

pytestmark = pytest.mark.timeout(300)


@dataclass
class Hotspot:
    ns: dict[str, Netns]
    threads: dict[str, NsThread]
    leases: dict[str, dict[str, Any]]
    macs: dict[str, str]
    dispatch: Collector
    broker_port: int
    tmp: Path
    log: Path
    procs: list["subprocess.Popen[bytes]"] = field(default_factory=list)

    def on(self, who: str, fn: Any, *args: Any, wait_s: float = 30.0, **kw: Any) -> Any:
        """Run `fn(*args, **kw)` from inside `who`'s namespace."""
        return self.threads[who].call(functools.partial(fn, *args, **kw), timeout=wait_s)

    def ip(self, who: str) -> str:
        return str(self.leases[who]["address"])

    def accepted(self, who: str) -> dict[str, Any]:
        """`who` has accepted the terms (pressed once: presses are rate-limited)."""
        now = json.loads(self.on(who, phone.fetch, NODE_IP, "/api/portal").body)
        if now["accepted"]:
            return dict(now)
        got = self.accept(who)
        assert got.status == 200, got
        return dict(json.loads(got.body))

    def accept(self, who: str) -> phone.Fetched:
        """What the portal page's button sends."""
        return self.on(
            who,
            phone.fetch,
            NODE_IP,
            "/api/portal/accept",
            method="POST",
            body=b'{"accept": true}',
            headers={"Content-Type": "application/json", "Origin": f"http://{NODE_IP}"},
        )


def _internet_app() -> web.Application:
    """What the connectivity checks get from the real internet."""

    async def answer(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in ("/generate_204", "/gen_204"):
            return web.Response(status=204)
        if path in ("/hotspot-detect.html", "/library/test/success.html"):
            return web.Response(
                text="<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
            )
        if path == "/big":
            return web.Response(body=b"x" * int(request.query.get("n", "1000")))
        return web.Response(text="the internet")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def _serve_internet() -> web.AppRunner:
    runner = web.AppRunner(_internet_app())
    await runner.setup()
    for port in (80, 443, 8080):
        await web.TCPSite(runner, INET_IP, port).start()
    await web.TCPSite(runner, ROUTER_IP, 8080).start()
    return runner


async def _listeners(ports: list[int]) -> list[asyncio.Server]:
    """Stand-ins for the node's other services (ssh, a local broker): they answer anyone
    who reaches them."""

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    return [await asyncio.start_server(hello, "0.0.0.0", p) for p in ports]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def hotspot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hotspot]:
    need_netns()
    for tool in ("nft", "dnsmasq", "mosquitto", "bridge"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is not installed: ./dev test installs it")
    tmp = tmp_path_factory.mktemp("hotspot")
    config = parse_config(CONFIG, base_dir=tmp)
    wifi = config.wifi
    threads: dict[str, NsThread] = {}
    procs: list[subprocess.Popen[bytes]] = []
    with namespaces("node", "inet", *PHONES) as ns:
        node, inet = ns["node"], ns["inet"]
        try:
            # -- the wires ------------------------------------------------------------
            node.ip("link", "add", "hs0", "type", "bridge")
            node.ip("link", "set", "hs0", "up")
            node.ip("addr", "add", f"{NODE_IP}/24", "dev", "hs0")
            for i, who in enumerate(PHONES, start=1):
                veth(node, f"p{i}", ns[who], "wlan0")
                node.ip("link", "set", f"p{i}", "master", "hs0")
                sh("bridge", "-n", node.name, "link", "set", "dev", f"p{i}", "isolated", "on")
            veth(node, "up0", inet, "isp0")
            node.ip("addr", "add", f"{UPLINK_IP}/24", "dev", "up0")
            inet.ip("addr", "add", f"{INET_IP}/24", "dev", "isp0")
            inet.ip("addr", "add", f"{ROUTER_IP}/24", "dev", "isp0")  # the modem's admin page
            node.ip("addr", "add", "192.168.8.2/24", "dev", "up0")
            node.ip("route", "add", "default", "via", INET_IP)
            # -- the node's generated files ---------------------------------------------
            (tmp / "hotspot.nft").write_text(render_nft(wifi, source="test"))
            node.run("nft", "-f", str(tmp / "hotspot.nft"))
            (tmp / "timeouts.nft").write_text(render_timeouts(wifi, source="test"))
            node.run("nft", "-f", str(tmp / "timeouts.nft"))
            (tmp / "sysctl.conf").write_text(render_sysctl(wifi, forward=True, source="test"))
            node.run("sysctl", "-q", "-p", str(tmp / "sysctl.conf"))
            layout = Layout().under(tmp / "etc", tmp / "run")
            (tmp / "run" / "edged-hotspot").mkdir(parents=True)
            conf = render_dnsmasq(wifi, layout, source="test") + f"server={INET_IP}\n"
            (tmp / "dnsmasq.conf").write_text(conf)
            # -- the internet -----------------------------------------------------------
            threads = {who: NsThread(n.name) for who, n in ns.items()}
            broker = threads["inet"].call(
                lambda: Mosquitto(tmp, extra=f"listener 1883 {INET_IP}").start()
            )
            procs.append(broker.proc)
            procs.append(
                inet.popen(
                    [
                        "dnsmasq",
                        "--keep-in-foreground",
                        "--no-resolv",
                        "--no-hosts",
                        f"--listen-address={INET_IP}",
                        "--bind-interfaces",
                        f"--address=/#/{INET_IP}",
                        f"--pid-file={tmp / 'inet-dns.pid'}",
                        "--log-queries",  # what reached "the internet"'s resolver
                        f"--log-facility={tmp / 'inet-dns.log'}",
                    ],
                )
            )
            threads["inet"].run(_serve_internet())
            dispatch = Collector(broker.port, topic=f"{BASE}/#")
            threads["inet"].run(dispatch.__aenter__())
            # -- the node ---------------------------------------------------------------
            procs.append(
                node.popen(
                    ["dnsmasq", "--keep-in-foreground", f"--conf-file={tmp / 'dnsmasq.conf'}"]
                )
            )
            threads["node"].run(_listeners([22, 1883]))
            (tmp / "edged.toml").write_text(CONFIG)
            log = tmp / "edged.log"
            with log.open("ab") as out:
                env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
                procs.append(
                    node.popen(
                        [sys.executable, "-m", "edged", "run", "-c", str(tmp / "edged.toml")],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=tmp,
                    )
                )
            _wait(
                lambda: threads["node"].call(phone.tcp, NODE_IP, PORTAL) == "open",
                20,
                f"the portal on {NODE_IP}:{PORTAL} ({log})",
            )
            _wait(
                lambda: any(m.payload.get("state") == "online" for m in dispatch.on("state")),
                20,
                "the node online at dispatch",
            )
            # -- the phones join ----------------------------------------------------------
            leases, macs = {}, {}
            for who in PHONES:
                done = ns[who].run(
                    "env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.helpers.dhcp", "wlan0"
                )
                leases[who] = json.loads(done.stdout)
                ns[who].resolv(leases[who]["dns"][0])
                link = sh("ip", "-n", ns[who].name, "-j", "link", "show", "wlan0").stdout
                macs[who] = json.loads(link)[0]["address"]
            yield Hotspot(ns, threads, leases, macs, dispatch, broker.port, tmp, log, procs)
        finally:
            for p in procs:
                if p is not None and p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(5)
                    except subprocess.TimeoutExpired:
                        p.kill()
            for t in threads.values():
                t.close()


# -- joining ----------------------------------------------------------------------------------


def test_dhcp_gives_a_phone_its_address_the_router_the_dns_and_the_captive_api(
    hotspot: Hotspot,
) -> None:
    lease = hotspot.leases["ph2"]
    assert lease["address"].startswith("10.42.0.") and lease["prefix"] == 24
    assert lease["router"] == NODE_IP and lease["dns"] == [NODE_IP]
    assert lease["captive_api"] == f"http://{NODE_IP}/api/captive"  # RFC 8910, option 114


def test_before_accepting_every_name_is_the_node_whichever_server_is_asked(
    hotspot: Hotspot,
) -> None:
    for server in (NODE_IP, "8.8.8.8", INET_IP):
        got = hotspot.on("ph2", phone.resolve, server, "connectivitycheck.gstatic.com")
        assert got is not None and got.rcode == 0, server
        assert got.addresses == [NODE_IP], server
    aaaa = hotspot.on("ph2", phone.resolve, NODE_IP, "captive.apple.com", 28)
    assert aaaa is not None and aaaa.rcode == 0 and aaaa.addresses == []


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: f"{p.system}:{p.host}{p.path}")
def test_each_connectivity_check_is_sent_to_the_portal(hotspot: Hotspot, probe: Any) -> None:
    name = hotspot.on("ph2", phone.resolve, NODE_IP, probe.host)
    assert name is not None and name.addresses == [NODE_IP]
    got = hotspot.on("ph2", phone.fetch, name.addresses[0], probe.path, host=probe.host)
    assert got.status == 302
    assert got.headers["location"] == f"http://{NODE_IP}/"
    assert got.headers["cache-control"] == "no-store"


def test_a_page_at_an_address_typed_by_hand_is_sent_to_the_portal_too(hotspot: Hotspot) -> None:
    got = hotspot.on("ph2", phone.fetch, INET_IP, "/", host=INET_IP)
    assert got.status == 302 and got.headers["location"] == f"http://{NODE_IP}/"


def test_the_captive_api_says_captive_in_rfc_8908_form(hotspot: Hotspot) -> None:
    got = hotspot.on("ph2", phone.fetch, NODE_IP, "/api/captive")
    assert got.status == 200
    assert got.headers["content-type"].startswith("application/captive+json")
    assert json.loads(got.body) == {"captive": True, "user-portal-url": f"http://{NODE_IP}/"}


def test_before_accepting_no_name_leaves_the_node_so_no_dns_tunnel(hotspot: Hotspot) -> None:
    secret = f"exfil-{os.getpid()}.tunnel.example"
    for qtype in (1, 16, 28):  # A, TXT, AAAA
        for server in (NODE_IP, INET_IP):
            hotspot.on("ph2", phone.resolve, server, secret, qtype)
    hotspot.accepted("ph1")
    allowed = f"allowed-{os.getpid()}.example"
    assert hotspot.on("ph1", phone.resolve, NODE_IP, allowed).addresses == [INET_IP]
    upstream = hotspot.tmp / "inet-dns.log"
    _wait(lambda: allowed in upstream.read_text(), 5, "an accepted phone's name upstream")
    assert secret not in upstream.read_text()


# -- what a phone cannot reach ------------------------------------------------------------------

NODE_PORTS = [(NODE_IP, 22), (NODE_IP, 1883), (NODE_IP, KIOSK), (NODE_IP, DNS_PORT + 1),
              (UPLINK_IP, 22), (UPLINK_IP, KIOSK), (UPLINK_IP, PORTAL), ("127.0.0.1", KIOSK)]  # fmt: skip


def _probe_ports(hotspot: Hotspot, who: str) -> dict[str, str]:
    def all_at_once() -> dict[str, str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(NODE_PORTS)) as pool:  # threads made here: same namespace
            found = pool.map(lambda a: phone.tcp(a[0], a[1], 1.5), NODE_PORTS)
            return {f"{ip}:{port}": r for (ip, port), r in zip(NODE_PORTS, found, strict=True)}

    return hotspot.on(who, all_at_once)


def test_the_nodes_other_ports_do_not_answer_a_phone(hotspot: Hotspot) -> None:
    # the node itself answers on them (the stand-ins and the kiosk listen on every address)
    assert hotspot.on("node", phone.tcp, NODE_IP, 22) == "open"
    assert hotspot.on("node", phone.tcp, NODE_IP, KIOSK) == "open"
    found = _probe_ports(hotspot, "ph2")
    assert all(r != "open" for r in found.values()), found


def test_accepting_the_terms_opens_none_of_the_nodes_other_ports(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    found = _probe_ports(hotspot, "ph1")
    assert all(r != "open" for r in found.values()), found


def test_ipv6_reaches_nothing_on_the_hotspot(hotspot: Hotspot) -> None:
    node = hotspot.ns["node"].name
    links = ["hs0", *(f"p{i}" for i in range(1, len(PHONES) + 1))]
    addrs = [
        a["local"]
        for link in links
        for i in json.loads(sh("ip", "-n", node, "-j", "-6", "addr", "show", "dev", link).stdout)
        for a in i.get("addr_info", [])
    ]
    assert not any(a for a in addrs if not a.startswith("fe80:")), addrs
    # whatever link-local address the node's side still has, a phone gets nothing from it
    for addr in addrs:
        for port in (22, KIOSK, PORTAL):
            got = hotspot.on("ph2", phone.tcp, f"{addr}%wlan0", port, 1.0, socket.AF_INET6)
            assert got != "open", (addr, port, got)
    hs0 = json.loads(sh("ip", "-n", node, "-j", "-6", "addr", "show", "dev", "hs0").stdout)
    assert [a for i in hs0 for a in i.get("addr_info", [])] == []  # the sysctl took it off


def test_a_phone_cannot_reach_another_phone_directly_or_through_the_node(hotspot: Hotspot) -> None:
    async def listen() -> asyncio.Server:
        return await asyncio.start_server(lambda r, w: w.close(), "0.0.0.0", 7000)

    hotspot.threads["ph2"].run(listen())
    hotspot.accepted("ph1")  # even a phone that accepted
    ph2 = hotspot.ip("ph2")
    assert hotspot.on("ph1", phone.tcp, ph2, 7000, 1.5) == "timeout"  # the radio's isolation
    hotspot.ns["ph1"].ip("route", "add", f"{ph2}/32", "via", NODE_IP)
    try:
        assert hotspot.on("ph1", phone.tcp, ph2, 7000, 1.5) == "timeout"  # the firewall's
    finally:
        hotspot.ns["ph1"].ip("route", "del", f"{ph2}/32", "via", NODE_IP)


# -- accepting ----------------------------------------------------------------------------------


def test_before_accepting_the_internet_is_refused(hotspot: Hotspot) -> None:
    assert hotspot.on("ph2", phone.tcp, INET_IP, 8080) == "refused"
    assert hotspot.on("ph2", phone.tcp, INET_IP, 443) == "refused"
    # an https check (Android's www.google.com/generate_204): its name is the node's
    assert hotspot.on("ph2", phone.tcp, NODE_IP, 443) == "refused"


def test_accepting_lets_the_phone_through_for_the_session_length(hotspot: Hotspot) -> None:
    access = hotspot.accepted("ph1")
    assert access["accepted"] is True and access["internet"] is True
    assert 0 < access["seconds_left"] <= 300
    assert hotspot.on("ph1", phone.fetch, INET_IP, "/", port=8080).body == b"the internet"
    listed = hotspot.ns["node"].run("nft", "-j", "list", "set", "inet", "edged_hotspot", "allowed")
    elements = json.loads(listed.stdout)["nftables"][1]["set"]["elem"]
    pairs = {tuple(e["elem"]["val"]["concat"]): e["elem"] for e in elements}
    mine = pairs[(hotspot.macs["ph1"], hotspot.ip("ph1"))]
    timeout = mine.get("timeout", json.loads(listed.stdout)["nftables"][1]["set"]["timeout"])
    assert timeout == 300 and 0 < mine["expires"] <= 300  # the kernel ends it on time
    api = json.loads(hotspot.on("ph1", phone.fetch, NODE_IP, "/api/captive").body)
    assert api["captive"] is False and 0 < api["seconds-remaining"] <= 300


def test_an_accepted_phone_still_cannot_reach_the_networks_beside_the_uplink(
    hotspot: Hotspot,
) -> None:
    hotspot.accepted("ph1")
    assert hotspot.on("node", phone.tcp, ROUTER_IP, 8080) == "open"  # the node can
    assert hotspot.on("ph1", phone.tcp, ROUTER_IP, 8080, 1.5) == "timeout"
    assert hotspot.on("ph1", phone.tcp, INET_IP, 8080) == "open"


def test_an_accepted_phone_gets_real_answers_to_its_checks_and_names(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    name = hotspot.on("ph1", phone.resolve, NODE_IP, "connectivitycheck.gstatic.com")
    assert name is not None and name.addresses == [INET_IP]  # the real resolver now
    got = hotspot.on(
        "ph1", phone.fetch, INET_IP, "/generate_204", host="connectivitycheck.gstatic.com"
    )
    assert got.status == 204


def test_what_a_phone_opened_before_accepting_does_not_keep_it_captive_after(
    hotspot: Hotspot,
) -> None:
    # Before accepting, a phone's web connections and DNS queries are NAT'ed to the portal
    # and the captive DNS, and conntrack keeps that for each flow's life. A browser keeps
    # an idle connection per host and reuses it for that host's next page; a resolver may
    # reuse its sockets (dnsmasq as a laptop's cache keeps a pool). Kept, the page opened
    # right after accepting came back as the portal's redirect, and every name as the
    # node's address, for as long as the flow lived. (ph3 has not accepted yet here.)
    def before() -> tuple[http.client.HTTPConnection, int, socket.socket, list[str]]:
        conn = http.client.HTTPConnection(INET_IP, 80, timeout=5)  # made in ph3's namespace
        conn.request("GET", "/", headers={"Host": "news.example"})
        first = conn.getresponse()
        first.read()
        dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dns.settimeout(2)
        dns.sendto(phone.dns_query("news.example"), (NODE_IP, 53))
        return conn, first.status, dns, phone.parse_answer(dns.recv(4096)).addresses

    def after(conn: http.client.HTTPConnection, dns: socket.socket) -> tuple[int, bytes, list[str]]:
        try:
            conn.request("GET", "/", headers={"Host": "news.example"})  # reused if still open
            got = conn.getresponse()
            dns.sendto(phone.dns_query("news.example"), (NODE_IP, 53))  # the same source port
            return got.status, got.read(), phone.parse_answer(dns.recv(4096)).addresses
        finally:
            conn.close()
            dns.close()

    conn, status, dns, names = hotspot.on("ph3", before)
    assert (status, names) == (302, [NODE_IP])
    hotspot.accepted("ph3")
    assert hotspot.on("ph3", after, conn, dns) == (200, b"the internet", [INET_IP])


def test_the_rate_cap_holds_a_phone_to_its_share(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    n = 2_000_000  # the first ~1 MB is the bucket's allowance; the rest comes at the cap
    got = hotspot.on("ph1", phone.download, INET_IP, 8080, f"/big?n={n}", wait_s=60)
    assert got["status"] == 200 and got["bytes"] == n
    assert got["steady_mbit"] <= CLIENT_MBIT * 1.2, got
    assert got["steady_mbit"] >= CLIENT_MBIT * 0.3, got  # and not starved


def test_the_total_cap_holds_all_phones_together(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    hotspot.accepted("ph3")
    n = 2_000_000

    def both() -> list[dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            jobs = [
                pool.submit(
                    hotspot.on, who, phone.download, INET_IP, 8080, f"/big?n={n}", wait_s=60
                )
                for who in ("ph1", "ph3")
            ]
            return [j.result() for j in jobs]

    got = both()
    assert all(g["bytes"] == n for g in got), got
    # The cap is a token bucket of rate + burst (2 s of the total rate here): a transfer
    # may start with that much at once, then goes at the rate. Over the whole transfer of
    # both phones, what came beyond the bucket came at most at the total rate.
    began = min(g["started"] for g in got)
    ended = max(g["marks"][-1][0] for g in got)
    bucket = 2 * kbytes(TOTAL_MBIT) * 1024
    beyond = (2 * n - bucket) * 8 / (ended - began) / 1e6
    assert beyond <= TOTAL_MBIT * 1.15, (beyond, got)
    assert beyond >= TOTAL_MBIT * 0.3, (beyond, got)


# -- a rider's phone, in a real browser --------------------------------------------------------


def _command(hotspot: Hotspot, name: str, args: dict[str, Any], cmd_id: str) -> None:
    """What dispatch does: a command through the broker (from the internet's side)."""
    payload = json.dumps({"id": cmd_id, "args": args}).encode()
    hotspot.threads["inet"].run(publish(hotspot.broker_port, f"{BASE}/cmd/{name}", payload))


def test_the_portal_on_a_phone_shows_the_kiosk_and_lets_the_rider_through(hotspot: Hotspot) -> None:
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: ./dev test installs it")
    soon = time.time() + 600
    _command(
        hotspot,
        "kiosk.schedule",
        {
            "place": "Marché de services de Felletin",
            "stops": [
                {"name": "Felletin – place Courtaud", "eta": _iso(soon)},
                {"name": "Aubusson – gare routière", "eta": _iso(soon + 1200)},
            ],
            "services": [
                {"id": "fs", "provider": "France Services", "what": "Papiers, CAF, impôts"},
                {"id": "cpam", "provider": "CPAM", "where": "Camion 2"},
            ],
        },
        "sched-1",
    )
    before = len(hotspot.dispatch.on("kiosk/requests"))
    browser = hotspot.ns["ph4"].popen(
        ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.helpers.phone_browser",
         str(SHOTS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert browser.stdout is not None
        cue = browser.stdout.readline().decode().strip()
        assert cue == "announce now", (
            browser.stderr.read().decode()[-3000:] if browser.stderr else ""
        )
        _command(
            hotspot,
            "kiosk.message",
            {"id": "m1", "text": "Arrêt Felletin dans 10 min", "lang": "fr"},
            "msg-1",
        )
        out, err = browser.communicate(timeout=120)
    finally:
        if browser.poll() is None:
            browser.kill()
    assert browser.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out)
    assert seen["landed"] == f"http://{NODE_IP}/"  # Android's check led to the portal
    assert seen["errors"] == []
    b = seen["before"]
    assert b["lang"] == "fr" and b["name"] == "Navette 07" and not b["scrolls"]
    assert b["stops"][0].startswith("Felletin")
    assert b["services"] == ["France Services", "CPAM"]
    assert "Arrêt Felletin dans 10 min" in seen["announced"]  # pushed live, no reload
    assert b["buttons"] == ["Appeler le médiateur", "Une question sur un service"]
    assert b["state"] == "ask" and "acceptez les conditions" in b["status"]
    assert seen["mediator_status"] == "sent", seen["mediator"]
    a = seen["after"]
    assert a["state"] == "online" and a["accept_hidden"] and "Connecté à internet" in a["status"]
    # Android's sign-in page asks the network stack to check again only when a page starts
    # or finishes loading (AOSP CaptivePortalLoginActivity: onPageStarted/onPageFinished
    # call reevaluateNetwork); after a fetch alone it stayed open, the wifi unvalidated
    # and apps on mobile data, until the rider closed it. The page loads itself again.
    assert seen["loaded_again"] is True
    assert seen["english"]["status"].startswith("Online until")
    small = seen["small_english"]  # a phone set to English gets English at once
    assert small["lang"] == "en" and small["summary"] == "Terms · privacy: nothing is kept"
    assert small["state"] == "online"
    assert not small["scrolls"]

    # the press reached dispatch through the broker, with nothing of the phone in it
    def pressed() -> bool:
        return len(hotspot.dispatch.on("kiosk/requests")) > before

    _wait(pressed, 10, "the mediator request at dispatch")
    request = hotspot.dispatch.on("kiosk/requests")[-1].payload
    assert request["kind"] == "mediator" and request["lang"] == "fr"
    assert hotspot.ip("ph4") not in json.dumps(request)
    assert hotspot.macs["ph4"] not in json.dumps(request)


# -- honesty and privacy ------------------------------------------------------------------------


def test_health_counts_the_hotspot_and_nothing_else(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    n = len(hotspot.dispatch.on("health"))
    _wait(lambda: len(hotspot.dispatch.on("health")) > n, 10, "a fresh health report")
    wifi = hotspot.dispatch.on("health")[-1].payload["wifi"]
    assert set(wifi) == {
        "clients", "sessions", "sessions_today", "rx_bytes", "tx_bytes", "internet", "pages",
    }  # fmt: skip
    # sessions_today starts again at midnight in the node's zone while open sessions go on,
    # so it can be below `sessions` for the 5 minutes after (tests/edged/wifi count it)
    assert wifi["sessions"] >= 1 and wifi["sessions_today"] >= 0
    assert wifi["clients"] >= 1 and wifi["rx_bytes"] > 0 and wifi["tx_bytes"] > 0
    assert wifi["internet"] is True


def test_no_phone_address_or_browsing_reaches_dispatch_or_the_log(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    sent = json.dumps([m.payload for m in hotspot.dispatch.messages]).lower()
    log = hotspot.log.read_text().lower()
    for who in PHONES:
        assert hotspot.macs[who].lower() not in sent and hotspot.macs[who].lower() not in log
        assert hotspot.ip(who) not in sent
    for probe in PROBES:  # where the phones tried to go
        assert probe.host not in sent and probe.host not in log


def test_without_an_uplink_the_portal_says_so_and_still_takes_the_terms(hotspot: Hotspot) -> None:
    node = hotspot.ns["node"]
    node.ip("link", "set", "up0", "down")  # out of coverage: the default route goes
    try:
        now = json.loads(hotspot.on("ph2", phone.fetch, NODE_IP, "/api/portal").body)
        assert now["internet"] is False and now["accepted"] is False
        got = hotspot.accept("ph2")
        assert got.status == 200
        access = json.loads(got.body)
        assert access["accepted"] is True and access["internet"] is False
    finally:
        node.ip("link", "set", "up0", "up")
        node.ip("route", "replace", "default", "via", INET_IP)


# -- the attacker ---------------------------------------------------------------------------------


def test_a_phone_using_an_accepted_phones_address_is_not_let_through(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    ph3 = hotspot.ns["ph3"]
    own = f"{hotspot.ip('ph3')}/24"
    stolen = f"{hotspot.ip('ph1')}/24"
    ph3.ip("addr", "del", own, "dev", "wlan0")
    ph3.ip("addr", "add", stolen, "dev", "wlan0")
    ph3.ip("route", "replace", "default", "via", NODE_IP)
    try:
        assert hotspot.on("ph3", phone.tcp, INET_IP, 8080, 1.5) != "open"
        # nor does the node answer it at all: its ARP naming ph1's address is dropped (the
        # portal's own refusal of another phone's session at that address:
        # test_portal.py::test_another_phone_taking_an_accepted_address_has_no_session)
        assert hotspot.on("ph3", phone.tcp, NODE_IP, PORTAL, 1.5) != "open"
    finally:
        ph3.ip("addr", "flush", "dev", "wlan0")
        ph3.ip("addr", "add", own, "dev", "wlan0")
        ph3.ip("route", "replace", "default", "via", NODE_IP)
        hotspot.ns["node"].run("ip", "neigh", "del", hotspot.ip("ph1"), "dev", "hs0", check=False)


def test_a_phone_using_an_accepted_phones_mac_is_not_let_through(hotspot: Hotspot) -> None:
    hotspot.accepted("ph1")
    ph2 = hotspot.ns["ph2"]  # never accepted
    own_mac = hotspot.macs["ph2"]
    ph2.ip("link", "set", "wlan0", "address", hotspot.macs["ph1"])
    try:
        assert hotspot.on("ph2", phone.tcp, INET_IP, 8080, 1.5) != "open"
    finally:
        ph2.ip("link", "set", "wlan0", "address", own_mac)
        hotspot.ns["node"].run("ip", "neigh", "del", hotspot.ip("ph2"), "dev", "hs0", check=False)


# -- last: its flows stay in the node's table for conntrack's UDP timeout -----------------------


def test_an_accepted_phone_cannot_fill_the_nodes_connection_table(hotspot: Hotspot) -> None:
    # The attack: a phone that accepted opens new flows as fast as its rate cap lets it
    # (a bare UDP datagram or a SYN each: thousands a second). Every one is an entry in
    # the node's connection tracking table, shared with the node's own traffic; at
    # nf_conntrack_max (262144 here) the kernel drops every new connection, the node's MQTT
    # reconnect and the kiosk screen's included: the node kept offline by one rider. SYNs
    # at the 2 Mbit/s cap are about 4000 a second, each kept 120 s unanswered: past 262144
    # in about a minute. Here 3 x FLOWS_PER_PHONE datagrams: 1493 flows went through.
    hotspot.accepted("ph1")
    seen: set[tuple[str, int]] = set()

    def count() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((INET_IP, 9999))
        sock.settimeout(0.5)

        def listen() -> None:
            try:
                while True:
                    _, peer = sock.recvfrom(64)
                    seen.add(peer)
            except OSError:
                return  # closed (or quiet for long: the test is over)

        threading.Thread(target=listen, daemon=True).start()
        return sock

    def flows(n: int) -> None:
        for _ in range(n):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"x", (INET_IP, 9999))  # each from a port of its own: a new flow
            time.sleep(0.0005)  # within the rate cap's budget: the cap is not the limit

    server = hotspot.on("inet", count)
    try:
        hotspot.on("ph1", flows, 3 * FLOWS_PER_PHONE, wait_s=60)
        time.sleep(0.5)
    finally:
        server.close()
    assert FLOWS_PER_PHONE // 2 <= len(seen) <= FLOWS_PER_PHONE

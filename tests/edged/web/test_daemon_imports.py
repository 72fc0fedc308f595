"""`edged run` with the kiosk and the captive portal serves them without aiohttp (it cost
~12 MB of a Pi Zero's memory): a separate interpreter runs a node with both, asks each a
page, a live stream and a press, and says which HTTP libraries it loaded."""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.broker import free_port
from tests.helpers.nodes import ROOT, write_config

CHILD = r"""
import asyncio, json, sys

import edged.cli.main  # what `edged run` loads first
from edged.config import load_config
from edged.node import Node
from edged.services.kiosk import KioskService
from edged.services.wifi import WifiService
from edged.wifi.portal import PortalServer


async def ask(port, head):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return line.decode().strip()


async def main():
    node = Node(load_config(sys.argv[1]), base_dir=sys.argv[2])
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    await asyncio.wait_for(node.ready.wait(), 10)
    kiosk, wifi = node.services["kiosk"], node.services["wifi"]
    assert isinstance(kiosk, KioskService) and isinstance(wifi, WifiService)
    # the hotspot's address is not on this machine: the same portal, on loopback
    portal = PortalServer(
        kiosk, kiosk.config, wifi.wifi, node.counters,
        sessions=wifi.sessions, internet=wifi.internet, host="127.0.0.1",
    )
    portal.config = portal.config.model_copy(update={"port": 0})
    serving = asyncio.create_task(portal.run())
    await asyncio.wait_for(kiosk.server.listening.wait(), 10)
    await asyncio.wait_for(portal.listening.wait(), 10)
    press = '{"kind": "pickup"}'
    answers = {}
    for name, port, host in (
        ("kiosk", kiosk.server.port, "127.0.0.1"), ("portal", portal.port, "10.42.0.1")
    ):
        for what, head in (
            ("page", f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            ("events", f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            ("press", f"POST /api/requests HTTP/1.1\r\nHost: {host}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(press)}\r\n\r\n{press}"),
        ):
            answers[f"{name}.{what}"] = await ask(port, head)
    serving.cancel()
    stop.set()
    await asyncio.wait_for(task, 10)
    loaded = sorted(m for m in ("aiohttp", "yarl", "multidict", "h11") if m in sys.modules)
    print(json.dumps({"answers": answers, "loaded": loaded}))


asyncio.run(main())
"""


def test_a_node_serving_the_kiosk_and_the_portal_never_loads_aiohttp(tmp_path: Path) -> None:
    extra = f"""port = {free_port()}
buttons = ["pickup"]

[wifi]
enabled = true
ssid = "Navette 07"
country = "FR"
interface = "hs0"

[wifi.portal]
port = {free_port()}
dns_port = {free_port()}
"""
    config = write_config(tmp_path, free_port(), gps=False, kiosk=True, extra=extra)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(config), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    answers = seen["answers"]
    assert answers["kiosk.page"] == answers["portal.page"] == "HTTP/1.1 200 OK", answers
    assert answers["kiosk.events"] == answers["portal.events"] == "HTTP/1.1 200 OK", answers
    assert answers["kiosk.press"].startswith("HTTP/1.1 20"), answers
    assert answers["portal.press"].startswith("HTTP/1.1 20"), answers
    assert seen["loaded"] == ["h11"], "the daemon loaded an HTTP library it no longer needs"

"""The listener's binding on a host set up as a Pi can be: IPv6 turned off while /etc/hosts
still names ::1 `localhost` (Debian's does), in a network namespace of the test's own."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.netns import DEBIAN_HOSTS, Netns, ipv6_off, python_in

LISTEN = """
import asyncio, json, logging, socket, sys
from core.counters import Counters
from edged.web.accept import Listener

logging.basicConfig(level=logging.WARNING, format="%(message)s")

async def main(host: str) -> None:
    listener = Listener(asyncio.Protocol, None, counters=Counters(), name="feed")
    try:
        port = await listener.start(host, 0)
    except OSError as exc:
        print(json.dumps({"errno": exc.errno, "error": exc.strerror}))
        return
    bound = [s.getsockname()[0] for s in listener.sockets]
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    listener.close()
    print(json.dumps({"bound": bound}))

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture
def v4_only() -> Iterator[Netns]:
    """`localhost` names 127.0.0.1 and ::1; `gone` two addresses the host does not have."""
    with ipv6_off(DEBIAN_HOSTS + "198.51.100.7 gone\n::1 gone\n") as ns:
        yield ns


def listen_in(ns: Netns, host: str) -> tuple[dict[str, Any], str]:
    """Start a listener on `host` in `ns`: what it bound (or its error), and its log."""
    done = python_in(ns, LISTEN, host)
    return json.loads(done.stdout), done.stderr


def test_a_name_with_an_address_the_host_lacks_is_listened_on_at_the_others(
    v4_only: Netns,
) -> None:
    """`localhost` on a Pi with IPv6 off: ::1 cannot be bound (EADDRNOTAVAIL). The page
    was never served (the kiosk retried for ever); now 127.0.0.1 is, and the log says
    which address was left out and why."""
    result, log = listen_in(v4_only, "localhost")
    assert result == {"bound": ["127.0.0.1"]}
    assert "listening on 127.0.0.1 only, not on ::1 (Cannot assign requested address)" in log


def test_a_name_none_of_whose_addresses_the_host_has_fails_naming_each(v4_only: Netns) -> None:
    result, _ = listen_in(v4_only, "gone")
    assert result["errno"] == 99  # EADDRNOTAVAIL, which the kiosk's and doctor's words read
    assert "198.51.100.7: Cannot assign requested address" in result["error"]
    assert "::1: Cannot assign requested address" in result["error"]


COMES_UP = """
import asyncio, json, logging, socket, subprocess, sys
from core.counters import Counters
from edged.web import accept

logging.basicConfig(level=logging.INFO, format="%(message)s")
accept.RETRY_LEFT_OUT_S = 0.1

async def main() -> None:
    listener = accept.Listener(asyncio.Protocol, None, counters=Counters(), name="feed")
    port = await listener.start("board", 0)
    await asyncio.sleep(0.2)
    subprocess.run(["ip", "addr", "add", "198.51.100.7/32", "dev", "lo"], check=True)
    served = False
    for _ in range(30):
        try:
            with socket.create_connection(("198.51.100.7", port), timeout=1):
                served = True
                break
        except OSError:
            await asyncio.sleep(0.05)
    bound = sorted(s.getsockname()[0] for s in listener.sockets)
    listener.close()
    print(json.dumps({"served": served, "bound": bound}))

asyncio.run(main())
"""


def test_an_address_left_out_is_listened_on_once_the_host_has_it() -> None:
    """A name whose addresses include wlan0's, which comes up after edged starts: the
    listener began on the others and never bound that one (the kiosk's retry ran only when
    no address bound). It is tried again until the host has it."""
    with ipv6_off(DEBIAN_HOSTS + "127.0.0.1 board\n198.51.100.7 board\n") as ns:
        done = python_in(ns, COMES_UP)
    assert json.loads(done.stdout) == {"served": True, "bound": ["127.0.0.1", "198.51.100.7"]}
    assert "feed: now listening on 198.51.100.7 too" in done.stderr

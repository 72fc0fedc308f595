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

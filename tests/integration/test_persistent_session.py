"""Commands sent while the node is offline arrive when it is back (issue #12.4), and are
still de-duplicated by id and refused when stale."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.security.signing import public_key_text, sign
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, online, replies, reply_to, send
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

KEY = Ed25519PrivateKey.generate()
SKEW_S = 2
SECURITY = f"""
[clock]
trust_system_clock = true
[security]
max_skew_s = {SKEW_S}
[[security.keys]]
id = "ops"
public_key = "{public_key_text(KEY.public_key())}"
scopes = ["read", "operate"]
"""


def signed(name: str, cmd_id: str, args: dict[str, Any]) -> bytes:
    ts = int(time.time() * 1000)
    sig = sign(KEY, f"{BASE}/cmd/{name}", cmd_id, ts, args)
    return json.dumps({"id": cmd_id, "ts": ts, "args": args, "kid": "ops", "sig": sig}).encode()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_commands_sent_while_the_node_was_offline_are_answered_once_it_is_back(
    broker: Mosquitto, tmp_path: Path, spawn: Any, protocol: str
) -> None:
    config = write_config(tmp_path, broker.port, gps=False, protocol=protocol, extra=SECURITY)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        node = await online(c, config, spawn)
        await node.stop()
        school = b'{"id": "q1", "args": {"mode": "school"}}'
        await send(broker.port, "cmd/mode.set", school)
        await send(broker.port, "cmd/mode.set", school)  # dispatch retried: the same id
        await send(broker.port, "cmd/ping", signed("ping", "stale1", {}))
        await asyncio.sleep(SKEW_S + 1)  # the signed one is now older than max_skew_s
        await send(broker.port, "cmd/mode.set", b'{"id": "q2", "args": {"mode": "school"}}')
        await online(c, config, spawn, after=1)
        await c.wait_for(lambda: len(replies(c)) == 4, 15, "four replies")
        first, again, later = replies(c, "mode/set")
        assert first["id"] == again["id"] == "q1" and first["result"] == again["result"]
        assert later["id"] == "q2" and later["result"]["previous"] == "school", "q1 ran once"
        stale = reply_to(c, "stale1")
        assert stale is not None and stale["error"]["code"] == "stale"


async def test_with_no_session_expiry_commands_sent_while_offline_are_lost(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """The setting means what it says: 0 asks the broker to keep nothing."""
    config = write_config(tmp_path, broker.port, gps=False, broker="session_expiry_s = 0")
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        node = await online(c, config, spawn)
        await node.stop()
        await send(broker.port, "cmd/ping", b'{"id": "lost"}')
        await online(c, config, spawn, after=1)
        await send(broker.port, "cmd/ping", b'{"id": "after"}')
        await c.wait_for(lambda: reply_to(c, "after") is not None, 10, "the reply to after")
        assert reply_to(c, "lost") is None

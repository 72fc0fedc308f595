"""A node checks the signatures of its commands with the OpenSSL it already holds: after a
signed command and a forged one, `cryptography` (~9 MB once mapped) is not in the daemon."""

import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.security.signing import public_key_text, sign
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, online, reply_to, send, signing_config
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

KEY = Ed25519PrivateKey.generate()
FORGER = Ed25519PrivateKey.generate()
SIGNING = signing_config(public_key_text(KEY.public_key()))


def signed(key: Ed25519PrivateKey, cmd_id: str) -> bytes:
    ts = int(time.time() * 1000)
    doc: dict[str, Any] = {"id": cmd_id, "ts": ts, "args": {}, "kid": "ops"}
    doc["sig"] = sign(key, f"{BASE}/cmd/config.get", cmd_id, ts, {})
    return json.dumps(doc).encode()


async def test_a_node_that_checked_signed_commands_has_not_mapped_cryptography(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        node = await online(c, write_config(tmp_path, broker.port, gps=False, extra=SIGNING), spawn)
        await send(broker.port, "cmd/config.get", signed(KEY, "good"))
        await send(broker.port, "cmd/config.get", signed(FORGER, "forged"))
        await c.wait_for(
            lambda: reply_to(c, "good") is not None and reply_to(c, "forged") is not None,
            10,
            "both replies",
        )
        good, forged = reply_to(c, "good"), reply_to(c, "forged")
        assert good is not None and good["ok"] is True, good
        assert forged is not None and forged["ok"] is False, forged
        maps = Path(f"/proc/{node.proc.pid}/maps").read_text()
    assert "libcrypto.so" in maps
    assert "cryptography" not in maps

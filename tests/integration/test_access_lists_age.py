"""The access lists' age over a real broker: what dispatch signs into them reaches the
node's retained `health`, and a list past its `expires` is refused (docs/topics.md, *How
long the lists hold*)."""

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.access.lists import sign_lists
from edged.security.signing import public_key_text, sign
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, online, reply_to, send
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

KEY = Ed25519PrivateKey.generate()


def config(tmp_path: Path, port: int) -> Path:
    secret = tmp_path / "fleet.secret"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    public = public_key_text(KEY.public_key())
    return write_config(
        tmp_path,
        port,
        gps=False,
        health_s=1.0,
        extra=f"""
[clock]
trust_system_clock = true
[[security.keys]]
id = "ops"
public_key = "{public}"
scopes = ["read", "access"]
[services.access]
enabled = true
secret_file = "{secret}"
lists_public_key = "{public}"
""",
    )


def update(cmd_id: str, issued: datetime, expires: datetime) -> bytes:
    lists: dict[str, Any] = {
        "kind": "full",
        "fleet": "test",
        "version": 3,
        "issued": issued.isoformat(),
        "expires": expires.isoformat(),
        "cards": {"00" * 16: {"profile": "resident"}},
    }
    args = {"lists": lists, "sig": sign_lists(KEY, lists)}
    ts = int(time.time() * 1000)
    sig = sign(KEY, f"{BASE}/cmd/access.update", cmd_id, ts, args)
    return json.dumps({"id": cmd_id, "ts": ts, "args": args, "sig": sig}).encode()


def lists_in_health(c: Collector) -> dict[str, Any] | None:
    return next(
        (m.payload["access"] for m in reversed(c.on("health")) if "access" in m.payload), None
    )


async def test_the_retained_health_says_when_the_lists_were_issued_and_taken(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    issued = datetime.now(UTC) - timedelta(hours=1)
    expires = issued + timedelta(days=7)
    async with Collector(broker.port) as c:
        await online(c, config(tmp_path, broker.port), spawn)
        sent = int(time.time() * 1000)
        await send(broker.port, "cmd/access/update", update("u1", issued, expires))
        await c.wait_for(lambda: reply_to(c, "u1") is not None, 10, "the update's reply")
        assert reply_to(c, "u1")["ok"], reply_to(c, "u1")  # type: ignore[index]
        await c.wait_for(
            lambda: (lists_in_health(c) or {}).get("version") == 3, 10, "health with the lists"
        )
    access = lists_in_health(c)
    assert access is not None
    assert access["issued"] == int(issued.timestamp() * 1000)
    assert access["expires"] == int(expires.timestamp() * 1000)
    assert access["received_clock"] == "ntp" and abs(access["received"] - sent) < 5000
    assert access["expired"] is False and 3600 <= access["age_s"] < 3700


async def test_a_list_past_its_expires_is_refused_over_the_broker(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A fleet peer playing back a list signed a month ago, valid a week."""
    issued = datetime.now(UTC) - timedelta(days=30)
    async with Collector(broker.port) as c:
        await online(c, config(tmp_path, broker.port), spawn)
        await send(broker.port, "cmd/access/update", update("old", issued, issued + timedelta(7)))
        await c.wait_for(lambda: reply_to(c, "old") is not None, 10, "the update's reply")
    reply = reply_to(c, "old")
    assert reply is not None and not reply["ok"] and reply["error"]["code"] == "expired"

"""A slow command does not hold the others (docs/topics.md, `cmd/{name}`, *One at a time per
owner*): over a real broker, a `ping` or a `door.unlock` sent behind a 4 MB `access.update`
is answered while the update is still being checked, not after it."""

import asyncio
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.access.lists import LIST_BYTES, sign_lists
from edged.security.signing import public_key_text, sign
from edged.uplink.cancellable import CancellableClient
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, offlines, online, replies, send
from tests.helpers.mqtt import Collector, Received
from tests.helpers.nodes import write_config

KEY = Ed25519PrivateKey.generate()


def config(tmp_path: Path, port: int, broker: str = "") -> Path:
    secret = tmp_path / "fleet.secret"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    public = public_key_text(KEY.public_key())
    return write_config(
        tmp_path,
        port,
        gps=False,
        broker=broker,
        extra=f"""
[clock]
trust_system_clock = true
[[security.keys]]
id = "ops"
public_key = "{public}"
scopes = ["read", "operate", "access", "door"]
[services.access]
enabled = true
secret_file = "{secret}"
lists_public_key = "{public}"
""",
    )


def big_lists() -> dict[str, Any]:
    """A full list a little under the 4 MiB one `access.update` carries (~45,000 cards)."""
    cards: dict[str, Any] = {}
    doc: dict[str, Any] = {"kind": "full", "fleet": "test", "version": 1, "cards": cards,
                           "deny": {}, "bookings": {}, "fares": {"resident": 150}}  # fmt: skip
    i = 0
    while True:
        cards[f"{i:032x}"] = {"profile": "resident", "valid_until": "2099-12-31"}
        i += 1
        if i % 1000 == 0 and len(json.dumps(doc)) > LIST_BYTES - 200_000:
            return doc


def signed_command(name: str, cmd_id: str, args: dict[str, Any]) -> bytes:
    ts = int(time.time() * 1000)
    sig = sign(KEY, f"{BASE}/cmd/{name}", cmd_id, ts, args)
    return json.dumps({"id": cmd_id, "ts": ts, "args": args, "sig": sig}).encode()


def _distinct(answers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The replies as dispatch counts them, one per (epoch, seq): a reply whose PUBACK the
    broker withheld is sent again by the next start (QoS 1: at least once)."""
    return list({(r.get("epoch"), r.get("seq")): r for r in answers}.values())


def arrival(c: Collector, suffix: str, cmd_id: str) -> Received | None:
    return next((m for m in c.on(f"reply/{suffix}") if m.payload.get("id") == cmd_id), None)


async def slow_update_then(
    c: Collector, broker: Mosquitto, suffix: str, payload: bytes, cmd_id: str
) -> tuple[Received, Received, float]:
    """A 4 MB `access.update`, then at once the command `payload` on `suffix`: both
    replies (the update's, the other's), and how long the other's took (s)."""
    lists = big_lists()
    update = signed_command("access.update", "big", {"lists": lists, "sig": sign_lists(KEY, lists)})
    assert len(update) <= LIST_BYTES
    await send(broker.port, "cmd/access/update", update)
    sent = time.time()
    await send(broker.port, suffix, payload)
    await c.wait_for(lambda: arrival(c, "access/update", "big") is not None, 60, "the update")
    name = suffix.removeprefix("cmd/")
    await c.wait_for(lambda: arrival(c, name, cmd_id) is not None, 10, f"the reply to {cmd_id}")
    big, other = arrival(c, "access/update", "big"), arrival(c, name, cmd_id)
    assert big is not None and other is not None
    assert big.payload["ok"], big.payload
    print(f"{suffix} answered in {other.at - sent:.3f} s, the update in {big.at - sent:.3f} s")
    return big, other, other.at - sent


async def test_a_ping_behind_a_4_mb_access_update_is_answered_before_it(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await online(c, config(tmp_path, broker.port), spawn)
        big, ping, took = await slow_update_then(c, broker, "cmd/ping", b'{"id": "p1"}', "p1")
    assert ping.payload["ok"], ping.payload
    assert ping.at < big.at, f"the ping took {took:.3f} s: it waited for the update's reply"


async def test_a_door_unlock_behind_a_4_mb_access_update_is_answered_before_it(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Someone waits at the door while dispatch pushes the day's lists: the unlock is
    answered at once (what it answers is tests/edged/services/test_doors.py's business)."""
    unlock = signed_command("door.unlock", "u1", {})
    async with Collector(broker.port) as c:
        await online(c, config(tmp_path, broker.port), spawn)
        big, door, took = await slow_update_then(c, broker, "cmd/door/unlock", unlock, "u1")
    assert door.at < big.at, f"door.unlock took {took:.3f} s: it waited for the update's reply"
    assert len(replies(c, "door/unlock")) == 1


async def test_a_ping_behind_a_republish_the_broker_does_not_acknowledge_is_answered_first(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """`republish` waits up to 2 s for the broker's PUBACK of each retained topic; a ping
    sent behind it does not."""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        async with Collector(broker.port) as c:
            await online(c, write_config(tmp_path, proxy.port, gps=False), spawn)
            proxy.quirks.withhold_pubacks = True
            await send(broker.port, "cmd/republish", b'{"id": "r1"}')
            sent = time.time()
            await send(broker.port, "cmd/ping", b'{"id": "p1"}')
            await c.wait_for(lambda: arrival(c, "republish", "r1") is not None, 30, "republish")
            await c.wait_for(lambda: arrival(c, "ping", "p1") is not None, 10, "the ping")
            again, ping = arrival(c, "republish", "r1"), arrival(c, "ping", "p1")
            assert again is not None and ping is not None
    finally:
        await proxy.close()
    print(f"ping answered in {ping.at - sent:.3f} s, republish in {again.at - sent:.3f} s")
    assert ping.at < again.at, f"the ping took {ping.at - sent:.3f} s: it waited for republish"


async def test_a_command_still_running_at_sigterm_is_answered_interrupted(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A `republish` waiting on PUBACKs the broker withholds when SIGTERM comes (three
    retained topics: 6 s): it ran on during the stop's drain and was cut off with the
    session, never answered; now it is answered `interrupted` (it may have sent part of what
    it sends), and the node still stops within its 5 s."""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        async with Collector(broker.port) as c:
            proc = await online(c, write_config(tmp_path, proxy.port, gps=False), spawn)
            journey = b'{"id": "j1", "args": {"route_id": "r1", "trip_id": "t1"}}'
            await send(broker.port, "cmd/journey/assign", journey)  # retained: `journey`
            await c.wait_for(lambda: arrival(c, "journey/assign", "j1") is not None, 10, "j1")
            proxy.quirks.withhold_pubacks = True
            await send(broker.port, "cmd/republish", b'{"id": "r1"}')
            await asyncio.sleep(0.3)  # it runs: the birth awaits its PUBACK
            started = time.monotonic()
            assert await proc.stop(timeout=10) == 0
            took = time.monotonic() - started
            await c.wait_for(lambda: bool(offlines(c)), 3, "offline")
            await asyncio.sleep(0.3)
            answers = [r for r in replies(c, "republish") if r.get("id") == "r1"]
    finally:
        await proxy.close()
    assert took < 5.0, f"SIGTERM to exit took {took:.2f} s"
    assert len(answers) == 1, f"{len(answers)} replies to the republish cut off by the stop"
    assert answers[0]["error"]["code"] == "interrupted", answers[0]


async def test_a_command_that_comes_during_the_stop_is_answered_after_the_restart(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """While the stop gives a `republish` cut short its 2 s, a `ping` comes: the node no
    longer takes commands. It was read, acknowledged and dropped (no reply, ever); now it is
    left unacknowledged in the node's kept session, and the node answers it once back."""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        async with Collector(broker.port) as c:
            cfg = write_config(tmp_path, proxy.port, gps=False)
            proc = await online(c, cfg, spawn)
            journey = b'{"id": "j1", "args": {"route_id": "r1", "trip_id": "t1"}}'
            await send(broker.port, "cmd/journey/assign", journey)  # retained: `journey`
            await c.wait_for(lambda: arrival(c, "journey/assign", "j1") is not None, 10, "j1")
            proxy.quirks.withhold_pubacks = True
            await send(broker.port, "cmd/republish", b'{"id": "r1"}')
            await asyncio.sleep(0.3)  # it runs: the birth awaits its PUBACK
            stopping = asyncio.create_task(proc.stop(timeout=10))
            await proc.wait_containing("stopping", 5)
            await send(broker.port, "cmd/ping", b'{"id": "p1"}')  # the lanes are closed
            assert await stopping == 0
            assert arrival(c, "ping", "p1") is None  # not run during the stop
            proxy.quirks.withhold_pubacks = False
            await online(c, cfg, spawn, after=1)
            await c.wait_for(lambda: arrival(c, "ping", "p1") is not None, 10, "the ping")
            await asyncio.sleep(0.3)
            answers = [r for r in replies(c, "ping") if r.get("id") == "p1"]
    finally:
        await proxy.close()
    assert len(answers) == 1 and answers[0]["ok"], answers


async def test_a_door_unlock_left_unacknowledged_in_a_flood_is_answered_once_it_passes(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A commander floods `cmd/access/update` with 4 MB lists whose signature is forged:
    the access lane checks one at a time, the lanes and the queue of those read fill, and
    dispatch's `door.unlock` sent next is left unacknowledged (past the bound). It came
    again only at the next connection, which may be days away; now the node takes its
    session up again once it has caught up, and the unlock is answered."""
    lists = big_lists()
    forged = sign_lists(Ed25519PrivateKey.generate(), lists)
    updates = [
        signed_command("access.update", f"f{i}", {"lists": lists, "sig": forged}) for i in range(14)
    ]
    unlock = signed_command("door.unlock", "u1", {})
    async with Collector(broker.port) as c:
        await online(c, config(tmp_path, broker.port), spawn)
        async with CancellableClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as peer:
            for update in updates:
                await peer.publish(f"{BASE}/cmd/access/update", update, qos=1)
            await peer.publish(f"{BASE}/cmd/door/unlock", unlock, qos=1)
        last = f"f{len(updates) - 1}"
        await c.wait_for(lambda: arrival(c, "access/update", last) is not None, 60, "the flood")
        await c.wait_for(lambda: arrival(c, "door/unlock", "u1") is not None, 15, "the unlock")
        answers = [r for r in replies(c, "access/update")]
    assert [a["id"] for a in answers] == [f"f{i}" for i in range(len(updates))]
    assert all(a["error"]["code"] == "bad_signature" for a in answers), answers[0]


async def test_commands_left_unacknowledged_at_a_stop_wait_for_the_next_start(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """SIGTERM while commands left unacknowledged in a flood wait at the broker: the stop
    takes no session up again for them (it would spend the stop's seconds reconnecting);
    the next start gets them."""
    lists = big_lists()
    forged = sign_lists(Ed25519PrivateKey.generate(), lists)
    updates = [
        signed_command("access.update", f"f{i}", {"lists": lists, "sig": forged}) for i in range(14)
    ]
    async with Collector(broker.port) as c:
        cfg = config(tmp_path, broker.port)
        proc = await online(c, cfg, spawn)
        async with CancellableClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as peer:
            for update in updates:
                await peer.publish(f"{BASE}/cmd/access/update", update, qos=1)
        await proc.wait_containing("left one unacknowledged", 30)
        started = time.monotonic()
        assert await proc.stop(timeout=10) == 0
        took = time.monotonic() - started
        assert not any("taking the session up again" in line for line in proc.lines)
        await online(c, cfg, spawn, after=1)
        last = f"f{len(updates) - 1}"
        await c.wait_for(lambda: arrival(c, "access/update", last) is not None, 60, "the last")
    assert took < 5.0, f"SIGTERM to exit took {took:.2f} s"


async def test_a_ping_after_a_flood_in_a_session_the_broker_does_not_keep_is_answered(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """`session_expiry_s = 0`: the broker keeps no session, so the commands a flood left
    out past the bound never come again and the node takes no session up for them. Every
    QoS 1 command behind them was left out all the same, for as long as the connection
    lasted: a `ping` sent once the flood was answered was never answered. Those past the
    bound are lost (said so), and the next command is taken."""
    lists = big_lists()
    forged = sign_lists(Ed25519PrivateKey.generate(), lists)
    updates = [
        signed_command("access.update", f"f{i}", {"lists": lists, "sig": forged}) for i in range(14)
    ]
    async with Collector(broker.port) as c:
        proc = await online(c, config(tmp_path, broker.port, "session_expiry_s = 0"), spawn)
        async with CancellableClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as peer:
            for update in updates:
                await peer.publish(f"{BASE}/cmd/access/update", update, qos=1)
        await proc.wait_containing("come faster than the node handles them", 30)
        answered = -1
        for _ in range(60):  # until the flood is answered: no new reply for a second
            await asyncio.sleep(1.0)
            if len(replies(c, "access/update")) == answered:
                break
            answered = len(replies(c, "access/update"))
        await send(broker.port, "cmd/ping", b'{"id": "p1"}')
        await c.wait_for(lambda: arrival(c, "ping", "p1") is not None, 10, "the ping")
    assert any("lost: the broker keeps no session" in line for line in proc.lines)
    assert not any("taking the session up again" in line for line in proc.lines)


def _flood_for(port: int, topic: str, payloads: list[bytes], seconds: float) -> int:
    """A peer publishing `payloads` at QoS 1 over and over for `seconds`; how many it sent."""
    peer = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    peer.connect("127.0.0.1", port)
    peer.loop_start()
    sent = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for info in [peer.publish(topic, p, qos=1) for p in payloads]:
                info.wait_for_publish(10)
            sent += len(payloads)
    finally:
        peer.disconnect()
        peer.loop_stop()
    return sent


def _retaken_offline(lines: list[str]) -> int:
    """Sessions the node ended to be sent again what it left out (`uplink.retaken`) before
    they went online (no `connected to` since the last reconnect)."""
    online, offline = False, 0
    for line in lines:
        if "connected to" in line:
            online = True
        elif "taking the session up again" in line:
            offline += not online
        elif "reconnecting to the broker" in line:
            online = False
    return offline


async def test_a_sustained_flood_does_not_keep_the_node_from_going_online(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A peer floods `cmd/access/update` with forged 4 MB lists for 20 s. The node ended
    each session for the broker to send again what it left out as soon as it had caught
    up: in a new session the broker's backlog refilled the queue at once, and the node
    ended it before its birth was even acknowledged, again and again (the backoff growing):
    offline, its outbox not drained, for as long as the flood lasted. A session is now
    taken up again only once it has been online a while, and each one goes online."""
    lists = big_lists()
    forged = sign_lists(Ed25519PrivateKey.generate(), lists)
    updates = [
        signed_command("access.update", f"f{i}", {"lists": lists, "sig": forged}) for i in range(10)
    ]
    topic = f"{BASE}/cmd/access/update"
    async with Collector(broker.port) as c:
        cfg = config(tmp_path, broker.port)
        cfg.write_text(cfg.read_text().replace("reconnect_max_s = 1.0", "reconnect_max_s = 60"))
        proc = await online(c, cfg, spawn)
        sent = await asyncio.to_thread(_flood_for, broker.port, topic, updates, 20.0)
        lines = list(proc.lines)
    retaken = sum("taking the session up again" in line for line in lines)
    print(f"{sent} updates sent; {retaken} sessions taken up again")
    assert retaken >= 1, "the flood left nothing out: it tests nothing"
    assert _retaken_offline(lines) == 0


async def test_a_command_that_comes_during_the_stop_in_a_session_not_kept_is_answered(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """`session_expiry_s = 0`: a `ping` that comes while the stop gives a `republish` its
    2 s was left unacknowledged for the broker to send again, which it never does in a
    session it does not keep: never run, never answered, and the log said it would come
    again. It is answered `interrupted` (not run), as one that waited for room is."""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        async with Collector(broker.port) as c:
            cfg = write_config(tmp_path, proxy.port, gps=False, broker="session_expiry_s = 0")
            proc = await online(c, cfg, spawn)
            journey = b'{"id": "j1", "args": {"route_id": "r1", "trip_id": "t1"}}'
            await send(broker.port, "cmd/journey/assign", journey)  # retained: `journey`
            await c.wait_for(lambda: arrival(c, "journey/assign", "j1") is not None, 10, "j1")
            proxy.quirks.withhold_pubacks = True
            await send(broker.port, "cmd/republish", b'{"id": "r1"}')
            await asyncio.sleep(0.3)  # it runs: the birth awaits its PUBACK
            stopping = asyncio.create_task(proc.stop(timeout=10))
            await proc.wait_containing("stopping", 5)
            await send(broker.port, "cmd/ping", b'{"id": "p1"}')  # the lanes are closed
            assert await stopping == 0
            proxy.quirks.withhold_pubacks = False
            await online(c, cfg, spawn, after=1)  # a reply kept in the outbox goes now
            await c.wait_for(lambda: arrival(c, "ping", "p1") is not None, 10, "the ping")
            await asyncio.sleep(0.3)
            answers = _distinct(r for r in replies(c, "ping") if r.get("id") == "p1")
    finally:
        await proxy.close()
    assert len(answers) == 1, answers
    assert answers[0]["error"]["code"] == "interrupted", answers[0]


async def test_a_qos0_command_that_comes_during_the_stop_is_answered(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """A `ping` sent at QoS 0 while the stop gives a `republish` its 2 s was not taken and
    left "for the broker to send again", which it never does with a QoS 0 message, kept
    session or not: never run, never answered. It is answered `interrupted` (not run)."""
    proxy = await MqttProxy(broker.port, Quirks()).start()
    try:
        async with Collector(broker.port) as c:
            cfg = write_config(tmp_path, proxy.port, gps=False)
            proc = await online(c, cfg, spawn)
            journey = b'{"id": "j1", "args": {"route_id": "r1", "trip_id": "t1"}}'
            await send(broker.port, "cmd/journey/assign", journey)  # retained: `journey`
            await c.wait_for(lambda: arrival(c, "journey/assign", "j1") is not None, 10, "j1")
            proxy.quirks.withhold_pubacks = True
            await send(broker.port, "cmd/republish", b'{"id": "r1"}')
            await asyncio.sleep(0.3)  # it runs: the birth awaits its PUBACK
            stopping = asyncio.create_task(proc.stop(timeout=10))
            await proc.wait_containing("stopping", 5)
            async with CancellableClient(
                "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as peer:
                await peer.publish(f"{BASE}/cmd/ping", b'{"id": "p1"}', qos=0)
            assert await stopping == 0
            proxy.quirks.withhold_pubacks = False
            await online(c, cfg, spawn, after=1)  # a reply kept in the outbox goes now
            await c.wait_for(lambda: arrival(c, "ping", "p1") is not None, 10, "the ping")
            await asyncio.sleep(0.3)
            answers = _distinct(r for r in replies(c, "ping") if r.get("id") == "p1")
    finally:
        await proxy.close()
    assert len(answers) == 1, answers
    assert answers[0]["error"]["code"] == "interrupted", answers[0]

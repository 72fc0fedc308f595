"""Hostile commands against a node on a real broker: each gets its error reply and none ends
the node's MQTT session (issue #13.1)."""

import json
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.cancellable import CancellableClient
from hil.scenarios.link import HOSTILE_COMMANDS
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, births, offlines, online, replies, reply_to, send
from tests.helpers.disk import rows_on_disk
from tests.helpers.journal import FEW
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config


async def ping_answered(c: Collector, port: int, cmd_id: str) -> None:
    await send(port, "cmd/ping", json.dumps({"id": cmd_id}).encode())
    await c.wait_for(lambda: reply_to(c, cmd_id) is not None, 10, f"the reply to {cmd_id}")


async def test_an_invalid_command_name_is_answered_on_reply_invalid_and_the_session_stays(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await online(c, write_config(tmp_path, broker.port, gps=False), spawn)
        await send(broker.port, "cmd/PING", b'{"id": "upper"}')
        await c.wait_for(lambda: bool(replies(c, "_invalid")), 10, "the reply on _invalid")
        (answer,) = replies(c, "_invalid")
        assert answer["id"] == "upper" and answer["error"]["code"] == "unknown_command"
        await ping_answered(c, broker.port, "after")
        assert len(births(c)) == 1 and not offlines(c), "the session was dropped"


async def test_a_json_integer_longer_than_python_reads_is_answered_bad_json(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    huge = b'{"id": "huge", "args": {"n": ' + b"7" * 5000 + b"}}"
    async with Collector(broker.port) as c:
        await online(c, write_config(tmp_path, broker.port, gps=False), spawn)
        await send(broker.port, "cmd/ping", huge)
        await c.wait_for(lambda: bool(replies(c, "ping")), 10, "the reply")
        (answer,) = replies(c, "ping")
        assert answer["ok"] is False and answer["error"]["code"] == "bad_json"
        await ping_answered(c, broker.port, "after")
        assert len(births(c)) == 1 and not offlines(c), "the session was dropped"


async def test_a_flood_of_hostile_commands_is_all_answered_in_one_session(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """What kept a node offline 83 % of the time: one such message every few seconds."""
    hostile = HOSTILE_COMMANDS
    async with Collector(broker.port) as c:
        await online(c, write_config(tmp_path, broker.port, gps=False, health_s=1), spawn)
        for _ in range(3):
            for suffix, payload in hostile:
                await send(broker.port, suffix, payload)
        await ping_answered(c, broker.port, "after")
        await c.wait_for(lambda: len(replies(c)) == 3 * len(hostile) + 1, 10, "a reply to each")
        assert all(r["ok"] is False for r in replies(c) if r["id"] != "after")
        assert len(births(c)) == 1 and not offlines(c), "the session was dropped"
        await c.wait_for(lambda: bool(c.on("health")), 5, "a health report")
        assert c.on("health")[-1].payload["reconnects"] == 0


async def test_made_up_command_names_add_no_seq_counter_the_node_keeps(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Each reply to a command the node does not know keeps its topic, and all take their
    `seq` from one counter: 300 names made up by a peer on `cmd/#` leave no 300 counters in
    the state store and the outbox, which are written at every commit and kept for ever."""
    names = [f"made-up-{i}" for i in range(300)]
    async with Collector(broker.port) as c:
        config = write_config(tmp_path, broker.port, gps=False)
        node = await online(c, config, spawn)
        async with CancellableClient("127.0.0.1", broker.port) as peer:
            for i, name in enumerate(names):
                await peer.publish(f"{BASE}/cmd/{name}", json.dumps({"id": f"u{i}"}), qos=1)
        await c.wait_for(lambda: len(replies(c)) == len(names), 20, "a reply to each")
        assert {m.topic.rsplit("/", 1)[1] for m in c.messages if "/reply/" in m.topic} == set(names)
        seqs = [r["seq"] for r in replies(c)]
        assert len(set(seqs)) == len(names)  # one counter: each reply its own seq
        assert await node.stop() == 0
    state = tmp_path / "shuttle-07-state.sqlite"
    outbox = tmp_path / "shuttle-07-outbox.sqlite"
    kept = rows_on_disk(state, "SELECT stream FROM seqs WHERE stream LIKE 'reply/%'")
    kept += rows_on_disk(outbox, "SELECT name FROM streams WHERE name LIKE 'reply/%'")
    assert len(kept) <= 2, f"{len(kept)} reply counters kept"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


async def test_a_command_bigger_than_the_node_takes_never_reaches_its_memory(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """MQTT 5 maximum packet size: the broker drops it for the node (no reply: it never
    arrives), where reading it would have cost the node its size several times over."""
    config = write_config(tmp_path, broker.port, gps=False)
    async with (
        Collector(broker.port, topic=f"{BASE}/state", client_id="state") as state,
        Collector(broker.port, topic=f"{BASE}/reply/#") as c,  # not cmd/: not 40 MB here
    ):
        node = await online(state, config, spawn)
        await ping_answered(c, broker.port, "before")
        peak = peak_rss_mb(node.proc.pid)
        await send(broker.port, "cmd/ping", b'{"id": "huge", "x": "' + b"x" * 40_000_000 + b'"}')
        await ping_answered(c, broker.port, "after")
        assert reply_to(c, "huge") is None
        assert peak_rss_mb(node.proc.pid) - peak < 10, "the node read the 40 MB command"


async def test_a_flood_of_bad_commands_leaves_a_few_lines_per_error_in_the_journal(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Each refused command was a line: a dispatch loop sending malformed ones at the
    broker's pace wrote 150,000 lines a minute, and journald then dropped every line of
    edged, the alarms' too. The first of each error at once; every command still has its
    reply and its counter."""
    bad = {
        "bad_json": ("cmd/ping", lambda n: b"{not json"),
        "unknown_command": ("cmd/nope.nope", lambda n: json.dumps({"id": f"u{n}"}).encode()),
        "missing_id": ("cmd/ping", lambda n: json.dumps({"ts": n}).encode()),
    }
    async with Collector(broker.port) as c:
        proc = await online(c, write_config(tmp_path, broker.port, gps=False), spawn)
        async with CancellableClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as dispatch:
            for n in range(100):
                for suffix, payload in bad.values():
                    await dispatch.publish(f"{BASE}/{suffix}", payload(n), qos=1)
                await dispatch.publish(f"{BASE}/cmd/ping", b"{}", qos=1, retain=True)
            await dispatch.publish(f"{BASE}/cmd/ping", b"", qos=1, retain=True)  # cleared
        await c.wait_for(lambda: len(replies(c)) >= 300, 20, "a reply to each")
    for code in bad:
        said = [line for line in proc.lines if f"refused: {code}" in line]
        assert 1 <= len(said) <= FEW, f"{code}: {len(said)} lines"
    ignored = [line for line in proc.lines if "ignored: a retained message" in line]
    assert 1 <= len(ignored) <= FEW


async def test_a_command_with_a_property_paho_refuses_is_left_out_and_the_session_stays(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """U+FEFF in a user property is valid UTF-8, which Mosquitto passes on, but paho refuses
    it on receipt (MQTT-1.5.4-3) and closes the connection; a QoS 1 command in the node's
    persistent session then came back at every reconnection: the node offline for good,
    from one publish of anyone allowed to write `cmd/`."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("from", "\ufeff")
    async with Collector(broker.port) as c:
        await online(c, write_config(tmp_path, broker.port, gps=False), spawn)
        await send(broker.port, "cmd/ping", b'{"id": "poison"}', properties=props)
        await ping_answered(c, broker.port, "after")
        assert reply_to(c, "poison") is None, "a message paho cannot read is left out"
        assert len(births(c)) == 1 and not offlines(c), "the session was dropped"


async def test_a_command_paho_cannot_read_is_counted_on_health_while_the_session_lasts(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """`cmd.unreadable` was added to the counters when the session ended: now that such a
    command no longer ends it, health never showed one while the node stayed online."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("from", "\ufeff")
    async with Collector(broker.port) as c:
        await online(c, write_config(tmp_path, broker.port, gps=False, health_s=1), spawn)
        await send(broker.port, "cmd/ping", b'{"id": "poison"}', properties=props)
        await ping_answered(c, broker.port, "after")
        heard = len(c.on("health"))

        def counted() -> bool:
            later = c.on("health")[heard:]
            return any(h.payload["errors"].get("cmd.unreadable") == 1 for h in later)

        await c.wait_for(counted, 5, "cmd.unreadable on a health report")
        assert len(births(c)) == 1 and not offlines(c), "the session was dropped"

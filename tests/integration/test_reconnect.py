"""After a broker restart that lost everything, the node restores what dispatch relies on."""

from pathlib import Path
from typing import Any

from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import write_config

BASE = "rnst/v1/test/shuttle-07"


async def test_retained_topics_are_restored_after_the_broker_lost_them(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    await spawn(write_config(tmp_path, broker.port, health_s=3600))
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await c.wait_for(lambda: bool(c.on("state")), 10, "birth")
        await publish(broker.port, f"{BASE}/cmd/republish", b'{"id":"r1"}')  # one health now
        await c.wait_for(lambda: bool(c.on("health")), 10, "a health report")
    # the next periodic report is an hour away: a retained health after the restart can only
    # come from the node restoring what it last delivered
    broker.stop()  # persistence is off: retained messages are gone
    broker.start()
    async with Collector(broker.port, topic=f"{BASE}/state", client_id="watch") as w:
        await w.wait_for(lambda: bool(w.on("state")), 10, "the node back online")
    async with Collector(broker.port, topic=f"{BASE}/+", client_id="after-restart") as late:
        await late.wait_for(
            lambda: (
                any(m.retain for m in late.on("health"))
                and any(m.retain and m.payload["state"] == "online" for m in late.on("state"))
            ),
            10,
            "retained health and state again",
        )
        health = next(m for m in late.on("health") if m.retain).payload
        assert health["reconnects"] >= 0 and "outbox" in health


async def test_reconnect_is_counted_in_health(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    await spawn(write_config(tmp_path, broker.port, health_s=1))
    async with Collector(broker.port, topic=f"{BASE}/health") as c:
        await c.wait_for(lambda: bool(c.on("health")), 10, "a health report")
    broker.stop()
    broker.start()
    async with Collector(broker.port, topic=f"{BASE}/health", client_id="second") as c:
        await c.wait_for(
            lambda: any(
                m.payload["reconnects"] >= 1 and m.payload["connected"] for m in c.on("health")
            ),
            10,
            "health after the reconnect",
        )
        last = c.on("health")[-1].payload
        assert last["errors"].get("uplink.disconnect", 0) >= 1


async def test_republish_command_resends_birth_and_health(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    await spawn(write_config(tmp_path, broker.port, health_s=3600))
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await c.wait_for(lambda: bool(c.on("state")), 10, "birth")
        births = len(c.on("state"))
        await publish(broker.port, f"{BASE}/cmd/republish", b'{"id":"r1"}')
        await c.wait_for(lambda: bool(c.on("reply/republish")), 5, "the reply")
        reply = c.on("reply/republish")[0].payload
        assert reply["ok"] and reply["result"]["birth"] is True
        await c.wait_for(
            lambda: len(c.on("state")) > births and bool(c.on("health")),
            5,
            "a new birth and a health report",
        )

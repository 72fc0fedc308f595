import asyncio
import time
from pathlib import Path
from typing import Any

from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

STATE = "rnst/v1/test/shuttle-07/state"


def last_state(c: Collector) -> dict[str, Any] | None:
    states = [m.payload for m in c.messages if m.topic == STATE]
    return states[-1] if states else None


async def test_birth_says_online_with_version_profile_hash_and_drivers(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        await spawn(write_config(tmp_path, broker.port))
        await c.wait_for(lambda: last_state(c) is not None, 10, "birth")
        birth = last_state(c)
        assert birth is not None
        assert birth["state"] == "online"
        assert birth["profile"] == "shuttle"
        assert birth["drivers"] == ["gps:gps.sim"]
        assert len(birth["config_hash"]) == 16 and birth["version"]
        assert {"v", "seq", "ts", "clock"} <= set(birth)


async def test_kill_9_makes_the_state_go_offline_through_the_will(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        proc = await spawn(write_config(tmp_path, broker.port))
        await c.wait_for(lambda: (last_state(c) or {}).get("state") == "online", 10, "birth")
        proc.kill9()
        await c.wait_for(lambda: (last_state(c) or {}).get("state") == "offline", 5, "the will")
    async with Collector(broker.port, client_id="late-reader") as late:
        await late.wait_for(lambda: last_state(late) is not None, 3, "retained state")
        assert late.messages[0].retain and last_state(late)["state"] == "offline"  # type: ignore[index]


async def test_sigterm_says_offline_and_exits_within_5_seconds(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    async with Collector(broker.port) as c:
        proc = await spawn(write_config(tmp_path, broker.port))
        await c.wait_for(lambda: (last_state(c) or {}).get("state") == "online", 10, "birth")
        online_seq = last_state(c)["seq"]  # type: ignore[index]
        started = time.monotonic()
        code = await proc.stop(timeout=10)
        elapsed = time.monotonic() - started
        assert code == 0
        assert elapsed < 5, f"shutdown took {elapsed:.1f} s"
        await c.wait_for(lambda: (last_state(c) or {}).get("state") == "offline", 2, "offline")
        assert last_state(c)["seq"] > online_seq  # type: ignore[index]


async def test_sigterm_with_the_broker_down_still_exits_within_5_seconds(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    proc = await spawn(write_config(tmp_path, broker.port))
    async with Collector(broker.port) as c:
        await c.wait_for(lambda: last_state(c) is not None, 10, "birth")
    broker.stop()
    started = time.monotonic()
    assert await proc.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


async def test_sigterm_while_the_broker_sits_on_the_birth_exits_within_5_seconds(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """The broker took the connection and the birth but sends no PUBACK (overloaded): the
    session's start waits, and SIGTERM must still end the node within 5 s."""
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True)).start()
    try:
        proc = await spawn(write_config(tmp_path, proxy.port))
        deadline = time.monotonic() + 10
        while proxy.withheld == 0:  # the birth's PUBACK, kept from the node
            assert time.monotonic() < deadline, "the node published no birth"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await proc.stop(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        await proxy.close()


async def retained_state(port: int, state: str, within_s: float = 5) -> dict[str, Any]:
    """The `state` a subscriber that comes now gets, the broker's retained one, once it says
    `state` within `within_s` (5 s by default: the broker publishes a will when it sees the
    socket closed; a node just spawned needs its start-up first). A subscriber that got no
    retained `state` at all (none yet: the node still starting) is tried again too: one
    given 3 s to get it failed while a loaded machine started the node."""
    deadline = time.monotonic() + within_s
    while True:
        async with Collector(port, client_id=f"late-{time.monotonic_ns()}") as late:
            heard_until = time.monotonic() + 1  # a retained message comes with the SUBACK
            while last_state(late) is None and time.monotonic() < heard_until:
                await asyncio.sleep(0.02)
        states = late.on("state")
        if states and states[0].retain and states[0].payload["state"] == state:
            return states[0].payload
        assert time.monotonic() < deadline, (
            f"the retained state is {states[0] if states else None}, not {state}"
        )
        await asyncio.sleep(0.1)


async def test_over_mqtt_311_the_birth_the_will_and_offline_at_a_stop_are_retained(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """An MQTT 3.1.1 broker (aedes, RabbitMQ 3.10, a node pinned to 3.1.1) keeps the
    node's `state` as MQTT 5 does: online from the birth, offline from the will after a
    crash, offline from the node at a stop, each newer than the one before."""
    config = write_config(tmp_path, broker.port, gps=False, protocol="3.1.1")
    proc = await spawn(config)
    born = await retained_state(broker.port, "online", within_s=20)  # its start-up first
    proc.kill9()
    crashed = await retained_state(broker.port, "offline")
    proc = await spawn(config)
    reborn = await retained_state(broker.port, "online", within_s=20)
    assert await proc.stop() == 0
    stopped = await retained_state(broker.port, "offline")
    assert crashed["epoch"] == born["epoch"] and crashed["seq"] > born["seq"]  # the will
    assert reborn["epoch"] != born["epoch"]  # a new start
    assert stopped["epoch"] == reborn["epoch"] and stopped["seq"] > reborn["seq"]

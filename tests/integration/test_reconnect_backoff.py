"""The reconnect delay on a real broker: reset by a session that worked (a flapping link,
issue #13.7), grown when another client takes the node's client id (issue #12.4)."""

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import aiomqtt

from edged.uplink.cancellable import CancellableClient
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import births, online
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import write_config

CLIENT_ID = "edged-test-shuttle-07"
MIN_S, MAX_S = 0.2, 6.0
DELAY = re.compile(r"reconnecting to the broker in ([0-9.]+) s")


def delays(proc: Any) -> list[float]:
    return [float(m.group(1)) for line in proc.lines if (m := DELAY.search(line))]


async def test_on_a_link_cut_every_two_seconds_every_delay_stays_the_shortest(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    proxy = await MqttProxy(broker.port).start()
    config = write_config(
        tmp_path, proxy.port, gps=False, reconnect_min_s=MIN_S, reconnect_max_s=MAX_S
    )
    try:
        async with Collector(broker.port) as c:
            node = await online(c, config, spawn)
            flapping = asyncio.create_task(proxy.flap(up_s=2.0))
            await c.wait_for(lambda: len(births(c)) >= 5, 25, "five sessions")
            flapping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flapping
    finally:
        await proxy.close()
    got = delays(node)
    assert len(got) >= 4
    assert max(got) <= MIN_S, f"the delay grew on sessions that worked: {got}"


async def hold_the_id(port: int, protocol: aiomqtt.ProtocolVersion, stop: asyncio.Event) -> int:
    """Another client with the node's id, connecting again each time it is thrown off."""
    n = 0
    while not stop.is_set():
        with contextlib.suppress(aiomqtt.MqttError):
            async with CancellableClient(
                "127.0.0.1", port, identifier=CLIENT_ID, protocol=protocol
            ) as intruder:
                n += 1
                async for _ in intruder.messages:  # until the broker throws it off
                    pass
        await asyncio.sleep(0.01)
    return n


async def test_a_client_looping_on_the_nodes_id_is_named_and_the_node_backs_off(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """Mosquitto 2.0 says nothing when it hands a session to another client, whatever the
    protocol: the node recognises sessions thrown off within a second, three in a row."""
    protocol = "3.1.1"  # where no broker ever says why
    config = write_config(
        tmp_path,
        broker.port,
        gps=False,
        protocol=protocol,
        reconnect_min_s=MIN_S,
        reconnect_max_s=MAX_S,
    )
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    node, sessions = await fight_for_the_id(broker.port, broker.port, config, version, spawn)
    assert any("another client probably uses our client id" in line for line in node.lines)
    got = delays(node)
    assert max(got) >= 0.8, f"the node fought for its id without backing off: {got}"
    # under load (CI's 2 cores, the HIL rig beside) a session thrown off now and then
    # lasts past SHORT_SESSION_S and starts the count again: 9 seen once; at the shortest
    # delay (MIN_S) the node would have many more in the 6 s
    assert sessions <= 10, f"the node kept taking its id back: {sessions} sessions, {got}"


async def test_a_broker_that_says_the_session_was_taken_over_is_believed_at_once(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """EMQX, HiveMQ and newer Mosquitto send DISCONNECT 0x8E: played by the proxy."""
    proxy = await MqttProxy(broker.port, Quirks(announce_takeover=True)).start()
    try:
        config = write_config(
            tmp_path, proxy.port, gps=False, reconnect_min_s=MIN_S, reconnect_max_s=MAX_S
        )
        v5 = aiomqtt.ProtocolVersion.V5
        node, sessions = await fight_for_the_id(broker.port, proxy.port, config, v5, spawn)
    finally:
        await proxy.close()
    lines = [line for line in node.lines if "another client uses our client id" in line]
    assert lines and "0x8E" in lines[0]
    got = delays(node)
    assert got[-1] > got[0] and max(got) >= 0.8, f"no growing backoff: {got}"
    assert sessions <= 8


async def fight_for_the_id(
    broker_port: int,
    port: int,
    config: Path,
    version: aiomqtt.ProtocolVersion,
    spawn: Any,
) -> tuple[Any, int]:
    """The node against another client with its id for 6 s: (the node, its sessions)."""
    async with Collector(broker_port) as c:
        node = await online(c, config, spawn)
        stop = asyncio.Event()
        intruder = asyncio.create_task(hold_the_id(port, version, stop))
        await asyncio.sleep(6)
        stop.set()
        intruder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await intruder
        return node, len(births(c))


async def test_a_broker_that_ends_sessions_saying_it_is_busy_gets_a_growing_delay(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    """MQTT 5 DISCONNECT 0x89 server busy (0x97 quota exceeded, 0x9F connection rate
    exceeded alike), sent right after each birth, as an overloaded cluster does to every
    client: the sessions worked, yet the broker asks for room. Taken for sessions that
    worked, the node came back within the shortest delay each time, and so did the whole
    fleet, at once. Played by the proxy."""
    proxy = await MqttProxy(broker.port).start()
    try:
        config = write_config(
            tmp_path, proxy.port, gps=False, reconnect_min_s=MIN_S, reconnect_max_s=MAX_S
        )
        async with Collector(broker.port) as c:
            node = await online(c, config, spawn)
            seen, deadline = 0, asyncio.get_running_loop().time() + 6
            while asyncio.get_running_loop().time() < deadline:
                if len(births(c)) > seen:
                    seen = len(births(c))
                    await proxy.to_clients(bytes([0xE0, 2, 0x89, 0]))  # DISCONNECT: server busy
                    await asyncio.sleep(0.05)
                    proxy.cut()
                await asyncio.sleep(0.02)
            sessions = len(births(c))
    finally:
        await proxy.close()
    assert any("0x89" in line for line in node.lines)
    got = delays(node)
    assert max(got) >= 0.8, f"the node came straight back to a busy broker: {got}"
    assert sessions <= 8, f"{sessions} sessions in 6 s on a busy broker"

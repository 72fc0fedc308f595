"""The reconnect delay on a real broker: reset by a session that worked (a flapping link,
issue #13.7), grown when another client takes the node's client id (issue #12.4)."""

import asyncio
import contextlib
import re
from datetime import datetime
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


SUSPECTED = re.compile(r"probably uses our client id .*closed (\d+) sessions in a row")


def delays(proc: Any) -> list[float]:
    return [float(m.group(1)) for line in proc.lines if (m := DELAY.search(line))]


def _at(line: str) -> float:
    """A log line's time (`%(asctime)s`), in seconds."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def delays_after_suspicions(proc: Any) -> list[tuple[int, float]]:
    """(short sessions in a row the node counted, the delay it chose next), for each time
    it took them for another client with its id."""
    out: list[tuple[int, float]] = []
    in_a_row: int | None = None
    for line in proc.lines:
        if m := SUSPECTED.search(line):
            in_a_row = int(m.group(1))
        elif in_a_row is not None and (m := DELAY.search(line)):
            out.append((in_a_row, float(m.group(1))))
            in_a_row = None
        elif "connected to" in line:
            in_a_row = None
    return out


def waits(proc: Any) -> list[tuple[float, float]]:
    """(the delay the node said, the time from saying it to its next session), each."""
    out: list[tuple[float, float]] = []
    said: tuple[float, float] | None = None
    for line in proc.lines:
        if m := DELAY.search(line):
            said = (float(m.group(1)), _at(line))
        elif said is not None and "connected to" in line:
            out.append((said[0], _at(line) - said[1]))
            said = None
    return out


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
    # What the node promises, whatever the machine's load: the N-th short session in a row
    # (N >= 3) is followed by the backoff of N - 1 failures, drawn from the upper half of
    # MIN_S doubled N - 2 times (logged to 0.1 s), and each delay it says, it waits. A
    # session the intruder takes back only after SHORT_SESSION_S (1 s) is rightly not
    # short and starts the count again, hence the count's margin of one such restart (7
    # sessions without one). The 9 and more seen under load were sessions lost while the
    # retained topics were restored, taken for a broker out of reach (the uplink's fix:
    # test_a_session_lost_while_its_retained_topics_are_restored_is_one_lost_under_us).
    assert sessions <= 10, f"the node kept taking its id back: {sessions} sessions, {got}"
    suspicions = delays_after_suspicions(node)
    assert suspicions, node.lines
    for n, delay in suspicions:
        floor = min(MAX_S, MIN_S * 2 ** (n - 2)) / 2
        assert delay >= floor - 0.05, f"{n} short sessions in a row, then {delay} s: {got}"
    waited = waits(node)
    assert len(waited) >= 3, (sessions, waited)
    assert all(took >= delay - 0.05 for delay, took in waited), waited


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

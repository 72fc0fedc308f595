"""What other brokers do to a node, played by a proxy or a Mosquitto config: a broker that
refuses MQTT 5 (aedes, RabbitMQ 3.10), one that refuses the node's credentials, one that
keeps no session (issue #22). The node says what it met, in its log and in `health`."""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edged.outbox import Publication
from edged.payloads import Alarm, DoorEvent, Position
from edged.topics import ALARM, DOOR, POSITION
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.commands import BASE, online, send
from tests.helpers.mqtt import Collector, unique_by_seq
from tests.helpers.nodes import NODE_TOPICS, queue_before_start, write_config

FAST = "publish_timeout_s = 30"  # a refusal must be told long before any time-out


@pytest.fixture
async def proxy(broker: Mosquitto, request: pytest.FixtureRequest) -> AsyncIterator[MqttProxy]:
    p = await MqttProxy(broker.port, request.param).start()
    yield p
    await p.close()


async def health_with(c: Collector, what: str, fits: Any) -> dict[str, Any]:
    await c.wait_for(lambda: any(fits(m.payload) for m in c.on("health")), 10, what)
    return next(m.payload for m in c.on("health") if fits(m.payload))


def too_large(at_least: int) -> Callable[[dict[str, Any]], bool]:
    """A health report counting `at_least` publishes over the broker's packet size."""
    return lambda h: h.get("errors", {}).get("uplink.publish_too_large", 0) >= at_least


def restarted(broker: Mosquitto, directory: Path, max_packet: int) -> Mosquitto:
    """The broker stopped and a new one on its port, without persistence (no session, no
    retained message kept), taking packets up to `max_packet` bytes."""
    broker.stop()
    directory.mkdir()
    return Mosquitto(directory, port=broker.port, extra=f"max_packet_size {max_packet}").start()


def alarms(large: Alarm) -> list[Publication]:
    """A backlog of two alarms: `large`, then a small panic alarm behind it."""
    return [
        Publication.make(NODE_TOPICS, ALARM, large, name="lone_worker"),
        Publication.make(NODE_TOPICS, ALARM, Alarm(kind="panic", active=True), name="panic"),
    ]


def fix(i: int) -> Position:
    return Position(
        fix_time="2026-11-25T10:00:00Z",
        lat=45.0,
        lon=2.0 + i * 1e-6,
        mode="3D",
        quality=1,
        odometer_m=float(i),
    )


async def log_line(proc: Any, text: str, within_s: float) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for line in proc.lines:
            if text in line:
                return str(line)
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"no log line with {text!r} within {within_s} s:\n" + "\n".join(proc.lines)
    )


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        (Quirks(refuse_v5="connack"), "refuses MQTT 5"),  # aedes
        (Quirks(refuse_v5="close"), "trying MQTT 3.1.1"),  # RabbitMQ 3.10
    ],
    indirect=["proxy"],
)
async def test_a_broker_that_refuses_mqtt5_gets_3_1_1_and_health_says_so(
    broker: Mosquitto, proxy: MqttProxy, tmp_path: Path, spawn: Any, says: str
) -> None:
    config = write_config(tmp_path, proxy.port, gps=False, health_s=1, broker=FAST)
    async with Collector(broker.port) as c:
        node = await online(c, config, spawn)
        health = await health_with(c, "health from the node", lambda h: "mqtt" in h)
    assert health["mqtt"]["protocol"] == "3.1.1" and health["mqtt"]["fallback"] is True
    await log_line(node, says, 1)
    assert not any("timed out" in line for line in node.lines)


@pytest.mark.parametrize("proxy", [Quirks(refuse_v5="close")], indirect=True)
async def test_a_node_on_3_1_1_by_a_fallback_says_when_it_tries_mqtt5_and_takes_it_again(
    broker: Mosquitto, proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    """A front that hung up on MQTT 5 while its broker restarted: health says the fallback
    and when MQTT 5 is tried again; once the broker behind it answers MQTT 5, health says
    MQTT 5 with no fallback, without a restart of edged."""
    config = write_config(
        tmp_path, proxy.port, gps=False, health_s=1, broker=f"protocol_retry_s = 1\n{FAST}"
    )
    async with Collector(broker.port) as c:
        await online(c, config, spawn)
        fell = await health_with(c, "the fallback", lambda h: h.get("mqtt", {}).get("fallback"))
        assert fell["mqtt"]["protocol"] == "3.1.1" and fell["mqtt"]["mqtt5_retry_in_s"] <= 1
        proxy.quirks.refuse_v5 = None
        back = await health_with(
            c, "MQTT 5 again", lambda h: h.get("mqtt", {}).get("protocol") == "5"
        )
    assert back["mqtt"]["fallback"] is False and "mqtt5_retry_in_s" not in back["mqtt"]
    assert back["errors"]["uplink.protocol_restored"] == 1


@pytest.mark.parametrize("proxy", [Quirks(refuse_v5="connack")], indirect=True)
async def test_without_fallback_a_broker_refusing_mqtt5_is_named_with_the_remedy(
    proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(
        tmp_path, proxy.port, gps=False, broker=f"protocol_fallback = false\n{FAST}"
    )
    node = await spawn(config)
    line = await log_line(node, "Unsupported protocol version", 5)
    assert 'protocol = "3.1.1"' in line


@pytest.fixture
def secured_broker(tmp_path: Path) -> Any:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "shuttle-07", "right"], check=True
    )
    m = Mosquitto(tmp_path, extra=f"allow_anonymous false\npassword_file {passwords}\n").start()
    yield m
    m.stop()


@pytest.mark.parametrize(
    "credentials",
    ["", 'username = "shuttle-07"\npassword_file = "{pw}"'],
    ids=["anonymous", "wrong-password"],
)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_connack_refusal_is_logged_with_its_reason_and_remedy_not_a_time_out(
    secured_broker: Mosquitto,
    tmp_path: Path,
    spawn: Any,
    credentials: str,
    protocol: str,
) -> None:
    """Mosquitto answers "not authorised" to both (not "bad user name or password")."""
    wrong = tmp_path / "wrong-password"
    wrong.write_text("wrong\n")
    wrong.chmod(0o600)
    extra = credentials.format(pw=wrong)
    config = write_config(
        tmp_path, secured_broker.port, gps=False, protocol=protocol, broker=f"{extra}\n{FAST}"
    )
    node = await spawn(config)
    line = await log_line(node, "refused the connection", 5)
    assert "Not authorized" in line and "password_file" in line, line


@pytest.mark.parametrize("proxy", [Quirks(session_expiry_s=0)], indirect=True)
async def test_a_broker_that_keeps_no_session_is_told_in_the_log_and_health(
    broker: Mosquitto, proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(tmp_path, proxy.port, gps=False, health_s=1)
    async with Collector(broker.port) as c:
        node = await online(c, config, spawn)
        health = await health_with(c, "health from the node", lambda h: "mqtt" in h)
    assert health["mqtt"]["session_expiry_s"] == 0
    line = await log_line(node, "keeps our session 0 s", 1)
    assert "lost" in line


async def test_a_publish_the_brokers_acl_refuses_is_counted_logged_and_kept(
    tmp_path: Path, spawn: Any
) -> None:
    """MQTT 5: Mosquitto answers PUBACK 0x87 to a publish its ACL refuses. The node keeps
    the message (it is not delivered), counts it in `health` and says which topic."""
    acl = tmp_path / "acl"
    acl.write_text(  # everything the node publishes but its replies
        "topic read #\n"
        f"topic readwrite {BASE}/state\n"
        f"topic readwrite {BASE}/health\n"
        f"topic readwrite {BASE}/cmd/#\n"
    )
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    try:
        config = write_config(tmp_path, broker.port, gps=False, health_s=1)
        async with Collector(broker.port) as c:
            node = await online(c, config, spawn)
            await send(broker.port, "cmd/ping", b'{"id": "p1"}')
            line = await log_line(node, f"the broker refused {BASE}/reply/ping", 10)
            health = await health_with(
                c,
                "health counting the refusal",
                lambda h: h.get("errors", {}).get("uplink.publish_refused", 0) >= 1,
            )
        assert "Not authorized" in line and "kept in the outbox" in line, line
        assert health["outbox"]["depth"] >= 1, "the refused reply was dropped"
        assert not c.on("reply/ping")
    finally:
        broker.stop()


async def test_a_message_over_the_brokers_maximum_packet_size_holds_up_nothing(
    tmp_path: Path, spawn: Any
) -> None:
    """Mosquitto's max_packet_size (announced in its MQTT 5 CONNACK; a bigger packet ends
    the session, 0x95). An alarm too large for it is held back; the doors and the panic
    alarm behind it go in the same session, the large one stays in the outbox, counted and
    said once; on a broker whose limit was raised it goes, and leaves the outbox."""
    limit = 4096
    (tmp_path / "b1").mkdir()
    broker = Mosquitto(tmp_path / "b1", extra=f"max_packet_size {limit}").start()
    config_path = write_config(tmp_path, broker.port, gps=False, health_s=1)
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 2 * limit})
    doors = [DoorEvent(door=f"d{i}", open=True) for i in range(5)]
    first, panic = alarms(large)
    await queue_before_start(
        config_path, [first, *(Publication.make(NODE_TOPICS, DOOR, d) for d in doors), panic]
    )
    try:
        async with Collector(broker.port) as c:
            node = await spawn(config_path)
            await c.wait_for(
                lambda: c.on("alarm/panic") and len(c.on("events/door")) >= 5, 10, "the rest"
            )
            health = await health_with(c, "health counting it", too_large(1))
        assert not c.on("alarm/lone_worker")
        assert health["errors"]["uplink.publish_too_large"] == 1
        assert health["outbox"]["depth"] == 1 and health["reconnects"] == 0
        said = [line for line in node.lines if "Maximum Packet Size" in line]
        assert len(said) == 1 and f"{limit} bytes" in said[0] and "max_packet_size" in said[0]
        assert sum("connected to" in line for line in node.lines) == 1
        assert "oversize packet" not in broker.log.read_text()
        broker = restarted(broker, tmp_path / "b2", 4 * limit)
        async with Collector(broker.port) as c:
            await c.wait_for(lambda: bool(c.on("alarm/lone_worker")), 10, "the large alarm")
            await health_with(c, "an empty outbox", lambda h: h["outbox"]["depth"] == 0)
        assert c.on("alarm/lone_worker")[0].payload["details"] == large.details
    finally:
        broker.stop()


async def test_over_mqtt_3_1_1_a_message_over_the_brokers_unannounced_limit_holds_up_nothing(
    tmp_path: Path, spawn: Any
) -> None:
    """An MQTT 3.1.1 broker does not say its max_packet_size: Mosquitto closes the
    connection at a bigger packet. The large alarm came first again in every session: the
    node reconnected every few hundred milliseconds, nothing behind it arrived, and it
    blamed another client with its id. It is taken for too large after two sessions ended
    with it in flight, and held back; the batches of samples too large for the broker are
    then kept to a size it took. Everything else arrives."""
    limit = 2000
    broker = Mosquitto(tmp_path, extra=f"max_packet_size {limit}").start()
    config_path = write_config(tmp_path, broker.port, gps=False, health_s=1, protocol="3.1.1")
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 2 * limit})
    first, panic = alarms(large)
    doors = [
        Publication.make(NODE_TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True)) for i in range(5)
    ]
    positions = [Publication.make(NODE_TOPICS, POSITION, fix(i), qos=1) for i in range(200)]
    await queue_before_start(config_path, [first, *doors, *positions, panic])
    try:
        async with Collector(broker.port) as c:
            node = await spawn(config_path)
            await c.wait_for(
                lambda: (
                    c.on("alarm/panic")
                    and len(c.on("events/door")) >= 5
                    and len(unique_by_seq(c.on("position"))) >= 200
                ),
                10,
                "everything but the large alarm",
            )
            health = await health_with(c, "health counting it", too_large(1))
        assert not c.on("alarm/lone_worker")
        assert health["outbox"]["depth"] == 1
        assert health["errors"]["uplink.packet_limit_learned"] == 2  # the alarm, a batch
        assert health["reconnects"] <= 4
        said = [line for line in node.lines if "maximum packet size" in line]
        assert len(said) == 2 and all("MQTT 5" in line for line in said), said
        assert any("alarm/lone_worker" in line for line in said), said
        assert not [line for line in node.lines if "uses our client id" in line]
    finally:
        broker.stop()


async def test_a_retained_message_too_large_for_a_new_broker_is_neither_restored_nor_republished(
    tmp_path: Path, spawn: Any
) -> None:
    """A broker that lost its retained store (restarted without persistence) gets the
    node's retained messages again at the session's start, outside the drain. One that no
    longer fits its Maximum Packet Size is held back there too: counted and said once, and
    the session goes on instead of ending at it in every session. The same for `republish`,
    whose publishes go beside the outbox too (`publish_direct`)."""
    limit = 4096
    (tmp_path / "b1").mkdir()
    broker = Mosquitto(tmp_path / "b1").start()
    config_path = write_config(tmp_path, broker.port, gps=False, health_s=1)
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 2 * limit})
    await queue_before_start(config_path, alarms(large))
    try:
        async with Collector(broker.port) as c:
            node = await spawn(config_path)
            await c.wait_for(lambda: bool(c.on("alarm/lone_worker")), 10, "the large alarm")
            await health_with(c, "an empty outbox", lambda h: h["outbox"]["depth"] == 0)
        broker = restarted(broker, tmp_path / "b2", limit)
        async with Collector(broker.port) as c:
            await c.wait_for(lambda: bool(c.on("alarm/panic")), 10, "the small alarm restored")
            health = await health_with(c, "health counting it", too_large(1))
            await asyncio.sleep(2.0)  # a session ended at it would reconnect by now
            last = c.on("health")[-1].payload
            panics = len(c.on("alarm/panic"))
            await send(broker.port, "cmd/republish", b'{"id": "r1"}')
            await c.wait_for(lambda: bool(c.on("reply/republish")), 10, "the reply")
            again = await health_with(c, "health counting the republish", too_large(2))
            await c.wait_for(lambda: len(c.on("alarm/panic")) > panics, 5, "the panic again")
        assert not c.on("alarm/lone_worker")
        assert health["errors"]["uplink.publish_too_large"] == 1
        assert last["reconnects"] == health["reconnects"] == 1  # the restart's, no more
        reply = c.on("reply/republish")[0].payload
        assert reply["ok"] is True and reply["result"]["birth"] is True, reply
        assert again["errors"]["uplink.publish_too_large"] == 2 and again["reconnects"] == 1
        said = [line for line in node.lines if "Maximum Packet Size" in line]
        assert len(said) == 1 and "alarm/lone_worker" in said[0]
        assert "oversize packet" not in broker.log.read_text()
    finally:
        broker.stop()


async def test_over_mqtt_3_1_1_a_retained_message_too_large_for_a_new_broker_is_learned_and_held(
    tmp_path: Path, spawn: Any
) -> None:
    """The same restore over MQTT 3.1.1, whose broker cannot say its limit: Mosquitto closes
    the connection at the large retained alarm the node restores. Every session ended there
    (taken for another client with our id, reconnecting with growing delays): the panic
    alarm behind it never came again. The restored publish in flight is a suspect as the
    drain's are (`edged.uplink.ceiling`): two sessions ended at it teach the limit, and it
    is held back from then on, the rest restored."""
    limit = 4096
    (tmp_path / "b1").mkdir()
    broker = Mosquitto(tmp_path / "b1").start()
    config_path = write_config(tmp_path, broker.port, gps=False, health_s=1, protocol="3.1.1")
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 2 * limit})
    await queue_before_start(config_path, alarms(large))
    try:
        async with Collector(broker.port) as c:
            node = await spawn(config_path)
            await c.wait_for(lambda: bool(c.on("alarm/lone_worker")), 10, "the large alarm")
            await health_with(c, "an empty outbox", lambda h: h["outbox"]["depth"] == 0)
        broker = restarted(broker, tmp_path / "b2", limit)
        async with Collector(broker.port) as c:
            await c.wait_for(lambda: bool(c.on("alarm/panic")), 15, "the small alarm restored")
            health = await health_with(c, "health counting it", too_large(1))
            await asyncio.sleep(2.0)  # a session ended at it again would reconnect by now
            last = c.on("health")[-1].payload
        assert not c.on("alarm/lone_worker")
        assert health["errors"]["uplink.packet_limit_learned"] == 1
        assert last["reconnects"] == health["reconnects"] <= 3  # the restart's, 2 to learn
        said = [line for line in node.lines if "maximum packet size" in line]
        assert len(said) == 1 and "alarm/lone_worker" in said[0], said
        assert not [line for line in node.lines if "uses our client id" in line]
    finally:
        broker.stop()


def refused_retained(broker: Mosquitto) -> int:
    """How many connections the broker ended for a retained publish or will (0x9A, 0x9B)."""
    return broker.log.read_text().count("QoS too high or retain not supported")


async def test_a_broker_without_retained_messages_gets_every_message_without_the_flag(
    tmp_path: Path, spawn: Any
) -> None:
    """Mosquitto with `retain_available false` refuses a CONNECT whose will is retained
    (0x9A). The node connects again without the flag and sends everything that way: the
    panic alarm queued while it could not connect arrives, and so do its birth, health and
    `offline` at its stop, live. Said once in the log with the remedy, and in health."""
    broker = Mosquitto(tmp_path, extra="retain_available false").start()
    try:
        config = write_config(tmp_path, broker.port, gps=False, health_s=1)
        _, panic = alarms(Alarm(kind="lone_worker", active=True))
        await queue_before_start(config, [panic])
        async with Collector(broker.port) as c:
            node = await online(c, config, spawn)
            await c.wait_for(lambda: bool(c.on("alarm/panic")), 10, "the panic alarm")
            health = await health_with(c, "health", lambda h: "mqtt" in h)
            await asyncio.sleep(1.5)  # a retained publish would end the session by now
            node.proc.terminate()  # SIGTERM, as systemd stops it
            await c.wait_for(lambda: len(c.on("state")) >= 2, 10, "offline at the stop")
        assert c.on("alarm/panic")[0].payload["active"] is True
        assert health["mqtt"]["retain"] is False
        assert health["errors"]["uplink.retain_unavailable"] == 1
        assert health["reconnects"] == 0
        assert c.on("state")[-1].payload["state"] == "offline"
        said = [line for line in node.lines if "keeps no retained messages" in line]
        assert len(said) == 1 and "retain_available true" in said[0], said
        assert refused_retained(broker) == 1  # the first CONNECT's will, nothing after it
    finally:
        broker.stop()


def retained_topics(c: Collector) -> set[str]:
    return {m.topic.rsplit("/", 1)[-1] for m in c.messages if m.retain}


async def test_a_broker_that_keeps_retained_messages_again_gets_them_without_a_restart(
    tmp_path: Path, spawn: Any
) -> None:
    """The broker's setting changed (or a balancer sent the node to another broker): the
    next MQTT 5 CONNACK no longer says Retain Available 0, and the node's state, health
    and the rest are retained again, without a restart of edged."""
    broker = Mosquitto(tmp_path, extra="retain_available false").start()
    try:
        config = write_config(tmp_path, broker.port, gps=False, health_s=1)
        async with Collector(broker.port) as c:
            node = await online(c, config, spawn)
        broker.stop()
        (tmp_path / "again").mkdir()
        broker = Mosquitto(tmp_path / "again", port=broker.port).start()
        await log_line(node, "keeps retained messages again", 20)
        await asyncio.sleep(2.5)  # health goes every second: the broker keeps the last
        async with Collector(broker.port, client_id="late") as late:
            await late.wait_for(lambda: retained_topics(late) >= {"state", "health"}, 10, "kept")
        assert [m.payload["state"] for m in late.on("state") if m.retain] == ["online"]
    finally:
        broker.stop()


@pytest.mark.parametrize("proxy", [Quirks(retain_available=False)], indirect=True)
async def test_a_connack_saying_retain_unavailable_turns_the_flag_off(
    broker: Mosquitto, proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    """A broker that takes the retained will but says Retain Available 0 in its CONNACK
    (MQTT 5) gets no retained publish: nothing the node sends is kept as a topic's value."""
    config = write_config(tmp_path, proxy.port, gps=False, health_s=1)
    async with Collector(broker.port) as c:
        await online(c, config, spawn)
        health = await health_with(c, "health", lambda h: "mqtt" in h)
    async with Collector(broker.port, client_id="late") as late:  # after the node's messages
        await asyncio.sleep(1.0)
    assert health["mqtt"]["retain"] is False
    assert not [m.topic for m in late.messages if m.retain]


@pytest.mark.parametrize("proxy", [Quirks(retain_available=True)], indirect=True)
async def test_a_connack_saying_retain_available_keeps_the_flag(
    broker: Mosquitto, proxy: MqttProxy, tmp_path: Path, spawn: Any
) -> None:
    """The control of the test above: the same path, Retain Available 1."""
    config = write_config(tmp_path, proxy.port, gps=False, health_s=1)
    async with Collector(broker.port) as c:
        await online(c, config, spawn)
        health = await health_with(c, "health", lambda h: "mqtt" in h)

    def kept() -> set[str]:
        return {m.topic.rsplit("/", 1)[-1] for m in late.messages if m.retain}

    async with Collector(broker.port, client_id="late") as late:
        # both, not the first to come: the test read the set when `state` alone had come
        await late.wait_for(lambda: {"state", "health"} <= kept(), 5, "state and health")
    assert health["mqtt"]["retain"] is True


async def test_a_broker_allowing_only_qos_0_is_named_with_the_remedy(
    tmp_path: Path, spawn: Any
) -> None:
    """Mosquitto with `max_qos 0` refuses the QoS 1 will (0x9B). edged needs QoS 1 to know
    what arrived: it says what to change on the broker, and backs off."""
    broker = Mosquitto(tmp_path, extra="max_qos 0").start()
    try:
        config = write_config(tmp_path, broker.port, gps=False)
        node = await spawn(config)
        line = await log_line(node, "refused the connection", 5)
        assert "0x9B" in line and "max_qos" in line and "QoS 1" in line, line
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("protocol", "setting", "says", "remedy"),
    [
        ("5", "max_qos 0", "refused the connection", "max_qos"),  # CONNACK 0x9B
        ("3.1.1", "max_qos 0", "without a CONNACK", "max_qos 0"),
        ("3.1.1", "retain_available false", "without a CONNACK", "retain_available false"),
    ],
)
async def test_a_broker_refusing_the_nodes_will_is_named_backed_off_and_loses_nothing(
    tmp_path: Path, spawn: Any, protocol: str, setting: str, says: str, remedy: str
) -> None:
    """A broker that allows only QoS 0, or keeps no retained messages, refuses the node's
    will (QoS 1, retained). Over MQTT 3.1.1 Mosquitto closes the connection without a
    CONNACK, with no reason: the node told the operator to set `protocol = "3.1.1"`, which
    it used already. It names the broker's setting, backs off, and keeps every message for
    the broker fixed (played by pointing the proxy at a Mosquitto without the setting)."""
    (tmp_path / "b1").mkdir()
    tight = Mosquitto(tmp_path / "b1", extra=setting).start()
    proxy = await MqttProxy(tight.port).start()
    fixed: Mosquitto | None = None
    config = write_config(tmp_path, proxy.port, gps=False, protocol=protocol)
    doors = [DoorEvent(door=f"d{i}", open=True) for i in range(5)]
    await queue_before_start(config, [Publication.make(NODE_TOPICS, DOOR, d) for d in doors])
    try:
        node = await spawn(config)
        line = await log_line(node, says, 5)
        assert remedy in line and "QoS 1" in line and 'protocol = "3.1.1"' not in line, line
        await asyncio.sleep(3.0)
        assert 2 <= refused_retained(tight) <= 10  # backed off to reconnect_max_s (1 s)
        proxy.down = True
        (tmp_path / "b2").mkdir()
        fixed = Mosquitto(tmp_path / "b2").start()
        async with Collector(fixed.port) as c:
            proxy.upstream_port, proxy.down = fixed.port, False
            await c.wait_for(lambda: len(c.on("events/door")) >= 5, 10, "the doors kept")
        assert [m.payload["door"] for m in c.on("events/door")] == [d.door for d in doors]
    finally:
        await proxy.close()
        tight.stop()
        if fixed is not None:
            fixed.stop()

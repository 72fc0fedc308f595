"""The uplink's own publishes beside the outbox (the birth, restored retained topics, a
direct publish) on a real Mosquitto whose ACL refuses some of them (MQTT 5: PUBACK 0x87),
or that allows few publishes in flight."""

import asyncio
import contextlib
import itertools
import signal
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from core.cancel import cancel_and_wait
from core.counters import Counters
from edged.config.models import BrokerConfig
from edged.logs import BURST
from edged.outbox import Outbox, Publication
from edged.payloads import Alarm, DoorEvent, Reply, State
from edged.topics import ALARM, DOOR, REPLY, Topics
from edged.topics import STATE as STATE_TOPIC
from edged.uplink.cancellable import CancellableClient
from edged.uplink.client import GIVEN_UP_FIRST_S, GIVEN_UP_FOR_S, MAX_INCOMING_BYTES, Uplink
from edged.uplink.packets import varint
from edged.uplink.sender import Sender
from edged.uplink.shutdown import drain_and_say_offline
from hil.proxy import MqttProxy, Quirks
from tests.helpers.broker import Mosquitto
from tests.helpers.drivers import wait_until
from tests.helpers.hostile_broker import hostile_broker
from tests.helpers.journal import Journal
from tests.helpers.mqtt import Collector, Received
from tests.helpers.pki import DAY, Pki
from tests.helpers.relay import pump
from tests.helpers.silent import silent_server

TOPICS = Topics("rnst/v1", "test", "n1")


async def _ignore(_: object) -> None:
    return None


def _uplink(port: int, outbox: Outbox, counters: Counters, **broker: Any) -> Uplink:
    """The node's uplink to the broker on `port`; `broker`: its other `[broker]` settings."""
    return Uplink(
        BrokerConfig(host="127.0.0.1", port=port, **broker),
        TOPICS,
        outbox,
        client_id="edged-test-n1",
        birth=lambda since: State(state="online", since=since),
        on_command=_ignore,
        counters=counters,
    )


async def test_a_birth_and_a_direct_publish_the_broker_refuses_are_not_taken_as_sent(
    tmp_path: Path, outbox: Outbox
) -> None:
    """aiomqtt's publish takes a PUBACK 0x87 for a delivery: the node counted its birth as
    sent while the broker's retained `state` said offline, and `republish`, `say_offline`
    and the outbox-full alarm said True for what the broker refused."""
    acl = tmp_path / "nostate.acl"
    acl.write_text("topic readwrite rnst/v1/test/n1/position\ntopic read rnst/v1/test/n1/cmd/#\n")
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.2)
    task = asyncio.create_task(uplink.run())
    try:
        for _ in range(200):
            if uplink.connected:
                break
            await asyncio.sleep(0.05)
        assert uplink.connected, "the session must go on: the outbox's messages still go"
        assert counters["uplink.publish_refused"] == 1, "the refused birth was taken as sent"
        state = TOPICS.base + "/state"
        assert await uplink.publish_direct(state, b"{}", qos=1, retain=True) is False
        assert counters["uplink.publish_refused"] == 2
        position = TOPICS.base + "/position"
        assert await uplink.publish_direct(position, b"{}", qos=1, retain=False) is True
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def test_copies_on_response_topics_the_broker_refuses_are_dropped_and_said_once(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Each command may name its own response topic: refused copies must neither stay in
    the outbox nor each leave a topic in the session's log-once memory."""
    acl = tmp_path / "node-only.acl"
    acl.write_text("topic readwrite rnst/v1/#\n")
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.2)
    for i in range(100):
        reply = Reply(id=f"c{i}", ok=True, result={})
        outbox.put_nowait(
            Publication.make(
                TOPICS, REPLY, reply, name="ping", response_topic=f"ops/c{i}", correlation=b"1"
            )
        )
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: counters["uplink.publish_refused"] == 100, 10, "the refusals")
        await wait_until(lambda: outbox.depth == 0, 5, "the outbox emptied")
        said = [r for r in caplog.records if "refused the copy of a reply" in r.getMessage()]
        assert len(said) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def test_a_flood_of_refused_replies_does_not_hold_back_the_first_word_of_a_refused_door(
    tmp_path: Path, outbox: Outbox, journal: Journal
) -> None:
    """Every refusal is said once a session per topic, all with one template ("%s"): the
    log's flood guard counted them as one, so replies to a dozen commands the ACL refuses
    held back the first line about door events refused, in the journal."""
    acl = tmp_path / "state-only.acl"
    acl.write_text("topic readwrite rnst/v1/test/n1/state\ntopic read rnst/v1/test/n1/cmd/#\n")
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.2)
    for i in range(15):
        reply = Reply(id=f"c{i}", ok=True, result={})
        await outbox.put_nowait(Publication.make(TOPICS, REPLY, reply, name=f"ping{i}"))
    await outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door="d1", open=True)))
    task = asyncio.create_task(uplink.run())
    try:
        door = "the broker refused rnst/v1/test/n1/events/door"
        await wait_until(lambda: counters["uplink.publish_refused"] >= 16, 10, "the refusals")
        await wait_until(lambda: journal.with_(door), 3, "the door's refusal in the journal")
        assert len(journal.with_(door)) == 1
        assert len(journal.with_("the broker refused rnst/v1/test/n1/reply/")) == BURST
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def test_a_broker_sending_the_node_to_another_server_names_it_in_the_log_and_health(
    tmp_path: Path, outbox: Outbox
) -> None:
    """MQTT 5 DISCONNECT 0x9C "use another server" (0x9D "server moved" alike) carries the
    server to use in its Server Reference property (MQTT 5.0 3.14.2.2.5, 4.11). The node
    told the operator to "point [broker] host at the server the broker names" and never
    said which: played by the proxy in front of a real Mosquitto."""
    broker = Mosquitto(tmp_path).start()
    proxy = await MqttProxy(broker.port).start()
    uplink = _uplink(proxy.port, outbox, Counters(), reconnect_min_s=5.0)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: uplink.connected, 10, "the session")
        name = b"mqtt-eu2.example.net:8883"
        props = bytes([0x1C]) + len(name).to_bytes(2, "big") + name
        body = bytes([0x9C]) + varint(len(props)) + props
        assert await proxy.to_clients(bytes([0xE0]) + varint(len(body)) + body) == 1
        await wait_until(lambda: not uplink.connected, 10, "the DISCONNECT to end the session")
        assert uplink.last_error is not None
        assert "mqtt-eu2.example.net:8883" in uplink.last_error, uplink.last_error
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
        broker.stop()


@pytest.mark.parametrize("receive_max", [1, 2])
async def test_direct_publishes_beside_a_full_drain_wait_within_a_small_receive_maximum(
    tmp_path: Path, outbox: Outbox, receive_max: int
) -> None:
    """The drain leaves two of the broker's Receive Maximum to the publishes made beside it
    (a republish, the outbox-full alarm), but takes the whole of one of one or two
    (Mosquitto's `max_inflight_messages`): those publishes must wait for one of its
    PUBACKs, not go over the allowance (HiveMQ ends the session: 0x93). The broker's
    PUBACKs after the birth's are withheld: nothing frees a slot."""
    broker = Mosquitto(tmp_path, extra=f"max_inflight_messages {receive_max}").start()
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True, withhold_after=1)).start()
    for i in range(10):
        await outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True)))
    uplink = _uplink(proxy.port, outbox, Counters(), reconnect_min_s=5.0)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: proxy.withheld == receive_max, 10, "the drain's window")
        alarm = TOPICS.base + "/alarm/outbox_full"
        sent = await asyncio.gather(
            uplink.publish_direct(TOPICS.base + "/state", b"{}", qos=1, retain=True, within_s=1),
            uplink.publish_direct(alarm, b"{}", qos=1, retain=True, within_s=1),
        )
        assert sent == [False, False]  # no PUBACK came for any
        assert proxy.withheld == receive_max, "more in flight than the broker allows"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
        broker.stop()


async def test_a_direct_publish_waiting_for_room_goes_once_the_one_beside_it_is_acknowledged(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Under a Receive Maximum of one, two publishes beside an idle drain (the outbox-full
    alarm during a republish): the second waits for the first's slot. The slot came free
    when the first's PUBACK came, but only a PUBACK of the drain's woke a waiter: with
    nothing in the outbox the second waited its whole time-out and was not sent."""
    broker = Mosquitto(tmp_path, extra="max_inflight_messages 1").start()
    uplink = _uplink(broker.port, outbox, Counters(), reconnect_min_s=5.0)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: uplink.connected, 10, "the session")
        alarm = TOPICS.base + "/alarm/outbox_full"
        sent = await asyncio.gather(
            uplink.publish_direct(TOPICS.base + "/state", b"{}", qos=1, retain=True, within_s=3),
            uplink.publish_direct(alarm, b"{}", qos=1, retain=True, within_s=3),
        )
        assert sent == [True, True]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_link_lost_twice_with_the_panic_alarm_in_flight_holds_it_back_not(
    tmp_path: Path, outbox: Outbox, protocol: str
) -> None:
    """A link that drops twice in a row while the panic alarm awaits its PUBACK (a dead zone,
    a carrier's reset) ends two sessions with the same publish in flight, larger than any
    the broker acknowledged since the node started: that taught a packet limit under the
    alarm, and held it back for an hour once the link was good. An MQTT 5 broker says its
    limit in its CONNACK (none said: none), and one that refuses a packet for its size says
    so (DISCONNECT 0x95): a close teaches nothing there. Over 3.1.1 a publish of a few
    hundred bytes is never taken for too large (`SMALLEST_SUSPECT`)."""
    broker = Mosquitto(tmp_path).start()
    proxy = await MqttProxy(broker.port, Quirks(withhold_pubacks=True, withhold_after=1)).start()
    panic = Alarm(kind="panic", active=True, reason="panic button pressed", details={"n": 1})
    await outbox.put_nowait(Publication.make(TOPICS, ALARM, panic, name="panic"))
    counters = Counters()
    uplink = _uplink(proxy.port, outbox, counters, protocol=protocol, reconnect_min_s=0.1)
    task = asyncio.create_task(uplink.run())
    try:
        for lost in (1, 2):  # the birth's PUBACK comes, the alarm's does not: the link dies
            await wait_until(lambda: proxy.withheld == lost, 10, "the alarm in flight")  # noqa: B023
            proxy.quirks.withhold_after = proxy.pubacks + 1  # the next session's birth
            proxy.cut()
        proxy.quirks.withhold_pubacks = False  # the link is good again
        await wait_until(lambda: outbox.depth == 0, 10, "the alarm acknowledged")
        assert counters["uplink.packet_limit_learned"] == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
        broker.stop()


async def test_a_tls_refusal_met_by_the_3_1_1_probe_ends_the_probe_not_mqtt_5(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Two closes without a CONNACK (a broker's TLS 1.3 alert lost to its close's reset, here
    a front that hangs up) make the next attempt try 3.1.1; when that attempt meets the
    broker's TLS alert instead (the certificate, not the version), the node stayed on 3.1.1,
    and once the certificate was renewed it connected over 3.1.1 and said the broker
    refused MQTT 5, without MQTT 5 until edged restarted. Against a real Mosquitto with
    TLS 1.2 (its alert always read: the probe meets it every time)."""
    pki = Pki(tmp_path / "pki")
    crt, key = pki.issue("broker", "localhost")
    broker = Mosquitto(
        tmp_path,
        extra=(
            f"allow_anonymous false\ncafile {pki.ca}\ncertfile {crt}\nkeyfile {key}\n"
            "require_certificate true\nuse_identity_as_username true\n"
        ),
    ).start()
    hang_up_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    hang_up_tls.load_cert_chain(*pki.issue("front", "localhost"))
    connections = 0

    async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The first two connections end TLS here and hang up at the CONNECT; the next ones
        reach the broker."""
        nonlocal connections
        connections += 1
        if connections <= 2:
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.start_tls(hang_up_tls)
                await asyncio.wait_for(reader.read(1), 5)
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", broker.port)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    server = await asyncio.start_server(front, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cert, node_key = pki.issue("node", "test.a", starts=-400 * DAY, ends=-2 * DAY)
    tls = {"ca_file": pki.ca, "cert_file": cert, "key_file": node_key, "max_version": "1.2"}
    counters = Counters()
    uplink = _uplink(port, outbox, counters, tls=tls, reconnect_min_s=0.1, reconnect_max_s=0.2)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: connections >= 4, 15, "the attempts after the probe")
        assert "expired" in (uplink.last_error or ""), uplink.last_error
        renewed = pki.issue("renewed", "test.a")  # the operator renews it in place
        cert.write_bytes(renewed[0].read_bytes())
        node_key.write_bytes(renewed[1].read_bytes())
        await wait_until(lambda: uplink.connected, 15, "connected with the renewed certificate")
        assert (uplink.protocol, uplink.fell_back) == ("5", False), uplink.last_error
        assert counters["uplink.protocol_fallback"] == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        broker.stop()


async def test_a_topic_the_acl_refuses_is_named_with_its_fix_and_tried_once_a_session(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 5, Mosquitto's ACL refusing the node's door events (PUBACK 0x87): the log names
    the topic, the client id and the fix, `health.errors` the kind of topic; a new session
    tries one door before the others (every refused row went again at each session); once
    the ACL is fixed and reloaded, every door arrives, the alarm went all along."""
    acl = tmp_path / "nodoor.acl"
    acl.write_text(
        "topic readwrite rnst/v1/test/n1/state\ntopic readwrite rnst/v1/test/n1/alarm/#\n"
        "topic read rnst/v1/test/n1/cmd/#\n"
    )
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    proxy = await MqttProxy(broker.port, Quirks()).start()
    for i in range(30):
        await outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True)))
    panic = Alarm(kind="panic", active=True, reason="panic button pressed")
    await outbox.put_nowait(Publication.make(TOPICS, ALARM, panic, name="panic"))
    counters = Counters()
    uplink = _uplink(proxy.port, outbox, counters, reconnect_min_s=0.1, window=8)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: outbox.depth == 30, 10, "the alarm sent, the doors kept")
        await wait_until(lambda: counters["uplink.publish_refused"] >= 8, 10, "a window refused")
        said = [
            r.getMessage()
            for r in caplog.records
            if "rnst/v1/test/n1/events/door" in r.getMessage()
        ]
        assert any("edged-test-n1" in line and "fleet-certs.sh DIR acl" in line for line in said), (
            said
        )
        assert counters["uplink.acl_refused.events/door"] >= 8
        before = counters["uplink.publish_refused"]
        sessions = uplink.sessions
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions, 10, "the next session")
        await wait_until(lambda: counters["uplink.publish_refused"] > before, 10, "its probe")
        await asyncio.sleep(0.5)
        assert counters["uplink.publish_refused"] == before + 1, "one door tried, not all"
        acl.write_text("topic readwrite rnst/v1/test/n1/#\n")
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        proxy.cut()  # the probe goes at once in the next session
        await wait_until(lambda: outbox.depth == 0, 15, "every door, once the ACL allows it")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_message_over_an_unannounced_message_size_limit_holds_up_nothing(
    tmp_path: Path, outbox: Outbox, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Mosquitto's `message_size_limit` is announced in no CONNACK. Over MQTT 5 it answers a
    publish over it with PUBACK 0x95 (packet too large): the message is kept and tried
    again on its own (not its topic: `OF_THE_MESSAGE`), the session goes on, and the doors
    behind it arrive. Over 3.1.1 it acknowledges the publish and drops it: the node cannot
    know, the message leaves the outbox as delivered and never arrives (why docs/topics.md
    says to bound sizes with `max_packet_size`, which the node learns over 3.1.1:
    `edged.uplink.ceiling`). Neither holds up the queue or ends the session."""
    limit = 2000
    broker = Mosquitto(tmp_path, extra=f"message_size_limit {limit}").start()
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 2 * limit})
    await outbox.put_nowait(Publication.make(TOPICS, ALARM, large, name="lone_worker"))
    for i in range(5):
        await outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True)))
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, protocol=protocol, reconnect_min_s=0.1)
    kept = 1 if protocol == "5" else 0
    task: asyncio.Task[None] | None = None
    try:
        async with Collector(broker.port, TOPICS.base + "/#") as c:
            # the uplink once the collector listens: the doors are not retained, and sent
            # before its subscription they were never seen (a CI-equivalent run, loaded)
            task = asyncio.create_task(uplink.run())
            await c.wait_for(lambda: len(c.on("events/door")) >= 5, 15, "the doors")
            await wait_until(lambda: outbox.depth == kept, 10, "the doors acknowledged")
        assert uplink.sessions == 1 and not c.on("alarm/lone_worker")
        assert counters["uplink.publish_refused"] == kept
        said = [r.getMessage() for r in caplog.records if "0x95" in r.getMessage()]
        assert len(said) == kept and all("message_size_limit" in line for line in said), said
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        broker.stop()


async def test_replies_named_by_commanders_take_no_topic_alias_whatever_the_brokers_maximum(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A reply's topic is whatever a commander wrote on `cmd/` (`reply/x1`, `reply/x2`...),
    its copy's a response topic of its choosing: each took an alias, the table grew by a
    topic name per command up to the broker's maximum (EMQX: 65,535) for as long as the
    connection lasted, and the node's own topics published later found no slot."""
    broker = Mosquitto(tmp_path, extra="max_topic_alias 65535").start()
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.2)
    n = 300
    for i in range(n):
        reply = Reply(id=f"c{i}", ok=False, result=None)
        outbox.put_nowait(Publication.make(TOPICS, REPLY, reply, name=f"x{i}"))
        outbox.put_nowait(
            Publication.make(
                TOPICS, REPLY, reply, name="ping", response_topic=f"ops/c{i}", correlation=b"1"
            )
        )
    outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door="front", open=True)))
    task: asyncio.Task[None] | None = None
    try:
        async with Collector(broker.port, topic=TOPICS.of(DOOR)) as c:
            task = asyncio.create_task(uplink.run())
            await c.wait_for(lambda: len(c.messages) == 1, 20, "the door, after the replies")
        assert uplink.aliases.maximum == 65535
        assert 1 <= len(uplink.aliases) <= 2, len(uplink.aliases)  # the node's own: door, state
        assert uplink.aliases.apply(TOPICS.of(DOOR), None)[0] == "", "its own topics still do"
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        broker.stop()


async def test_refused_replies_to_commands_the_node_does_not_know_are_not_kept_per_name(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker whose ACL lists the replies it takes refuses `reply/x1`, `reply/x2`...: each
    name a commander made up on `cmd/` was a parked topic, a retry timer, a row kept and a
    warning remembered, for good (300 names: 300 of each). The reply to a command the node
    knows is still kept until the broker takes it."""
    acl = tmp_path / "known-replies.acl"
    acl.write_text(
        "topic readwrite rnst/v1/test/n1/state\ntopic read rnst/v1/test/n1/cmd/#\n"
        "topic readwrite rnst/v1/test/n1/reply/ping\n"
    )
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}").start()
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.2)
    uplink.answers = lambda name: name in ("ping", "config.get")  # as the node's router says
    n = 300
    for i in range(n):
        reply = Reply(id=f"c{i}", ok=False)
        outbox.put_nowait(Publication.make(TOPICS, REPLY, reply, name=f"x{i}"))
    known = Reply(id="k", ok=True, result={})
    outbox.put_nowait(Publication.make(TOPICS, REPLY, known, name="config.get"))
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: counters["uplink.publish_refused"] >= n + 1, 10, "the refusals")
        await wait_until(lambda: outbox.depth == 1, 5, "the unknown ones deleted")
        sender = uplink._sender
        assert sender is not None
        assert list(sender.parked) == [TOPICS.of(REPLY, "config.get")], "only the known one"
        assert len(uplink._said) <= 2
        said = [r for r in caplog.records if "a command this node does not know" in r.getMessage()]
        assert len(said) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def test_qos0_commands_read_before_the_node_takes_its_session_up_again_are_handled(
    broker: Mosquitto, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood left QoS 1 commands out past the bound; QoS 0 `ping`s came behind it. Once
    the node had taken the QoS 1 ones read before, it ended the session at once, and the
    `ping`s waiting in its queue went with the connection: never handled, never counted
    (the broker does not send QoS 0 messages again). They are handled first."""
    from edged.uplink import client as uplink_client

    monkeypatch.setattr(uplink_client, "RETAKE_AFTER_S", 0.2, raising=False)
    gate = asyncio.Event()
    names: list[str] = []

    async def lane(cmd: Any) -> None:  # the node's lanes: acknowledged, then one at a time
        cmd.ack()
        names.append(cmd.name)
        await gate.wait()

    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.2)
    uplink.on_command = lane
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: uplink.connected, 10, "the session")
        base = TOPICS.base
        big = b" " * (4 * 1024 * 1024)  # the queue holds 16 MiB: the sixth is left out
        async with CancellableClient("127.0.0.1", broker.port) as peer:
            for _ in range(7):
                await peer.publish(f"{base}/cmd/access/update", big, qos=1)
            for _ in range(3):
                await peer.publish(f"{base}/cmd/ping", b'{"id": "p"}', qos=0)
        client = uplink._client
        await wait_until(lambda: client is not None and client.left_out > 0, 10, "one left out")
        await asyncio.sleep(0.3)  # the pings are read
        gate.set()
        await wait_until(lambda: counters["uplink.retaken"] >= 1, 10, "the session taken up")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert names.count("ping") == 3, names


PANIC = Alarm(kind="panic", active=True, reason="panic button pressed", details={"n": 1})


@contextlib.asynccontextmanager
async def with_a_retained_alarm(
    tmp_path: Path, outbox: Outbox, counters: Counters, broker_extra: str = "", **broker: Any
) -> AsyncIterator[tuple[Uplink, MqttProxy]]:
    """The uplink running through `hil.proxy` to a real Mosquitto, a panic alarm already
    retained by it: each new session restores it (`session_expiry_s = 0`)."""
    mosquitto = Mosquitto(tmp_path, extra=broker_extra).start()
    proxy = await MqttProxy(mosquitto.port, Quirks()).start()
    await outbox.put_nowait(Publication.make(TOPICS, ALARM, PANIC, name="panic"))
    uplink = _uplink(proxy.port, outbox, counters, session_expiry_s=0, **broker)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: outbox.depth == 0, 10, "the alarm acknowledged: retained")
        yield uplink, proxy
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
        mosquitto.stop()


async def held_in_the_restore(proxy: MqttProxy, sessions: int = 1) -> None:
    """Cut the link; the next session's birth goes through and its restored alarm's PUBACK
    is withheld: the node is held between its birth and `connected`."""
    proxy.quirks.withhold_after = proxy.pubacks + 1  # the next session's birth
    proxy.quirks.withhold_pubacks = True
    proxy.cut()
    await wait_until(lambda: proxy.withheld == sessions, 10, "the alarm restored")


async def test_a_session_lost_while_its_retained_topics_are_restored_is_one_lost_under_us(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The birth acknowledged, a broker with no session for the node gets its retained
    topics again before the node calls itself connected. A session lost then was said to
    be a broker the node 'cannot reach', not one closed under it: it was never short, so
    another client with the node's id that took it back in that moment started the count
    of short sessions again, and the backoff from the shortest delay. On a loaded machine
    the node lost most of its sessions there (the id fight: 14 sessions in 6 s, the delay
    back to 0.1 s). Here the proxy withholds the restored topic's PUBACK and cuts the link:
    three such sessions in a row are taken for another client with the node's id."""
    counters = Counters()
    options: dict[str, Any] = {"protocol": "3.1.1", "reconnect_min_s": 0.1, "reconnect_max_s": 2.0}
    async with with_a_retained_alarm(tmp_path, outbox, counters, **options) as (_, proxy):
        for lost in (1, 2, 3):
            await held_in_the_restore(proxy, sessions=lost)
        proxy.cut()
        await wait_until(lambda: counters["uplink.takeover"] > 0, 10, "a takeover suspected")
        said = [r.getMessage() for r in caplog.records if r.name == "edged.uplink.client"]
        assert not [line for line in said if line.startswith("cannot reach")], said


async def test_sessions_cut_at_the_same_restored_topic_are_not_said_a_takeover_alone(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Three short sessions cut while the same retained topic was restored: another client
    with the node's id, or a broker closing the connection at that topic (its ACL, its
    packet size), which the next restore gives up. The log said "another client probably
    uses our client id" alone, and sent the technician after a twin that may not exist."""
    counters = Counters()
    options: dict[str, Any] = {"protocol": "3.1.1", "reconnect_min_s": 0.1, "reconnect_max_s": 2.0}
    async with with_a_retained_alarm(tmp_path, outbox, counters, **options) as (uplink, proxy):
        for lost in (1, 2, 3):
            await held_in_the_restore(proxy, sessions=lost)
        proxy.cut()
        await wait_until(lambda: counters["uplink.takeover"] > 0, 10, "a takeover suspected")
        alarm = TOPICS.of(ALARM, "panic")
        said = [r.getMessage() for r in caplog.records if "our client id" in r.getMessage()]
        assert said and all(f"while {alarm} was restored" in line for line in said), said
        assert f"closes the connection at {alarm}" in uplink.last_error, uplink.last_error


async def test_short_sessions_not_all_cut_at_one_restored_topic_say_how_many_were(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Short sessions in a row, the first ones cut outside the restore (in the drain), the
    last two while the same retained topic was restored: the log said the broker closed
    them all "each while" that topic was restored, a cut the others never reached. It says
    how many were: the last two."""
    counters = Counters()
    options: dict[str, Any] = {"protocol": "3.1.1", "reconnect_min_s": 0.1, "reconnect_max_s": 2.0}
    async with with_a_retained_alarm(tmp_path, outbox, counters, **options) as (uplink, proxy):
        proxy.cut()
        await wait_until(lambda: uplink.sessions == 2, 10, "a session restored, then online")
        for lost in (1, 2):  # that one cut short, the next two in their restore
            await held_in_the_restore(proxy, sessions=lost)
        lost_before = counters["uplink.disconnect"]
        proxy.cut()
        await wait_until(lambda: counters["uplink.disconnect"] > lost_before, 10, "the last cut")
        said = [r.getMessage() for r in caplog.records if "our client id" in r.getMessage()]
        alarm = TOPICS.of(ALARM, "panic")
        assert said and f", the last 2 while {alarm} was restored" in said[-1], said[-1]


async def test_offline_is_said_in_a_session_stopped_while_its_retained_topics_are_restored(
    tmp_path: Path, outbox: Outbox
) -> None:
    """SIGTERM right after the birth's PUBACK, while a broker with no session for the node
    gets its retained topics again: the stop's `say_offline` found the node not yet
    connected and said nothing, and the session's end (a DISCONNECT) made the broker drop
    the will: dispatch kept `online` for a node that had stopped (test_shutdown's hung
    stop, under load). The restored alarm's PUBACK is withheld by the proxy to hold the
    node there."""
    restoring = with_a_retained_alarm(tmp_path, outbox, Counters(), reconnect_min_s=0.1)
    async with restoring as (uplink, proxy):
        await held_in_the_restore(proxy)
        proxy.quirks.withhold_pubacks = False  # the next PUBACKs go through
        async with Collector(proxy.upstream_port, TOPICS.of(STATE_TOPIC)) as c:
            assert await uplink.say_offline()
            await c.wait_for(
                lambda: any(m.payload.get("state") == "offline" for m in c.messages), 5, "offline"
            )


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_stop_that_could_not_say_offline_leaves_it_to_the_will(
    tmp_path: Path, outbox: Outbox, protocol: str
) -> None:
    """The stop's `offline` not said (the broker did not answer in time, or its ACL refused
    it) and the session ended by the stop's cancel: aiomqtt's DISCONNECT (reason 0) told
    the broker to drop the will, so dispatch kept `online` retained for a stopped node
    until its next start. The session now ends so that the broker sends the will: MQTT 5's
    DISCONNECT 0x04, or over 3.1.1 the connection closed without a DISCONNECT."""
    async with linked(tmp_path, outbox, protocol=protocol) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected, 10, "online")
        uplink.stopping = True  # the node stops; its `say_offline`: no answer in time
        uplink.close()  # as the node does before its cancel
        link.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link.task
        async with Collector(link.broker.port, TOPICS.of(STATE_TOPIC)) as c:
            await c.wait_for(lambda: bool(c.messages), 5, "the retained state")
            assert c.messages[-1].payload["state"] == "offline", c.messages[-1].payload


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_an_uplink_cancelled_without_its_stop_leaves_offline_to_the_will(
    tmp_path: Path, outbox: Outbox, protocol: str
) -> None:
    """Another of the node's tasks fails: its TaskGroup cancels the uplink, no stop ran
    (no `close()`, no `offline` said) and the process is about to end. The session ended
    with aiomqtt's DISCONNECT (reason 0), which drops the will: `online` stayed retained
    for a node that was gone, through a crash loop too (systemd restarts it for ever)."""
    async with linked(tmp_path, outbox, protocol=protocol) as link:
        await wait_until(lambda: link.uplink.connected, 10, "online")
        link.task.cancel()  # as the node's TaskGroup does when another task fails
        with contextlib.suppress(asyncio.CancelledError):
            await link.task
        async with Collector(link.broker.port, TOPICS.of(STATE_TOPIC)) as c:
            await c.wait_for(lambda: bool(c.messages), 5, "the retained state")
            assert c.messages[-1].payload["state"] == "offline", c.messages[-1].payload


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_an_uplink_cancelled_over_tls_leaves_offline_to_the_will(
    tmp_path: Path, outbox: Outbox, protocol: str
) -> None:
    """Over TLS the last close is paho's, a bare close without TLS close_notify: Mosquitto
    takes it (and, over MQTT 5, the DISCONNECT 0x04 before it) for a node gone, and sends
    the will, as over plain TCP."""
    pki = Pki(tmp_path / "pki")
    crt, key = pki.issue("broker", "localhost")
    broker = Mosquitto(
        tmp_path,
        extra=(
            f"allow_anonymous false\ncafile {pki.ca}\ncertfile {crt}\nkeyfile {key}\n"
            "require_certificate true\nuse_identity_as_username true\n"
        ),
    ).start()
    node_crt, node_key = pki.issue("node", "test.a")
    tls = {"ca_file": pki.ca, "cert_file": node_crt, "key_file": node_key}
    uplink = _uplink(broker.port, outbox, Counters(), tls=tls, protocol=protocol)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: uplink.connected, 10, "online")
        task.cancel()  # as the node's TaskGroup does when another task fails
        with contextlib.suppress(asyncio.CancelledError):
            await task
        dispatch = ssl.create_default_context(cafile=str(pki.ca))
        dispatch.load_cert_chain(*map(str, pki.issue("dispatch", "dispatch")))
        async with Collector(broker.port, TOPICS.of(STATE_TOPIC), tls=dispatch) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await c.wait_for(lambda: said()[-1:] == ["offline"], 5, "offline")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


async def test_a_broker_that_does_not_take_the_last_disconnect_in_time_gets_the_will(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The node ends and its last session's DISCONNECT 0x04 is never written (a socket
    that takes nothing more: the fault is injected, paho's `disconnect` queues and does not
    send): the wait for it ends at the client's time-out, the connection is closed (the
    will goes), and the uplink's task ends with its cancel, not a MqttError that would have
    it take up another session while the node waits for it to end."""
    async with linked(tmp_path, outbox, publish_timeout_s=0.5) as link:
        await wait_until(lambda: link.uplink.connected, 10, "online")
        client = link.uplink._client
        assert client is not None
        client._client.disconnect = lambda **_: paho.MQTT_ERR_SUCCESS  # type: ignore[method-assign]
        link.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(link.task, 3)
        assert link.uplink.sessions == 1
        async with Collector(link.broker.port, TOPICS.of(STATE_TOPIC)) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await c.wait_for(lambda: said()[-1:] == ["offline"], 5, f"offline: {said()}")


async def test_a_last_disconnect_cut_short_by_a_second_cancel_still_closes_for_the_will(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The stop could not say `offline` (a link that takes nothing more: the DISCONNECT
    0x04 is never written, injected as above) and its `cancel_and_wait` cancels the uplink
    again while it waits for that DISCONNECT. The second cancel ended the wait before the
    connection was closed: the socket stayed open, the broker never sent the will, and an
    in-process restart (`restart`, `config.set`) kept the old connection and its descriptor."""
    async with linked(tmp_path, outbox, publish_timeout_s=10.0) as link:
        await wait_until(lambda: link.uplink.connected, 10, "online")
        client = link.uplink._client
        assert client is not None
        client._client.disconnect = lambda **_: paho.MQTT_ERR_SUCCESS  # type: ignore[method-assign]
        link.uplink.close()  # as the node's stop does before its cancel
        again = await asyncio.wait_for(cancel_and_wait([link.task], again_s=0.2), 3)
        assert again == 1, again
        async with Collector(link.broker.port, TOPICS.of(STATE_TOPIC)) as c:
            said = lambda: [m.payload["state"] for m in c.messages]  # noqa: E731
            await c.wait_for(lambda: said()[-1:] == ["offline"], 3, f"offline: {said()}")


async def test_a_session_a_stop_ends_before_the_uplink_is_closed_does_not_send_the_will(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The node stops (`stopping`) and drains: the broker stalls and a PUBACK times out,
    which ends the session with the link up, and the uplink takes another up for the drain
    (it is closed only as it says `offline`). That session's end sent the will (`keep_will`
    followed `stopping`): dispatch saw `offline`, then `online` again, before the stop's
    own `offline`. Only the last session, once the uplink is closed, leaves it to the will."""
    async with linked(tmp_path, outbox, publish_timeout_s=0.5) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected, 10, "online")
        async with Collector(link.broker.port, TOPICS.of(STATE_TOPIC)) as c:
            await c.wait_for(lambda: bool(c.messages), 5, "the retained birth")
            uplink.stopping = True  # the node's stop, draining
            proxy.quirks.withhold_after = proxy.pubacks
            proxy.quirks.withhold_pubacks = True
            await outbox.put_nowait(
                Publication.make(TOPICS, DOOR, DoorEvent(door="front", open=True))
            )
            await wait_until(lambda: not uplink.connected, 5, "the session ended by the time-out")
            proxy.quirks.withhold_pubacks = False
            await wait_until(lambda: uplink.sessions >= 2 and uplink.connected, 10, "online again")
            assert await uplink.wait_idle(5)
            await asyncio.sleep(0.3)
        states = [m.payload["state"] for m in c.messages]
        assert "offline" not in states, states


async def test_a_stop_while_the_retained_topics_are_restored_waits_for_the_outboxs_messages(
    tmp_path: Path, outbox: Outbox
) -> None:
    """SIGTERM right after the birth's PUBACK, while a broker with no session for the node
    gets its retained topics again: `wait_idle` (the stop's drain) found the node not
    connected and gave up at once, though the session worked and its drain was to start a
    few PUBACKs later: a tap queued then stayed on the node until its next start (a bus
    parked for the night). Many retained topics make the restore last."""
    broker = Mosquitto(tmp_path).start()
    proxy = await MqttProxy(broker.port, Quirks()).start()
    for i in range(300):
        alarm = Alarm(kind=f"a{i}", active=True, reason="test", details={"n": i})
        await outbox.put_nowait(Publication.make(TOPICS, ALARM, alarm, name=f"a{i}"))
    uplink = _uplink(proxy.port, outbox, Counters(), session_expiry_s=0, reconnect_min_s=0.1)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: outbox.depth == 0, 30, "the alarms acknowledged: retained")
        before = proxy.pubacks
        proxy.cut()
        await wait_until(lambda: proxy.pubacks >= before + 2, 10, "the restore begun")
        assert not uplink.connected, "the restore was over before the test saw it"
        door = DoorEvent(door="front", open=True)
        await outbox.put_nowait(Publication.make(TOPICS, DOOR, door))
        assert await uplink.wait_idle(10), "the stop gave up on the door event"
        assert outbox.depth == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.close()
        broker.stop()


@dataclass
class Linked:
    """The uplink running through `hil.proxy` to a real Mosquitto (`linked`)."""

    tmp_path: Path
    broker: Mosquitto
    proxy: MqttProxy
    uplink: Uplink
    task: "asyncio.Task[None]"

    def restart(self, extra: str = "") -> Mosquitto:
        """The broker replaced by one on its port without its store (sessions, retained
        messages), as a restart without persistence; `extra`: its config's other lines."""
        self.broker.stop()
        directory = self.tmp_path / f"b{len(list(self.tmp_path.glob('b*'))) + 1}"
        directory.mkdir()
        self.broker = Mosquitto(directory, port=self.broker.port, extra=extra).start()
        return self.broker


@contextlib.asynccontextmanager
async def linked(
    tmp_path: Path,
    outbox: Outbox,
    *,
    counters: Counters | None = None,
    quirks: Quirks | None = None,
    on_command: Any = _ignore,
    alarms: tuple[Alarm, ...] = (),
    **broker: Any,
) -> AsyncIterator[Linked]:
    """The uplink (`broker`: its `[broker]` settings; reconnecting within 0.1-0.5 s unless
    said) through a proxy to a Mosquitto, `alarms` queued first (retained once sent)."""
    first = tmp_path / "b1"
    first.mkdir()
    mosquitto = Mosquitto(first).start()
    proxy = await MqttProxy(mosquitto.port, quirks or Quirks()).start()
    for alarm in alarms:
        await outbox.put_nowait(Publication.make(TOPICS, ALARM, alarm, name=alarm.kind))
    config = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **broker}
    uplink = Uplink(
        BrokerConfig(host="127.0.0.1", port=proxy.port, **config),
        TOPICS,
        outbox,
        client_id="edged-test-n1",
        birth=lambda since: State(state="online", since=since),
        on_command=on_command,
        counters=counters or Counters(),
    )
    link = Linked(tmp_path, mosquitto, proxy, uplink, asyncio.create_task(uplink.run()))
    try:
        yield link
    finally:
        link.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link.task
        await proxy.close()
        link.broker.stop()


def kinds_retained(messages: list[Received]) -> list[str]:
    return sorted(m.topic.rsplit("/", 1)[1] for m in messages)


def alarms_of(*kinds: str) -> tuple[Alarm, ...]:
    return tuple(Alarm(kind=kind, active=True, reason="test") for kind in kinds)


async def test_a_restore_cut_short_is_done_again_in_the_session_the_cut_one_left(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A broker restarted without its store gets the node's retained topics again. The link
    lost while the first of them awaited its PUBACK left the broker a session for the node,
    begun by that connection: the next connection resumed it and restored nothing, and the
    broker held none of the topics after the one cut short (a dispatcher subscribing later
    never heard of that alarm). Here the proxy withholds the first restored PUBACK and cuts."""
    async with linked(tmp_path, outbox, alarms=alarms_of("a0", "a1", "a2")) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        proxy.quirks.withhold_after = proxy.pubacks + 1  # the next session's birth
        proxy.quirks.withhold_pubacks = True
        broker = link.restart()
        await wait_until(lambda: proxy.withheld == 1, 10, "the first alarm restored")
        sessions = uplink.sessions
        proxy.quirks.withhold_pubacks = False
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions, 10, "the next session online")
        async with Collector(broker.port, topic=f"{TOPICS.base}/alarm/+") as c:
            await c.wait_for(lambda: len(c.messages) >= 3, 5, "every alarm retained")
        assert kinds_retained(c.messages) == ["a0", "a1", "a2"]


async def test_a_restore_cut_short_by_a_restart_of_edged_is_done_by_the_next_process(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The same cut, then edged restarted before its next session (an ignition cut, the
    watchdog): the new process found the broker's kept session and restored nothing, the
    restore due being known only to the old one. It is kept in the state store."""
    async with linked(tmp_path, outbox, alarms=alarms_of("a0", "a1", "a2")) as link:
        proxy = link.proxy
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        proxy.quirks.withhold_after = proxy.pubacks + 1  # the next session's birth
        proxy.quirks.withhold_pubacks = True
        broker = link.restart()
        await wait_until(lambda: proxy.withheld == 1, 10, "the first alarm restored")
        link.task.cancel()  # the process ends here
        with contextlib.suppress(asyncio.CancelledError):
            await link.task
        proxy.quirks.withhold_pubacks = False
        proxy.cut()
        again = _uplink(proxy.port, outbox, Counters(), reconnect_min_s=0.1)
        task = asyncio.create_task(again.run())
        try:
            await wait_until(lambda: again.connected, 10, "the next process online")
            assert again.session_present, "the broker kept no session: nothing tested"
            async with Collector(broker.port, topic=f"{TOPICS.base}/alarm/+") as c:
                await c.wait_for(lambda: len(c.messages) >= 3, 5, "every alarm retained")
            assert kinds_retained(c.messages) == ["a0", "a1", "a2"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_restored_topic_the_broker_closes_the_connection_at_is_given_up_not_tried_forever(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A restore cut short is done again (above); but a broker that closes the connection
    at one restored topic whatever its size (AWS IoT at a publish its policy denies) cut
    every session's restore there: never online, nothing drained. The topics the broker
    took are not sent again, and one in flight at three cuts in a row is given up
    (`RESTORE_CUTS_TO_GIVE_UP`): the node goes online, the topics behind it restored."""
    alarms = alarms_of("a0", "a1", "a2")
    async with linked(tmp_path, outbox, alarms=alarms, reconnect_max_s=0.3) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        proxy.quirks.close_at = b"/alarm/a1"
        sessions = uplink.sessions
        broker = link.restart()
        await wait_until(lambda: uplink.sessions > sessions, 10, "the node online again")
        assert proxy.closed_at == 3
        async with Collector(broker.port, topic=f"{TOPICS.base}/alarm/+") as c:
            await c.wait_for(lambda: len(c.messages) >= 2, 5, "the other alarms retained")
        assert kinds_retained(c.messages) == ["a0", "a2"]


async def test_over_3_1_1_without_kept_sessions_a_restored_topic_too_large_is_given_up(
    tmp_path: Path, outbox: Outbox
) -> None:
    """`session_expiry_s = 0` over MQTT 3.1.1: every session restores, and the large alarm
    every session restored to the old broker proved a limit above it (no session lost to
    reset it: `broker_changed`). A broker restarted with a smaller `max_packet_size`
    closed every session at it, the panic alarm behind it never restored. Three cuts in
    a row at it give it up."""
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 8192})
    alarms = (large, Alarm(kind="panic", active=True))
    counters = Counters()
    options: dict[str, Any] = {"protocol": "3.1.1", "session_expiry_s": 0, "reconnect_max_s": 0.3}
    async with linked(tmp_path, outbox, counters=counters, alarms=alarms, **options) as link:
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        broker = link.restart("max_packet_size 4096")
        async with Collector(broker.port, topic=f"{TOPICS.base}/alarm/+") as c:
            await c.wait_for(lambda: bool(c.messages), 8, "the panic alarm restored")
        assert kinds_retained(c.messages) == ["panic"]
        assert counters["uplink.restore_given_up"] == 1


async def test_a_subscription_cut_short_is_made_again_in_the_session_the_cut_one_left(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A broker restarted without its store: the node subscribes to its commands again. The
    link lost before that SUBSCRIBE reached the broker left it a session for the node with
    no subscription, made by that connection's CONNECT: the next connection resumed it and
    took the subscription for kept, and the node heard no command until the broker lost
    the session again (a `door.unlock` from dispatch went nowhere)."""
    heard: list[str] = []

    async def on_command(cmd: Any) -> None:
        cmd.ack()
        heard.append(cmd.name)

    async with linked(tmp_path, outbox, on_command=on_command) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected, 10, "the first session")
        proxy.quirks.swallow_subscribes = True
        broker = link.restart()
        await wait_until(lambda: proxy.swallowed == 1, 10, "the subscription sent")
        sessions = uplink.sessions
        proxy.quirks.swallow_subscribes = False
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions, 10, "the next session online")
        assert uplink.session_present, "the broker kept no session: nothing tested"
        await send_ping(broker.port)
        await wait_until(lambda: heard == ["ping"], 5, "the ping heard")


async def send_ping(port: int) -> None:
    async with CancellableClient("127.0.0.1", port) as client:
        await client.publish(TOPICS.command_topic("ping"), b'{"id": "p1"}', qos=1)


async def test_a_lost_session_leaves_the_uplinks_task_no_cancel_request(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Python 3.11's TaskGroup cancels the task around it when a child fails in its
    `__aexit__` and never takes it back: the uplink went on from each lost session with its
    `cancelling()` one higher. The node's stop took it for cancelled already (1.6 s more);
    on the Pi's 3.11.2 an `asyncio.timeout` that expires in such a task raises
    CancelledError, not TimeoutError (core/cancel.py)."""
    async with linked(tmp_path, outbox) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected, 10, "online")
        for lost in (1, 2):
            link.proxy.cut()
            await wait_until(lambda n=lost: uplink.sessions > n and uplink.connected, 10, "on")
        assert link.task.cancelling() == 0


async def test_a_closed_uplink_takes_no_session_up_again_when_its_link_is_lost(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The node closes the uplink once `offline` is said, then cancels it. On Python 3.11 a
    cancel that comes as the session is lost is swallowed with the session's errors: the
    uplink reconnected and sent its birth (`online` retained after `offline`) until the
    node cancelled it again 1.6 s later. Closed, a lost link ends it, cancel or not."""
    async with linked(tmp_path, outbox) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected, 10, "online")
        uplink.close()
        link.proxy.cut()  # the cancel that should come with it: lost
        await asyncio.wait_for(asyncio.shield(link.task), 5)
        assert uplink.sessions == 1 and not uplink.connected


async def test_a_stop_while_the_broker_has_not_answered_the_connection_closes_it(
    outbox: Outbox,
) -> None:
    """The node stops while its CONNECT waits for a CONNACK (a front that took the TCP
    connection and hangs): the socket stayed open until the process ended, kept alive by
    paho meanwhile."""
    async with silent_server() as server:
        uplink = _uplink(server.port, outbox, Counters(), protocol="3.1.1")
        task = asyncio.create_task(uplink.run())
        await wait_until(lambda: server.accepted == 1, 5, "the connection taken")
        await cancel_and_wait([task])
        await wait_until(lambda: server.open == 0, 1, "the connection closed")


async def test_a_defect_met_reading_a_puback_ends_the_connection_and_loses_nothing(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error out of what reads the broker's packets (injected in the drain's PUBACK
    claim: a defect, no packet is known to cause one) ended the session, but aiomqtt left
    its socket open, read and kept alive by paho: the broker held the node online on it
    (no will) until the next connection took the session over, and for good after a stop.
    Now it is closed as a protocol error is: the will tells dispatch, the next session
    sends what the lost PUBACK left unacknowledged."""
    broker = Mosquitto(tmp_path).start()
    claim, failed = Sender._puback, []

    def failing_once(sender: Sender, mid: int, reason: int) -> bool:
        if not failed and mid in sender._inflight:
            failed.append(mid)
            raise RuntimeError("a defect met reading a PUBACK")
        return claim(sender, mid, reason)

    monkeypatch.setattr(Sender, "_puback", failing_once)
    for door in ("d1", "d2", "d3"):
        await outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door=door, open=True)))
    timing = {"reconnect_min_s": 0.3, "reconnect_max_s": 0.4}
    uplink = _uplink(broker.port, outbox, Counters(), **timing)
    try:
        async with Collector(broker.port, f"{TOPICS.base}/#") as c:
            task = asyncio.create_task(uplink.run())
            await wait_until(lambda: uplink.sessions == 2 and outbox.depth == 0, 10, "resent")

            def states() -> list[str]:
                return [m.payload["state"] for m in c.messages if m.topic.endswith("/state")]

            def doors() -> set[str]:
                return {m.payload["door"] for m in c.messages if "/door" in m.topic}

            # the broker's will and the next session's messages reach the subscriber after
            await wait_until(lambda: len(states()) >= 3 and len(doors()) == 3, 5, "seen")
            states_seen, doors_seen = states(), doors()
        assert failed and states_seen == ["online", "offline", "online"], states_seen
        assert doors_seen == {"d1", "d2", "d3"}
    finally:
        await cancel_and_wait([task])
        broker.stop()


async def test_a_command_larger_than_the_node_takes_ends_the_connection_unread(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """Over 3.1.1 the node cannot tell the broker its Maximum Packet Size, and a broker
    without one (Mosquitto's default) passes on whatever a commander sends to cmd/: paho
    read it all into memory (200 MB took a node to 619 MB, over a Pi Zero's 512), and the
    node handled it. The connection now ends at its header; the node comes back online."""
    heard: list[int] = []

    async def on_command(cmd: Any) -> None:
        heard.append(len(cmd.payload))

    # no kept session: the broker drops the message with the connection (one it keeps
    # comes again at each connection until it drops it: the Changes entry says so)
    timing = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.2, "session_expiry_s": 0}
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, protocol="3.1.1", **timing)
    uplink.on_command = on_command
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: uplink.connected, 5, "online")
        async with CancellableClient("127.0.0.1", broker.port) as commander:
            big = b'{"id": "p1"}' + b" " * (MAX_INCOMING_BYTES + 1)
            await commander.publish(TOPICS.command_topic("ping"), big, qos=0)
        await wait_until(lambda: uplink.sessions == 2 and uplink.connected, 1.5, "online again")
        assert heard == [] and counters.snapshot().get("uplink.disconnect") == 1
    finally:
        await cancel_and_wait([task])


async def test_a_command_too_large_the_broker_keeps_in_the_session_is_dropped_with_it(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """Over 3.1.1 with the default kept session, a command over the limit sent at QoS 1
    stays in flight in the broker's session, sent first at every connection, which ended
    at its header: the node never came online again (19 connections in 3 s here, backoff
    or not; one a minute at the default cap), its outbox filling. It came again: the
    next connection starts a clean session, and the commands that follow are heard."""
    heard: list[int] = []

    async def on_command(cmd: Any) -> None:
        heard.append(len(cmd.payload))

    counters = Counters()
    timing = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.2}
    uplink = _uplink(broker.port, outbox, counters, protocol="3.1.1", **timing)
    uplink.on_command = on_command
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: uplink.connected, 5, "online")
        async with CancellableClient("127.0.0.1", broker.port) as commander:
            big = b'{"id": "p1"}' + b" " * (MAX_INCOMING_BYTES + 1)
            await commander.publish(TOPICS.command_topic("ping"), big, qos=1)
            cleaned = lambda: counters.snapshot().get("uplink.session_cleaned") == 1  # noqa: E731
            await wait_until(lambda: cleaned() and uplink.connected, 5, "online, cleaned")
            await commander.publish(TOPICS.command_topic("ping"), b'{"id": "p2"}', qos=1)
            await wait_until(lambda: heard == [12], 5, "the next command heard")
        assert counters.snapshot().get("uplink.disconnect") == 2
    finally:
        await cancel_and_wait([task])


async def test_commands_too_large_in_a_row_are_not_taken_for_another_client_with_our_id(
    broker: Mosquitto, outbox: Outbox
) -> None:
    """The node itself ends the connection at a packet too large: each end, within a
    second of the birth, was taken for a short session lost without a word, and the third
    in a row for another client with the node's id (logged as such, the backoff growing),
    and over 3.1.1 for the broker's close at a large publish of ours in flight."""
    counters = Counters()
    timing = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.2, "session_expiry_s": 0}
    uplink = _uplink(broker.port, outbox, counters, protocol="3.1.1", **timing)
    task = asyncio.create_task(uplink.run())
    try:
        async with CancellableClient("127.0.0.1", broker.port) as commander:
            big = b'{"id": "p1"}' + b" " * (MAX_INCOMING_BYTES + 1)
            for n in (1, 2, 3, 4):
                online = lambda n=n: uplink.connected and uplink.sessions == n  # noqa: E731
                await wait_until(online, 5, f"online in session {n}")
                if n < 4:
                    await commander.publish(TOPICS.command_topic("ping"), big, qos=0)
        assert "uplink.takeover" not in counters.snapshot()
        assert uplink.reconnect.failures == 1  # each a session that worked: the shortest delay
    finally:
        await cancel_and_wait([task])


async def test_a_311_probe_answered_by_a_connack_and_a_close_at_once_is_an_answer(
    outbox: Outbox,
) -> None:
    """A broker without MQTT 5 (no CONNACK to it) that answers the 3.1.1 probe with a
    CONNACK and ends the connection in the same read (a packet over the node's limit kept
    in its session, a protocol error): since the attempt fails (`_ended_at_once`), the
    probe was taken for one not answered, MQTT 5 tried again, and so on, for ever."""
    levels: list[int] = []

    async def broker_without_5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connect = await reader.read(1024)
        level = connect[connect.index(b"MQTT") + 4]
        levels.append(level)
        if level == 4:  # CONNACK accepted, then a packet 3.1.1 has no room for
            writer.write(b"\x20\x02\x00\x00" + b"\xe0\x00")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(broker_without_5, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    timing = {"reconnect_min_s": 0.05, "reconnect_max_s": 0.1}
    uplink = _uplink(port, outbox, Counters(), **timing)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: levels.count(4) >= 2, 5, "a second 3.1.1 attempt")
        assert levels[:4] == [5, 5, 4, 4], levels
        assert uplink.fell_back
    finally:
        await cancel_and_wait([task])
        server.close()


async def test_a_stop_during_a_tls_handshake_the_broker_never_answers_closes_it_at_once(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A front that takes the TCP connection and never answers the ClientHello (a hung TLS
    terminator): the stop returned, but the handshake went on in aiomqtt's connect thread
    until paho's 5 s `connect_timeout`, and its socket then stayed open for good, kept by
    the uplink's TLS context (`ResumingContext.last`) for a next attempt that never came."""
    pki = Pki(tmp_path / "pki")
    crt, key = pki.issue("node", "test.a")
    tls = {"ca_file": pki.ca, "cert_file": crt, "key_file": key}
    async with silent_server() as server:
        uplink = _uplink(server.port, outbox, Counters(), tls=tls)
        task = asyncio.create_task(uplink.run())
        await wait_until(lambda: server.accepted == 1, 5, "the connection taken")
        await asyncio.sleep(0.1)  # the ClientHello sent, unanswered
        started = time.monotonic()
        await cancel_and_wait([task])
        await wait_until(lambda: server.open == 0, 0.5, "the connection closed")
        assert time.monotonic() - started < 0.5


async def test_attempts_at_a_broker_that_never_answers_leave_no_connection_open_behind(
    outbox: Outbox,
) -> None:
    """Each attempt that got no CONNACK in time left its socket open for `keepalive_s`
    (up to an hour): one more at each attempt, at a mute front."""
    async with silent_server() as server:
        timing = {"publish_timeout_s": 0.1, "reconnect_min_s": 0.05, "reconnect_max_s": 0.1}
        uplink = _uplink(server.port, outbox, Counters(), **timing)
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until(lambda: server.accepted >= 3, 5, "three attempts")
            assert server.open <= 1
        finally:
            await cancel_and_wait([task])


async def test_a_malformed_connack_is_said_and_counted_as_such_not_as_no_connack(
    outbox: Outbox,
) -> None:
    """A broker answering CONNECT with a property paho does not know: health said "closed the
    connection without a CONNACK (Protocol error): is [broker] port an MQTT port, with TLS
    where [broker.tls] says so?", of a broker that had answered on the right port."""
    unknown_property = bytes([0x20, 5, 0, 0, 2, 0x7F, 0])
    async with hostile_broker(unknown_property) as broker:
        counters = Counters()
        uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.05, reconnect_max_s=0.1)
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until(lambda: counters["uplink.malformed_connack"] >= 1, 5, "the CONNACK")
        finally:
            await cancel_and_wait([task])
    assert "malformed CONNACK (unknown property or code 0x7f)" in (uplink.last_error or "")
    assert counters["uplink.no_connack"] == 0


async def test_a_packet_over_the_limit_in_place_of_the_connack_is_said_so_and_cleans_no_session(
    outbox: Outbox,
) -> None:
    """A header announcing 256 MB where the CONNACK goes: the node ends the connection at the
    header, as it should, but said "closed the connection without a CONNACK", and took the
    packet for one its session kept: the next connections started clean sessions, dropping
    the commands the broker held for the node (`uplink.session_cleaned`)."""
    huge = bytes([0x20, 0xFF, 0xFF, 0xFF, 0x7F])
    async with hostile_broker(huge) as broker:
        counters = Counters()
        uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=0.05, reconnect_max_s=0.1)
        task = asyncio.create_task(uplink.run())
        try:
            await wait_until(lambda: broker.connects >= 3, 5, "three attempts")
        finally:
            await cancel_and_wait([task])
    assert f"malformed CONNACK (a packet of 268435460 bytes, over the {MAX_INCOMING_BYTES}" in (
        uplink.last_error or ""
    )
    assert counters["uplink.session_cleaned"] == 0


async def retained_state(port: int) -> str:
    async with Collector(port, topic=f"{TOPICS.base}/state", client_id="test-state") as c:
        await c.wait_for(lambda: len(c.messages) >= 1, 5, "the retained state")
    return str(c.messages[-1].payload.get("state"))


async def test_a_cancel_swallowed_as_the_link_is_lost_after_offline_leaves_offline_retained(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The race itself: the node's cancel in the same turn of the loop as the session's
    end (its reading child failed). Python 3.11's TaskGroup swallowed the cancel; not
    closed, the uplink took a session up again with its birth, and the node's second cancel
    ended that one with a DISCONNECT, which drops the will: `online` stayed retained."""
    async with linked(tmp_path, outbox) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected, 10, "online")
        assert await uplink.say_offline()
        uplink.close()
        reading = next(t for t in asyncio.all_tasks() if t.get_name() == "uplink.receive")
        reading.add_done_callback(lambda _: link.task.cancel())
        link.proxy.cut()
        assert await cancel_and_wait([link.task], cancelled=[link.task], again_s=1.0) == 0
        assert uplink.sessions == 1
        assert await retained_state(link.broker.port) == "offline"


async def test_a_link_lost_as_the_stop_commits_after_offline_takes_no_session_up_again(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`offline` said, the stop's last commit (a slow disk) outlasted the reconnect delay
    of a link lost meanwhile: the uplink, closed only after it, took a session up again
    and said `online`; the stop's cancel ended it with a DISCONNECT, which drops the will:
    `online` stayed retained for a node that had stopped."""
    async with linked(tmp_path, outbox) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected, 10, "online")
        commit = outbox.flush
        commits = 0

        async def slow_commit() -> None:
            nonlocal commits
            commits += 1
            await commit()
            if commits == 2:  # the one after `offline`
                link.proxy.cut()
                for _ in range(12):
                    if uplink.sessions > 1:
                        break
                    await asyncio.sleep(0.05)

        monkeypatch.setattr(outbox, "flush", slow_commit)
        await drain_and_say_offline(outbox, uplink, 4.0)
        uplink.close()  # as the node does
        await cancel_and_wait([link.task], again_s=1.0)
        assert commits == 2
        assert uplink.sessions == 1, "a session taken up after `offline`"
        assert await retained_state(link.broker.port) == "offline"


async def test_offline_said_while_the_retained_topics_are_restored_keeps_to_receive_maximum(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Under a Receive Maximum of one, a stop while a restored topic awaits its PUBACK:
    `say_offline` went at once beside it (no drain yet, so no share of the allowance kept
    for it), two publishes in flight where the broker allows one (HiveMQ ends the session:
    0x93). It waits for the restore's slot; here none comes (the proxy withholds the
    restored alarm's PUBACK) and it gives up."""
    restoring = with_a_retained_alarm(
        tmp_path, outbox, Counters(), "max_inflight_messages 1", reconnect_min_s=5.0
    )
    async with restoring as (uplink, proxy):
        await held_in_the_restore(proxy)
        state = TOPICS.of(STATE_TOPIC)
        assert not await uplink.publish_direct(state, b"{}", qos=1, retain=True, within_s=1)
        assert proxy.withheld == 1, "more in flight than the broker allows"


async def test_over_3_1_1_a_broker_that_lost_the_session_is_new_to_a_node_it_refuses_commands(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The broker refuses the node's command subscription (its ACL), and the node keeps
    sessions over 3.1.1. A broker restarted without its store and with a smaller
    `max_packet_size` closed the connection at the large retained alarm the node restored:
    the lost session went unnoticed (it was told by the subscription kept, which a refused
    one never is), so what the old broker took proved a limit above the alarm, and three
    sessions ended at it: taken for another client with the node's id, then the alarm given
    up, where two teach the limit (`ceiling.broker_changed`)."""
    large = Alarm(kind="lone_worker", active=True, details={"trace": "x" * 8192})
    alarms = (large, Alarm(kind="panic", active=True))
    counters = Counters()
    refusing = Quirks(refuse_subscribes=True)
    options: dict[str, Any] = {"protocol": "3.1.1", "reconnect_max_s": 0.3}
    async with linked(
        tmp_path, outbox, counters=counters, quirks=refusing, alarms=alarms, **options
    ) as link:
        uplink = link.uplink
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        assert counters["uplink.subscribe_refused"] == 1
        sessions = uplink.sessions
        link.restart("max_packet_size 4096")
        await wait_until(lambda: uplink.sessions > sessions, 10, "the node online again")
        assert counters["uplink.packet_limit_learned"] == 1
        assert counters["uplink.restore_given_up"] == 0
        assert counters["uplink.takeover"] == 0


async def test_without_kept_sessions_two_restored_topics_the_broker_closes_at_are_both_given_up(
    tmp_path: Path, outbox: Outbox
) -> None:
    """`session_expiry_s = 0`: every session restores from the first topic. A broker that
    closes the connection at two of them (a policy denying both): the first was given up
    after three cuts, the session ended at the second, and the next session, forgetting
    the first (a session without a kept one restores all), was cut at it again: the
    count went from one topic to the other for ever, never online."""
    counters = Counters()
    alarms = alarms_of("a0", "one_bad", "two_bad", "a3")
    options: dict[str, Any] = {
        "session_expiry_s": 0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.1,
    }
    async with linked(tmp_path, outbox, counters=counters, alarms=alarms, **options) as link:
        uplink = link.uplink
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        link.proxy.quirks.close_at = b"_bad"  # one_bad and two_bad
        sessions = uplink.sessions
        broker = link.restart()
        await wait_until(lambda: uplink.sessions > sessions, 10, "the node online again")
        assert counters["uplink.restore_given_up"] == 2
        async with Collector(broker.port, topic=f"{TOPICS.base}/alarm/+") as c:
            await c.wait_for(lambda: len(c.messages) >= 2, 5, "the other alarms retained")
        assert kinds_retained(c.messages) == ["a0", "a3"]


async def test_without_kept_sessions_a_topic_given_up_is_not_restored_again_at_each_connection(
    tmp_path: Path, outbox: Outbox
) -> None:
    """`session_expiry_s = 0`: every connection restores. A topic given up (the broker's
    policy closes the connection at it) was tried again at the next connection, cut three
    more times there: every lost link cost three short sessions more, with growing delays.
    Unchanged, it is not restored again for a while (GIVEN_UP_FIRST_S); changed, it is."""
    counters = Counters()
    options: dict[str, Any] = {
        "session_expiry_s": 0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.1,
    }
    alarms = alarms_of("a0", "one_bad", "a2")
    async with linked(tmp_path, outbox, counters=counters, alarms=alarms, **options) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        proxy.quirks.close_at = b"_bad"
        sessions = uplink.sessions
        link.restart()
        await wait_until(lambda: uplink.sessions > sessions and uplink.connected, 10, "online")
        assert proxy.closed_at == 3 and counters["uplink.restore_given_up"] == 1
        sessions = uplink.sessions
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions and uplink.connected, 10, "again")
        assert proxy.closed_at == 3, "the topic given up was restored again"
        assert uplink.sessions == sessions + 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_refused_subscription_is_asked_for_once_a_session_until_the_broker_grants_it(
    tmp_path: Path, outbox: Outbox, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refuses the command subscription (SUBACK 0x87 over MQTT 5, 0x80 over
    3.1.1: paho's `is_failure` for both). A refusal is not kept with the session: each new
    connection asks again, once, with one error in the log (no loop, no flood), and the
    node goes online each time; once the broker grants it, commands are heard."""
    heard: list[str] = []

    async def on_command(cmd: Any) -> None:
        cmd.ack()
        heard.append(cmd.name)

    counters = Counters()
    refusing = Quirks(refuse_subscribes=True)
    async with linked(
        tmp_path,
        outbox,
        counters=counters,
        quirks=refusing,
        on_command=on_command,
        protocol=protocol,
        reconnect_max_s=2.0,
    ) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected, 10, "the first session")
        for sessions in (1, 2):
            proxy.cut()
            await wait_until(lambda s=sessions: uplink.sessions > s, 10, "the next session")
            assert uplink.session_present
        await asyncio.sleep(0.3)
        said = [r for r in caplog.records if "refused our subscription" in r.getMessage()]
        assert counters["uplink.subscribe_refused"] == len(said) == uplink.sessions == 3
        assert proxy.refused_subscribes == 3
        assert uplink.connected and not uplink.hears_commands  # no probation passes so
        proxy.quirks.refuse_subscribes = False
        sessions = uplink.sessions
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions, 10, "a session granted it")
        assert uplink.hears_commands
        await send_ping(link.broker.port)
        await wait_until(lambda: heard == ["ping"], 5, "the ping heard")
        # a session the broker kept with the subscription: no SUBACK this time, heard all
        # the same (a config on probation is not rolled back for it)
        sessions = uplink.sessions
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions and uplink.connected, 10, "kept")
        assert counters["uplink.subscription_kept"] == 1 and uplink.hears_commands


def test_a_topic_given_up_is_restored_again_once_changed_or_after_its_time(
    outbox: Outbox,
) -> None:
    uplink = _uplink(1, outbox, Counters())
    uplink._keep_out("t", b"old")
    assert uplink._kept_out_still("t", b"old")
    assert not uplink._kept_out_still("t", b"new"), "a changed message is tried again"
    assert "t" not in uplink._kept_out
    uplink._kept_out["t"] = (hash(b"old"), time.monotonic() - 1, GIVEN_UP_FIRST_S)
    assert not uplink._kept_out_still("t", b"old"), "the policy may have been fixed since"


async def test_a_panic_waiting_offline_goes_within_seconds_of_the_link_back_not_the_backoff(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day without network grows the reconnect delay to `reconnect_max_s` (60 s as
    shipped, 30-60 s drawn): a panic pressed meanwhile waited up to a minute after the link
    came back. A new alarm makes the uplink try at once, and while one waits the delay is
    capped (ALARM_RETRY_S, shortened here); a door event changes nothing."""
    monkeypatch.setattr("edged.uplink.client.ALARM_RETRY_S", 0.4, raising=False)
    broker = Mosquitto(tmp_path).start()
    broker.stop()  # the dead zone: its port refuses
    counters = Counters()
    uplink = _uplink(broker.port, outbox, counters, reconnect_min_s=20.0, reconnect_max_s=20.0)
    attempts = 0
    attempt = uplink._attempt

    async def counted() -> Any:
        nonlocal attempts
        attempts += 1
        return await attempt()

    monkeypatch.setattr(uplink, "_attempt", counted)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: attempts == 1, 5, "the first attempt")
        await outbox.put_nowait(Publication.make(TOPICS, DOOR, DoorEvent(door="d1", open=True)))
        await asyncio.sleep(0.3)
        assert attempts == 1, "an event is no reason to try before the backoff's end"
        panic = Alarm(kind="panic", active=True, reason="panic button pressed", details={})
        await outbox.put_nowait(Publication.make(TOPICS, ALARM, panic, name="panic"))
        await wait_until(lambda: attempts == 2, 1, "an attempt at the press")
        await asyncio.sleep(0.5)  # the link still down: tried again within ALARM_RETRY_S
        assert attempts >= 3
        broker.start()  # the link is back
        await wait_until(lambda: outbox.depth == 0, 2, "the alarm (and the event) sent")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()


def _counting(uplink: Uplink, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ends of the uplink's attempts, as they come."""
    ends: list[Any] = []
    attempt = uplink._attempt

    async def counted() -> Any:
        end = await attempt()
        ends.append(end)
        return end

    monkeypatch.setattr(uplink, "_attempt", counted)
    return ends


async def test_the_nodes_own_alarms_do_not_cut_the_reconnect_backoff_short(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a panic (a person) does: `alarm/outbox_full` and `alarm/outbox_lost` come on a
    whole fleet at once when its broker is down for days, and every vehicle then tried the
    broker every 2.5-5 s (some 23,000 attempts a day each, against ~1,900), and came back
    on it all within 5 s. Put offline, such an alarm woke the backoff, then capped it."""
    monkeypatch.setattr("edged.uplink.client.ALARM_RETRY_S", 0.4, raising=False)
    broker = Mosquitto(tmp_path).start()
    broker.stop()  # the broker down: its port refuses
    uplink = _uplink(broker.port, outbox, Counters(), reconnect_min_s=20.0, reconnect_max_s=20.0)
    ends = _counting(uplink, monkeypatch)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: len(ends) == 1, 5, "the first attempt")
        full = Alarm(kind="outbox_full", active=True, reason="outbox at its hard cap", details={})
        await outbox.put_nowait(Publication.make(TOPICS, ALARM, full, name="outbox_full"))
        await asyncio.sleep(0.9)
        assert len(ends) == 1, "the node's own alarm cut the backoff short"
    finally:
        await cancel_and_wait([task])


async def test_a_broker_that_refuses_the_node_is_not_tried_every_few_seconds_for_a_panic(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that answers no (a CONNACK refusal here: credentials revoked, a TLS alert,
    a close before the CONNACK) is there and will not take the node; with a panic waiting
    it was tried every 2.5-5 s for as long as that lasted, each attempt a handshake (0.7
    KB resumed, 2.8-4.7 KB not: up to ~100 MB a day against 32 MB a month in service).
    The press still makes one attempt at once (the cause may be fixed); then the backoff."""
    monkeypatch.setattr("edged.uplink.client.ALARM_RETRY_S", 0.4, raising=False)
    broker = Mosquitto(tmp_path, extra="allow_anonymous false").start()
    uplink = _uplink(broker.port, outbox, Counters(), reconnect_min_s=20.0, reconnect_max_s=20.0)
    ends = _counting(uplink, monkeypatch)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_until(lambda: len(ends) == 1, 5, "the first attempt")
        assert not ends[0].worked
        panic = Alarm(kind="panic", active=True, reason="panic button pressed", details={})
        await outbox.put_nowait(Publication.make(TOPICS, ALARM, panic, name="panic"))
        await wait_until(lambda: len(ends) == 2, 2, "an attempt at the press")
        await asyncio.sleep(0.9)
        assert len(ends) == 2, "a refusing broker tried again every ALARM_RETRY_S"
    finally:
        await cancel_and_wait([task])
        broker.stop()


def test_a_message_given_up_again_unchanged_is_left_out_longer_each_time_up_to_an_hour(
    outbox: Outbox,
) -> None:
    """A first give-up may be a flaky link's (three cuts at the first restored topic): a
    short while; a policy that goes on closing the connection at it: up to an hour."""
    uplink = _uplink(1, outbox, Counters())
    periods = []
    for _ in range(8):
        uplink._keep_out("t", b"same")
        periods.append(uplink._kept_out["t"][2])
    assert periods[:3] == [GIVEN_UP_FIRST_S, 2 * GIVEN_UP_FIRST_S, 4 * GIVEN_UP_FIRST_S]
    assert max(periods) == periods[-1] == GIVEN_UP_FOR_S
    uplink._keep_out("t", b"changed")
    assert uplink._kept_out["t"][2] == GIVEN_UP_FIRST_S


async def test_an_alarm_given_up_by_chance_is_restored_again_at_a_connection_after_a_while(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three cuts in a row at one topic of a restore may be a flaky link's, not a policy's,
    and the topic `alarm/panic`: left out of every restore for an hour, a broker that lost
    its store lacked the active alarm for that hour (a dispatcher subscribing anew never
    heard of it). Its first give-up is short (GIVEN_UP_FIRST_S, shortened here): the
    next connection after it restores it."""
    from edged.uplink import client as uplink_client

    monkeypatch.setattr(uplink_client, "GIVEN_UP_FIRST_S", 0.3, raising=False)
    options: dict[str, Any] = {
        "session_expiry_s": 0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.1,
    }
    alarms = alarms_of("a0", "panic_", "a2")
    async with linked(tmp_path, outbox, alarms=alarms, **options) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: outbox.depth == 0, 10, "the alarms acknowledged: retained")
        proxy.quirks.close_at = b"panic_"  # the flaky link, three times at it
        sessions = uplink.sessions
        broker = link.restart()
        await wait_until(lambda: uplink.sessions > sessions and uplink.connected, 10, "online")
        assert proxy.closed_at == 3
        proxy.quirks.close_at = None  # the link good again
        await asyncio.sleep(0.35)
        sessions = uplink.sessions
        proxy.cut()
        await wait_until(lambda: uplink.sessions > sessions and uplink.connected, 10, "again")
        async with Collector(broker.port, topic=f"{TOPICS.base}/alarm/+") as c:
            await c.wait_for(lambda: len(c.messages) >= 3, 5, "every alarm retained")
        assert kinds_retained(c.messages) == ["a0", "a2", "panic_"]
        assert not uplink._kept_out, "restored: a next give-up starts short again"


async def test_a_republished_birth_says_when_the_session_began_as_the_first(
    tmp_path: Path, outbox: Outbox
) -> None:
    """docs/topics.md: `since` is when this MQTT session began, and the will carries it
    too. `republish` stamped its birth with the time of the command: a will of the same
    session that a broker cluster delivers after it could not be told from a newer one."""
    async with linked(tmp_path, outbox) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected, 10, "online")
        async with Collector(link.broker.port, TOPICS.of(STATE_TOPIC)) as c:
            await c.wait_for(lambda: bool(c.messages), 5, "the retained birth")
            first = c.messages[-1].payload
            await asyncio.sleep(0.05)  # the clock moves on
            assert (await uplink.republish())["birth"]
            await c.wait_for(lambda: len(c.messages) >= 2, 5, "the birth again")
        again = c.messages[-1].payload
        assert again["state"] == first["state"] == "online"
        assert again["since"] == first["since"] and again["seq"] > first["seq"]


def _levels(proxy: MqttProxy) -> list[int]:
    return [level for _, level in proxy.connects]


async def test_a_fallback_made_while_a_front_hung_up_ends_on_a_link_that_stays_up(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A front that closes MQTT 5 CONNECTs while the broker behind it restarts looks like a
    broker without MQTT 5: a broker back just at the 3.1.1 probe left the node on 3.1.1
    until edged restarted (weeks, in a vehicle). After `protocol_retry_s` the node ends its
    3.1.1 session itself (the link never drops) and takes MQTT 5 again; every door event
    put meanwhile arrives once."""
    counters = Counters()
    async with linked(
        tmp_path, outbox, counters=counters, quirks=Quirks(refuse_v5="close"), protocol_retry_s=0.5
    ) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected and uplink.fell_back, 5, "the fallback")
        health = uplink.link_health()
        assert health.protocol == "3.1.1" and health.mqtt5_retry_in_s in (0, 1), health
        proxy.quirks.refuse_v5 = None  # the broker behind the front is back
        async with Collector(link.broker.port, topic=TOPICS.of(DOOR)) as c:
            for i in range(20):
                await outbox.put_nowait(
                    Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True))
                )
                await asyncio.sleep(0.04)
            await wait_until(lambda: uplink.connected and uplink.protocol == "5", 3, "MQTT 5")
            await c.wait_for(lambda: len(c.messages) >= 20, 3, "the door events")
            await asyncio.sleep(0.1)
            assert len(c.messages) == 20, "none lost, none sent twice"
        assert not uplink.fell_back and uplink.link_health().mqtt5_retry_in_s is None
        assert counters["uplink.protocol_restored"] == 1 and proxy.cuts == 0
        assert _levels(proxy) == [5, 5, 4, 5]


async def test_a_broker_without_mqtt5_costs_one_refused_try_a_period_doubling_to_its_cap(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A broker that really lacks MQTT 5 (RabbitMQ 3.10 closes the CONNECT): one MQTT 5
    CONNECT a period, each followed at once by 3.1.1 (no backoff, no new probe), the
    period doubled up to `protocol_retry_max_s`."""
    counters = Counters()
    async with linked(
        tmp_path,
        outbox,
        counters=counters,
        quirks=Quirks(refuse_v5="close"),
        protocol_retry_s=0.2,
        protocol_retry_max_s=0.4,
    ) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected and uplink.fell_back, 5, "the fallback")
        refused = lambda: counters["uplink.protocol_retry_refused"]  # noqa: E731
        await wait_until(lambda: refused() >= 3 and uplink.connected, 3, "three tries")
        connects = proxy.connects[3:]
        tries = [t for t, level in connects if level == 5]
        assert _levels(proxy)[3:] == [5, 4] * len(tries), _levels(proxy)
        assert len(tries) == 3 == counters["uplink.protocol_retry_refused"]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        assert all(gap >= 0.4 for gap in gaps), gaps
        again = [b[0] - a[0] for a, b in itertools.pairwise(connects) if a[1] == 5]
        assert all(d < 0.2 for d in again), f"3.1.1 at once after a refused try: {again}"
        assert uplink.fell_back and uplink.protocol == "3.1.1"
        assert counters["uplink.protocol_fallback"] == 1


async def test_commands_queued_over_3_1_1_reach_the_node_back_on_mqtt5_in_the_same_session(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Mosquitto keeps the session of a client id across a change of MQTT version: a
    command sent while the node, on 3.1.1 by a fallback, was away arrives in the MQTT 5
    session that follows; the subscription is made again, as 3.1.1 had none of MQTT 5's
    retain-as-published, and the outbox's messages arrive once."""
    heard: list[str] = []

    async def on_command(cmd: Any) -> None:
        cmd.ack()
        heard.append(cmd.name)

    counters = Counters()
    async with linked(
        tmp_path,
        outbox,
        counters=counters,
        quirks=Quirks(refuse_v5="close"),
        on_command=on_command,
        protocol_retry_s=0.2,  # due before the reconnect after a cut: 0.3-0.6 s
        reconnect_min_s=0.6,
        reconnect_max_s=0.6,
    ) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected and uplink.fell_back, 5, "the fallback")
        proxy.quirks.refuse_v5 = None
        proxy.cut()  # the node away; no attempt over MQTT 5 meets the front's close
        await send_ping(link.broker.port)  # queued in the node's 3.1.1 session
        for i in range(10):
            await outbox.put_nowait(
                Publication.make(TOPICS, DOOR, DoorEvent(door=f"d{i}", open=True))
            )
        async with Collector(link.broker.port, topic=TOPICS.of(DOOR)) as c:
            await wait_until(lambda: uplink.connected and uplink.protocol == "5", 3, "MQTT 5")
            assert uplink.session_present is True, "Mosquitto kept the 3.1.1 session"
            await wait_until(lambda: heard == ["ping"], 2, "the ping queued over 3.1.1")
            await c.wait_for(lambda: len(c.messages) >= 10, 3, "the door events")
            await asyncio.sleep(0.1)
            assert len(c.messages) == 10
        assert _levels(proxy)[3:] == [5], "back on MQTT 5 at the first connection after"
        assert counters["uplink.subscription_kept"] == 0 and uplink.hears_commands


async def test_a_node_set_to_3_1_1_never_tries_mqtt5(tmp_path: Path, outbox: Outbox) -> None:
    """`protocol = "3.1.1"` is the operator's choice, not a fallback: no MQTT 5 CONNECT,
    whatever the reconnects, and health says no try is due."""
    async with linked(tmp_path, outbox, protocol="3.1.1", protocol_retry_s=0.1) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected, 5, "online")
        for n in (1, 2):
            await asyncio.sleep(0.15)
            proxy.cut()
            await wait_until(lambda n=n: uplink.sessions > n and uplink.connected, 3, "again")
        assert set(_levels(proxy)) == {4}
        assert uplink.link_health().mqtt5_retry_in_s is None and not uplink.fell_back


async def test_a_3_1_1_session_leaves_no_will_delay_to_count_on_back_on_mqtt5(
    tmp_path: Path, outbox: Outbox
) -> None:
    """With `will_delay_s`, a node back within the delay may skip its birth: its will has
    not gone yet (`_will_still_held`). A 3.1.1 connection's will has no delay: the last
    connection before the return to MQTT 5, if lost, had its `offline` published at once,
    and a birth skipped on that count left `offline` retained for a node online."""
    async with linked(
        tmp_path, outbox, quirks=Quirks(refuse_v5="close"), protocol_retry_s=0.3, will_delay_s=30
    ) as link:
        uplink = link.uplink
        await wait_until(lambda: uplink.connected and uplink.fell_back, 5, "the fallback")
        link.proxy.quirks.refuse_v5 = None
        await wait_until(lambda: uplink.connected and uplink.protocol == "5", 3, "MQTT 5")
        assert uplink._online_heard_at is None, "the 3.1.1 connection's will had no delay"


async def test_a_try_of_mqtt5_left_unanswered_goes_back_to_the_3_1_1_that_worked(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The node ended a working 3.1.1 session for MQTT 5, which got no answer at all (a
    front that holds an MQTT 5 CONNECT without a word): the next attempt is 3.1.1 again,
    the wait doubled. Left due, every attempt tried MQTT 5 again and the node stayed
    offline for good, a panic never sent."""
    counters = Counters()
    async with linked(
        tmp_path,
        outbox,
        counters=counters,
        quirks=Quirks(refuse_v5="close"),
        protocol_retry_s=0.3,
        publish_timeout_s=0.5,  # the CONNACK's time-out too (under the keepalive)
    ) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected and uplink.fell_back, 5, "the fallback")
        proxy.quirks.refuse_v5 = "mute"
        await wait_until(lambda: 5 in _levels(proxy)[3:], 3, "the try of MQTT 5")
        tried = len(proxy.connects)
        await wait_until(lambda: uplink.connected and len(proxy.connects) > tried, 3, "3.1.1 again")
        assert _levels(proxy)[tried:] == [4], _levels(proxy)
        assert uplink.fell_back and uplink.protocol == "3.1.1"
        assert uplink.link_health().mqtt5_retry_in_s in (0, 1)
        assert counters["uplink.protocol_retry_refused"] == 1


async def test_a_try_of_mqtt5_refused_for_another_reason_goes_back_to_3_1_1(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A try of MQTT 5 refused with an MQTT 5 reason other than the version (0x87 not
    authorized: a broker or front whose MQTT 5 listener is set apart) ends no fallback:
    3.1.1, which the node was using, comes at once. Taken for MQTT 5 spoken, it ended the
    fallback and every attempt after was MQTT 5, refused: offline for good."""
    counters = Counters()
    async with linked(
        tmp_path, outbox, counters=counters, quirks=Quirks(refuse_v5="close"), protocol_retry_s=0.3
    ) as link:
        uplink, proxy = link.uplink, link.proxy
        await wait_until(lambda: uplink.connected and uplink.fell_back, 5, "the fallback")
        proxy.quirks.refuse_v5 = "denied"
        await wait_until(
            lambda: uplink.connected and len(proxy.connects) > 4, 3, "MQTT 5 tried, then 3.1.1"
        )
        assert _levels(proxy)[3:] == [5, 4], _levels(proxy)
        assert uplink.fell_back and uplink.protocol == "3.1.1"
        assert counters["uplink.protocol_retry_refused"] == 1
        assert counters["uplink.protocol_restored"] == 0

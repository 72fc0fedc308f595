"""The MQTT client subclass: a message aiomqtt cannot read costs that message, not the link.
Its cancels: test_cancellable.py."""

import asyncio
import inspect
import subprocess
import sys

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.mqtt import (
    MAX_QUEUED,
    MAX_QUEUED_BYTES,
    RECEIVE_MAXIMUM,
    ClosedBeforeConnack,
    Incoming,
    MalformedConnack,
    MqttClient,
    NoConnackInTime,
)
from tests.helpers.broker import Mosquitto
from tests.helpers.drivers import wait_until
from tests.helpers.hostile_broker import hostile_broker
from tests.helpers.nodes import ROOT


async def test_a_message_with_a_topic_aiomqtt_refuses_is_dropped_and_counted() -> None:
    client = MqttClient("127.0.0.1", 1)
    bad = paho.MQTTMessage(mid=1, topic=b"a/+/b")
    client._on_message(client._client, None, bad)
    assert client.unreadable == 1 and len(client.messages) == 0
    good = paho.MQTTMessage(mid=2, topic=b"a/b")
    client._on_message(client._client, None, good)
    assert len(client.messages) == 1


async def test_a_message_id_still_in_flight_is_never_given_again_even_across_the_wrap() -> None:
    """At ~20,000 messages a second paho's 16-bit counter comes round in seconds: an id
    given twice would let one PUBACK answer for two messages and hide the other's."""
    client = MqttClient("127.0.0.1", 1, identifier="n1")
    client._client._last_mid = 65533  # the counter about to wrap (paho's own state)
    taken = {65534, 65535, 1, 3}
    assert [client.next_mid(taken) for _ in range(3)] == [2, 4, 5]


def test_connecting_by_name_or_address_does_not_load_the_idna_codec(broker: Mosquitto) -> None:
    """A fresh interpreter connects to the broker as `localhost` and as 127.0.0.1: no
    `encodings.idna` (stringprep, unicodedata: 16 ms of a start, 0.3 MB) is loaded."""
    child = (
        "import asyncio, sys\n"
        "from edged.uplink.mqtt import MqttClient\n"
        "async def main():\n"
        "    for host in ('localhost', '127.0.0.1'):\n"
        f"        async with MqttClient(host, {broker.port}, identifier='n1') as c:\n"
        "            assert c.session_present is not None\n"
        "    print('encodings.idna' in sys.modules, 'stringprep' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_the_paho_internals_the_uplink_reaches_into_are_there() -> None:
    """edged.uplink.mqtt takes message ids from paho's counter, queues its own PUBLISHes in
    paho's write queue, reads paho's socket and opens it: parts of paho that are not its
    API. pyproject.toml pins paho to the versions where they are as used; a newer paho
    that moves one fails here, by name, before it fails a node's drain."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    methods = ("_mid_generate", "_packet_queue", "_create_socket_connection", "_get_proxy")
    # edged.uplink.cancellable wraps TLS handshakes and closes sockets; mqtt ends a read
    methods += ("_ssl_wrap_socket", "_sock_close", "_loop_rc_handle", "loop_read")
    methods += ("_packet_handle",)  # a malformed CONNACK told as such
    methods += ("_proxy_is_valid",)  # cancellable: a proxy's connect left to paho
    for method in methods:
        assert callable(getattr(client, method, None)), method
    attributes = ("_sock", "_host", "_port", "_connect_timeout", "_bind_address", "_transport")
    for attribute in (*attributes, "_ssl_context", "_proxy"):
        assert hasattr(client, attribute), attribute
    assert list(inspect.signature(client._ssl_wrap_socket).parameters) == ["tcp_sock"]
    assert list(inspect.signature(client._loop_rc_handle).parameters) == ["rc"]
    assert list(inspect.signature(client.loop_read).parameters) == ["max_packets"]
    assert hasattr(client, "_bind_port")
    assert set(client._in_packet) >= {"command"}
    from paho.mqtt import _packet  # edged.doctor.broker reads a CONNACK as paho does

    assert list(inspect.signature(_packet.decode_connack).parameters)[:3] == [
        "header",
        "packet",
        "protocol",
    ]
    queue = list(inspect.signature(client._packet_queue).parameters)
    assert queue[:4] == ["command", "packet", "mid", "qos"]
    assert isinstance(client._mid_generate(), int)


def test_paho_is_pinned_from_the_minor_version_these_tests_run() -> None:
    """The internals above are checked on the paho installed here, and nowhere else: a pin
    reaching below its minor version let in a paho without them (2.1 has no
    paho.mqtt.exception nor paho.mqtt._packet: the uplink, every tool and the doctor failed
    to import), said "checked" in a comment."""
    import tomllib
    from importlib.metadata import version

    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [p for p in pins if p.startswith("paho-mqtt")]
    lowest = pin.split(">=")[1].split(",")[0]
    installed = version("paho-mqtt").split(".")[:2]
    assert lowest.split(".")[:2] == installed, (pin, installed)


def _flood(port: int, topic: str, payloads: list[bytes], qos: int = 0) -> None:
    """Publish `payloads` at `qos` as fast as paho writes them (its own thread)."""
    sender = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    try:
        infos = [sender.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        sender.disconnect()
        sender.loop_stop()


async def _received(client: MqttClient, expected: int) -> None:
    """Until the client has read `expected` messages, queued or dropped."""
    for _ in range(400):
        if client._queue.qsize() + getattr(client, "flooded", 0) >= expected:
            return
        await asyncio.sleep(0.05)


async def test_commands_flooding_in_faster_than_handled_wait_in_a_bounded_queue(
    broker: Mosquitto,
) -> None:
    """aiomqtt's queue of messages not yet handled had no bound: anyone allowed on `cmd/#`
    sending 50,000 `ping`s in a second had them all queued (300 MB, a Pi Zero's memory)
    while the node handled a few hundred a second. Past the bound each is dropped and
    counted; the node reads the next once it has handled one."""
    n = MAX_QUEUED + 500
    async with MqttClient("127.0.0.1", broker.port, identifier="n1") as client:
        await client.subscribe("t/#")
        await asyncio.to_thread(_flood, broker.port, "t/ping", [b'{"id":"x"}'] * n)
        await _received(client, n)
        assert client._queue.qsize() == MAX_QUEUED
        assert client.flooded == n - MAX_QUEUED
        await anext(client.messages.__aiter__())  # the node handled one: room for the next
        await asyncio.to_thread(_flood, broker.port, "t/ping", [b'{"id":"y"}'])
        await _received(client, n + 1)
        assert client._queue.qsize() == MAX_QUEUED and client.flooded == n - MAX_QUEUED


async def test_large_commands_waiting_are_bounded_by_their_bytes(broker: Mosquitto) -> None:
    """Each up to 8 MiB (the packets the node takes): a thousand of them were 8 GB."""
    size = 2 * 1024 * 1024
    async with MqttClient("127.0.0.1", broker.port, identifier="n1") as client:
        await client.subscribe("t/#")
        await asyncio.to_thread(_flood, broker.port, "t/big", [bytes(size)] * 12)
        await _received(client, 12)
        assert client._queue.qsize() == MAX_QUEUED_BYTES // size
        assert client.flooded == 12 - MAX_QUEUED_BYTES // size


async def _read(client: MqttClient, expected: int) -> list[bytes]:
    """The payloads the client gives, until `expected` or 5 s without one."""
    got: list[bytes] = []
    messages = client.messages.__aiter__()
    while len(got) < expected:
        try:
            message = await asyncio.wait_for(anext(messages), 5)
        except TimeoutError:
            break
        got.append(bytes(message.payload))  # type: ignore[arg-type]
    return got


def _kept_session() -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 600
    return properties


async def test_qos1_commands_past_the_bound_are_not_lost_once_acknowledged(
    broker: Mosquitto,
) -> None:
    """A QoS 1 message dropped after paho acknowledged it was lost for good: a
    `door.unlock` from dispatch among another commander's flood, or in the backlog a broker
    hands a resumed session, was never run nor answered. Acknowledged only as the node
    takes it, each one arrives, the last ones at the next connection at worst (Mosquitto
    2.0.11 keeps to the Receive Maximum loosely)."""
    n = MAX_QUEUED + 100
    payloads = [str(i).encode() for i in range(n)]
    v5 = aiomqtt.ProtocolVersion.V5
    kept = {"identifier": "n1", "protocol": v5, "clean_start": False}
    async with MqttClient("127.0.0.1", broker.port, **kept, properties=_kept_session()) as c:
        await c.subscribe("t/#", qos=1)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", payloads, 1)
        got = await _read(c, n)
    async with MqttClient("127.0.0.1", broker.port, **kept, properties=_kept_session()) as c:
        got += await _read(c, n - len(got))
    assert sorted(got, key=int) == payloads


async def test_a_qos1_command_finds_room_in_a_qos0_flood(broker: Mosquitto) -> None:
    """Another commander's QoS 0 flood filled the queue, and dispatch's `door.unlock`
    that came next was dropped (after paho acknowledged it): QoS 0 and QoS 1 messages
    waiting are bounded apart."""
    n = MAX_QUEUED + 10
    async with MqttClient("127.0.0.1", broker.port, identifier="n1") as client:
        await client.subscribe("t/#", qos=1)
        await asyncio.to_thread(_flood, broker.port, "t/ping", [b"p"] * n)
        await _received(client, n)
        await asyncio.to_thread(_flood, broker.port, "t/door.unlock", [b"u"], 1)
        await _received(client, n + 1)
        got = await _read(client, MAX_QUEUED + 1)
        assert got[-1] == b"u" and client.flooded == n - MAX_QUEUED


async def test_qos1_commands_waiting_are_bounded_by_the_receive_maximum(
    broker: Mosquitto,
) -> None:
    """Those not yet taken are the broker's to hold: the node's memory holds at most
    `RECEIVE_MAXIMUM` of them when the broker keeps to it."""
    v5 = aiomqtt.ProtocolVersion.V5
    async with MqttClient("127.0.0.1", broker.port, identifier="n1", protocol=v5) as client:
        await client.subscribe("t/#", qos=1)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"x"] * 200, 1)
        await asyncio.sleep(0.5)
        assert client._queue.qsize() == RECEIVE_MAXIMUM


class _SmallIncoming(Incoming):
    """The queue's bounds at 1,000 bytes, so that four small commands reach them."""

    def __init__(self, maxsize: int = MAX_QUEUED, max_bytes: int = 1000) -> None:
        super().__init__(maxsize, max_bytes)


async def test_qos1_commands_behind_one_left_unacknowledged_keep_their_order(
    broker: Mosquitto,
) -> None:
    """`c` is left unacknowledged past the bound; `d`, sent once the queue had room, was
    taken at once, ahead of `c` (which came only in the next connection): two
    `access.update` run in the wrong order. Every QoS 1 message behind one left out is
    left out too, and the next connection brings them in the order sent."""
    v5 = aiomqtt.ProtocolVersion.V5
    kept = {"identifier": "n1", "protocol": v5, "clean_start": False}
    small = {"queue_type": _SmallIncoming, "properties": _kept_session()}
    async with MqttClient("127.0.0.1", broker.port, **kept, **small) as client:
        await client.subscribe("t/#", qos=1)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"a" * 600, b"b" * 600], 1)
        await _received(client, 2)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"c" * 600], 1)
        await _received(client, 3)
        got = await _read(client, 2)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"d"], 1)
        got += await _read(client, 1)
    async with MqttClient("127.0.0.1", broker.port, **kept, **small) as client:
        got += await _read(client, 2)
    assert [g[:1] for g in got] == [b"a", b"b", b"c", b"d"]


async def test_in_a_session_the_broker_does_not_keep_commands_after_one_past_the_bound_come(
    broker: Mosquitto,
) -> None:
    """`c` came past the bound in a clean session: the broker never sends it again (it
    drops the session with the connection), yet every QoS 1 message behind it was left
    out too, for as long as the connection lasted: `d`, sent once the node had caught
    up, never came. Only where the broker keeps the session do later ones wait for `c`."""
    small = {"identifier": "n1", "queue_type": _SmallIncoming}  # 3.1.1, clean session
    async with MqttClient("127.0.0.1", broker.port, **small) as client:
        await client.subscribe("t/#", qos=1)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"a" * 600, b"b" * 600], 1)
        await _received(client, 2)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"c" * 600], 1)
        await _received(client, 3)
        got = await _read(client, 2)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"d"], 1)
        got += await _read(client, 1)
    assert [g[:1] for g in got] == [b"a", b"b", b"d"]


async def test_in_a_session_the_broker_does_not_keep_commands_past_the_bound_free_its_slots(
    broker: Mosquitto,
) -> None:
    """Left unacknowledged in a clean session, the commands past the bound held the
    broker's slots for the node (Receive Maximum) for as long as the connection lasted:
    after 16 of them, no QoS 1 command reached the node at all. They are acknowledged
    (lost: the broker would not send them again), and the next one comes."""
    v5 = aiomqtt.ProtocolVersion.V5
    small = {"identifier": "n1", "protocol": v5, "queue_type": _SmallIncoming}  # no expiry
    async with MqttClient("127.0.0.1", broker.port, **small) as client:
        await client.subscribe("t/#", qos=1)
        flood = [b"f" * 600] * (2 * RECEIVE_MAXIMUM)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", flood, 1)
        await _received(client, len(flood))
        while client._queue.qsize():
            await _read(client, client._queue.qsize())
            await asyncio.sleep(0.2)
        await asyncio.to_thread(_flood, broker.port, "t/cmd", [b"d"], 1)
        got = await _read(client, 1)
    assert got == [b"d"]


V5 = aiomqtt.ProtocolVersion.V5
MALFORMED_CONNACKS = {
    # fixed header, remaining length, flags, reason 0 (success), properties' length, ...
    "unknown property or code 0x7f": bytes([0x20, 5, 0, 0, 2, 0x7F, 0]),
    "unpack requires a buffer of 2 bytes": bytes([0x20, 5, 0, 0, 9, 0x21, 0]),  # past the end
    "'utf-8' codec can't decode": bytes([0x20, 8, 0, 0, 5, 0x1F, 0, 2, 0xFF, 0xFE]),
    "CONNACK packet is too small": bytes([0x20, 1, 0]),
}


@pytest.mark.parametrize("why", MALFORMED_CONNACKS)
async def test_a_connack_paho_cannot_read_fails_the_attempt_as_malformed_not_unanswered(
    why: str,
) -> None:
    """paho ends the connection as a protocol error and says why in a debug line only: the
    attempt said "the broker closed the connection without a CONNACK (Protocol error)",
    and the node's diagnosis blamed the port or TLS of a broker that had answered."""
    async with hostile_broker(MALFORMED_CONNACKS[why]) as broker:
        client = MqttClient("127.0.0.1", broker.port, identifier="n1", protocol=V5, timeout=2)
        with pytest.raises(MalformedConnack, match="answered with a malformed CONNACK") as caught:
            await client.__aenter__()
        assert why in caught.value.reason
        await wait_until(lambda: broker.open == 0, 1, "the connection closed")


async def test_a_close_before_any_connack_is_still_said_as_no_connack() -> None:
    async with hostile_broker(b"") as broker:
        client = MqttClient("127.0.0.1", broker.port, identifier="n1", protocol=V5, timeout=2)
        task = asyncio.create_task(client.__aenter__())
        await wait_until(lambda: broker.connects == 1, 2, "the CONNECT read")
        for writer in list(broker.writers):
            writer.close()
        with pytest.raises(ClosedBeforeConnack) as caught:
            await task
        assert not isinstance(caught.value, MalformedConnack)


async def test_no_connack_within_the_keepalive_is_said_as_unanswered_not_as_a_close() -> None:
    """paho's keepalive check ends an attempt that got no CONNACK in time: it was said as
    the broker closing the connection unanswered, two of which had the node try MQTT 3.1.1,
    and stay on it after a mute front recovered (edged.uplink.client)."""
    async with hostile_broker(b"") as broker:
        client = MqttClient("127.0.0.1", broker.port, identifier="n1", protocol=V5, keepalive=1)
        with pytest.raises(NoConnackInTime, match=r"within the keepalive \(1 s\)") as caught:
            await client.__aenter__()
        assert not isinstance(caught.value, ClosedBeforeConnack)
        assert broker.connects == 1

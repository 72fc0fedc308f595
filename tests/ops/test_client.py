"""The tools' MQTT connection (`edged.ops.client`) against a real Mosquitto."""

import asyncio
import logging

import pytest
from aiomqtt import ProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.ops.client import (
    MAX_QUEUED_BYTES,
    BrokerUnreachableError,
    ClosedBeforeConnackError,
    MalformedConnackError,
    ToolClient,
    connect,
)
from edged.ops.login import Login
from edged.ops.urls import parse_broker_url
from edged.uplink.cancellable import CancellableClient
from tests.helpers.broker import Mosquitto
from tests.helpers.hostile_broker import hostile_broker

MIB = 1024 * 1024


async def test_a_peer_flooding_a_reader_that_lags_costs_messages_not_memory(
    broker: Mosquitto,
) -> None:
    """A stolen node key publishing large messages faster than `edgectl watch` reads them:
    what waits to be read stays under MAX_QUEUED_BYTES (it grew to 4 GB in 20 s before)."""
    payload = b"{" + b" " * (MIB - 2) + b"}"  # 1 MiB each, 200 MiB in all
    count = 200
    async with connect(Login(parse_broker_url(broker.url)), "edgectl-test-flood") as reader:
        await reader.subscribe("rnst/v1/#", qos=0)
        async with CancellableClient("127.0.0.1", broker.port, identifier="rogue-flood") as rogue:
            for _ in range(count):
                await rogue.publish("rnst/v1/test/rogue-01/health", payload, qos=0)
            async with asyncio.timeout(60):  # the reader reads nothing meanwhile: it lags
                while len(reader.messages) + getattr(reader, "dropped", 0) < count:
                    await asyncio.sleep(0.1)
        assert len(reader.messages) * len(payload) <= MAX_QUEUED_BYTES + len(payload)
        assert reader.dropped == count - len(reader.messages)
        async with asyncio.timeout(5):  # what was kept is still read, in order
            message = await anext(aiter(reader.messages))
        assert message.payload == payload


async def test_a_flood_of_small_messages_is_dropped_and_counted_without_a_line_each(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the count bound (MAX_QUEUED_MESSAGES), aiomqtt itself dropped each message
    with a warning: uncounted, and 81,000 lines on `edgectl watch`'s terminal in 15 s."""
    count, bound = 500, 100
    reader = ToolClient("127.0.0.1", broker.port, version="5", max_queued_incoming_messages=bound)
    with caplog.at_level(logging.WARNING):
        async with reader:
            await reader.subscribe("rnst/v1/#", qos=0)
            async with CancellableClient("127.0.0.1", broker.port, identifier="rogue-small") as rogue:
                for _ in range(count):
                    await rogue.publish("rnst/v1/test/rogue-01/health", b"{}", qos=0)
                async with asyncio.timeout(30):  # the reader reads nothing meanwhile: it lags
                    while len(reader.messages) + reader.dropped < count:
                        await asyncio.sleep(0.05)
            assert (len(reader.messages), reader.dropped) == (bound, count - bound)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_flood_of_long_topic_names_counts_against_the_queues_bound(
    broker: Mosquitto,
) -> None:
    """A node may write `events/{kind}` with a kind as long as MQTT allows (64 KiB): a
    flood of such topics with empty payloads held 64 KiB each in the reader's queue, counted
    as nothing, so the 128 MiB bound let 50,000 of them (3 GiB) wait to be read."""
    bound, count = MIB, 100
    topic = "rnst/v1/test/rogue-01/events/" + "x" * 60_000
    reader = ToolClient("127.0.0.1", broker.port, version="5", max_queued_bytes=bound)
    async with reader:
        await reader.subscribe("rnst/v1/#", qos=0)
        async with CancellableClient("127.0.0.1", broker.port, identifier="rogue-topics") as rogue:
            for i in range(count):
                await rogue.publish(f"{topic}{i}", b"", qos=0)
            async with asyncio.timeout(30):  # the reader reads nothing meanwhile: it lags
                while len(reader.messages) + reader.dropped < count:
                    await asyncio.sleep(0.05)
        assert (len(reader.messages) - 1) * len(topic) <= bound
        assert reader.dropped == count - len(reader.messages)


async def test_messages_paho_cannot_read_are_acknowledged_and_the_next_one_comes(
    broker: Mosquitto,
) -> None:
    """Left out, an unreadable QoS 1 message must still be acknowledged: unacknowledged,
    a receive maximum of them (the window the broker may have in flight) would stop every
    later delivery."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("node", "\ufeff")
    window = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    window.ReceiveMaximum = 10
    count = 30
    reader = ToolClient(
        "127.0.0.1", broker.port, version="5", protocol=ProtocolVersion.V5, properties=window
    )
    async with reader:
        await reader.subscribe("rnst/v1/#", qos=1)
        async with CancellableClient(
            "127.0.0.1", broker.port, identifier="rogue-feff", protocol=ProtocolVersion.V5
        ) as rogue:
            for _ in range(count):
                await rogue.publish("rnst/v1/test/rogue-01/health", b"{}", qos=1, properties=props)
            await rogue.publish("rnst/v1/test/n1/health", b"{}", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(reader.messages))
        assert str(message.topic) == "rnst/v1/test/n1/health"
        assert reader.malformed == count


async def test_a_malformed_connack_is_said_as_one_with_both_versions_tried() -> None:
    """A CONNACK with a property paho does not know: edgectl said "the broker closed the
    connection before answering: if it is a TLS listener use mqtts://", of a broker that
    had answered on a plain MQTT port."""
    unknown_property = bytes([0x20, 5, 0, 0, 2, 0x7F, 0])
    async with hostile_broker(unknown_property) as broker:
        login = Login(parse_broker_url(f"mqtt://127.0.0.1:{broker.port}"))
        with pytest.raises(BrokerUnreachableError) as caught:
            async with connect(login, "edgectl-test"):
                pass
    said = str(caught.value)
    assert "answered with a malformed CONNACK (CONNACK packet size is wrong)" in said
    assert "(after MQTT 5: its CONNACK was malformed (unknown property or code 0x7f))" in said


async def test_a_client_used_again_after_a_malformed_connack_says_a_close_as_one() -> None:
    """The unreadable CONNACK was kept on the client for good: the same client's next
    attempt, which the broker closed unanswered, was said malformed too."""
    unknown_property = bytes([0x20, 5, 0, 0, 2, 0x7F, 0])
    async with hostile_broker(unknown_property) as broker:
        client = ToolClient("127.0.0.1", broker.port, version="5", protocol=ProtocolVersion.V5)
        with pytest.raises(MalformedConnackError):
            await client.__aenter__()
        broker.reply = b""
        attempt = asyncio.ensure_future(client.__aenter__())
        async with asyncio.timeout(2):
            while broker.connects < 2:
                await asyncio.sleep(0.01)
        for writer in list(broker.writers):
            writer.close()
        with pytest.raises(ClosedBeforeConnackError) as caught:
            await attempt
    assert not isinstance(caught.value, MalformedConnackError)

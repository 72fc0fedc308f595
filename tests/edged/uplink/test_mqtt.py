"""The MQTT client subclass: a message aiomqtt cannot read costs that message, not the link."""

import paho.mqtt.client as paho

from edged.uplink.mqtt import MqttClient


async def test_a_message_with_a_topic_aiomqtt_refuses_is_dropped_and_counted() -> None:
    client = MqttClient("127.0.0.1", 1)
    bad = paho.MQTTMessage(mid=1, topic=b"a/+/b")
    client._on_message(client._client, None, bad)
    assert client.unreadable == 1 and len(client.messages) == 0
    good = paho.MQTTMessage(mid=2, topic=b"a/b")
    client._on_message(client._client, None, good)
    assert len(client.messages) == 1

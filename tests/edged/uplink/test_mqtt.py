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


async def test_a_message_id_still_in_flight_is_never_given_again_even_across_the_wrap() -> None:
    """At ~20,000 messages a second paho's 16-bit counter comes round in seconds: an id
    given twice would let one PUBACK answer for two messages and hide the other's."""
    client = MqttClient("127.0.0.1", 1, identifier="n1")
    client._client._last_mid = 65533  # the counter about to wrap (paho's own state)
    taken = {65534, 65535, 1, 3}
    assert [client.next_mid(taken) for _ in range(3)] == [2, 4, 5]

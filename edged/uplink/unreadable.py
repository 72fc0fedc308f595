"""PUBLISH packets paho cannot read: left out and acknowledged, never the end of a session.

paho refuses on receipt what MQTT forbids a server to send but Mosquitto passes on: U+FEFF
in a user property (MQTT-1.5.4-3), a malformed property, a truncated packet; aiomqtt refuses
a topic with a wildcard from a broker that does not check. paho then closes the connection,
as the spec says, and the broker sends the same message again at the next one, for as long
as it is retained or queued in a persistent session: one QoS 1 command kept a node offline
for good, one node's retained `state` kept every MQTT 5 reader of the fleet from reading
anything. Left out, such a message is acknowledged (QoS 1 PUBACK, QoS 2 PUBREC): unacked, a
receive maximum of them would stop every later delivery.
"""

import struct
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket


def leave_out_unreadable(paho: mqtt.Client, left_out: Callable[[Exception], None]) -> None:
    """From now on a PUBLISH `paho` cannot read is told to `left_out` and acknowledged."""
    handle_publish = paho._handle_publish

    def handle_publish_or_leave_out() -> MQTTErrorCode:
        try:
            return handle_publish()
        except (MalformedPacket, ValueError, struct.error) as exc:  # UnicodeDecodeError is one
            left_out(exc)
            return _acknowledge(paho)

    paho._handle_publish = handle_publish_or_leave_out  # type: ignore[method-assign]


def _acknowledge(paho: mqtt.Client) -> MQTTErrorCode:
    """Acknowledge the PUBLISH paho is reading, from its raw bytes: the topic's length and
    the topic, then the packet id (QoS 1 and 2 only)."""
    command, packet = paho._in_packet["command"], bytes(paho._in_packet["packet"])
    qos = (command & 0x06) >> 1
    at = 2 + int.from_bytes(packet[:2], "big")
    if qos == 0 or len(packet) < at + 2:
        return MQTTErrorCode.MQTT_ERR_SUCCESS
    mid = int.from_bytes(packet[at : at + 2], "big")
    return paho._send_puback(mid) if qos == 1 else paho._send_pubrec(mid)

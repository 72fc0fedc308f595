"""The MQTT client subclass: a message aiomqtt cannot read costs that message, not the link.
Its cancels: test_cancellable.py."""

import inspect
import subprocess
import sys

import paho.mqtt.client as paho

from edged.uplink.mqtt import MqttClient
from tests.helpers.broker import Mosquitto
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
    for method in ("_mid_generate", "_packet_queue", "_create_socket_connection", "_get_proxy"):
        assert callable(getattr(client, method, None)), method
    for attribute in ("_sock", "_host", "_port", "_connect_timeout", "_bind_address"):
        assert hasattr(client, attribute), attribute
    assert hasattr(client, "_bind_port")
    queue = list(inspect.signature(client._packet_queue).parameters)
    assert queue[:4] == ["command", "packet", "mid", "qos"]
    assert isinstance(client._mid_generate(), int)

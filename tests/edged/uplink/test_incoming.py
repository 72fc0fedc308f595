"""An MQTT message becomes a command for the router, or says why it does not."""

import aiomqtt
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.commands.router import IncomingCommand
from edged.topics import Topics
from edged.uplink.incoming import Dropped, incoming

TOPICS = Topics("rnst/v1", "f", "n")


def message(
    topic: str, payload: bytes = b"{}", *, retain: bool = False, props: object = None
) -> aiomqtt.Message:
    return aiomqtt.Message(topic, payload, 1, retain, 1, props)  # type: ignore[arg-type]


def test_a_command_in_slash_spelling_carries_the_dotted_topic_for_signatures() -> None:
    got = incoming(message("rnst/v1/f/n/cmd/config/get"), TOPICS)
    assert isinstance(got, IncomingCommand)
    assert got.name == "config/get" and got.topic == "rnst/v1/f/n/cmd/config.get"


def test_a_retained_command_is_dropped_and_named() -> None:
    got = incoming(message("rnst/v1/f/n/cmd/mode.set", retain=True), TOPICS)
    assert isinstance(got, Dropped) and got.counter == "retained"


def test_a_message_off_the_command_topics_is_dropped() -> None:
    got = incoming(message("rnst/v1/f/other/cmd/ping"), TOPICS)
    assert isinstance(got, Dropped) and got.counter == "not_ours"


def test_response_topic_and_correlation_data_are_carried() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "ops/r"
    props.CorrelationData = b"\x00\x01"
    got = incoming(message("rnst/v1/f/n/cmd/ping", props=props), TOPICS)
    assert isinstance(got, IncomingCommand)
    assert (got.response_topic, got.correlation) == ("ops/r", b"\x00\x01")


@given(
    tail=st.text(st.characters(exclude_characters="+#"), max_size=60),
    payload=st.binary(max_size=200),
    retain=st.booleans(),
)
def test_any_command_message_becomes_a_command_or_a_reason(
    tail: str, payload: bytes, retain: bool
) -> None:
    got = incoming(message(f"rnst/v1/f/n/cmd/{tail}x", payload, retain=retain), TOPICS)
    assert isinstance(got, IncomingCommand | Dropped)

"""An MQTT message as the command router sees it, or the reason it never gets there.

Whatever a message carries (any payload, any properties a client can send), this makes an
`IncomingCommand` or names why the message is dropped; it never raises. A retained command
is dropped: a message planted on `cmd/` would run again at every reconnect.
"""

from dataclasses import dataclass

import aiomqtt

from edged.commands.router import IncomingCommand
from edged.topics import Topics, name_of


@dataclass(frozen=True)
class Dropped:
    counter: str  # `cmd.{counter}` in health
    why: str


def incoming(message: aiomqtt.Message, topics: Topics) -> IncomingCommand | Dropped:
    topic = str(message.topic)
    spelled = topics.command_name(topic)
    if spelled is None:
        return Dropped("not_ours", f"a message on {topic[:120]!r}, not a command topic")
    if message.retain:
        return Dropped(
            "retained",
            f"a retained message on {topic[:120]!r} is never run as a command: someone "
            "published it with the retain flag; clear it (an empty retained message on that "
            "topic) and send commands without retain",
        )
    name = name_of(spelled)
    payload = message.payload
    if isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")
    elif isinstance(payload, bytes | bytearray):
        raw = bytes(payload)
    elif payload is None:
        raw = b""
    else:  # aiomqtt turns some payloads into numbers
        raw = str(payload).encode()
    props = message.properties
    response_topic = getattr(props, "ResponseTopic", None)
    correlation = getattr(props, "CorrelationData", None)
    return IncomingCommand(
        name=spelled,
        payload=raw,
        response_topic=response_topic if isinstance(response_topic, str) else None,
        correlation=bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
        topic=topics.command_topic(name) if name is not None else topic,
    )

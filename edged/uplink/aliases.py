"""MQTT 5 topic aliases: a topic's name sent once per connection, a number after that.

Every node topic is `{prefix}/{fleet}/{node}/...`, 30–45 bytes that each message repeats; a
position is 80 bytes deflated. The first publish on a topic carries the name and an alias
(1..the broker's Topic Alias Maximum, from its CONNACK); later ones an empty name and the
alias. Aliases live as long as the connection: each session starts with an empty table.
When the table is full, further topics go by name (the first topics a node publishes are
its frequent ones: position, vehicle, health).

Publishes are handed to paho in the order they are assigned here (no await in between), so
the one that carries a topic's name always goes out before those that use its alias.
"""

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class TopicAliases:
    def __init__(self, maximum: int) -> None:
        self.maximum = max(0, maximum)
        self._aliases: dict[str, int] = {}

    def apply(self, topic: str, properties: Properties | None) -> tuple[str, Properties | None]:
        """The (topic, properties) to publish with: by alias when one is set up."""
        alias = self._aliases.get(topic)
        if alias is not None:
            props = properties or Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.TopicAlias = alias
            return "", props
        if len(self._aliases) >= self.maximum:
            return topic, properties
        alias = len(self._aliases) + 1
        self._aliases[topic] = alias
        props = properties or Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.TopicAlias = alias
        return topic, props

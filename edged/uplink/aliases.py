"""MQTT 5 topic aliases: a topic's name sent once per connection, a number after that.

Every node topic is `{prefix}/{fleet}/{node}/...`, 30–45 bytes that each message repeats; a
position is 80 bytes deflated. The first publish on a topic carries the name and an alias
(1..the broker's Topic Alias Maximum, from its CONNACK); later ones an empty name and the
alias. Aliases live as long as the connection: each session starts with an empty table.
When the table is full, further topics go by name (the first topics a node publishes are
its frequent ones: position, vehicle, health).

Only topics `takes` says are worth one get an alias: the node's own streams, whose names are
the code's. Not a reply (`reply/{name}`, whose name is whatever a commander wrote on `cmd/`,
one publish each), nor a copy on a commander's MQTT 5 response topic: anyone allowed on
`cmd/#` sending `cmd/x1`, `cmd/x2`... or naming a new response topic each time grew the
table by one topic name each, up to the broker's maximum for as long as the connection lasted
(EMQX allows 65,535: ~24 MB of topic names on a Pi Zero's 512 MB), and took the slots of the
node's own topics published later.

Publishes are handed to paho in the order they are assigned here (no await in between), so
the one that carries a topic's name always goes out before those that use its alias.

A publish with nothing but its alias reuses one properties object per alias, packed once:
building paho's `Properties` and packing it cost ~15 µs a message, a sixth of the drain's
CPU (a profile of `bench.outbox`).
"""

from collections.abc import Callable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class AliasOnly(Properties):
    """PUBLISH properties holding only a topic alias, packed once for every publish."""

    def __init__(self, alias: int) -> None:
        super().__init__(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.TopicAlias = alias
        object.__setattr__(self, "_packed", super().pack())  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        return self._packed  # type: ignore[attr-defined,no-any-return]


class TopicAliases:
    def __init__(self, maximum: int, takes: Callable[[str], bool] | None = None) -> None:
        """`takes(topic)`: whether a topic may have an alias (None: every topic)."""
        self.maximum = max(0, maximum)
        self.takes = takes
        self._aliases: dict[str, int] = {}
        self._only: dict[int, AliasOnly] = {}

    def __len__(self) -> int:
        """Aliases set up in this connection."""
        return len(self._aliases)

    def apply(self, topic: str, properties: Properties | None) -> tuple[str, Properties | None]:
        """The (topic, properties) to publish with: by alias when one is set up."""
        alias = self._aliases.get(topic)
        if alias is not None:
            if properties is None:
                only = self._only.get(alias)
                if only is None:
                    only = self._only[alias] = AliasOnly(alias)
                return "", only
            properties.TopicAlias = alias
            return "", properties
        if len(self._aliases) >= self.maximum or (self.takes is not None and not self.takes(topic)):
            return topic, properties
        alias = len(self._aliases) + 1
        self._aliases[topic] = alias
        props = properties or Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.TopicAlias = alias
        return topic, props

    def unsent(self, topic: str) -> None:
        """The publish `apply` just named `topic` in did not go (the broker cannot take it:
        `edged.uplink.sender`): an alias set up for it there is not the broker's, so the
        next publish on it names it again."""
        if self._aliases and next(reversed(self._aliases)) == topic:
            del self._aliases[topic]

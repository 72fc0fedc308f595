"""Which MQTT 5 response topics a command may name.

The node publishes a copy of the reply on the response topic, so whoever can send a command
chooses where the node writes. A response topic is accepted only when it is a topic name
every broker takes (a topic the broker refuses would end the node's session, and stay in
the outbox to end the next one), and when it cannot land on a node's topics: by default
anything outside every node base, or, with `[broker] response_topic_prefix`, only under it.
"""

from edged.config.topic_names import in_a_node_base, topic_name_problem, under


class ResponseTopics:
    """The rule for one node: `node_prefix` is `[broker] prefix`, `allowed` the optional
    `[broker] response_topic_prefix`."""

    def __init__(self, node_prefix: str | None = None, allowed: str | None = None) -> None:
        self.node_prefix = node_prefix
        self.allowed = allowed

    def refusal(self, topic: str) -> str | None:
        """None when the node may publish the reply on `topic`; else the reason, for a person."""
        problem = topic_name_problem(topic)
        if problem is not None:
            return f"response topic {topic[:80]!r}: {problem}"
        if self.allowed is not None and not under(topic, self.allowed):
            return (
                f"response topic {topic[:80]!r} is not under {self.allowed!r} "
                "([broker] response_topic_prefix)"
            )
        if self.node_prefix is not None and in_a_node_base(topic, self.node_prefix):
            return (
                f"response topic {topic[:80]!r} is on a node's topics ({self.node_prefix}/"
                "{fleet}/{node}/...): use a topic outside them"
            )
        return None

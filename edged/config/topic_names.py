"""MQTT topic names a node may be told to publish to: the broker's rules and the node bases.

Pure functions, shared by the config models (`[broker] response_topic_prefix`) and the command
router (a command's MQTT 5 response topic)."""

import re

from edged.config.base import NAME_PATTERN

MAX_LENGTH = 256
_NAME = re.compile(NAME_PATTERN)
# what Mosquitto (and the MQTT spec, 1.5.4) refuses in a UTF-8 string: wildcards and NUL in
# a topic name, control characters, surrogates and the Unicode non-characters
_FORBIDDEN = re.compile(
    "[+#\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(17))
    + "]"
)


def topic_name_problem(topic: str) -> str | None:
    """Why `topic` is not a topic name the node may publish to, or None."""
    if not 1 <= len(topic) <= MAX_LENGTH:
        return f"a topic name has 1 to {MAX_LENGTH} characters"
    bad = _FORBIDDEN.search(topic)
    if bad:
        return f"{bad.group()!r} is not allowed in a topic name"
    if topic.startswith("$"):
        return "a $ topic belongs to the broker"
    return None


def under(topic: str, prefix: str) -> bool:
    return topic == prefix or topic.startswith(prefix + "/")


def in_a_node_base(topic: str, prefix: str) -> bool:
    """True when `topic` is `{prefix}/{fleet}/{node}` or below, for any fleet and node id,
    also once a broker has rewritten `.` to `/` (RabbitMQ)."""
    head = prefix.replace(".", "/").split("/")
    levels = topic.replace(".", "/").split("/")
    n = len(head)
    return (
        levels[:n] == head
        and len(levels) >= n + 2
        and bool(_NAME.fullmatch(levels[n]))
        and bool(_NAME.fullmatch(levels[n + 1]))
    )


def reaches_a_node_base(topic_prefix: str, prefix: str) -> bool:
    """True when some topic at or under `topic_prefix` is in a node base."""
    head = prefix.replace(".", "/").split("/")
    levels = topic_prefix.replace(".", "/").split("/")
    n = len(head)
    if len(levels) <= n:
        return head[: len(levels)] == levels
    if levels[:n] != head:
        return False
    return all(_NAME.fullmatch(level) for level in levels[n : n + 2])

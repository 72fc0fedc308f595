"""Which MQTT 5 response topics a node publishes a reply copy to."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.commands.response import ResponseTopics

NODE = "rnst/v1"


@pytest.mark.parametrize(
    "topic",
    [
        "rnst/v1/test/shuttle-07/alarm/panic",
        "rnst/v1/test/shuttle-07",
        "rnst/v1/other/venue-1/cmd/door.unlock",
        "rnst.v1.test.shuttle-07.alarm.panic",  # where RabbitMQ would deliver it
        "rnst/v1/test.shuttle-07/state",
    ],
)
def test_a_topic_on_any_node_base_is_refused_by_default(topic: str) -> None:
    assert ResponseTopics(NODE).refusal(topic) is not None


@pytest.mark.parametrize(
    "topic", ["ops/console-1/replies", "rnst/v1/test/_replies/c1", "rnst/v2/a/b", "x"]
)
def test_a_topic_outside_every_node_base_is_accepted_by_default(topic: str) -> None:
    assert ResponseTopics(NODE).refusal(topic) is None


@pytest.mark.parametrize(
    "topic", ["a/+", "a/#", "$SYS/x", "", "a\x00b", "a\x1fb", "a\x85b", "a\ufffeb", "x" * 257]
)
def test_a_topic_no_broker_takes_is_refused(topic: str) -> None:
    assert ResponseTopics(NODE).refusal(topic) is not None


def test_with_a_prefix_only_topics_under_it_are_accepted() -> None:
    rule = ResponseTopics(NODE, "ops/replies")
    assert rule.refusal("ops/replies") is None
    assert rule.refusal("ops/replies/console-1") is None
    assert rule.refusal("ops/repliesX") is not None
    assert rule.refusal("ops/other") is not None


@given(st.text(max_size=300))
def test_an_accepted_topic_is_valid_utf8_without_wildcards(topic: str) -> None:
    if ResponseTopics(NODE).refusal(topic) is None:
        assert topic.encode("utf-8") and "+" not in topic and "#" not in topic

"""Topic aliases as paho packs them: the name once, then the number alone."""

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.aliases import TopicAliases


def packed(alias: int) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.TopicAlias = alias
    return packing(props)


def fields(props: Properties | None) -> dict[str, object]:
    assert props is not None
    return props.json()  # type: ignore[no-untyped-call,no-any-return]


def packing(props: Properties | None) -> bytes:
    assert props is not None
    return props.pack()  # type: ignore[no-untyped-call,no-any-return]


def test_the_first_publish_carries_the_name_and_later_ones_only_the_alias() -> None:
    aliases = TopicAliases(10)
    first_topic, first = aliases.apply("a/position", None)
    assert first_topic == "a/position" and fields(first) == {"TopicAlias": 1}
    for _ in range(3):
        topic, props = aliases.apply("a/position", None)
        assert topic == "" and props is not None
        assert packing(props) == packed(1)  # what paho would send for a fresh object


def test_each_topic_keeps_its_own_alias_when_reused() -> None:
    aliases = TopicAliases(10)
    for name in ("a/position", "a/vehicle"):
        aliases.apply(name, None)
    assert packing(aliases.apply("a/vehicle", None)[1]) == packed(2)
    assert packing(aliases.apply("a/position", None)[1]) == packed(1)


def test_a_publish_with_its_own_properties_keeps_them_and_gains_the_alias() -> None:
    aliases = TopicAliases(10)
    aliases.apply("a/reply/x", None)
    mine = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    mine.CorrelationData = b"c-1"
    topic, props = aliases.apply("a/reply/x", mine)
    assert topic == "" and props is mine
    assert fields(props) == {"CorrelationData": b"c-1".hex(), "TopicAlias": 1}


def test_past_the_brokers_maximum_topics_go_by_name_without_properties() -> None:
    aliases = TopicAliases(1)
    aliases.apply("a/position", None)
    assert aliases.apply("a/vehicle", None) == ("a/vehicle", None)


def test_a_publish_that_did_not_go_sets_up_no_alias_and_the_next_names_the_topic() -> None:
    aliases = TopicAliases(10)
    aliases.apply("a/position", None)
    aliases.apply("a/door", None)  # held back: too large for the broker
    aliases.unsent("a/door")
    topic, props = aliases.apply("a/door", None)
    assert topic == "a/door" and fields(props) == {"TopicAlias": 2}


def test_an_alias_the_broker_has_is_kept_when_a_later_publish_does_not_go() -> None:
    aliases = TopicAliases(10)
    aliases.apply("a/position", None)  # sent: the broker has alias 1
    aliases.apply("a/door", None)
    aliases.unsent("")  # a publish by alias alone did not go: nothing to take back
    aliases.unsent("a/position")  # not the one just set up
    assert aliases.apply("a/position", None)[0] == ""
    assert aliases.apply("a/door", None)[0] == ""


def test_a_topic_the_rule_does_not_take_goes_by_name_and_keeps_no_slot() -> None:
    aliases = TopicAliases(2, takes=lambda topic: not topic.startswith("a/reply/"))
    for i in range(5):
        assert aliases.apply(f"a/reply/x{i}", None) == (f"a/reply/x{i}", None)
    assert len(aliases) == 0
    assert fields(aliases.apply("a/position", None)[1]) == {"TopicAlias": 1}

"""The drain's own PUBLISH packets (byte for byte paho's) and the PUBACKs taken from the
bytes read before paho parses them (the rest reaches paho unchanged, in order)."""

import socket
import threading

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.aliases import AliasOnly
from edged.uplink.packets import (
    BadPublish,
    PubackFilter,
    packed,
    publish_packet,
    publish_size,
    read_varint,
    varint,
)


def paho_bytes(
    protocol: MQTTProtocolVersion,
    topic: str,
    payload: bytes,
    retain: bool,
    props: Properties | None,
    qos: int = 1,
) -> tuple[bytes, int]:
    """What paho's own `publish` writes for a message, and its message id."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    mine, peer = socket.socketpair()
    got: list[bytes] = []

    def read() -> None:
        while chunk := peer.recv(1 << 20):
            got.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        client._sock = mine  # no broker: paho writes the packet straight to the socket
        info = client.publish(topic, payload, qos, retain, props)
        mine.shutdown(socket.SHUT_WR)
        reader.join(10)
        return b"".join(got), info.mid
    finally:
        client._sock = None
        mine.close()
        peer.close()


def correlated() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = b"\x00\x01corr"
    return props


@pytest.mark.parametrize("retain", [False, True])
@pytest.mark.parametrize("size", [0, 100, 200, 20_000, 3_000_000])
def test_an_mqtt5_publish_is_byte_for_byte_what_paho_sends(retain: bool, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    expected, mid = paho_bytes(
        MQTTProtocolVersion.MQTTv5, "rnst/v1/f/n/events/door", payload, retain, None
    )
    got = publish_packet("rnst/v1/f/n/events/door", payload, mid, retain=retain, properties=b"\0")
    assert got == expected


@pytest.mark.parametrize("make", [correlated, lambda: AliasOnly(3)])
def test_an_mqtt5_publish_with_properties_is_what_paho_sends(make: object) -> None:
    props = make()  # type: ignore[operator]
    topic = "" if isinstance(props, AliasOnly) else "reply/here"
    expected, mid = paho_bytes(MQTTProtocolVersion.MQTTv5, topic, b'{"a":1}', False, props)
    got = publish_packet(topic, b'{"a":1}', mid, retain=False, properties=props.pack())
    assert got == expected


def test_an_mqtt311_publish_is_what_paho_sends() -> None:
    expected, mid = paho_bytes(
        MQTTProtocolVersion.MQTTv311, "rnst/v1/f/n/events/door", b"{}", True, None
    )
    got = publish_packet("rnst/v1/f/n/events/door", b"{}", mid, retain=True, properties=None)
    assert got == expected


@pytest.mark.parametrize(
    ("topic", "properties"),
    [("a/+/b", b"\0"), ("a/#", b"\0"), ("x" * 65536, b"\0"), ("", None)],
    ids=["plus", "hash", "too-long", "empty-on-311"],
)
def test_a_topic_paho_refuses_is_refused(topic: str, properties: bytes | None) -> None:
    with pytest.raises(BadPublish):
        publish_packet(topic, b"{}", 1, retain=False, properties=properties)


EDGES = [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152]
"""Remaining lengths where MQTT's length field grows a byte (and the first)."""


@pytest.mark.parametrize("remaining", EDGES)
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize(
    ("protocol", "make"),
    [
        (MQTTProtocolVersion.MQTTv5, lambda: None),
        (MQTTProtocolVersion.MQTTv5, correlated),
        (MQTTProtocolVersion.MQTTv311, lambda: None),
    ],
    ids=["v5", "v5-properties", "v311"],
)
def test_the_size_of_a_publish_is_the_length_of_what_paho_sends(
    remaining: int, qos: int, protocol: MQTTProtocolVersion, make: object
) -> None:
    """At the edges of MQTT's remaining length, each QoS, with and without properties:
    the size the drain compares with a broker's Maximum Packet Size is paho's packet's."""
    props = make()  # type: ignore[operator]
    topic = "rnst/v1/f/n/événements"  # multi-byte UTF-8: bytes, not characters
    v5 = protocol == MQTTProtocolVersion.MQTTv5
    head = publish_size(topic, 0, qos=qos, properties=packed(props, v5=v5)) - 2
    payload = b"x" * max(0, remaining - head)
    expected, _ = paho_bytes(protocol, topic, payload, False, props, qos)
    got = publish_size(topic, len(payload), qos=qos, properties=packed(props, v5=v5))
    assert got == len(expected)
    if remaining >= head:
        assert read_varint(expected, 1)[0] == remaining  # the edge was hit, not near it


def test_the_size_of_a_qos_1_publish_is_the_length_of_its_packet() -> None:
    for n in (0, 100, 16_400):
        packet = publish_packet("a/b", b"x" * n, 7, retain=False, properties=b"\0")
        assert publish_size("a/b", n, qos=1, properties=b"\0") == len(packet)


@pytest.mark.parametrize(
    ("topic", "payload", "properties"),
    [
        ("a/+/b", 2, b"\0"),
        ("a/#", 2, b"\0"),
        ("x" * 65536, 2, b"\0"),
        ("", 2, None),
        ("a/b", 268_435_455, b"\0"),
    ],
    ids=["plus", "hash", "too-long", "empty-on-311", "over-256-MB"],
)
def test_the_size_of_a_publish_paho_refuses_is_refused(
    topic: str, payload: int, properties: bytes | None
) -> None:
    with pytest.raises(BadPublish):
        publish_size(topic, payload, qos=0, properties=properties)


def puback(mid: int, extra: bytes = b"") -> bytes:
    body = mid.to_bytes(2, "big") + extra
    return b"\x40" + varint(len(body)) + body


def other(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + varint(len(body)) + body


packets = st.one_of(
    st.builds(puback, st.integers(1, 65535), st.sampled_from([b"", b"\x10", b"\x87\x00"])),
    st.builds(other, st.sampled_from([0x30, 0x32, 0x90, 0xD0, 0xE0]), st.binary(max_size=300)),
)


@given(
    stream=st.lists(packets, max_size=40),
    claimed=st.sets(st.integers(1, 65535)),
    cuts=st.lists(st.integers(1, 50), max_size=60),
)
def test_paho_reads_everything_but_the_claimed_pubacks_whatever_the_reads(
    stream: list[bytes], claimed: set[int], cuts: list[int]
) -> None:
    told: list[tuple[int, int]] = []

    def claim(mid: int, reason: int) -> bool:
        told.append((mid, reason))
        return mid in claimed

    expected = b"".join(
        p for p in stream if not (p[0] == 0x40 and int.from_bytes(p[2:4], "big") in claimed)
    )
    data = b"".join(stream)
    filt, out, at = PubackFilter(claim), [], 0
    for n in [*cuts, len(data)]:
        out.append(filt.feed(data[at : at + n]))
        at += n
    assert b"".join(out) == expected
    assert (
        told
        == [  # with its reason code: none (3.1.1, or success in short) is 0
            (int.from_bytes(p[2:4], "big"), p[4] if len(p) > 4 else 0)
            for p in stream
            if p[0] == 0x40
        ]
    )
    assert not filt.pending()


def test_a_large_packet_passes_on_as_it_comes_not_held_until_complete() -> None:
    command = other(0x30, b"\x00\x03a/b" + b"x" * 1_000_000)
    filt = PubackFilter(lambda mid, reason: True)
    assert filt.feed(command[:10]) == command[:10]
    assert filt.feed(command[10:5000]) == command[10:5000]
    assert filt.feed(command[5000:] + puback(7)) == command[5000:]


def test_bytes_that_are_not_mqtt_reach_paho_unchanged() -> None:
    garbage = b"\x30\xff\xff\xff\xff\x01" + puback(1) * 3
    filt = PubackFilter(lambda mid, reason: True)
    assert filt.feed(garbage) == garbage
    assert filt.feed(puback(2)) == puback(2)  # off for good: paho ends the session


def test_a_puback_split_in_two_reads_is_held_until_complete() -> None:
    filt = PubackFilter(lambda mid, reason: mid == 9)
    assert filt.feed(puback(9)[:3]) == b""
    assert filt.pending()
    assert filt.feed(puback(9)[3:] + puback(10)[:1]) == b""
    assert filt.feed(puback(10)[1:]) == puback(10)


@given(st.integers(0, 268_435_455))
def test_a_variable_byte_integer_reads_back_as_written(n: int) -> None:
    data = b"\x30" + varint(n) + b"rest"
    assert read_varint(data, 1) == (n, len(data) - 4)


def test_a_variable_byte_integer_cut_short_reads_as_incomplete() -> None:
    assert read_varint(b"\x30\xff\xff", 1) == (-1, 1)


def test_a_fifth_byte_of_a_variable_byte_integer_is_refused() -> None:
    with pytest.raises(ValueError):
        read_varint(b"\x30\xff\xff\xff\xff\x01", 1)

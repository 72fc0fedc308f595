"""bench.wire: a connection's first bytes named, TLS record by record and MQTT packet by
packet, from real TLS made here (OpenSSL in memory, both sides, with a key log); and hostile
bytes, which it names as far as it can and never raises on."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.wire import breakdown, mqtt_stream, read_keylog, records
from tests.helpers.fileserver import fleet_ca
from tests.helpers.tls_capture import CONNACK, CONNECT_V5, capture


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet_ca(tmp_path_factory.mktemp("fleet"))


@pytest.mark.parametrize(
    ("ciphers", "version", "overhead"),
    [(None, "1.3", 22), ("ECDHE+CHACHA20", "1.2", 21), ("ECDHE+AESGCM", "1.2", 29)],
)
def test_every_byte_of_a_connection_is_named_and_the_mqtt_packets_found(
    fleet: Path, tmp_path: Path, ciphers: str | None, version: str, overhead: int
) -> None:
    cap = capture(fleet, tmp_path / "keys", tls12_ciphers=ciphers)
    named = breakdown(cap.up, cap.down, read_keylog(cap.keylog.read_text())).json()
    assert named["tls_version"] == version and named["decrypted"] and not named["truncated"]
    assert named["bytes"] == len(cap.up) + len(cap.down)
    whats = [i["what"] for i in named["items"]]
    assert whats[0] == "ClientHello" and "ServerHello" in whats and "Certificate" in whats
    connect = next(i for i in named["items"] if i["what"].startswith("CONNECT"))
    assert connect["what"] == "CONNECT (MQTT 5)" and connect["dir"] == "up"
    parts = connect["parts"]
    assert parts["tls_record_overhead"] == overhead
    assert connect["bytes"] == len(CONNECT_V5) + overhead == sum(parts.values())
    assert parts["property.session_expiry"] == 5 and parts["property.maximum_packet_size"] == 5
    assert parts["will_property.will_delay"] == 5 and parts["will_topic"] == 2 + 7
    assert parts["client_id"] == 2 + 2 and parts["will_payload"] == 2 + 3
    connack = next(i for i in named["items"] if i["what"] == "CONNACK")
    assert connack["dir"] == "down" and connack["bytes"] == len(CONNACK) + overhead


def test_without_the_keys_the_protected_records_are_counted_not_named(
    fleet: Path, tmp_path: Path
) -> None:
    cap = capture(fleet, tmp_path / "keys")
    named = breakdown(cap.up, cap.down, {}).json()
    assert not named["decrypted"] and named["bytes"] == len(cap.up) + len(cap.down)
    assert all("CONNECT" not in i["what"] for i in named["items"])


def test_keys_of_another_connection_name_nothing_and_raise_nothing(
    fleet: Path, tmp_path: Path
) -> None:
    one = capture(fleet, tmp_path / "one")
    other = capture(fleet, tmp_path / "other")
    wrong = read_keylog(other.keylog.read_text())
    # the other connection's secrets under this one's client random
    random = next(iter(read_keylog(one.keylog.read_text())))
    keys = {random: next(iter(wrong.values()))}
    named = breakdown(one.up, one.down, keys).json()
    assert named["truncated"]  # what did not decrypt is said
    assert named["bytes"] == len(one.up) + len(one.down)
    assert any("unreadable" in i["what"] for i in named["items"])


def test_a_connection_cut_at_any_byte_is_named_up_to_the_cut(fleet: Path, tmp_path: Path) -> None:
    cap = capture(fleet, tmp_path / "keys")
    keys = read_keylog(cap.keylog.read_text())
    for cut in range(0, len(cap.up), 7):
        named = breakdown(cap.up[:cut], cap.down, keys).json()
        assert named["bytes"] <= cut + len(cap.down)
        whole, _ = records(cap.up[:cut], True)
        assert named["truncated"] == (sum(r.wire for r in whole) != cut), cut


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(up: bytes, down: bytes) -> None:
    named = breakdown(up, down, {}).json()
    assert 0 <= named["bytes"] <= len(up) + len(down)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_mqtt_streams_end_or_are_named_malformed_never_raise(data: bytes) -> None:
    for start, end, name, _ in mqtt_stream(data, v5=True):
        assert 0 <= start < end <= len(data) and name


@pytest.mark.parametrize(
    "packet",
    [
        b"\x10\xff\xff\xff\xff\x7f",  # a remaining length of five bytes
        b"\x10\x05\x00\x04MQ",  # shorter than it says
        bytes.fromhex("10 0f 0004 4d515454 05 02 001e 03 7f 0000 00"),  # an unknown property
        bytes.fromhex("10 0d 0004 4d515454 05 02 001e 09 11 00"),  # properties overrun
        bytes.fromhex("30 05 00 09 74 2f"),  # a topic longer than the packet
    ],
)
def test_malformed_mqtt_packets_are_named_so_or_left_unparsed(packet: bytes) -> None:
    got = list(mqtt_stream(packet, v5=True))
    assert all(name.startswith("malformed") for _, _, name, _ in got), got


@pytest.mark.parametrize(
    "line",
    [
        "CLIENT_RANDOM zz 00",
        "CLIENT_RANDOM " + "00" * 31 + " " + "11" * 48,  # a random of 31 bytes
        "CLIENT_RANDOM " + "00" * 32 + " " + "11" * 65,  # a secret too long
        "# a comment " + "00" * 32,
        "ONLY_TWO " + "00" * 32,
        "",
    ],
)
def test_key_log_lines_that_are_not_one_are_skipped(line: str) -> None:
    assert read_keylog(line + "\n") == {}


def test_a_key_log_line_is_read() -> None:
    text = "SERVER_TRAFFIC_SECRET_0 " + "ab" * 32 + " " + "cd" * 48 + "\n"
    assert read_keylog(text) == {
        bytes.fromhex("ab" * 32): {"SERVER_TRAFFIC_SECRET_0": bytes.fromhex("cd" * 48)}
    }

"""The code and docs/topics.md describe the same contract."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edged.outbox import Publication
from edged.payloads import DoorEvent
from edged.schema import schemas
from edged.topics import DOOR, REPLY, TOPICS, Topics, TopicSpec, name_of

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "topics.md").read_text()


def section(topic: str) -> str:
    match = re.search(rf"^### `{re.escape(topic)}`\n(.*?)(?=^##)", DOC, re.M | re.S)
    assert match, f"docs/topics.md has no section for `{topic}`"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_every_topic_the_code_can_use_is_documented(name: str) -> None:
    section(name)


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_every_payload_field_is_in_its_topic_table(name: str) -> None:
    text = section(name)
    for field in TOPICS[name].body.model_fields:
        assert f"`{field}`" in text, f"`{field}` of {name} is not documented"


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_documented_qos_and_retain_match_the_code(name: str) -> None:
    spec = TOPICS[name]
    if spec.direction == "in":
        return
    head = section(name).strip().splitlines()[0]
    if "from `[services" not in head:
        assert f"QoS {spec.qos}" in head
    assert ("not retained" not in head) == spec.retain


def test_a_topic_outside_the_table_cannot_be_published() -> None:
    rogue = TopicSpec("events/secret", DoorEvent, DOOR.priority, qos=1, retain=False)
    with pytest.raises(ValueError, match=r"not in edged\.topics\.TOPICS"):
        Publication.make(Topics("p", "f", "n"), rogue, DoorEvent(door="x", open=True))


def test_schema_command_prints_a_schema_per_topic_with_the_envelope() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edged", "schema"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    printed = json.loads(out.stdout)
    assert set(printed) == set(TOPICS)
    assert {"v", "seq", "ts", "clock"} <= set(printed["position"]["properties"])
    assert "seq" not in printed["cmd/{name}"]["properties"]
    assert printed == json.loads(json.dumps(schemas()))


def test_schema_of_an_unknown_topic_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edged", "schema", "nope"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 2 and "topics:" in out.stderr


def test_a_reply_topic_has_no_dot_whatever_the_command_name() -> None:
    topics = Topics("rnst/v1", "f", "n")
    assert topics.of(REPLY, "config.get") == "rnst/v1/f/n/reply/config/get"
    assert topics.of(REPLY, "_invalid") == "rnst/v1/f/n/reply/_invalid"


def test_the_command_topic_signatures_cover_is_dotted() -> None:
    assert Topics("rnst/v1", "f", "n").command_topic("config.get") == "rnst/v1/f/n/cmd/config.get"


@pytest.mark.parametrize(
    ("topic", "spelled"),
    [
        ("rnst/v1/f/n/cmd/config.get", "config.get"),
        ("rnst/v1/f/n/cmd/config/get", "config/get"),
        ("rnst/v1/f/n/reply/ping", None),
        ("rnst/v1/f/other/cmd/ping", None),
    ],
)
def test_command_topics_are_recognised_in_either_spelling(topic: str, spelled: str | None) -> None:
    assert Topics("rnst/v1", "f", "n").command_name(topic) == spelled


def test_a_dotted_prefix_rewritten_by_the_broker_is_still_ours() -> None:
    topics = Topics("fleet.example", "f", "n")
    assert topics.command_name("fleet/example/f/n/cmd/ping") == "ping"
    assert topics.command_name("fleet.example/f/n/cmd/ping") == "ping"


@pytest.mark.parametrize("tail", ["config/get", "config.get"])
def test_both_spellings_name_the_same_command(tail: str) -> None:
    assert name_of(tail) == "config.get"


@pytest.mark.parametrize("tail", ["PING", "", "ping/", "/ping", "a/b/c/d/e", "ping..x"])
def test_a_tail_that_spells_no_command_name_is_none(tail: str) -> None:
    assert name_of(tail) is None

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
from edged.topics import DOOR, TOPICS, Topics, TopicSpec

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

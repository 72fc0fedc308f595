"""The code and docs/topics.md describe the same contract."""

import ast
import json
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from edged.commands.router import CommandRouter, IncomingCommand
from edged.config import load_config
from edged.config.security import COMMANDS
from edged.node import Node
from edged.outbox import Publication
from edged.payloads import DoorEvent
from edged.schema import schemas
from edged.topics import DOOR, REPLY, TOPICS, Topics, TopicSpec, name_of
from tests.helpers.broker import free_port
from tests.helpers.nodes import write_config

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


def error_codes_raised() -> dict[str, str]:
    """Every `CommandError("code", ...)` in the node's code, with where it is raised."""
    codes: dict[str, str] = {}
    for path in sorted((ROOT / "edged").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "CommandError"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                codes.setdefault(node.args[0].value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return codes


def test_every_error_code_a_command_can_answer_is_documented() -> None:
    """Dispatch branches on `error.code`: a code a node can answer (in a reply, or on
    `update` as `failed`) that docs/topics.md does not name is one dispatch cannot handle."""
    codes = error_codes_raised()
    assert {"bad_args", "no_lock", "version_gap"} <= set(codes)  # the scan finds them
    missing = {code: at for code, at in codes.items() if f"`{code}`" not in DOC}
    assert missing == {}, f"error codes not in docs/topics.md: {missing}"


@pytest.fixture
async def every_command(tmp_path: Path) -> CommandRouter:
    """The router of a node with every service on, as its services declared their commands."""
    secret = tmp_path / "fleet.secret"
    secret.write_bytes(b"0" * 32)
    secret.chmod(0o600)
    extra = f"""port = 0
[services.access]
enabled = true
secret_file = "{secret}"
"""
    config = write_config(
        tmp_path, free_port(), kiosk=True, extra=extra, occupancy="enabled = true"
    )
    node = Node(load_config(config))
    await node.outbox.open()
    try:
        node._start_services()
    finally:
        await node.outbox.close()
    assert {"access", "occupancy", "kiosk"} <= set(node.services)
    return node.router


def scopes_written() -> dict[str, set[str]]:
    """`scope` (`command`, ...) as the Authorisation paragraph lists them."""
    paragraph = DOC[DOC.index("**Authorisation.**") :].split("\n\n")[0]
    return {
        scope: set(re.findall(r"`([a-z][a-z.]*)`", names))
        for scope, names in re.findall(r"`(\w+)` \(([^)]*)\)", paragraph)
    }


async def test_every_command_a_node_answers_is_in_the_commands_table(
    every_command: CommandRouter,
) -> None:
    table = DOC[DOC.index("Commands today:") :].split("\n\n")[1]
    documented = set(re.findall(r"^\| `([a-z][a-z.]*)` \|", table, re.M))
    assert documented == set(every_command.names)


async def test_the_scopes_the_doc_gives_are_the_ones_commands_declare(
    every_command: CommandRouter,
) -> None:
    written = scopes_written()
    for scope, names in written.items():
        for name in names:
            assert every_command.scope_of(name) == scope, f"{name}: {scope} in docs/topics.md"
    for name in every_command.names:
        scope = every_command.scope_of(name)
        if scope != "operate":
            assert name in written.get(scope or "", set()), f"{name} ({scope}) is not listed"


async def test_the_readme_names_every_command(every_command: CommandRouter) -> None:
    readme = (ROOT / "README.md").read_text()
    commands = readme[readme.index("- **Commands**") :].split("\n- **")[0]
    assert set(re.findall(r"`([a-z][a-z]*(?:\.[a-z]+)*)`", commands)) >= set(every_command.names)


async def test_the_commands_a_config_may_name_are_the_ones_a_node_answers(
    every_command: CommandRouter,
) -> None:
    assert set(every_command.names) == COMMANDS


@pytest.mark.parametrize(
    ("tail", "spec"),
    [
        ("reply/config/get", "reply/{name}"),
        ("reply/x1", "reply/{name}"),
        ("alarm/panic", "alarm/{name}"),
        ("vehicle", "vehicle"),
        ("vehicle/faults", "vehicle/faults"),
        ("health/beat", "health/beat"),
    ],
)
def test_a_topic_of_the_node_names_its_table_entry_whatever_its_name(tail: str, spec: str) -> None:
    topics = Topics("rnst/v1", "f", "n1")
    assert topics.spec_name(f"{topics.base}/{tail}") == spec


@pytest.mark.parametrize("topic", ["ops/replies/c1", "rnst/v1/f/n2/state", "rnst/v1/f/n1/nope"])
def test_a_topic_not_of_the_node_names_no_table_entry(topic: str) -> None:
    assert Topics("rnst/v1", "f", "n1").spec_name(topic) is None


async def test_the_uplink_keeps_a_refused_reply_only_to_a_command_the_node_answers(
    tmp_path: Path,
) -> None:
    """The uplink learns from the node's router which replies are worth keeping when a
    broker refuses them (edged.uplink.sender): not those to names a commander made up."""
    node = Node(load_config(write_config(tmp_path, free_port(), gps=False)))
    await node.outbox.open()
    try:
        node._start_services()
    finally:
        await node.outbox.close()
    kept = node.uplink._kept_when_refused
    assert kept(node.topics.of(REPLY, "ping")) and kept(node.topics.of(REPLY, "config.get"))
    assert not kept(node.topics.of(REPLY, "x1"))
    assert kept(node.topics.of(DOOR)) and not kept("ops/replies/1")


def owners_written() -> list[set[str]]:
    """The owners (lanes) the *One at a time per owner* paragraph lists, each as its
    command names or `prefix.*` patterns."""
    paragraph = DOC[DOC.index("**One at a time per owner.**") :].split("\n\n")[0]
    listed = paragraph[paragraph.index("The owners:") : paragraph.index("every name the node")]
    return [set(re.findall(r"`([a-z][a-z.]*\*?)`", group)) for group in listed.split(";")[:-1]]


async def test_the_owners_the_doc_lists_are_the_lanes_commands_run_in(
    every_command: CommandRouter,
) -> None:
    """A slow command holds only its lane: the doc says which commands share one."""

    def lane(name: str) -> str:
        return every_command.lane_of(IncomingCommand(name, b"{}"))

    groups = [
        {n for n in every_command.names for p in patterns if n == p or fnmatch(n, p)}
        for patterns in owners_written()
    ]
    assert all(groups), f"a listed owner has no command: {owners_written()}"
    assert set().union(*groups) == set(every_command.names)
    lanes = [{lane(n) for n in group} for group in groups]
    assert all(len(one) == 1 for one in lanes), list(zip(groups, lanes, strict=True))
    assert len(set().union(*lanes)) == len(groups), "two owners listed share a lane"
    assert lane("made.up") not in set().union(*lanes)

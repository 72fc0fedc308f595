"""`edgectl` against a real Mosquitto and a real `edged run` process."""

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from aiomqtt import ProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.cli.ctl import main
from edged.config.security import Scope
from edged.uplink.cancellable import CancellableClient
from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT, start_daemon, write_config
from tests.helpers.rogue import acts_on_a_terminal, answering, edgectl, publish_retained

NODE = "test/shuttle-07"
ROGUE = "rnst/v1/test/rogue-01"
TERMINAL_TRICKS = (
    "\x9b2J"  # CSI in its 8-bit form: clears the screen where C1 controls are obeyed
    "\x9d52;c;ZWNobyBvd25lZA==\x9c"  # OSC 52: writes the operator's clipboard
    "\x7f"  # DEL
    "\u202edelif\u202c"  # a bidi override: the line reads backwards
    "\u2028ok\u200b"  # a line separator and an invisible space
)


async def _wait_online(port: int, topic: str, within_s: float) -> None:
    async with (
        asyncio.timeout(within_s),
        CancellableClient("127.0.0.1", port, identifier="test-wait-online") as client,
    ):
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes) and json.loads(payload).get("state") == "online":
                return


@pytest.fixture
def node(broker: Mosquitto, tmp_path: Path) -> Iterator[Mosquitto]:
    """`edged run` connected to the broker, its birth seen: commands now reach it."""
    log = tmp_path / "daemon.log"
    proc = start_daemon(write_config(tmp_path, broker.port, health_s=1), log)
    try:
        try:
            asyncio.run(_wait_online(broker.port, f"rnst/v1/{NODE}/state", 15))
        except TimeoutError:
            pytest.fail(f"the daemon never came online:\n{log.read_text()[-3000:]}")
        yield broker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ping_exits_0_and_prints_the_ok_reply(node: Mosquitto) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edged.cli.ctl", "cmd", NODE, "ping", "--broker", node.url],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["ok"] is True
    assert reply["result"]["pong"] is True


def test_an_unknown_command_exits_1_with_its_error_code(
    node: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["cmd", NODE, "no-such-command", "--broker", node.url])
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["error"]["code"] == "unknown_command"
    assert "unknown_command" in err


def test_json_args_that_are_not_json_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cmd", NODE, "ping", "{not json", "--broker", "mqtt://127.0.0.1:1"])
    assert code == 2
    assert "JSON_ARGS is not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["shuttle-07", "test/shuttle-07/x", "Test/shuttle-07", "a/+"])
def test_a_target_that_is_not_fleet_slash_node_exits_2(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cmd", target, "ping", "--broker", "mqtt://127.0.0.1:1"]) == 2
    assert "FLEET/NODE" in capsys.readouterr().err


@pytest.mark.parametrize("node", ["+", "bus/01", "#", "Bus-01"])
def test_update_node_that_is_not_a_node_id_exits_2(
    node: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `--node` is subscribed by name: a wildcard there would subscribe other topics."""
    argv = ["update", "status", "test", "--node", node, "--broker", "mqtt://127.0.0.1:1"]
    assert main(argv) == 2
    assert "not a node id" in capsys.readouterr().err


def test_a_node_that_does_not_answer_times_out_with_exit_3(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = main(["cmd", "test/nobody-here", "ping", "--broker", broker.url, "--timeout", "1"])
    err = capsys.readouterr().err
    assert code == 3
    assert time.monotonic() - started < 5
    assert "may be offline" in err
    assert "edgectl watch" in err


def test_an_unreachable_broker_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cmd", NODE, "ping", "--broker", "mqtt://127.0.0.1:1", "--timeout", "1"])
    assert code == 4
    assert "cannot reach the MQTT broker at 127.0.0.1:1" in capsys.readouterr().err


def test_watch_lists_the_running_node_as_online(
    node: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["watch", "--broker", node.url, "--duration", "3"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if NODE in line]
    assert len(rows) == 1, out
    assert "online" in rows[0]


def test_watch_node_shows_a_row_for_a_named_node_nothing_was_heard_from(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["watch", "--broker", broker.url, "--duration", "1", "--node", "test/nobody"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "test/nobody" in line]
    assert code == 0
    assert len(rows) == 1 and "nothing heard" in rows[0], out
    assert "no node seen yet" not in out


async def test_cmd_prints_a_hostile_reply_with_no_character_a_terminal_acts_on(
    broker: Mosquitto,
) -> None:
    result = {"log": [f"door {TERMINAL_TRICKS}"], TERMINAL_TRICKS: 1}
    async with answering(broker.port, ROGUE, lambda i: {"id": i, "ok": True, "result": result}):
        code, out, err = await edgectl("cmd", "test/rogue-01", "diag.dump", "--broker", broker.url)
    assert code == 0, err
    assert acts_on_a_terminal(out) == []
    assert json.loads(out)["result"] == result  # escaped, not lost: `jq` reads the same value


async def test_cmd_prints_a_reply_holding_a_lone_surrogate_instead_of_crashing(
    broker: Mosquitto,
) -> None:
    reply = {"ok": False, "error": {"code": "x\ud800", "message": "\udfff"}, "extra": "\ud800"}
    async with answering(broker.port, ROGUE, lambda i: {"id": i, **reply}):
        code, out, err = await edgectl("cmd", "test/rogue-01", "ping", "--broker", broker.url)
    assert code == 1, err
    assert json.loads(out)["extra"] == "\ud800"
    assert "Traceback" not in err
    assert "refused 'ping': x?: ?" in err


async def test_watch_shows_a_hostile_alarm_kind_as_text_and_keeps_running(
    broker: Mosquitto,
) -> None:
    await publish_retained(
        broker.port,
        (f"{ROGUE}/state", {"state": "online"}),
        (f"{ROGUE}/alarm/panic", {"kind": f"panic{TERMINAL_TRICKS}\ud800", "active": True}),
    )
    code, out, err = await edgectl("watch", "--broker", broker.url, "--duration", "2")
    assert code == 0, err
    assert acts_on_a_terminal(out) == []
    rows = [line for line in out.splitlines() if "test/rogue-01" in line]
    assert len(rows) == 1 and "panic" in rows[0], out


async def test_watch_says_when_a_flood_makes_it_drop_messages_and_how_many(
    broker: Mosquitto,
) -> None:
    """A peer's flood of 1 MiB retained `health` under 160 node names reaches `edgectl
    watch` all at once, while it waits for the SUBACK of its subscriptions by name to the
    node it names (which comes after them): past 128 MiB they are dropped. The operator reads that dropping started,
    that it stopped and how many, in three lines, and the count under the table — never a
    line per message. Watch runs until it says dropping stopped (none dropped for
    `DropReport.quiet_s`), then gets Ctrl-C: with `--duration 6` the flood, read slower on
    a loaded machine, left less than those quiet seconds before the end, and no stop line."""
    payload = b"{" + b" " * (1024 * 1024 - 2) + b"}"
    async with CancellableClient("127.0.0.1", broker.port, identifier="rogue-flood") as rogue:
        for i in range(160):
            await rogue.publish(f"rnst/v1/test/rogue-{i:03d}/health", payload, retain=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged.cli.ctl", "watch", "--broker", broker.url,
        "--node", "test/n1", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    said: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any(line.startswith("edgectl: stopped dropping") for line in said):
                line = await proc.stderr.readline()
                if not line:
                    break  # watch ended by itself: what it said is checked below
                said.append(line.decode("utf-8", "replace").rstrip("\n"))
        proc.send_signal(signal.SIGINT)  # the operator's Ctrl-C
        out_b, rest = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = out_b.decode("utf-8", "replace")
    err = "".join(f"{line}\n" for line in said) + rest.decode("utf-8", "replace")
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert len(lines) == 3, err
    started, stopped, total = lines
    assert started.startswith("edgectl: dropping messages")
    assert stopped.startswith("edgectl: stopped dropping")
    dropped = int(total.removeprefix("edgectl: ").split(" ")[0].replace(",", ""))
    assert 0 < dropped < 160 and f"{dropped:,} dropped" in out


def test_a_generated_key_s_block_names_every_scope_a_node_knows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A release key needs `update` (docs/updates.md): the hint lists it with the others."""
    assert main(["keys", "generate", "release", "--dir", str(tmp_path)]) == 0
    (scopes_line,) = [line for line in capsys.readouterr().out.splitlines() if "scopes" in line]
    assert all(f'"{scope}"' in scopes_line for scope in get_args(Scope)), scopes_line


async def test_cmd_prints_a_deeply_nested_reply_in_about_its_own_size(
    broker: Mosquitto,
) -> None:
    """Indented, a value 900 levels deep (JSON decodes up to ~990) printed 1.6 MB for its
    2 kB: the node asked could make `edgectl cmd` build and print gigabytes from one 4 MiB
    reply (or one deflated to 16 MiB)."""
    deep: Any = []
    for _ in range(900):
        deep = [deep]
    result = {"log": [deep] * 20}
    async with answering(broker.port, ROGUE, lambda i: {"id": i, "ok": True, "result": result}):
        code, out, err = await edgectl("cmd", "test/rogue-01", "diag.dump", "--broker", broker.url)
    assert code == 0, err
    assert len(out) < 4 * len(json.dumps(result)), f"{len(out):,} characters printed"
    assert json.loads(out)["result"] == result  # the same value, for `jq`


async def test_watch_shows_the_fleet_when_a_node_sends_a_property_paho_cannot_read(
    broker: Mosquitto,
) -> None:
    """One node's retained `state` with U+FEFF in an MQTT 5 user property (valid UTF-8:
    Mosquitto passes it on; MQTT-1.5.4-3 lets a receiver refuse it, and paho does) made
    every MQTT 5 reader drop its connection, reconnect, and get it again: `edgectl watch`
    showed no node, and the feed service served none, for as long as it was retained."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("node", "rogue\ufeff-01")
    async with CancellableClient(
        "127.0.0.1", broker.port, identifier="rogue-feff", protocol=ProtocolVersion.V5
    ) as rogue:
        online = json.dumps({"state": "online"}).encode()
        await rogue.publish(f"{ROGUE}/state", online, qos=1, retain=True, properties=props)
    await publish_retained(broker.port, ("rnst/v1/test/n1/state", {"state": "online"}))
    code, out, err = await edgectl("watch", "--broker", broker.url, "--duration", "3")
    assert code == 0, err
    rows = [line for line in out.splitlines() if "test/n1" in line]
    assert len(rows) == 1 and "online" in rows[0], out
    assert "lost the broker" not in out
    assert "1 unreadable" in out, "the operator is told a message was left out"

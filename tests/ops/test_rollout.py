"""`edgectl update FLEET` over 20 simulated nodes on a real Mosquitto: canaries, waves, and a
node that rolls back stops the rollout naming it; `edgectl update status` shows the table."""

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from edged.codec import to_wire
from edged.ops.client import connect
from edged.ops.login import Login
from edged.ops.rollout import Hearing, NodeUpdate, Rollout, parse_canary, plan
from edged.ops.urls import parse_broker_url
from edged.uplink.cancellable import CancellableClient
from tests.helpers.broker import Mosquitto
from tests.helpers.fleet_sim import SimFleet
from tests.helpers.rogue import acts_on_a_terminal, answering, edgectl, publish_retained
from tests.release.support import KEY, WEAK, key_file, make_bundle

NAMES = [f"bus-{i:02d}" for i in range(1, 21)]
ROGUE = "rnst/v1/test/rogue-01"
TERMINAL_TRICKS = "\x9b2J\x7f\u202edelif\u202c\u2028\u200b\ud800"


def rollout_args(broker: Mosquitto, bundle: Path, key: Path, *more: str) -> list[str]:
    return ["update", "test", "--bundle", str(bundle), "--url", "https://files.test/b.bundle",
            "--key", str(key), "--kid", "release", "--broker", broker.url, "--wait", "1",
            "--timeout", "30", *more]  # fmt: skip


async def test_a_rollback_in_a_wave_stops_the_rollout_and_names_the_node(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    reason = "hung: it stopped pinging the watchdog and systemd killed it"
    async with SimFleet(
        broker.port, "test", NAMES, KEY.public_key(), fail={"bus-04": ("hung", reason)}
    ) as sim:
        code, out, err = await edgectl(
            *rollout_args(broker, bundle, key_file(tmp_path), "--canary", "2")
        )
    assert code == 1, (out, err)
    assert "STOPPED: bus-04 rolled_back: hung: " + reason in err
    got = {name for name, _ in sim.commands}
    assert got == {"bus-01", "bus-02", "bus-03", "bus-04", "bus-05", "bus-06"}, "canaries 2, then 4"
    first_wave = max(t for n, t in sim.commands if n in ("bus-01", "bus-02"))
    assert all(t > first_wave for n, t in sim.commands if n not in ("bus-01", "bus-02"))
    assert "bus-07: not sent: the rollout stopped" in out
    assert "bus-01: wave 1, confirmed" in out


async def test_a_rollout_without_failures_updates_every_node_in_waves(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    async with SimFleet(broker.port, "test", NAMES, KEY.public_key()) as sim:
        code, out, err = await edgectl(
            *rollout_args(broker, bundle, key_file(tmp_path), "--canary", "10%")
        )
        status_code, table, _ = await edgectl(
            "update", "status", "test", "--broker", broker.url, "--wait", "1"
        )
    assert code == 0, (out, err)
    assert "done: every node confirmed (0.2.0)" in out
    waves = {line.split(",")[0].split()[-1] for line in out.splitlines() if ": wave " in line}
    assert waves == {"1", "2", "3", "4"}  # 2, 4, 8, 6 nodes
    assert sorted(n for n, _ in sim.commands) == NAMES
    assert status_code == 0
    rows = [line for line in table.splitlines() if "bus-" in line]
    assert len(rows) == 20 and all("confirmed" in r and "0.2.0" in r for r in rows)


async def test_nodes_already_on_the_version_and_offline_ones_are_skipped(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    async with (
        SimFleet(broker.port, "test", ["bus-01"], KEY.public_key(), version="0.2.0"),
        SimFleet(broker.port, "test", ["bus-02"], KEY.public_key()) as sim,
    ):
        offline = {"state": "offline"}
        await sim.client.publish(
            "rnst/v1/test/bus-03/state", json.dumps(offline), qos=1, retain=True
        )
        code, out, _ = await edgectl(*rollout_args(broker, bundle, key_file(tmp_path)))
    assert code == 0
    assert "bus-01: already on 0.2.0" in out and "bus-03: offline" in out
    assert [n for n, _ in sim.commands] == ["bus-02"]


async def test_a_key_the_nodes_refuse_stops_the_rollout_at_the_canary(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    async with SimFleet(broker.port, "test", NAMES[:5], KEY.public_key()) as sim:
        code, _, err = await edgectl(*rollout_args(broker, bundle, key_file(tmp_path, WEAK)))
    assert code == 1 and "bus-01 refused the update: bad_signature" in err
    assert [n for n, _ in sim.refusals] == ["bus-01"]


@pytest.mark.parametrize(
    ("text", "n", "want"),
    [("1", 20, 1), ("3", 2, 2), ("10%", 20, 2), ("10%", 3, 1), ("100%", 7, 7)],
)
def test_canaries_are_a_count_or_a_share_and_at_least_one(text: str, n: int, want: int) -> None:
    assert parse_canary(text)(n) == want


@pytest.mark.parametrize("text", ["0", "-1", "0%", "150%", "ten", ""])
def test_a_canary_that_is_not_a_count_or_share_is_a_usage_error(text: str) -> None:
    with pytest.raises(ValueError, match="--canary"):
        parse_canary(text)


def test_waves_double_after_the_canaries_or_keep_a_size() -> None:
    nodes = [str(i) for i in range(20)]
    assert [len(w) for w in plan(nodes, 2, None)] == [2, 4, 8, 6]
    assert [len(w) for w in plan(nodes, 1, 5)] == [1, 5, 5, 5, 4]


def rollout() -> Rollout:
    r = Rollout(
        None, "rnst/v1", "test", version="0.2.0", args={}, key=KEY, kid=None,  # type: ignore[arg-type]
        canary=parse_canary("1"),
    )  # fmt: skip
    r.nodes["bus-01"] = NodeUpdate("bus-01", online=True, update_id="u1", state="accepted")
    return r


@pytest.mark.parametrize(
    "payload",
    [
        b'{"state": "confirmed", "id": "someone-else"}',  # another update's id
        b'{"state": "confirmed"}',  # no id
        b"not json",
        b'["confirmed"]',
        b'{"state": "confirmed", "id": "u1"' + b" " * 70_000 + b"}",  # oversized
    ],
)
def test_a_peer_cannot_make_a_node_look_confirmed(payload: bytes) -> None:
    r = rollout()
    r.ingest("rnst/v1/test/bus-01/update", payload)
    assert r.nodes["bus-01"].state == "accepted"


def test_an_update_that_came_before_the_reply_counts_once_the_id_is_known() -> None:
    r = rollout()
    node = r.nodes["bus-01"]
    node.update_id, node.state = None, "sent"
    r.ingest(
        "rnst/v1/test/bus-01/update", b'{"state": "confirmed", "id": "u2", "running": "0.2.0"}'
    )
    assert node.state == "sent"
    node.update_id = "u2"
    r._apply_update(node)
    assert node.state == "confirmed"


def test_names_from_the_broker_cannot_paint_the_terminal() -> None:
    r = rollout()
    r.ingest(
        "rnst/v1/test/bus-01/update",
        b'{"state": "\\u001b[31mconfirmed", "id": "u1", "reason": "\\u001b[2J"}',
    )
    node = r.nodes["bus-01"]
    assert "\x1b" not in node.state and "\x1b" not in (node.reason or "")


async def test_a_hostile_refusal_stops_the_rollout_and_is_reported_as_text(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    await publish_retained(broker.port, (f"{ROGUE}/state", {"state": "online", "version": "0.1"}))
    error = {"code": f"no{TERMINAL_TRICKS}", "message": f"disk{TERMINAL_TRICKS}"}
    async with answering(broker.port, ROGUE, lambda i: {"id": i, "ok": False, "error": error}):
        code, out, err = await edgectl(*rollout_args(broker, bundle, key_file(tmp_path)))
    assert code == 1, (out, err)
    assert "STOPPED: rogue-01 refused the update: no" in err
    assert "Traceback" not in err
    assert acts_on_a_terminal(out + err) == []


async def test_update_status_shows_a_hostile_update_as_text(broker: Mosquitto) -> None:
    update = {"state": f"failed{TERMINAL_TRICKS}", "code": "x", "reason": TERMINAL_TRICKS}
    await publish_retained(
        broker.port,
        (f"{ROGUE}/state", {"state": "online", "version": f"9{TERMINAL_TRICKS}"}),
        (f"{ROGUE}/update", update),
    )
    code, out, err = await edgectl(
        "update", "status", "test", "--broker", broker.url, "--wait", "1"
    )
    assert code == 0, err
    assert acts_on_a_terminal(out) == []
    assert len([line for line in out.splitlines() if "rogue-01" in line]) == 1, out


async def test_update_status_lists_no_node_under_the_fleets_replies_level(
    broker: Mosquitto,
) -> None:
    """Every node may write `{prefix}/{fleet}/_replies/+` (MQTT 5 response topics), so
    `_replies/state` and `_replies/update` are a node's writing, not a node named `_replies`."""
    await publish_retained(
        broker.port,
        (f"{ROGUE}/state", {"state": "online", "version": "0.1"}),
        ("rnst/v1/test/_replies/state", {"state": "online", "version": "0.2.0"}),
        ("rnst/v1/test/_replies/update", {"state": "confirmed", "version": "0.2.0"}),
    )
    code, out, err = await edgectl(
        "update", "status", "test", "--broker", broker.url, "--wait", "1"
    )
    assert code == 0, err
    assert "rogue-01" in out
    assert "_replies" not in out


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("named", [None, ["rogue-01"]], ids=["heard", "named"])
async def test_hearing_a_fleet_takes_each_retained_message_once(
    broker: Mosquitto, protocol: Any, named: list[str] | None
) -> None:
    """The wildcard brings the node's retained `state` and `update`, and its subscriptions
    by name bring them again (Mosquitto over MQTT 5 also copies a message once per
    subscription): each is ingested once all the same."""
    await publish_retained(
        broker.port,
        (f"{ROGUE}/state", {"state": "online", "version": "0.1"}),
        (f"{ROGUE}/update", {"state": "idle", "running": "0.1"}),
    )
    taken: list[str] = []
    login = Login(parse_broker_url(broker.url), protocol=protocol)
    async with (
        connect(login, "edgectl-test-hearing") as client,
        Hearing(client, "rnst/v1", "test", lambda t, p, c: taken.append(t)) as hearing,
    ):
        await hearing.subscribe(("state", "update"))
        await hearing.find(named, 0.5)
        await asyncio.sleep(0.5)  # a copy that would come, comes within milliseconds
    assert sorted(taken) == [f"{ROGUE}/state", f"{ROGUE}/update"]


ENCODINGS = ["cbor", "deflate"]


def on_wire(body: dict[str, Any], encoding: Any) -> bytes:
    """`body` as a node of a fleet with `[broker] encoding` puts it on the wire."""
    return to_wire(json.dumps(body).encode(), encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_rollout_hears_a_node_of_a_fleet_that_does_not_speak_json(encoding: Any) -> None:
    r = rollout()
    r.ingest("rnst/v1/test/bus-02/state", on_wire({"state": "online", "version": "0.1"}, encoding))
    r.ingest("rnst/v1/test/bus-01/update", on_wire({"state": "confirmed", "id": "u1"}, encoding))
    assert r.nodes["bus-02"].online and r.nodes["bus-02"].running == "0.1"
    assert r.nodes["bus-01"].state == "confirmed"


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_update_status_lists_a_node_of_a_fleet_that_does_not_speak_json(
    broker: Mosquitto, encoding: Any
) -> None:
    async with CancellableClient("127.0.0.1", broker.port, identifier="bus-03") as c:
        for topic, body in [
            ("state", {"state": "online", "version": "0.1.0"}),
            ("update", {"state": "failed", "code": "no_space", "version": "0.2.0"}),
        ]:
            await c.publish(f"rnst/v1/test/bus-03/{topic}", on_wire(body, encoding), 1, True)
    code, out, err = await edgectl(
        "update", "status", "test", "--broker", broker.url, "--wait", "1"
    )
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if "bus-03" in line]
    assert "yes" in row and "0.1.0" in row and "failed" in row, out


def exit_codes(help_text: str) -> dict[int, str]:
    """The `exit codes:` of a --help: {code: what}."""
    part = help_text.split("exit codes:\n", 1)[1].split("\n\n", 1)[0]
    part = re.sub(r"\n {5,}", " ", part)  # an entry's continued lines
    return {int(m[0]): m[1] for m in re.findall(r"^  (\d)  (.*)$", part, re.M)}


async def test_a_node_silent_past_the_timeout_exits_as_update_help_says(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    await publish_retained(broker.port, (f"{ROGUE}/state", {"state": "online", "version": "0.1"}))
    args = rollout_args(broker, bundle, key_file(tmp_path), "--timeout", "1")
    code, out, err = await edgectl(*args)  # nothing answers: the node stays silent
    assert "rogue-01 did not confirm within 1 s" in err, (out, err)
    _, help_text, _ = await edgectl("update", "--help")
    assert code in exit_codes(help_text), help_text
    assert "--timeout" in exit_codes(help_text)[code]


async def test_update_status_says_how_it_connected_with_v(broker: Mosquitto) -> None:
    code, _, err = await edgectl(
        "update", "status", "test", "--broker", broker.url, "--wait", "0.2", "-v"
    )
    assert code == 0 and "connected to" in err and "with MQTT 5" in err, err


async def test_a_rollout_to_a_url_the_nodes_refuse_is_a_usage_error_before_any_send(
    broker: Mosquitto, tmp_path: Path
) -> None:
    bundle = make_bundle(tmp_path / "b.bundle")
    await publish_retained(broker.port, (f"{ROGUE}/state", {"state": "online", "version": "0.1"}))
    args = rollout_args(broker, bundle, key_file(tmp_path), "--url", "http://files.test/b")
    code, out, err = await edgectl(*args)
    assert code == 2 and "https://" in err, (out, err)
    assert "canary" not in err  # nothing was sent


async def test_a_fleet_past_the_nodes_a_rollout_hears_is_refused_not_half_updated(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_NODES (10,000 ids under the fleet: a big fleet, or fake ids on a broker
    without ACL) the rollout stopped hearing anything, its canary's reply too, and the
    nodes after the bound were left out without a word: a rollout either hears every
    node or sends nothing and says to name them (--node)."""
    from edged.ops import rollout

    monkeypatch.setattr(rollout, "MAX_NODES", 3)
    args = {"url": "https://files.test/b.bundle", "size": 1, "sha256": "0" * 64}
    async with SimFleet(broker.port, "test", NAMES[:5], KEY.public_key()) as sim:
        outcome = await Rollout(
            Login(parse_broker_url(broker.url)), "rnst/v1", "test", version="0.2.0",
            args=args, key=KEY, kid="release", canary=parse_canary("1"), timeout_s=3,
            discover_s=1,
        ).run()  # fmt: skip
    assert not outcome.ok
    assert "more than 3 nodes" in outcome.why and "--node" in outcome.why
    assert sim.commands == []

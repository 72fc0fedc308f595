"""Data survives both ways: a release that migrates the outbox forward (a new column: format
2, still readable by format 1) writes into it, fails its trial, and the release before reads
everything back — the messages the new one could not send, the seq counters, the access
lists, the mode; then the new release again reads what the old one wrote."""

import asyncio
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.access.lists import sign_lists
from edged.release.schemas import read_stamps
from edged.security.signing import public_key_text
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector, unique_by_seq
from tests.helpers.releases import NodeRoot
from tests.helpers.service import Service
from tests.integration.updates.conftest import (
    CONFIG_KEY,
    births,
    reply,
    send_command,
    stage,
    start_node,
    wait_state,
    write_node_config,
)
from tests.integration.updates.test_rollback import NO_BROKER

LISTS_KEY = Ed25519PrivateKey.generate()
CARD = "ab" * 16
FORMAT_2 = {
    "edged/release/schemas.py": lambda s: s.replace(
        'Schema("outbox", version=1, compat=1, reads_from=0)',
        'Schema("outbox", version=2, compat=1, reads_from=0)',
    ).replace(
        "MIGRATIONS: dict[tuple[str, int], Migration] = {}",
        'MIGRATIONS: dict[tuple[str, int], Migration] = {("outbox", 1): lambda db: '
        'db.execute("ALTER TABLE msg ADD COLUMN note TEXT")}',
    )
}


def access_config(root: NodeRoot) -> str:
    secret = root.path / "etc/edged/secrets/fleet.key"
    secret.parent.mkdir(mode=0o700)
    secret.write_bytes(os.urandom(32).hex().encode())
    secret.chmod(0o600)
    return f"""
[services.access]
enabled = true
secret_file = "{secret}"
lists_public_key = "{public_key_text(LISTS_KEY.public_key())}"
"""


async def command(c: Collector, port: int, name: str, args: dict[str, object]) -> dict[str, object]:
    cmd = await send_command(port, name, args, key=CONFIG_KEY)
    await c.wait_for(lambda: reply(c, name, cmd) is not None, 15, f"the reply to {name}")
    answer = reply(c, name, cmd)
    assert answer is not None and answer["ok"], answer
    return answer["result"]  # type: ignore[no-any-return]


def positions_without_gap(c: Collector) -> list[int]:
    seqs = sorted(m.payload["seq"] for m in unique_by_seq(c.on("position")))
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a position was lost"
    return seqs


async def test_the_data_round_trips_between_a_release_and_the_one_before(
    broker: Mosquitto, fleet_pki: Path, node_root: NodeRoot, tmp_path: Path
) -> None:
    scopes = 'scopes = ["read", "operate", "config", "access"]'
    write_node_config(
        node_root, broker.port, fleet_pki, update={"trial_s": 6}, extra=access_config(node_root)
    )
    text = node_root.config.read_text()
    node_root.config.write_text(text.replace('scopes = ["read", "operate", "config"]', scopes))
    lists = {"kind": "full", "fleet": "test", "version": 7, "cards": {CARD: {"profile": "resident"}},
             "deny": {}, "bookings": {}, "fares": {"resident": 150}}  # fmt: skip
    log = tmp_path / "service.log"

    service = Service(node_root.path, log)
    c = await start_node(service, broker)
    await command(
        c, broker.port, "access.update", {"lists": lists, "sig": sign_lists(LISTS_KEY, lists)}
    )
    await command(c, broker.port, "mode.set", {"mode": "school"})
    await asyncio.sleep(1.0)
    await service.stop()
    assert read_stamps(str(node_root.outbox), ["outbox"]) == {"outbox": (1, 1)}

    # 0.2.0 migrates the outbox to format 2, writes positions it cannot send, fails
    stage(node_root, "0.2.0", {**FORMAT_2, **NO_BROKER})
    service = Service(node_root.path, log)
    service.start()
    rolled = await wait_state(c, "rolled_back", 60)
    assert rolled["code"] == "not_online"
    assert (await command(c, broker.port, "access.status", {}))["version"] == 7
    assert (await command(c, broker.port, "mode.set", {"mode": "on-demand"}))[
        "previous"
    ] == "school"
    await asyncio.sleep(1.5)
    before = positions_without_gap(c)
    trial = service.runs[1].wall  # 0.2.0's run: its positions went out after the rollback
    written = [
        m for m in unique_by_seq(c.on("position")) if trial[0] <= m.payload["ts"] / 1000 <= trial[1]
    ]
    assert len(written) >= 10 and all(m.at > trial[1] for m in written)
    await service.stop()
    assert read_stamps(str(node_root.outbox), ["outbox"]) == {"outbox": (2, 1)}, "0.1.0 kept it"

    # forward again: 0.2.1 (format 2, reaching the broker) reads what 0.1.0 wrote meanwhile
    stage(node_root, "0.2.1", FORMAT_2)
    service = Service(node_root.path, log)
    service.start()
    await wait_state(c, "confirmed", 60)
    await c.wait_for(lambda: births(c)[-1]["version"] == "0.2.1", 10, "0.2.1's birth")
    assert (await command(c, broker.port, "access.status", {}))["version"] == 7
    await asyncio.sleep(1.5)
    after = positions_without_gap(c)
    assert after[-1] > before[-1] + 5
    await service.stop()
    assert json.loads((node_root.releases / "outcome.json").read_text())["result"] == "confirmed"
    await c.__aexit__()

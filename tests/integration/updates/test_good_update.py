"""A good update end to end: build, sign, serve over HTTPS, update.apply, download, verify,
install, switch, trial, confirm — on a node run by the unit's launcher and restarted as
systemd would, with a burst of positions written across the switch all arriving."""

import asyncio
import os
import signal
import time
from pathlib import Path

from edged.release.build import BuildResult
from tests.helpers.broker import Mosquitto
from tests.helpers.fileserver import FileServer
from tests.helpers.mqtt import unique_by_seq
from tests.helpers.releases import NodeRoot
from tests.helpers.service import Service
from tests.integration.updates.conftest import (
    NEW,
    apply_args,
    births,
    reply,
    send_command,
    start_node,
    states,
    wait_any_state,
    wait_state,
    write_node_config,
)

# the node installs, then switches: any of these says the old release is about to exit
INSTALLING = ("installing", "staged", "switching")


async def test_a_good_update_is_installed_switched_to_and_confirmed_losing_nothing(
    broker: Mosquitto,
    fleet_pki: Path,
    bundle: BuildResult,
    files: FileServer,
    node_root: NodeRoot,
    service: Service,
) -> None:
    write_node_config(node_root, broker.port, fleet_pki)
    url = files.serve("edged.bundle", bundle.bundle)
    c = await start_node(service, broker)
    assert births(c)[-1]["version"] == "0.1.0"
    cmd = await send_command(broker.port, "update.apply", apply_args(bundle, url))
    await c.wait_for(lambda: reply(c, "update.apply", cmd) is not None, 10, "the reply")
    answer = reply(c, "update.apply", cmd)
    assert answer is not None and answer["ok"], answer
    update_id = answer["result"]["id"]
    await wait_any_state(c, INSTALLING, 60)
    # the broker stops answering as the node switches: what the old release writes then is
    # still in its outbox when it exits, and must leave from the new one. Not earlier: the
    # switch waits for the broker (docs/updates.md), and an install slower than the node's
    # time to find a silent broker gone (a loaded machine: 17 s) left it waiting for good
    # an install takes ~10 s, more on a busy machine; `trial`: `switching` replaced unsent
    await wait_any_state(c, ("switching", "trial"), 120)
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)
    paused_at = time.time()
    try:
        await service.wait_runs(2, 60)
        await asyncio.sleep(1.0)  # the new release writes while the broker is silent
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    resumed_at = time.time()
    confirmed = await wait_state(c, "confirmed", 60)
    assert confirmed["id"] == update_id and confirmed["version"] == NEW
    assert confirmed["running"] == NEW and confirmed["previous"] == "0.1.0"
    await c.wait_for(lambda: births(c)[-1]["version"] == NEW, 10, "the birth of 0.1.1")
    # `update` keeps only its newest unsent value: staged and switching, written while the
    # broker was silent, were replaced by trial before they could leave
    seen = states(c)
    for step in ("downloading", "trial", "confirmed"):
        assert step in seen, f"{step} missing from {seen}"
    installing = next(s for s in seen if s in INSTALLING)
    assert seen.index("confirmed") > seen.index("trial") > seen.index(installing)
    tree = node_root.status()
    assert tree["current"] == NEW and tree["previous"] == "0.1.0"
    assert tree["trial"] is None and tree["outcome"]["result"] == "confirmed"
    # the install compiled the bytecode the unit's -OO reads (systemd/README.md)
    (node_py,) = (node_root.releases / NEW / "venv").glob(
        "lib/python3*/site-packages/edged/node.py"
    )
    assert (node_py.parent / "__pycache__" / "node.cpython-311.opt-2.pyc").is_file()
    # every position written before, during and after the switch arrived: no gap in seq
    await asyncio.sleep(1.0)
    positions = unique_by_seq(c.on("position"))
    seqs = sorted(m.payload["seq"] for m in positions)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a position was lost in the switch"
    before = max(m.payload["seq"] for m in positions if m.at < paused_at)
    assert seqs[-1] - before > 20, "positions written while the broker was silent"
    assert any(m.at > resumed_at for m in positions)
    await c.__aexit__()

"""`kill -9` at every step of an update: mid-download, mid-install, between the switch and
the restart, during the trial. The node always ends on a release that worked, with its
data (every position, in order, by seq)."""

import asyncio
import itertools
from pathlib import Path

from edged.release.build import BuildResult
from tests.helpers.broker import Mosquitto
from tests.helpers.fileserver import FileServer
from tests.helpers.mqtt import Collector, unique_by_seq
from tests.helpers.releases import NodeRoot
from tests.helpers.service import Service
from tests.integration.updates.conftest import (
    NEW,
    apply_args,
    births,
    send_command,
    stage,
    start_node,
    updates,
    wait_state,
    write_node_config,
)


def no_gap(c: Collector) -> int:
    """Every position arrived, by seq. The one gap allowed is where a process was killed
    inside a commit: the state store's seq mark is written before the outbox's rows (so a
    seq is never used twice), and a kill between the two loses that commit's messages. Such
    a gap sits at an epoch boundary and holds at most a commit's worth of 1 Hz positions."""
    positions = sorted(unique_by_seq(c.on("position")), key=lambda m: m.payload["seq"])
    for before, after in itertools.pairwise(positions):
        missing = after.payload["seq"] - before.payload["seq"] - 1
        if missing == 0:
            continue
        assert before.payload["epoch"] != after.payload["epoch"] and missing <= 2, (
            f"a position was lost: seq {before.payload['seq'] + 1}..{after.payload['seq'] - 1}"
            f" within epoch {before.payload['epoch']}"
            if before.payload["epoch"] == after.payload["epoch"]
            else f"{missing} positions lost at a restart"
        )
    return len(positions)


async def test_an_update_killed_at_every_step_still_ends_confirmed_with_its_data(
    broker: Mosquitto,
    fleet_pki: Path,
    bundle: BuildResult,
    files: FileServer,
    node_root: NodeRoot,
    tmp_path: Path,
) -> None:
    write_node_config(node_root, broker.port, fleet_pki, update={"stable_s": 6})
    url = files.serve("b.bundle", bundle.bundle, rate=2_000_000)
    service = Service(
        node_root.path, tmp_path / "service.log", env={"EDGED_TEST_CRASH_AT": "after_switch"}
    )
    try:
        c = await start_node(service, broker)
        await send_command(broker.port, "update.apply", apply_args(bundle, url))

        # 1. mid-download: the next start goes on from the bytes already on disk
        await c.wait_for(
            lambda: any(u.get("percent", 0) >= 20 for u in updates(c)), 60, "a fifth downloaded"
        )
        service.kill9()
        # installing: said on `update`, which is latest-only (a quick state may be replaced
        # before it leaves), or seen on disk as the new release's directory being filled
        await c.wait_for(
            lambda: any(u["state"] == "installing" for u in updates(c))
            or node_root.tree.path(NEW).exists(),
            90,
            "the install",
        )
        resumed = [r for r in files.requests if r.status == 206]
        assert resumed and resumed[0].start >= bundle.size // 5, files.requests
        assert len(files.requests) == 2, "one download, resumed once"

        # 2. mid-install: pip is writing the new venv; the next start installs it again
        await asyncio.sleep(1.5)
        assert not node_root.tree.complete(NEW)
        service.kill9()
        await service.wait_runs(3, 20)

        # 3. between the switch and the restart (EDGED_TEST_CRASH_AT=after_switch): the
        #    trial record and `current` are written, the old process dies before its exit
        await service.wait_runs(4, 120)
        assert node_root.tree.link("current") == NEW

        # 4. during the trial, a power cut: no ExecStopPost; the launcher's second attempt
        await c.wait_for(lambda: (t := node_root.tree.trial()) is not None and "broker" in t.reached, 60,
                    "the trial release connected")  # fmt: skip
        service.power_cut()
        confirmed = await wait_state(c, "confirmed", 90)
        assert confirmed["version"] == NEW and confirmed["previous"] == "0.1.0"
        tree = node_root.status()
        assert tree["current"] == NEW and tree["outcome"]["attempts"] == 2
        await c.wait_for(lambda: births(c)[-1]["version"] == NEW, 10, "0.1.1's birth")
        await asyncio.sleep(1.0)
        print(f"{no_gap(c)} positions, none lost; {len(service.runs)} starts")
        await c.__aexit__()
    finally:
        await service.stop()


async def test_a_release_killed_during_its_trial_is_rolled_back_with_the_data(
    broker: Mosquitto, fleet_pki: Path, node_root: NodeRoot, tmp_path: Path
) -> None:
    write_node_config(node_root, broker.port, fleet_pki, update={"stable_s": 20, "trial_s": 60})
    stage(node_root, "0.2.0")
    service = Service(node_root.path, tmp_path / "service.log")
    try:
        c = await start_node(service, broker)
        await c.wait_for(
            lambda: any(b["version"] == "0.2.0" for b in births(c)), 30, "0.2.0 online"
        )
        await asyncio.sleep(1.0)
        service.kill9()  # systemd sees it die: ExecStopPost records it, the launcher goes back
        rolled = await wait_state(c, "rolled_back", 30)
        assert rolled["code"] == "killed" and "KILL" in rolled["reason"]
        await c.wait_for(lambda: births(c)[-1]["version"] == "0.1.0", 20, "0.1.0 back")
        await asyncio.sleep(1.0)
        print(f"{no_gap(c)} positions across 0.1.0, 0.2.0 and 0.1.0 again, none lost")
        await c.__aexit__()
    finally:
        await service.stop()

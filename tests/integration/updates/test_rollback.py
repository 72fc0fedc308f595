"""Bad releases are rolled back by themselves: the node, restarted as systemd would, ends on
the release that worked and says why on `update`.

Each bad release is this checkout with one patch (tests/helpers/releases.py), installed and
staged as update.apply leaves a release; the node switches to it as soon as it starts."""

import asyncio
import time
from pathlib import Path

import pytest

from tests.helpers.broker import Mosquitto
from tests.helpers.releases import NodeRoot
from tests.helpers.service import Service
from tests.integration.updates.conftest import (
    births,
    stage,
    start_node,
    wait_state,
    write_node_config,
)

CRASH_AT_IMPORT = {"edged/node.py": lambda s: "raise ImportError('this build lost a module')\n" + s}
NO_BROKER = {
    "edged/node.py": lambda s: s.replace(
        "            config.broker,\n",
        '            config.broker.model_copy(update={"port": 1}),\n',
        1,
    )
}
HANGS = {
    "edged/node.py": lambda s: s.replace(
        "                self.notifier.ready()\n",
        "                self.notifier.ready()\n"
        "                asyncio.get_running_loop().call_later(0.3, time.sleep, 3600)\n",
        1,
    )
}
REJECTS_CONFIG = {
    "edged/cli/main.py": lambda s: s.replace(
        "            config = load_config(config_file)\n",
        "            config = load_config(config_file)\n"
        '            raise ConfigError(str(config_file), ["drivers[0]: gps.sim is gone from this release"])\n',
        1,
    )
}
CASES = {
    "crash at import": (CRASH_AT_IMPORT, "crashed", "crashed at start"),
    "never reaches the broker": (NO_BROKER, "not_online", "not connected to the broker"),
    "hangs": (HANGS, "hung", "watchdog"),
    "rejects the running config": (REJECTS_CONFIG, "config_rejected", "gps.sim is gone"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_release_is_rolled_back_by_itself(
    case: str, broker: Mosquitto, fleet_pki: Path, node_root: NodeRoot, tmp_path: Path
) -> None:
    patches, code, words = CASES[case]
    write_node_config(node_root, broker.port, fleet_pki, update={"trial_s": 8})
    update_id = stage(node_root, "0.2.0", patches)
    service = Service(node_root.path, tmp_path / "service.log", watchdog_s=3.0)
    try:
        c = await start_node(service, broker)
        rolled = await wait_state(c, "rolled_back", 60)
        assert rolled["code"] == code and words in rolled["reason"], rolled
        assert rolled["id"] == update_id and rolled["version"] == "0.2.0"
        assert rolled["running"] == "0.1.0"
        await c.wait_for(lambda: len(births(c)) >= 2, 20, "the node back on 0.1.0")
        await c.wait_for(lambda: births(c)[-1]["version"] == "0.1.0", 20, "0.1.0's birth")
        if case != "hangs":  # the one bad release that got as far as the broker
            assert all(b["version"] == "0.1.0" for b in births(c)), "only 0.1.0 came online"
        # the node removes the bad release (in a thread) and notes the outcome reported
        # once `rolled_back` is stored: dispatch may hear it a moment before
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = node_root.status()
            reported = (tree["outcome"] or {}).get("reported")
            if reported and not (node_root.releases / "0.2.0").exists():
                break
            await asyncio.sleep(0.1)
        assert tree["current"] == "0.1.0" and tree["trial"] is None
        assert tree["outcome"]["result"] == "rolled_back" and tree["outcome"]["reported"]
        assert not (node_root.releases / "0.2.0").exists(), "the bad release is removed"
        assert service.runs[-1].pid == service.pid and len(service.runs) == 3
        print(f"{case}: {rolled['reason']} ({len(service.runs)} starts)")
        await c.__aexit__()
    finally:
        await service.stop()

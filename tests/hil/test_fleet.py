"""The fleet simulator: the contract on real routes, vehicles going offline and back."""

import json
import subprocess
import sys

from edged import payloads as p
from hil.fleet.sim import FleetSim
from hil.fleet.track import tracks
from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import ROOT


async def test_vehicles_publish_the_contract_on_their_routes_and_go_offline_and_back(
    broker: Mosquitto,
) -> None:
    sim = FleetSim("127.0.0.1", broker.port, 10, period_s=0.3, churn_s=0.5, offline_share=0.3,
                   offline_s=(0.5, 1.0))
    async with Collector(broker.port, "rnst/v1/sim/#", client_id="fleet-test") as c:
        summary = await sim.run(3.0, clear=False)
        await c.wait_for(lambda: bool(c.on("position")), 2, "positions")
    assert summary["went_offline"] >= 3 and summary["came_back"] >= 1
    boxes = [(min(w.lat for w in t.route.waypoints), max(w.lat for w in t.route.waypoints),
              min(w.lon for w in t.route.waypoints), max(w.lon for w in t.route.waypoints))
             for t in tracks()]
    for m in c.on("position"):
        p.Position.model_validate({k: v for k, v in m.payload.items() if k not in ("v", "seq", "ts", "clock")})
        lat, lon = m.payload["lat"], m.payload["lon"]
        assert any(s <= lat <= n and w <= lon <= e for s, n, w, e in boxes)
    states: dict[str, list[str]] = {}
    for m in c.on("state"):
        states.setdefault(m.topic, []).append(m.payload["state"])
    assert any(s[:3] == ["online", "offline", "online"] for s in states.values()), states
    journeys = [m.payload for m in c.on("journey")]
    assert {j["schedule_relationship"] for j in journeys} == {"SCHEDULED", "ADDED"}


def test_the_command_runs_for_its_duration_and_prints_what_it_did(broker: Mosquitto) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hil", "fleet", "--nodes", "3", "--duration", "1",
         "--broker", broker.url, "--period", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    summary = json.loads(out.stdout)
    assert summary["nodes"] == 3 and summary["published"] >= 15

"""A node on the simulated route: positions, geofence arrivals and the geofences.set command,
as dispatch receives them from a real broker."""

import json
from pathlib import Path
from typing import Any

from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector, publish
from tests.helpers.nodes import write_config

BASE = "rnst/v1/test/shuttle-07"
FENCES = """
[services.geofences]
dwell_s = 0.5  # real seconds: the simulator compresses distance, not the receiver's clock
[[services.geofences.fences]]
id = "felletin"
kind = "stop"
center = [45.8833, 2.1744]
radius_m = 60
"""


async def test_the_shuttle_arrives_at_and_departs_from_its_first_stop(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(tmp_path, broker.port, speed_factor=60, extra=FENCES)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await spawn(config)
        await c.wait_for(lambda: len(c.on("events/geofence")) >= 2, 20, "arrive and depart")
        arrive, depart = (m.payload for m in c.on("events/geofence")[:2])
        assert (arrive["geofence"], arrive["event"]) == ("felletin", "arrive")
        # the 120 s stop lasts 2 real seconds at ×60
        assert depart["event"] == "depart" and 1.0 <= depart["dwell_s"] <= 3.0
        positions = [m.payload for m in c.on("position")]
        assert positions and all(45.8 < p["lat"] < 46.2 for p in positions)


async def test_geofences_set_adds_a_fence_that_the_shuttle_then_reaches(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(tmp_path, broker.port, speed_factor=60, extra=FENCES)
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await spawn(config)
        await c.wait_for(lambda: bool(c.on("state")), 10, "birth")
        args = {
            "geofences": [
                {
                    "id": "near-felletin",
                    "kind": "zone",
                    "center": [45.8833, 2.1744],
                    "radius_m": 400,
                }
            ]
        }
        await publish(
            broker.port,
            f"{BASE}/cmd/geofences.set",
            json.dumps({"id": "g1", "args": args}).encode(),
        )
        await c.wait_for(lambda: bool(c.on("reply/geofences/set")), 5, "the reply")
        assert c.on("reply/geofences/set")[0].payload["result"] == {"dynamic": 1, "static": 1}
        await c.wait_for(
            lambda: any(m.payload["geofence"] == "near-felletin" for m in c.on("events/geofence")),
            20,
            "an event for the new fence",
        )

"""The recorded shuttle bus replayed through can.replay, as dispatch receives it: vehicle
state, doors, DM1 faults appearing and clearing, and a closed trip with its CO2e."""

from pathlib import Path
from typing import Any

from tests.helpers.broker import Mosquitto
from tests.helpers.mqtt import Collector
from tests.helpers.nodes import ROOT, write_config

BASE = "rnst/v1/test/shuttle-07"
LOG = ROOT / "config" / "can" / "shuttle-day.log"


def replay(speed: float) -> str:
    return f"""
[services.vehicle]
period_s = 1.0
ignition_off_after_s = 1.0

[[drivers]]
name = "can"
driver = "can.replay"
[drivers.options]
log = "{LOG}"
speed = {speed}
"""


async def test_the_replayed_bus_gives_vehicle_doors_faults_and_a_trip(
    broker: Mosquitto, tmp_path: Path, spawn: Any
) -> None:
    config = write_config(tmp_path, broker.port, gps=False, extra=replay(30))
    async with Collector(broker.port, topic=f"{BASE}/#") as c:
        await spawn(config)
        await c.wait_for(lambda: bool(c.on("trip")), 30, "the trip closed at the end of the log")
        vehicles = [m.payload for m in c.on("vehicle")]
        assert any((v.get("speed_kmh") or 0) > 20 for v in vehicles)
        assert all("total_distance_km" in v for v in vehicles[-3:])
        doors = [m.payload for m in c.on("events/door")]
        assert any(d["open"] and d["source"] == "can" for d in doors)
        faults = [m.payload for m in c.on("vehicle/faults")]
        assert any(any(f["spn"] == 110 for f in x["active"]) for x in faults)
        assert faults[-1]["active"] == [], "the faults cleared by the end of the log"
        trip = c.on("trip")[0].payload
        assert trip["distance_source"] == "can" and trip["fuel_source"] == "can"
        assert trip["distance_km"] > 1
        assert trip["co2e_kg"] == round(trip["fuel_l"] * 3.17, 2)
        # recorded at ~30 L/100 km; LFC counts in 0.5 L steps
        assert abs(trip["fuel_l"] - trip["distance_km"] * 0.30) <= 0.5

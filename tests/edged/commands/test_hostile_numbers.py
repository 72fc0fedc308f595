"""Every command of every service, each argument given a number at JSON's edges: a
refusal or a result, never an `internal` error (a handler computing with 10**400 or 1e308
as if it were a plausible value). NaN and Infinity never reach a handler (the router
refuses them: test_router.py)."""

import json

import pytest

from core.counters import Counters
from edged.commands.router import CommandRouter, IncomingCommand
from edged.config.loader import load_config
from edged.services import table
from tests.helpers.host import TestHost
from tests.helpers.nodes import ROOT

ARGS = {
    "mode.set": ["mode"],
    "access.update": ["lists", "sig"],
    "journey.assign": ["route_id", "trip_id", "start_date", "start_time", "direction_id"],
    "alarm.ack": ["kind", "alarm_id", "by"],
    "occupancy.reset": ["count"],
    "kiosk.schedule": ["place", "services", "stops"],
    "kiosk.message": ["text", "id", "priority", "lang", "expires_at", "ttl_s", "clear"],
    "kiosk.ack": ["request_id", "note"],
    "geofences.set": ["geofences"],
    "door.unlock": ["pulse_s"],
}
NUMBERS = ["1" + "0" * 400, "-1" + "0" * 400, "1e308", "-1e308", "-0", "-0.0", "5e-324"]
FENCES = [
    '{"id":"a","center":[%s,2],"radius_m":50}',
    '{"id":"a","center":[45,2],"radius_m":%s}',
    '{"id":"a","center":[45,2],"radius_m":50,"dwell_s":%s}',
    '{"id":"a","center":[45,2],"radius_m":50,"hysteresis_m":%s}',
    '{"id":"a","points":[[%s,2],[45,3],[46,2]]}',
]


def payloads(name: str) -> list[str]:
    out = [f'{{"{arg}":{n}}}' for arg in ARGS.get(name, []) for n in NUMBERS]
    if name == "geofences.set":
        out += [f'{{"geofences":[{fence % n}]}}' for fence in FENCES for n in NUMBERS]
    if name == "kiosk.schedule":
        out += [f'{{"stops":[{{"name":"x","eta":{n}}}]}}' for n in NUMBERS]
    return out


@pytest.mark.parametrize("profile", ["shuttle", "truck", "venue"])
async def test_no_service_command_answers_an_extreme_number_with_an_internal_error(
    profile: str,
) -> None:
    config = load_config(ROOT / "config" / f"{profile}.toml")
    services = table.build(TestHost(profile=profile, synced=True), config)
    router = CommandRouter(Counters())
    for service in services.values():
        for spec in service.commands():
            router.add(spec)
    internal = []
    for name in router.names:
        for i, args in enumerate(payloads(name)):
            payload = f'{{"id":"h{i}","args":{args}}}'.encode()
            out = await router.handle(IncomingCommand(name, payload, topic=f"x/cmd/{name}"))
            if out.reply.error is not None and out.reply.error.code == "internal":
                internal.append((name, json.loads(payload)["args"], out.reply.error.message))
    assert internal == []

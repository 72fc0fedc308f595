"""The pydantic models used only when a command, a rider's press or a rare event (an
alarm, a fault, a geofence, the end of a trip) arrives are built on first use
(`defer_build`), not at every start: each costs 10-50 KB of validator, serializer and core
schema (bench: `python -m bench.footprint`). The models a node uses at rest stay built at
import, so no tap or publication pays for a build."""

import json
import subprocess
import sys

from tests.helpers.daemon_imports import built_at_rest
from tests.helpers.nodes import ROOT

ON_FIRST_USE = (
    "edged.payloads.Command",
    "edged.payloads.Reply",
    "edged.payloads.ReplyError",
    "edged.kiosk.models.ScheduleArgs",
    "edged.kiosk.models.MessageArgs",
    "edged.kiosk.models.ClearArgs",
    "edged.kiosk.models.AckArgs",
    "edged.kiosk.models.RiderPost",
    "edged.kiosk.models.RequestRecord",
    "edged.kiosk.payloads.KioskRequest",
    "edged.services.journey.AssignArgs",
    "edged.access.lists.AccessDelta",
    # payloads of rare events: a node may run for days without a panic or a DM1 fault
    "edged.payloads.Envelope",
    "edged.payloads.Alarm",
    "edged.payloads.GeofenceEvent",
    "edged.payloads.FixEvent",
    "edged.payloads.FaultCode",
    "edged.payloads.EcuLamps",
    "edged.payloads.Faults",
    "edged.payloads.Trip",
)


def test_a_node_at_rest_has_not_built_the_models_of_commands_and_rider_requests() -> None:
    assert sorted(built_at_rest() & set(ON_FIRST_USE)) == []


def test_a_node_at_rest_has_built_the_models_it_uses_without_a_command() -> None:
    at_rest = {"edged.config.models.EdgedConfig", "edged.kiosk.models.Schedule"}
    assert at_rest <= built_at_rest()


def test_each_model_left_for_first_use_builds_in_a_fresh_interpreter() -> None:
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    module, _, cls = name.rpartition('.')\n"
        "    model = getattr(importlib.import_module(module), cls)\n"
        "    before = model.__pydantic_complete__\n"
        "    model.model_json_schema()\n"
        "    out[name] = [before, model.model_rebuild() is not False]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *ON_FIRST_USE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen == {name: [False, True] for name in ON_FIRST_USE}

"""The kiosk's live state shows the run from `journey.assign`, through the node's router."""

import json

from edged.commands.router import IncomingCommand
from edged.node import Node
from edged.services.kiosk import KioskService


async def command(node: Node, name: str, args: dict[str, object], cmd_id: str) -> None:
    payload = json.dumps({"id": cmd_id, "args": args}).encode()
    outcome = await node.router.handle(IncomingCommand(name, payload, topic=f"x/cmd/{name}"))
    assert outcome.reply.ok, outcome.reply


async def test_an_assigned_run_puts_its_line_in_the_view_and_clear_removes_it(
    node: Node, kiosk: KioskService
) -> None:
    assert kiosk.view()["journey"] is None
    run = {"route_id": "L1", "trip_id": "L1-0815", "line": "1", "headsign": "Guéret"}
    await command(node, "journey.assign", run, "j1")
    assert kiosk.view()["journey"] == {"line": "1", "headsign": "Guéret"}
    await command(node, "journey.clear", {}, "j2")
    assert kiosk.view()["journey"] is None


async def test_without_a_line_name_the_kiosk_shows_the_route_id(
    node: Node, kiosk: KioskService
) -> None:
    await command(node, "journey.assign", {"route_id": "TAD-Nord", "trip_id": "t"}, "j1")
    assert kiosk.view()["journey"] == {"line": "TAD-Nord", "headsign": None}

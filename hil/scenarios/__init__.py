"""Scenarios for `python -m hil run NAME`: each a setup and a coroutine acting on the rig."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hil.rig.report import Report
from hil.rig.rig import Rig, RigSetup


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    setup: Callable[[bool], RigSetup]  # quick: shorter outages and waits, for CI
    run: Callable[[Rig, Report, bool], Awaitable[None]]


def scenarios() -> dict[str, Scenario]:
    from hil.scenarios import attacks, faults, shuttle_day, soak, truck_day, venue

    found = [shuttle_day.SCENARIO, truck_day.SCENARIO, venue.SCENARIO, faults.SCENARIO]
    found += [soak.SCENARIO, attacks.SCENARIO]
    return {s.name: s for s in found}

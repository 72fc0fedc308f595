"""The update manager plugged into the node: its commands, topic and what it reads."""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edged import __version__
from edged.topics import UPDATE
from edged.update.manager import Host, UpdateManager
from edged.update.moment import Parked
from edged.update.payloads import UpdateStatus
from edged.update.trial import Checks

if TYPE_CHECKING:
    from edged.node import Node


def start_updates(node: "Node") -> UpdateManager:
    """Register `update.apply`, `update.status` and `update.cancel`. Updates work only when
    the launcher started this process (it says where the release tree is)."""
    config = node.config
    enabled = [d.name for d in config.drivers if d.enabled]

    def drivers() -> list[tuple[str, str]]:
        states = {s.name: s.state for s in node.supervisor.statuses()}
        return [(name, states.get(name, "not started")) for name in enabled]

    async def outbox_readable() -> bool:
        await node.outbox.stats()
        return True

    def open_doors() -> list[str]:
        doors = [d for d, is_open in node.doors.doors.items() if is_open]
        return doors + [d for d, state in node.vehicle.doors.items() if state == "open"]

    def open_trip() -> str | None:
        trip = node.vehicle.trips.trip
        return None if trip is None else trip.trip_id

    parked = Parked(
        node.subscribe,
        idle_s=config.update.parked_idle_s,
        ignition=lambda: node.vehicle.ignition,
        open_trip=open_trip,
        open_doors=open_doors,
    )
    host = Host(
        publish=lambda body: node.publish(UPDATE, body),
        keys=lambda: node.router.authorizer.keys if node.router.authorizer else {},
        checks=Checks(lambda: node.uplink.connected, drivers, outbox_readable),
        waiting_for=parked.waiting_for,
        stop=node.request_exit,
        config_path=node.config_path,
        data_file=Path(config.outbox.path),
        data_stamps=lambda: getattr(node.outbox, "schema_stamps", {}),
        ca_file=config.broker.tls.ca_file if config.broker.tls else None,
    )
    releases = os.environ.get("EDGED_RELEASES")
    base = getattr(sys, "_base_executable", sys.executable)
    manager = UpdateManager(
        host,
        config.update,
        releases=Path(releases) if releases else None,
        running=os.environ.get("EDGED_RELEASE") or __version__,
        trial_id=os.environ.get("EDGED_TRIAL") or None,
        python=config.update.interpreter(base),
    )
    router = node.router
    router.register("update.apply", manager.command_apply, scope="update")
    router.register("update.status", manager.command_status, scope="read")
    router.register("update.cancel", manager.command_cancel, scope="update")
    return manager


__all__ = ["UpdateStatus", "start_updates"]

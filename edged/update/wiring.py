"""The update manager built for a node: what it reads of the node, through one narrow
interface (`UpdateNode`), and the bus for the safe moment. Its commands (`update.apply`,
`update.status`, `update.cancel`) it declares itself (`UpdateManager.commands`)."""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.bus import Bus
from edged import __version__
from edged.config.models import EdgedConfig
from edged.host import Publisher
from edged.payloads import DriverStatus, OutboxHealth, UpdateStatus
from edged.topics import UPDATE
from edged.update.manager import Host, UpdateManager
from edged.update.moment import Parked
from edged.update.trial import Checks

if TYPE_CHECKING:  # a bundle's code loads on the first update.apply
    from edged.release.bundle import Keys


class _Drivers(Protocol):
    def statuses(self) -> list[DriverStatus]: ...

    def states_at_switch(self) -> dict[str, str]: ...


class _Store(Protocol):
    @property
    def schema_stamps(self) -> dict[str, tuple[int, int]]:
        """The schema stamps of the outbox and state stores (edged.release.schemas)."""

    async def stats(self) -> OutboxHealth: ...


class _Keys(Protocol):
    @property
    def keys(self) -> "Keys": ...


class UpdateNode(Protocol):
    """What updates use of the node (the node has it): its config, whether it is online,
    its drivers' states, its stores, the signing keys, and a way to stop with a status."""

    config: EdgedConfig
    config_path: Path | None

    @property
    def supervisor(self) -> _Drivers: ...

    @property
    def outbox(self) -> _Store: ...

    @property
    def authorizer(self) -> _Keys: ...

    @property
    def connected(self) -> bool: ...

    def request_exit(self, code: int) -> None:
        """Stop; `edged run` then exits with `code`."""


def build_updates(node: UpdateNode, bus: Bus, door: Publisher) -> UpdateManager:
    """Updates work only when the launcher started this process (it says where the release
    tree is); otherwise the manager answers `update.status` and refuses the rest."""
    config = node.config
    enabled = [d.name for d in config.drivers if d.enabled]
    parked = Parked(bus, idle_s=config.update.parked_idle_s)

    def drivers() -> list[tuple[str, str]]:
        states = {s.name: s.state for s in node.supervisor.statuses()}
        return [(name, states.get(name, "not started")) for name in enabled]

    def at_switch() -> dict[str, str]:
        noted = node.supervisor.states_at_switch()
        return {name: noted.get(name, "not started") for name in enabled}

    async def outbox_readable() -> bool:
        await node.outbox.stats()
        return True

    host = Host(
        publish=lambda body: door.publish(UPDATE, body),
        keys=lambda: node.authorizer.keys,
        checks=Checks(lambda: node.connected, drivers, outbox_readable, at_switch),
        waiting_for=parked.waiting_for,
        stop=node.request_exit,
        config_path=node.config_path,
        data_file=Path(config.outbox.path),
        data_stamps=lambda: node.outbox.schema_stamps,
        ca_file=config.broker.tls.ca_file if config.broker.tls else None,
    )
    releases = os.environ.get("EDGED_RELEASES")
    base = getattr(sys, "_base_executable", sys.executable)
    return UpdateManager(
        host,
        config.update,
        releases=Path(releases) if releases else None,
        running=os.environ.get("EDGED_RELEASE") or __version__,
        trial_id=os.environ.get("EDGED_TRIAL") or None,
        python=config.update.interpreter(base),
    )


__all__ = ["UpdateNode", "UpdateStatus", "build_updates"]

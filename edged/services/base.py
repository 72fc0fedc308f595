"""The one shape of a service: built from the host and its own config; it may run, it may
declare commands beside their handlers, and it may add a part to `health`. Nothing else is
common to services."""

from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from edged.commands.spec import CommandSpec
from edged.host import Host


class Service:
    def __init__(self, host: Host) -> None:
        self.host = host

    def commands(self) -> Sequence[CommandSpec]:
        """The commands this service answers (added to the node's router)."""
        return ()

    async def run(self) -> None:
        """What the service does over time (a heartbeat, a daily reset); returns at once
        when there is nothing."""

    async def report(self) -> Mapping[str, BaseModel]:
        """Its part of `health`, by field of `edged.payloads.Health` (the hotspot's
        `wifi`); most services have none."""
        return {}

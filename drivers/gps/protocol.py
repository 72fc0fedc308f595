"""What every GPS backend does: run, and emit one `Fix` per receiver epoch."""

from typing import ClassVar, Protocol

from core.driver import DriverContext, DriverOptions


class GpsReceiver(Protocol):
    """Emits `core.events.Fix` through `ctx.emit`, including void fixes (mode NONE)."""

    Options: ClassVar[type[DriverOptions]]

    async def run(self, ctx: DriverContext) -> None: ...

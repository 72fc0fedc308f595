"""The node's operating mode: `on-demand`, `school` or `out-of-service`, set by `mode.set`.

One home for it: the key it is kept under, its default, the command, and the
`ModeChanged` event the others follow (a shuttle out of service boards only staff, the
kiosk shows the mode, `journey` carries it to the feed). Kept across restarts.
"""

from typing import Any

from edged.commands.spec import CommandSpec
from edged.errors import CommandError
from edged.host import Host
from edged.services.base import Service
from edged.services.events import ModeChanged

MODES = ("on-demand", "school", "out-of-service")
DEFAULT = MODES[0]
OUT_OF_SERVICE = MODES[2]
"""A shuttle in this mode boards staff only."""
STATE_KEY = "mode"


class ModeService(Service):
    def __init__(self, host: Host) -> None:
        super().__init__(host)
        stored = host.state.get(STATE_KEY, DEFAULT)
        self.mode: str = stored if stored in MODES else DEFAULT
        host.bus.emit(ModeChanged(self.mode))

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("mode.set", self.command_set, scope="operate")]

    async def command_set(self, args: dict[str, Any]) -> dict[str, Any]:
        mode = args.get("mode")
        if set(args) != {"mode"} or mode not in MODES:
            raise CommandError("bad_args", f'mode.set takes {{"mode": one of {list(MODES)}}}')
        previous, self.mode = self.mode, mode
        self.host.state.set(STATE_KEY, mode)
        self.host.bus.emit(ModeChanged(mode))
        return {"mode": mode, "previous": previous}

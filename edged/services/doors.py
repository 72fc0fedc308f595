"""Doors wired to GPIO: contacts become `events/door`, and `door.unlock` pulses the lock.

Doors reported by the bus over CAN are the vehicle service's; these are the contacts on the
node's own pins (a venue door, a truck's side door, a bus without DC2).
"""

import logging
import time
from typing import Any

from core.events import DoorInput, Unlock
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import DoorEvent
from edged.services.base import Service
from edged.topics import DOOR

log = logging.getLogger(__name__)

MIN_PULSE_S = 0.1  # a lock strike needs ~50-100 ms of current to move: less unlocks nothing
MAX_PULSE_S = 30.0


class DoorService(Service):
    def __init__(self, host: Host, *, default_pulse_s: float) -> None:
        super().__init__(host)
        self.default_pulse_s = default_pulse_s
        self.doors: dict[str, bool] = {}
        host.bus.subscribe(DoorInput, self.on_door)

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("door.unlock", self.command_unlock, scope="door")]

    def on_door(self, event: DoorInput) -> None:
        before = self.doors.get(event.door)
        self.doors[event.door] = event.open
        if before is not None and before != event.open:  # the first report is the start state
            self.host.publish(DOOR, DoorEvent(door=event.door, open=event.open, source="sensor"))

    async def command_unlock(self, args: dict[str, Any]) -> dict[str, Any]:
        """`door.unlock {"pulse_s"?}` (signed, scope door): ops let someone in remotely."""
        only("door.unlock", args, "pulse_s")
        pulse = args.get("pulse_s", self.default_pulse_s)  # the config's is the owner's own
        if "pulse_s" in args and (
            not isinstance(pulse, int | float)
            or isinstance(pulse, bool)
            or not MIN_PULSE_S <= pulse <= MAX_PULSE_S
        ):
            raise CommandError(
                "bad_args", f"pulse_s must be a number from {MIN_PULSE_S:g} to {MAX_PULSE_S:g}"
            )
        if not self.host.bus.has_subscribers(Unlock):  # the GPIO driver's lock relay
            raise CommandError(
                "no_lock", "no lock relay is running on this node: check the gpio driver's lock pin"
            )
        self.host.bus.emit(Unlock(float(pulse), time.monotonic()))
        log.warning("door unlocked by command for %.1f s", pulse)
        return {"unlocked": True, "pulse_s": float(pulse)}

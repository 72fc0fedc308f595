"""Doors wired to GPIO: contacts become `events/door`, and `door.unlock` pulses the lock.

Doors reported by the bus over CAN are the vehicle service's; these are the contacts on the
node's own pins (a venue door, a truck's side door, a bus without DC2).
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from core.events import DoorInput, Unlock
from edged.commands.args import only
from edged.errors import CommandError
from edged.payloads import DoorEvent
from edged.services.base import NodeApi
from edged.topics import DOOR

log = logging.getLogger(__name__)

MAX_PULSE_S = 30.0


class DoorService:
    def __init__(
        self,
        node: NodeApi,
        *,
        emit: Callable[[Any], None],
        lock_present: Callable[[], bool],
        default_pulse_s: float,
    ) -> None:
        self.node = node
        self.emit = emit
        self.lock_present = lock_present
        self.default_pulse_s = default_pulse_s
        self.doors: dict[str, bool] = {}
        node.subscribe(DoorInput, self.on_door)

    def on_door(self, event: DoorInput) -> None:
        before = self.doors.get(event.door)
        self.doors[event.door] = event.open
        if before is not None and before != event.open:  # the first report is the start state
            self.node.publish(DOOR, DoorEvent(door=event.door, open=event.open, source="sensor"))

    async def command_unlock(self, args: dict[str, Any]) -> dict[str, Any]:
        """`door.unlock {"pulse_s"?}` (signed, scope door): ops let someone in remotely."""
        only("door.unlock", args, "pulse_s")
        pulse = args.get("pulse_s", self.default_pulse_s)
        if (
            not isinstance(pulse, int | float)
            or isinstance(pulse, bool)
            or not 0 < pulse <= MAX_PULSE_S
        ):
            raise CommandError("bad_args", f"pulse_s must be a number in (0, {MAX_PULSE_S:g}]")
        if not self.lock_present():
            raise CommandError(
                "no_lock", "no lock relay is running on this node: check the gpio driver's lock pin"
            )
        self.emit(Unlock(float(pulse), time.monotonic()))
        log.warning("door unlocked by command for %.1f s", pulse)
        return {"unlocked": True, "pulse_s": float(pulse)}

"""The panic button: an `alarm/panic` that reaches dispatch however long the link is down.

A press raises the alarm at once: the local pattern (red light, buzzer) starts, and the
alarm — with the last known position — goes into the outbox in the highest class, durable
before anything else is sent. The raised alarm is kept in the node's state, so a power cut
or a restart brings it back (indicator and all) until dispatch acknowledges it with
`alarm.ack`. While connected and unacknowledged it is sent again every `repeat_s`, so a
dispatcher who missed it is reminded; while offline the first copy waits in the outbox
rather than piling up repeats. `alarm.ack` clears it (retained `active: false`), and the
indicator says "help is coming" for `acked_indicator_s`.
"""

import asyncio
import logging
import time
import uuid
from typing import Any

from core.events import Feedback, FeedbackPattern, Fix, PanicInput
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.config.access import PanicServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import Alarm
from edged.services.base import Service
from edged.services.events import LinkChanged, PositionUpdated
from edged.topics import ALARM

log = logging.getLogger(__name__)

STATE_KEY = "panic.active"
KIND = "panic"


class PanicService(Service):
    def __init__(self, host: Host, config: PanicServiceConfig) -> None:
        super().__init__(host)
        self.config = config
        saved = host.state.get(STATE_KEY)
        self.active: dict[str, Any] | None = saved if isinstance(saved, dict) else None
        self._restored = self.active is not None
        self._sent_at = 0.0
        self._off_timer: asyncio.TimerHandle | None = None
        self.last_fix: Fix | None = None
        self.connected = False
        host.bus.subscribe(PanicInput, self.on_panic)
        host.bus.subscribe(PositionUpdated, self._on_position)
        host.bus.subscribe(LinkChanged, self._on_link)

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("alarm.ack", self.command_ack, kind=KIND)]

    def _on_position(self, event: PositionUpdated) -> None:
        self.last_fix = event.fix

    def _on_link(self, event: LinkChanged) -> None:
        self.connected = event.connected

    def _indicate(self, pattern: FeedbackPattern) -> None:
        self.host.bus.emit(Feedback(pattern, time.monotonic()))

    def on_panic(self, event: PanicInput) -> None:
        if not event.pressed:
            return
        if self.active is None:
            self._raise()
        else:  # pressed again: still in danger, tell dispatch now
            self.active["presses"] = int(self.active.get("presses", 1)) + 1
            self.host.state.set(STATE_KEY, self.active)
            self._send("pressed again")

    def _raise(self) -> None:
        ms = self.host.clock.now()[0]
        details: dict[str, Any] = {
            "alarm_id": f"{ms}-{uuid.uuid4().hex[:6]}",
            "raised_at": ms,
            "presses": 1,
        }
        fix = self.last_fix
        if fix is not None:
            details |= {
                "lat": fix.lat,
                "lon": fix.lon,
                "fix_time": fix.fix_time.isoformat(),
                "speed": fix.speed,
            }
        self.active = details
        if self._off_timer is not None:
            self._off_timer.cancel()
        self._indicate("alarm")
        self.host.state.set(STATE_KEY, details)
        self._send("panic button pressed")
        log.warning("PANIC alarm %s raised", details["alarm_id"])

    def _send(self, reason: str) -> None:
        if self.active is None:
            return
        self._sent_at = time.monotonic()
        self.host.publish(
            ALARM, Alarm(kind=KIND, active=True, reason=reason, details=self.active), name=KIND
        )

    async def run(self) -> None:
        if self._restored and self.active is not None:  # restarted with an alarm open
            self._indicate("alarm")
            self._send("still active after a restart")
        while True:
            await asyncio.sleep(min(5.0, self.config.repeat_s))
            if (
                self.active is not None
                and self.connected
                and time.monotonic() - self._sent_at >= self.config.repeat_s
            ):
                self._send("not acknowledged yet")

    async def command_ack(self, args: dict[str, Any]) -> dict[str, Any]:
        """`alarm.ack {"alarm_id"?, "by"?}` (kind `panic`, the default): dispatch has seen it
        and help is on its way."""
        only("alarm.ack", args, "alarm_id", "by")
        alarm_id, by = args.get("alarm_id"), args.get("by", "")
        if alarm_id is not None and not isinstance(alarm_id, str):
            raise CommandError("bad_args", "alarm_id must be text")
        if not isinstance(by, str) or len(by) > 64:
            raise CommandError("bad_args", "by must be text of at most 64 characters")
        if self.active is None:
            raise CommandError("no_alarm", "no panic alarm is active")
        if alarm_id is not None and alarm_id != self.active["alarm_id"]:
            raise CommandError(
                "wrong_alarm",
                f"the active alarm is {self.active['alarm_id']}, not {alarm_id[:40]}",
            )
        details = {**self.active, "acked_at": self.host.clock.now()[0], "acked_by": by}
        self.active = None
        self.host.state.set(STATE_KEY, None)
        self.host.publish(
            ALARM, Alarm(kind=KIND, active=False, reason="acknowledged", details=details), name=KIND
        )
        self._indicate("alarm_acked")
        loop = asyncio.get_running_loop()
        self._off_timer = loop.call_later(
            self.config.acked_indicator_s, self._indicate, "alarm_off"
        )
        log.warning("panic alarm %s acknowledged by %s", details["alarm_id"], by or "dispatch")
        return {"alarm_id": details["alarm_id"], "acked": True}

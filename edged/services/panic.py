"""The panic button: an `alarm/panic` that reaches dispatch however long the link is down.

A press raises the alarm at once: the local pattern (red light, buzzer) starts, and the
alarm — with the last known position — goes into the outbox in the highest class, durable
before anything else is sent, and at once into the outbox's journal with the service's
state of it (`panic.active`): a `kill -9` right after the press loses neither. The raised
alarm is kept in the node's state, so a power cut or a restart brings it back (indicator
and all) until dispatch acknowledges it with `alarm.ack`. While connected and
unacknowledged it is sent again every `repeat_s`, so a dispatcher who missed it is
reminded; while offline the first copy waits in the outbox rather than piling up repeats.
A press again is sent at once, then at most one per `REPRESS_EVERY_S` (offline: one when
the link is back), the presses in between counted in it. Their count is written to the
card at most once per `REPRESS_EVERY_S` too (with the message, or alone offline): a button
whose switch flaps (a broken switch, a loose wire, someone tapping it) made a press again
every second and a half through the driver, each a synced commit of the state store, some
58,000 a day. A kill -9 loses at most the presses of the last window (and up to a 5 s
tick) from the count, never the alarm; a stop loses none (`run` writes them as it ends).
`FLAP_PRESSES` presses within `FLAP_WITHIN_S` are reported once per flap: `panic.flapping`
in `health.errors` and an error in the log naming the likely causes.
`alarm.ack` clears it (retained `active: false`), and the indicator says "help is coming"
for `acked_indicator_s`.

The indicator comes back however the node restarts: after a restart of the daemon (`run`)
and after a restart of the driver of the lights alone. A restarted GPIO driver starts dark
(its safe state) and `Feedback` is not retained, so the lasting pattern ("alarm", "alarm
acked") is shown again whenever a driver says it is ready (`core.driver.DriverReady`).

A button stuck down (a shorted wire, a crate on it) must not raise a new alarm at every
start once dispatch has acknowledged it: the driver reports a button already down at its
start as a press (a rider pressing while the node boots is a real alarm). So when an alarm
is acknowledged while the button is still down, the node keeps that in its state
(`panic.held`) until a release is seen (a button up at a driver's start is reported
released); meanwhile a press that was already down when a driver started (its time is
not after that driver's `DriverReady`) is counted (`panic.still_held`) and logged, not
raised. Any press after a driver is ready, and any
press after a release, raises — never a missed alarm for a quieter one. The trade-off, only
after an alarm acknowledged while the button was held and before a release is seen: a
press that went down while the GPIO driver or the node was down (or within `hold_s`
before some driver's start) is taken for the stuck button; letting go and pressing
again raises it. A button down longer than `stuck_after_s` is reported once
per hold and start: `panic.stuck` in `health.errors` and an error in the log.
"""

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

from core.driver import DriverReady
from core.events import Feedback, FeedbackPattern, Fix, PanicInput
from core.logs import KEEP
from edged.clock import ClockSource
from edged.commands.args import only
from edged.commands.spec import SENT_AT, CommandSpec
from edged.config.access import PanicServiceConfig
from edged.errors import CommandError
from edged.host import Host
from edged.payloads import Alarm
from edged.services.base import Service
from edged.services.events import LinkChanged, PositionUpdated
from edged.topics import ALARM

log = logging.getLogger(__name__)

STATE_KEY = "panic.active"
HELD_KEY = "panic.held"
"""The last alarm was acknowledged while the button was down, and no release seen since."""
TRUSTED_KEY = "panic.raised_trusted"
"""The active alarm's `raised_at` came from a trusted clock (NTP or GPS): an `alarm.ack`
without `alarm_id` sent before it is refused."""
KIND = "panic"
REPRESS_EVERY_S = 10.0
"""A press again is sent at once if none was in the last REPRESS_EVERY_S; later ones are
folded into one sent when the window ends (their count in `presses`), so a rider jabbing
the button (a press again every second through the driver) does not send one message a
second, journaled each, for as long as the alarm lasts. Offline, presses again wait for
the link as one message: the alarm itself is already in the outbox."""
FLAP_PRESSES = 30
FLAP_WITHIN_S = 60.0
"""A press (a raise or a press again) every two seconds for a whole minute: more than a
person keeps up through the driver's hold or series of jabs, what a flapping switch does
(at 2 Hz the driver raises some 40 a minute). A quiet `FLAP_WITHIN_S` ends the flap."""
LASTING: frozenset[FeedbackPattern] = frozenset(("alarm", "alarm_acked"))


class PanicService(Service):
    def __init__(self, host: Host, config: PanicServiceConfig) -> None:
        super().__init__(host)
        self.config = config
        saved = host.state.get(STATE_KEY)
        self.active: dict[str, Any] | None = saved if isinstance(saved, dict) else None
        self._restored = self.active is not None
        self._sent_at = 0.0
        self._repressed_at = -REPRESS_EVERY_S  # time.monotonic() of the last "pressed again"
        self._repress_due = False  # presses again not sent yet (folded, or offline)
        self._count_saved_at = -REPRESS_EVERY_S  # time.monotonic() presses last went to state
        self._count_unsaved = False  # presses folded since, only in memory
        self._presses_at: deque[float] = deque()  # recent presses, for FLAP_PRESSES
        self._flap_reported = False
        self._off_timer: asyncio.TimerHandle | None = None
        self._lasting: FeedbackPattern = "alarm" if self._restored else "alarm_off"
        self.last_fix: Fix | None = None
        self.connected = False
        self.pressed = False
        self._pressed_at: float | None = None  # time.monotonic() the press was heard
        self._stuck_reported = False
        self._readies: dict[str, float] = {}  # driver name -> its last DriverReady's ts
        host.bus.subscribe(PanicInput, self.on_panic)
        host.bus.subscribe(PositionUpdated, self._on_position)
        host.bus.subscribe(LinkChanged, self._on_link)
        host.bus.subscribe(DriverReady, self._on_driver_ready)

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("alarm.ack", self.command_ack, kind=KIND)]

    def _on_position(self, event: PositionUpdated) -> None:
        if event.suspect is None:  # responders go to the last place believed, not a spoofer's
            self.last_fix = event.fix

    def _on_link(self, event: LinkChanged) -> None:
        self.connected = event.connected
        if self.connected:
            self._send_repress()

    def _send_repress(self) -> None:
        """Presses again not sent yet go now, as one, if the link is up and the window
        since the last one sent is over."""
        if (
            self._repress_due
            and self.connected
            and time.monotonic() - self._repressed_at >= REPRESS_EVERY_S
        ):
            self._repressed_at = time.monotonic()
            self._send("pressed again", {STATE_KEY: self.active})

    def _indicate(self, pattern: FeedbackPattern) -> None:
        self._lasting = pattern
        self.host.bus.emit(Feedback(pattern, time.monotonic()))

    def _on_driver_ready(self, event: DriverReady) -> None:
        """A (re)started driver shows nothing: give the lights back their lasting pattern."""
        self._readies[event.driver] = event.ts
        if self._lasting in LASTING:
            self._indicate(self._lasting)

    def on_panic(self, event: PanicInput) -> None:
        if not event.pressed:
            self._released()
            return
        was_pressed, self.pressed = self.pressed, True
        if self._pressed_at is None:
            self._pressed_at = time.monotonic()
        if not was_pressed:
            self._check_flapping()
        if self.active is not None and was_pressed:
            # no release since the last press: a restarted driver found it still down and
            # reports it again (it says up at its start otherwise); the same press
            log.info("panic button still down after a driver start: the same press")
        elif self.active is not None:  # pressed again: still in danger, tell dispatch now
            self.active["presses"] = int(self.active.get("presses", 1)) + 1
            self._repress_due = True
            self._send_repress()
            if self._repress_due:  # folded into the next one: the count is kept meanwhile
                self._count_unsaved = True
                self._save_count()
        elif (held := self._held()) is not None and self._down_at_start(event):
            self.host.counters.inc("panic.still_held")
            log.warning(
                "panic button down at a driver start and never let go since alarm %s was "
                "acknowledged: not a new alarm (let go and press again to raise one)",
                held.get("alarm_id", "?"),
            )
        else:
            self._raise()

    def _save_count(self, *, at_once: bool = False) -> None:
        """The presses folded so far into the state, if none went there in the last
        REPRESS_EVERY_S (else `run` writes them when the window is over); `at_once`: the
        service stops, and the count must not go with the process."""
        now = time.monotonic()
        if (
            self._count_unsaved
            and self.active is not None
            and (at_once or now - self._count_saved_at >= REPRESS_EVERY_S)
        ):
            self._count_saved_at = now
            self._count_unsaved = False
            self.host.state.set(STATE_KEY, self.active)

    def _check_flapping(self) -> None:
        """Report a button pressed FLAP_PRESSES times within FLAP_WITHIN_S, once per flap."""
        now = time.monotonic()
        recent = self._presses_at
        while recent and recent[0] < now - FLAP_WITHIN_S:
            recent.popleft()
        if not recent:  # quiet for FLAP_WITHIN_S: a new flap is reported again
            self._flap_reported = False
        recent.append(now)
        if len(recent) < FLAP_PRESSES or self._flap_reported:
            return
        self._flap_reported = True
        self.host.counters.inc("panic.flapping")
        log.error(
            "panic button pressed %d times within %.0f s: a broken switch, a loose wire or "
            "someone tapping it? check the button and its wire (the alarm stays raised; "
            "presses again are sent at most once per %.0f s)",
            len(recent),
            FLAP_WITHIN_S,
            REPRESS_EVERY_S,
            extra=KEEP,
        )

    def _held(self) -> dict[str, Any] | None:
        """What `panic.held` says; anything unreadable there is no hold (the press raises)."""
        held = self.host.state.get(HELD_KEY)
        return held if isinstance(held, dict) else None

    def _down_at_start(self, event: PanicInput) -> bool:
        """The press was already down when a driver started: its time is not after the
        `DriverReady` of a start heard before it (a later press has a later time)."""
        return any(event.ts <= ready for ready in self._readies.values())

    def _released(self) -> None:
        self.pressed = False
        self._pressed_at = None
        self._stuck_reported = False
        if self.host.state.get(HELD_KEY) is not None:
            self.host.state.set(HELD_KEY, None)
            log.info("panic button let go: the next press raises a new alarm")

    def _check_stuck(self) -> None:
        """Report a button down longer than `stuck_after_s`, once per hold."""
        if (
            self._pressed_at is None
            or self._stuck_reported
            or time.monotonic() - self._pressed_at < self.config.stuck_after_s
        ):
            return
        self._stuck_reported = True
        self.host.counters.inc("panic.stuck")
        log.error(
            "panic button down for more than %.0f s: stuck or shorted? check the button "
            "and its wire (an alarm it raised is handled as any other)",
            self.config.stuck_after_s,
            extra=KEEP,
        )

    def _raise(self) -> None:
        ms, source = self.host.clock.now()
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
        state: dict[str, Any] = {
            STATE_KEY: details,
            TRUSTED_KEY: source is not ClockSource.UNSYNCED,
        }
        if self.host.state.get(HELD_KEY) is not None:  # a new press: its release was missed
            state[HELD_KEY] = None
        try:
            self._send("panic button pressed", state)
        except Exception:
            # not taken (the outbox closed at a stop, a bug): no alarm held in memory either,
            # which made every next press a "pressed again" of an alarm never sent, and
            # left the light dark for good; "denied" (red, three beeps) says press again
            self.active = None
            self.host.counters.inc("panic.not_taken")
            log.exception("panic button pressed, the alarm NOT taken: press again", extra=KEEP)
            self.host.bus.emit(Feedback("denied", time.monotonic()))
            return
        # only then the light: it tells the provider the alarm is taken, and (with
        # `journal_sync`) a power cut right after it finds the alarm in the journal. A
        # journal that refused the record (full, a disk error) does not hold the light
        # back: the alarm is in the outbox's memory and goes when the link is back
        self._indicate("alarm")
        log.warning("PANIC alarm %s raised", details["alarm_id"], extra=KEEP)

    def _send(self, reason: str, state: dict[str, Any] | None = None) -> None:
        """`state`: what the node keeps of the alarm, stored with the message (the outbox
        journals both at once: a power cut right after the press loses neither)."""
        if self.active is None:
            return
        self._sent_at = time.monotonic()
        self._repress_due = False  # every message carries the presses so far
        if state is not None and STATE_KEY in state:  # and the state store with it
            self._count_saved_at = self._sent_at
            self._count_unsaved = False
        self.host.publish(
            ALARM,
            Alarm(kind=KIND, active=True, reason=reason, details=self.active),
            name=KIND,
            state=state,
        )

    async def run(self) -> None:
        if self._restored and self.active is not None:  # restarted with an alarm open
            self._indicate("alarm")
            self._send("still active after a restart")
        try:
            while True:
                await asyncio.sleep(min(5.0, self.config.repeat_s, REPRESS_EVERY_S))
                self._check_stuck()
                self._send_repress()
                self._save_count()
                if (
                    self.active is not None
                    and self.connected
                    and time.monotonic() - self._sent_at >= self.config.repeat_s
                ):
                    self._send("not acknowledged yet")
        finally:
            # a stop (an update, a restart) cancels the services before the outbox's last
            # commit: the presses of the window so far go with it, not with the process
            self._save_count(at_once=True)

    def _sent_before_the_alarm(self) -> bool:
        """The running `alarm.ack` carries a `ts` before the active alarm was raised, by a
        clock the node trusted then (an unsynced one can be hours off: no judgement)."""
        sent_at = SENT_AT.get()
        raised_at = self.active.get("raised_at") if self.active is not None else None
        return (
            sent_at is not None
            and isinstance(raised_at, int)
            and self.host.state.get(TRUSTED_KEY) is True
            and sent_at < raised_at
        )

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
        if alarm_id is None and self._sent_before_the_alarm():
            raise CommandError(
                "wrong_alarm",
                f"this ack was sent before the active alarm {self.active['alarm_id']} was "
                "raised (an older alarm's ack, kept by the broker?): acknowledge it by its "
                "alarm_id",
            )
        details = {**self.active, "acked_at": self.host.clock.now()[0], "acked_by": by}
        self.active = None
        self._repress_due = self._count_unsaved = False
        state: dict[str, Any] = {STATE_KEY: None, TRUSTED_KEY: None}
        if self.pressed:  # still down: a stuck button must not raise again at each start
            state[HELD_KEY] = {"alarm_id": details["alarm_id"]}
        self.host.publish(
            ALARM,
            Alarm(kind=KIND, active=False, reason="acknowledged", details=details),
            name=KIND,
            state=state,
        )
        self._indicate("alarm_acked")
        loop = asyncio.get_running_loop()
        self._off_timer = loop.call_later(
            self.config.acked_indicator_s, self._indicate, "alarm_off"
        )
        log.warning(
            "panic alarm %s acknowledged by %s", details["alarm_id"], by or "dispatch", extra=KEEP
        )
        return {"alarm_id": details["alarm_id"], "acked": True}

"""What the node says about its own storage: `alarm/outbox_full` and `alarm/outbox_lost`.

- `outbox_full`, the caps: raised through the outbox (alarms keep a reserve) when events
  start being refused at the hard cap, cleared when it is back under its soft cap, with
  the number refused in between.
- `outbox_full`, the disk: when the disk refuses writes (full, a failing SD card) the alarm
  cannot go through the outbox it is about, so it goes straight to the broker, at each
  connection and every minute while it lasts; it is cleared through the outbox once a
  write succeeds again. Door decisions go on, and messages the disk refused go out from
  memory while the link holds.
- `outbox_lost`: found at start — a corrupt outbox moved aside, an outbox that went back in
  time (its WAL lost), a missing outbox or state store. It says what and where, and stays
  raised (across restarts) until dispatch acknowledges it: `alarm.ack {"kind":
  "outbox_lost"}`.
"""

import asyncio
import logging
import time
from typing import Any, Protocol

from pydantic import BaseModel

from core.counters import Counters
from core.logs import KEEP
from edged.clock import Clock
from edged.commands.args import only
from edged.commands.spec import CommandSpec
from edged.errors import CommandError, OutboxFullError
from edged.outbox.publication import Publication
from edged.outbox.store import Outbox, PutResult
from edged.payloads import Alarm
from edged.topics import ALARM, Topics, TopicSpec

log = logging.getLogger(__name__)

UNWRITABLE_ALARM_EVERY_S = 60.0
FULL, LOST = "outbox_full", "outbox_lost"
LOST_KEY = "outbox.lost"


class DirectLink(Protocol):
    """The uplink, for what cannot go through the outbox it is about."""

    @property
    def connected(self) -> bool: ...

    @property
    def sessions(self) -> int: ...

    async def publish_direct(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, within_s: float = ...
    ) -> bool: ...


class OutboxAlarms:
    """The outbox's front door and its alarms: every publication goes through `publish`,
    so a refusal by the disk raises the alarm and the next success clears it."""

    def __init__(
        self, outbox: Outbox, topics: Topics, clock: Clock, counters: Counters, link: DirectLink
    ) -> None:
        self.outbox = outbox
        self.topics = topics
        self.clock = clock
        self.counters = counters
        self.link = link
        self.unwritable: Alarm | None = None  # the disk refused a write: alarm to send
        self._sent_at = float("-inf")
        self._session = -1
        self._direct: set[asyncio.Task[bool]] = set()

    def publish(
        self,
        spec: TopicSpec,
        body: BaseModel,
        *,
        name: str | None = None,
        qos: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        state: dict[str, Any] | None = None,
        stream: str | None = None,
    ) -> "asyncio.Future[PutResult]":
        pub = Publication.make(
            self.topics,
            spec,
            body,
            name=name,
            qos=qos,
            response_topic=response_topic,
            correlation=correlation,
            stream=stream,
        )
        future = self.outbox.put_nowait(pub, state=state)
        future.add_done_callback(self.check_stored)
        return future

    def commands(self) -> list[CommandSpec]:
        return [CommandSpec("alarm.ack", self.command_ack, kind=LOST)]

    # -- the outbox's caps -------------------------------------------------------------

    def pressure(self, active: bool, reason: str, details: dict[str, Any]) -> None:
        self.counters.inc("outbox.full" if active else "outbox.recovered")
        self.publish(
            ALARM, Alarm(kind=FULL, active=active, reason=reason, details=details), name=FULL
        )

    # -- the disk ------------------------------------------------------------------------

    def check_stored(self, future: "asyncio.Future[PutResult]") -> None:
        """Every publication's outcome: a refusal by the disk raises the alarm, the next
        success clears it."""
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None and self.unwritable is not None:
            self._writable_again()
        elif isinstance(exc, OutboxFullError):
            log.error("%s", exc)
        elif exc is not None:
            self.counters.inc("outbox.error")
            log.error("could not store a message: %s", exc)
            self._unwritable_alarm(str(exc))

    def _unwritable_alarm(self, reason: str) -> None:
        if self.unwritable is None:
            log.error(
                "the outbox cannot be written (%s): raising alarm/outbox_full", reason, extra=KEEP
            )
        self.unwritable = Alarm(
            kind=FULL,
            active=True,
            reason=f"cannot write the outbox: {reason}"[:200],
            details={"write_errors": self.counters.snapshot().get("outbox.error", 0)},
        )
        self.send_unwritable()

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            self.send_unwritable()

    def send_unwritable(self) -> None:
        """Straight to the broker: once per MQTT session, and again every minute."""
        link = self.link
        if self.unwritable is None or not link.connected:
            return
        now = time.monotonic()
        fresh = self._session != link.sessions
        if not fresh and now - self._sent_at < UNWRITABLE_ALARM_EVERY_S:
            return
        self._sent_at, self._session = now, link.sessions
        payload, _, _ = self.outbox.stamp(ALARM.suffix(FULL), self.unwritable)
        task = asyncio.create_task(
            link.publish_direct(self.topics.of(ALARM, FULL), payload, qos=1, retain=True),
            name="alarm.unwritable",
        )
        self._direct.add(task)
        task.add_done_callback(self._direct.discard)

    def _writable_again(self) -> None:
        """A write succeeded after failures: clear the alarm, through the outbox this time."""
        if self.unwritable is not None:
            self.unwritable = None
            self._sent_at = float("-inf")
            log.warning("the outbox can be written again", extra=KEEP)
            self.publish(
                ALARM,
                Alarm(kind=FULL, active=False, reason="the outbox can be written again"),
                name=FULL,
            )

    # -- losses found at start -------------------------------------------------------------

    def report_losses(self) -> None:
        """Raise `outbox_lost` for what the outbox found at open; kept until acknowledged."""
        losses = self.outbox.losses
        if not losses:
            return
        details = {
            "raised_at": self.clock.now()[0],
            "epoch": self.outbox.epoch,
            "losses": [loss.details() for loss in losses],
        }
        self.outbox.set_state(LOST_KEY, details)
        reason = "; ".join(loss.reason for loss in losses)
        self.publish(
            ALARM, Alarm(kind=LOST, active=True, reason=reason[:500], details=details), name=LOST
        )

    async def command_ack(self, args: dict[str, Any]) -> dict[str, Any]:
        """`alarm.ack {"kind": "outbox_lost", "by"?}` (the router took `kind` off)."""
        only("alarm.ack", args, "by")
        by = args.get("by", "")
        if not isinstance(by, str) or len(by) > 64:
            raise CommandError("bad_args", "by must be text of at most 64 characters")
        active = self.outbox.get_state(LOST_KEY)
        if not isinstance(active, dict):
            raise CommandError("no_alarm", "no outbox_lost alarm is active")
        details = {**active, "acked_at": self.clock.now()[0], "acked_by": by}
        self.outbox.set_state(LOST_KEY, None)
        self.publish(
            ALARM, Alarm(kind=LOST, active=False, reason="acknowledged", details=details), name=LOST
        )
        return {"kind": LOST, "acked": True}

"""The node: the composition root. It builds the outbox, the uplink, the router and the
supervisor, the services from their table (`edged.services.table`) on one host and one bus,
adds every command they declare to the router, and runs it all in one root TaskGroup with
a shutdown that says `offline` within seconds."""

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.bus import Bus
from core.cancel import cancel_and_wait
from core.counters import Counters
from core.errors import EdgedError
from core.files import clear_left
from edged import __version__, logs, sdnotify
from edged.clock import Clock
from edged.commands.admin import Admin, probation_watch
from edged.commands.authorize import Authorizer
from edged.commands.builtin import Builtin
from edged.commands.lanes import Lanes
from edged.commands.replies import ReplyMemory
from edged.commands.response import ResponseTopics
from edged.commands.router import CommandRouter, IncomingCommand, Outcome
from edged.commands.spec import Declares
from edged.config.loader import config_hash
from edged.config.models import EdgedConfig
from edged.config.probation import Probation
from edged.diag import RecentLog
from edged.health import CpuMeter, LoopLag, birth, build_health, every
from edged.heartbeat import HealthReporter
from edged.host import NodeHost, OutboxState
from edged.outbox import Outbox, moves
from edged.outbox.alarms import OutboxAlarms
from edged.payloads import Health
from edged.sdnotify import SystemdNotifier, beat_recent, task_alive, watchdog_loop
from edged.services import table
from edged.services.base import Service
from edged.services.events import LinkChanged
from edged.supervisor import Supervisor
from edged.topics import INVALID_COMMAND, REPLY, UNKNOWN_COMMANDS_STREAM, Topics
from edged.update.wiring import build_updates
from edged.uplink import Uplink
from edged.uplink.batching import outbox_share
from edged.uplink.shutdown import drain_and_say_offline

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 4.0
"""SIGTERM to exit must fit in systemd's patience and the 5 s the contract promises."""
COMMANDS_AT_STOP_S = 2.0
"""Of that budget, what the commands taken may use to finish (edged.commands.lanes); the
rest (2 s at least) sends their replies and says offline."""
FLOOD_SWEEP_S = 5.0
"""How often the log's flood summaries that are due are written (edged/logs.py)."""


class Node:
    def __init__(
        self, config: EdgedConfig, *, base_dir: Path | None = None, config_path: Path | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.base_dir = base_dir or (config_path.absolute().parent if config_path else None)
        self.config_hash = config_hash(config)
        self.restart_requested = False
        self.exit_code = 0
        self._restart_after_reply = False
        self._terminating = False
        self._stop: asyncio.Event | None = None
        self.log_tail = RecentLog()
        logs.guard(self.log_tail)  # a flood must not push what matters out of the tail
        self.started = time.monotonic()
        self.clock = Clock(trust_system_clock=config.clock.trust_system_clock)
        self.counters = Counters()
        self.bus = Bus(self.counters)
        self.topics = Topics(config.broker.prefix, config.node.fleet, config.node.id)
        self.outbox = Outbox(config.outbox, self.clock)
        self.uplink = Uplink(
            config.broker,
            self.topics,
            self.outbox,
            client_id=config.broker.client_id or f"edged-{config.node.fleet}-{config.node.id}",
            birth=lambda since: birth(config, self.config_hash, since),
            on_command=self._take_command,
            counters=self.counters,
            on_link=self._link_changed,
            clock=self.clock,
        )
        self.outbox.linked = False  # until the first session: samples gather (SD wear)
        self.outbox.sample_gather_s = outbox_share(config.broker.batch_s)
        self.alarms = OutboxAlarms(self.outbox, self.topics, self.clock, self.counters, self.uplink)
        self.outbox.on_pressure = self.alarms.pressure
        state = OutboxState(self.outbox)
        self.host = NodeHost(config.node, self.clock, self.bus, self.counters, state, self.alarms)
        self.authorizer = Authorizer(
            config.security,
            self.clock,
            get_state=state.get,
            set_state=state.set,
            sync_state=self.outbox.sync_state,
        )
        replies = ResponseTopics(config.broker.prefix, config.broker.response_topic_prefix)
        answered = ReplyMemory(
            get_state=state.get,
            set_state=state.set,
            now=self.clock.now,
            keep_s=config.broker.session_expiry_s,
        )
        self.router = CommandRouter(
            self.counters, authorizer=self.authorizer, response_topics=replies, replies=answered
        )
        # a refused reply to a command it does not know is not kept (edged.uplink.sender)
        self.uplink.answers = lambda name: self.router.scope_of(name) is not None
        self.lanes = Lanes(
            self.handle_command, self.router.lane_of, self._interrupted, self.counters
        )
        self.supervisor = Supervisor(
            config.supervisor, self.bus, self.counters, state_dir=Path(config.outbox.path).parent
        )
        self.services: dict[str, Service] = {}  # built once the outbox (their state) is open
        self.updates = build_updates(self, self.bus, self.alarms)
        self.lag = LoopLag()
        self.health_reporter = HealthReporter(config.health)
        self.cpu = CpuMeter()
        self.ready = asyncio.Event()
        self.notifier = SystemdNotifier()

    # -- what the node's own commands see (edged.commands.lifecycle.Lifecycle) --------------

    def _link_changed(self, up: bool) -> None:
        self.outbox.set_linked(up)
        self.bus.emit(LinkChanged(up))

    @property
    def connected(self) -> bool:
        return self.uplink.connected

    @property
    def hears_commands(self) -> bool:
        return self.uplink.connected and self.uplink.hears_commands

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def outbox_depth(self) -> int:
        return self.outbox.depth

    def recent_log(self) -> list[str]:
        return list(self.log_tail.lines)

    async def health(self) -> Health:
        return build_health(
            started=self.started,
            lag=self.lag,
            cpu=self.cpu,
            clock=self.clock.source.value,
            connected=self.uplink.connected,
            reconnects=self.uplink.reconnects,
            outbox=await self.outbox.stats(),
            drivers=self.supervisor.statuses(),
            errors=self.counters.snapshot(),
            mqtt=self.uplink.link_health(),
            parts={k: v for s in self.services.values() for k, v in (await s.report()).items()},
        )

    async def publish_health(self, *, full: bool = False) -> None:
        """A full report or a beat, as `[health]` says (edged.heartbeat)."""
        health = await self.health()
        if report := self.health_reporter.report(health, self.uplink.sessions, full=full):
            self.alarms.publish(*report)

    async def republish(self) -> dict[str, Any]:
        done = await self.uplink.republish()
        await self.publish_health(full=True)
        return {**done, "health": True}

    def request_restart(self, *, after_reply: bool) -> None:
        """Stop and start again from the config file (`restart`, `config.set`, rollback);
        not once a stop signal came (`terminate`)."""
        if self._terminating:
            return
        self.restart_requested = True
        if after_reply:
            self._restart_after_reply = True
        else:
            self._stop_now()

    def request_exit(self, code: int) -> None:
        """Stop, and let `edged run` exit with `code` (a switch of release, a failed trial)."""
        self.exit_code = code
        self._stop_now()

    def terminate(self) -> None:
        """SIGTERM or SIGINT: stop for good, with `offline` said, even when a restart was
        asked for (the restart loop of `edged run` checks the signal too)."""
        self._terminating = True
        self.restart_requested = False
        self._restart_after_reply = False
        self._stop_now()

    def _task_ended(self, task: "asyncio.Task[Any]") -> None:
        """A task of the node failed: its TaskGroup cancels the others and the node ends.
        The uplink is closed with it, in the same turn of the loop (this runs after the
        group's own callback): a cancel that comes as its session fails is swallowed with
        that session's error (a TaskGroup's errors come first), and the uplink took another
        session up, said `online`, and kept the node from ending until the watchdog killed
        it. Closed, it takes none up and its last session leaves `offline` to the will."""
        if not task.cancelled() and task.exception() is not None:
            self.uplink.close()

    def _stop_now(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # -- commands ---------------------------------------------------------------------

    async def _take_command(self, cmd: IncomingCommand) -> None:
        """From the uplink: into its lane (one at a time per owner, owners side by side)."""
        await self.lanes.put(cmd)

    def _interrupted(self, cmd: IncomingCommand, ran: bool) -> None:
        """The node stops with `cmd` still queued (`ran` False) or running: say so."""
        why = (
            "the node stopped while this command ran: what it did may be partial; to run it "
            "again, send it with a new id"
            if ran
            else "the node stopped before this command ran: it did not run"
        )
        self._store_reply(self.router.refuse(cmd, "interrupted", why))

    async def handle_command(self, cmd: IncomingCommand) -> None:
        outcome = await self.router.handle(cmd)
        # no await between the handler's return (a `restart` asking for one after its
        # reply) and this check: no other command's reply is taken for this one's
        stored = self._store_reply(outcome)
        if stored is None:
            return
        self.lanes.answered(cmd)  # a stop during what follows adds no `interrupted` reply
        if self._restart_after_reply:
            self._restart_after_reply = False
            with contextlib.suppress(EdgedError):  # not durable: sent from memory, if at all
                await stored
            await self.uplink.wait_idle(2.0)  # let the reply leave before we go
            self._stop_now()

    def _store_reply(self, outcome: Outcome) -> "asyncio.Future[Any] | None":
        known = outcome.name == INVALID_COMMAND or self.router.scope_of(outcome.name) is not None
        try:
            stored = self.alarms.publish(
                REPLY,
                outcome.reply,
                name=outcome.name,
                response_topic=outcome.response_topic,
                correlation=outcome.correlation,
                stream=None if known else UNKNOWN_COMMANDS_STREAM,
            )
        except Exception:  # the outbox is closing, or a bug: the next command still comes
            self.counters.inc("cmd.reply_not_stored")
            log.exception("the reply to command %s could not be stored", outcome.reply.id)
            return None
        return stored

    # -- running ----------------------------------------------------------------------

    def _start_services(self) -> None:
        """Build the services (they read their kept state) and route their commands."""
        self.services = table.build(self.host, self.config)
        node_own: dict[str, Declares] = {
            "node": Builtin(self),
            "admin": Admin(self),
            "outbox": self.alarms,
            "update": self.updates,
        }
        for lane, owner in [*self.services.items(), *node_own.items()]:
            for spec in owner.commands():
                self.router.add(spec, lane=lane)  # an owner's commands: one at a time

    async def _open_stores(self) -> None:
        """The outbox and the state store opened, the state store carried first when the
        config moved it (`moves.hold` held by the caller: one edged at a time here)."""
        note = moves.note_of(self.config_path) if self.config_path is not None else None
        outbox = Path(self.config.outbox.path)
        if note is not None:  # a config that moved the state store: it comes along
            store = self.config.outbox.state_file
            used = await asyncio.to_thread(moves.follow, note, store, outbox)
            if used != await asyncio.to_thread(Path(store).absolute):
                # the move refused or failed: logged, and in health.errors for ops to see
                self.counters.inc("state.not_moved")
            await asyncio.to_thread(moves.shared, note, used, Path(store), outbox)
            self.outbox.state.path = used
        await self.outbox.open()
        if note is not None and self.outbox.state.durable:
            # a store set aside as corrupt as it opened: the one it was carried from is kept
            sound = not any(loss.cause == "state_corrupt" for loss in self.outbox.state.losses)
            path = self.outbox.state.path
            await asyncio.to_thread(moves.settle, note, path, outbox, sound)
        if self.config_path is not None and self.outbox.durable:
            noted = moves.outbox_note_of(self.config_path)
            await asyncio.to_thread(moves.note_outbox, noted, outbox)

    def status_line(self) -> str:
        """systemd's STATUS= line."""
        return sdnotify.status_line(
            self.supervisor.statuses(), self.uplink.connected, self.outbox.depth
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down cleanly within SHUTDOWN_BUDGET_S."""
        self._stop = stop
        self.bus.bind()
        logging.getLogger().addHandler(self.log_tail)
        moving = None if self.config_path is None else await asyncio.to_thread(
            moves.hold, self.config_path
        )
        if self.config_path is not None:  # the config's own files' writes killed midway
            name = re.escape(self.config_path.name) + r"(?:\.[a-z-]+)?"
            await asyncio.to_thread(clear_left, self.config_path.parent, name)
        try:
            await self._open_stores()
        finally:
            if moving is not None:
                os.close(moving)
        try:
            self.alarms.report_losses()
            self._start_services()
            # the uplink closed as the body ends, whatever ends it (here: one of the stop's
            # steps raising), before the group cancels it once, with no `cancel_and_wait`:
            # a cancel that comes as its session fails is swallowed with that session's
            # error (Python 3.11), and an uplink still open took another session up and
            # kept the node from ending until the watchdog killed it (as `_task_ended`)
            async with asyncio.TaskGroup() as tg, _closed_at_end(self.uplink):
                writer = tg.create_task(self.outbox.run_writer(), name="outbox.writer")
                uplink = tg.create_task(self.uplink.run(), name="uplink")
                health = every(self.config.health.interval_s, self.publish_health)
                others = [
                    tg.create_task(self.lag.run(), name="loop-lag"),
                    tg.create_task(self.alarms.watch(), name="outbox.unwritable"),
                    tg.create_task(health, name="health"),
                    tg.create_task(every(FLOOD_SWEEP_S, logs.sweep), name="logs.sweep"),
                ]
                drivers = [d for d in self.config.drivers if d.enabled]
                others += [
                    tg.create_task(self.supervisor.run(d), name=f"driver.{d.name}") for d in drivers
                ]
                if self.config_path is not None and Probation(self.config_path).active:
                    others.append(tg.create_task(probation_watch(self), name="probation"))
                others += [
                    tg.create_task(svc.run(), name=f"service.{name}")
                    for name, svc in self.services.items()
                ]
                others.append(tg.create_task(self.updates.run(), name="updates"))
                # WATCHDOG=1 only while the loop turns and the writer and uplink live; not for
                # what a restart cannot fix (a dead zone, an unplugged device)
                alive = [task_alive(writer), task_alive(uplink)]
                alive.append(beat_recent(lambda: self.lag.last_beat, 5.0, "loop-lag probe"))
                watchdog = watchdog_loop(self.notifier, alive, status=self.status_line)
                others.append(tg.create_task(watchdog, name="watchdog"))
                for task in [writer, uplink, *others]:
                    task.add_done_callback(self._task_ended)
                self.ready.set()
                self.notifier.ready()
                profile = self.config.node.profile.value
                log.info("edged %s running as %s (%s)", __version__, self.topics.base, profile)
                await stop.wait()
                log.info("stopping")
                if self.restart_requested:  # STOPPING=1 is final; the next READY=1 ends this
                    self.notifier.reloading("restarting from the config file")
                else:
                    self.notifier.stopping("stopping")
                for task in others:
                    task.cancel()
                # the commands taken finish (or are answered `interrupted`), so their
                # replies go with the drain; the uplink reads no more meanwhile
                began = time.monotonic()
                self.uplink.stopping = True  # what it left unacknowledged waits for the next start
                await self.lanes.close(COMMANDS_AT_STOP_S)
                left = SHUTDOWN_BUDGET_S - (time.monotonic() - began)
                await drain_and_say_offline(self.outbox, self.uplink, left)
                self.uplink.close()  # closed before `offline` too; here if the budget ran out
                # one cancel can be lost
                await cancel_and_wait([*others, uplink, writer], cancelled=others)
        finally:
            try:
                await self.lanes.close(0.0)  # a stop cut short: answered, not left running
                await self.outbox.close()
            finally:
                logs.flush()  # a flood's count is said before the process goes, whatever
                logging.getLogger().removeHandler(self.log_tail)
            log.info("stopped")


@contextlib.asynccontextmanager
async def _closed_at_end(uplink: Uplink) -> AsyncIterator[None]:
    """`uplink` closed however the block ends (`Node.run`)."""
    try:
        yield
    finally:
        uplink.close()

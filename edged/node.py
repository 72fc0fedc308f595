"""The node: one root TaskGroup holding the outbox writer, the uplink, health, the
supervised drivers and the services, and a shutdown that says `offline` within seconds."""

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from core.bus import Bus
from core.counters import Counters
from core.driver import Driver
from core.errors import EdgedError
from core.events import Unlock
from drivers.registry import driver_class
from edged import __version__
from edged.access.lists import LIST_BYTES
from edged.clock import Clock
from edged.commands.admin import probation_watch, register_admin
from edged.commands.authorize import Authorizer
from edged.commands.builtin import register_builtin
from edged.commands.declared import register_declared
from edged.commands.response import ResponseTopics
from edged.commands.router import CommandRouter, IncomingCommand
from edged.config.loader import config_hash, validate_options
from edged.config.models import DriverConfig, EdgedConfig
from edged.config.probation import Probation
from edged.diag import RecentLog
from edged.health import CpuMeter, LoopLag, build_health, every
from edged.outbox import Outbox, Publication, PutResult
from edged.outbox.alarms import StorageAlarms, alarm_ack
from edged.payloads import Health, State
from edged.sdnotify import SystemdNotifier, beat_recent, task_alive, watchdog_loop
from edged.services.access import AccessService
from edged.services.doors import DoorService
from edged.services.geofences import GeofenceService
from edged.services.journey import JourneyService
from edged.services.occupancy import OccupancyService
from edged.services.panic import PanicService
from edged.services.position import PositionService
from edged.services.vehicle import VehicleService
from edged.supervisor import Supervisor
from edged.topics import HEALTH, REPLY, Topics, TopicSpec
from edged.uplink import Uplink

if TYPE_CHECKING:
    from edged.kiosk.server import KioskServer

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_S = 4.0
"""SIGTERM to exit must fit in systemd's patience and the 5 s the contract promises."""


class Node:
    def __init__(
        self,
        config: EdgedConfig,
        *,
        base_dir: Path | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.base_dir = base_dir or (config_path.absolute().parent if config_path else None)
        self.restart_requested = False
        self._restart_after_reply = False
        self._stop: asyncio.Event | None = None
        self.recent_log = RecentLog()
        self.clock = Clock(trust_system_clock=config.clock.trust_system_clock)
        self.counters = Counters()
        self.started = time.monotonic()
        self.topics = Topics(config.broker.prefix, config.node.fleet, config.node.id)
        self.config_hash = config_hash(config)
        self.storage_alarms = StorageAlarms(self)
        self.outbox = Outbox(config.outbox, self.clock, on_pressure=self.storage_alarms.pressure)
        self.router = CommandRouter(
            self.counters,
            authorizer=Authorizer(
                config.security, self.clock, get_state=self.get_state, set_state=self.set_state
            ),
            response_topics=ResponseTopics(
                config.broker.prefix, config.broker.response_topic_prefix
            ),
        )
        self.uplink = Uplink(
            config.broker,
            self.topics,
            self.outbox,
            client_id=config.broker.client_id or f"edged-{config.node.fleet}-{config.node.id}",
            birth=self._birth,
            on_command=self.handle_command,
            counters=self.counters,
        )
        self.bus = Bus(self.counters)
        self.supervisor = Supervisor(config.supervisor, self.bus, self.counters)
        self.lag = LoopLag()
        self.cpu = CpuMeter()
        self.ready = asyncio.Event()
        self.notifier = SystemdNotifier()
        self.services: list[Any] = []
        self.kiosk: KioskServer | None = None  # aiohttp is imported only for a kiosk
        register_builtin(self)
        register_admin(self)

    # -- what services and drivers see -----------------------------------------------

    def subscribe(self, event_type: type, handler: Callable[[Any], None]) -> Callable[[], None]:
        return self.bus.subscribe(event_type, handler)

    def emit(self, event: Any) -> None:
        self.bus.emit(event)

    def publish(
        self,
        spec: TopicSpec,
        body: BaseModel,
        *,
        name: str | None = None,
        qos: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> "asyncio.Future[PutResult]":
        pub = Publication.make(
            self.topics,
            spec,
            body,
            name=name,
            qos=qos,
            response_topic=response_topic,
            correlation=correlation,
        )
        future = self.outbox.put_nowait(pub)
        future.add_done_callback(self.storage_alarms.check_stored)
        return future

    def get_state(self, key: str, default: Any = None) -> Any:
        return self.outbox.get_state(key, default)

    def set_state(self, key: str, value: Any) -> None:
        self.outbox.set_state(key, value)

    # -- commands, birth, health, alarms ---------------------------------------------

    async def handle_command(self, cmd: IncomingCommand) -> None:
        outcome = await self.router.handle(cmd)
        try:
            stored = self.publish(
                REPLY,
                outcome.reply,
                name=outcome.name,
                response_topic=outcome.response_topic,
                correlation=outcome.correlation,
            )
        except Exception:  # the outbox is closing, or a bug: the next command still comes
            self.counters.inc("cmd.reply_not_stored")
            log.exception("the reply to command %s could not be stored", outcome.reply.id)
            return
        if self._restart_after_reply:
            self._restart_after_reply = False
            with contextlib.suppress(EdgedError):  # not durable: sent from memory, if at all
                await stored
            await self.uplink.wait_idle(2.0)  # let the reply leave before we go
            self._stop_now()

    def request_restart(self, *, after_reply: bool) -> None:
        """Stop and start again from the config file (`restart`, `config.set`, rollback)."""
        self.restart_requested = True
        if after_reply:
            self._restart_after_reply = True
        else:
            self._stop_now()

    def _stop_now(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _birth(self, since: int) -> State:
        return State(
            state="online",
            version=__version__,
            profile=self.config.node.profile.value,
            name=self.config.node.name or None,
            config_hash=self.config_hash,
            drivers=[f"{d.name}:{d.driver}" for d in self.config.drivers if d.enabled],
            since=since,
        )

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
        )

    async def publish_health(self) -> None:
        self.publish(HEALTH, await self.health())

    # -- running ----------------------------------------------------------------------

    def _driver_factory(self, d: DriverConfig) -> Callable[[], Driver]:
        cls = driver_class(d.driver)
        options = validate_options(cls.Options, d.options, self.base_dir)

        def make() -> Driver:
            driver: Driver = cls(options)
            return driver

        return make

    def _start_services(self) -> None:
        services = self.config.services
        self.position = PositionService(self, services.position)
        self.geofences = GeofenceService(self, services.geofences)
        self.router.register("geofences.set", self.geofences.command_set)
        self.vehicle = VehicleService(
            self,
            services.vehicle,
            services.trips,
            gps_odometer_m=lambda: self.position.odometer_m,
        )
        self.router.register("trip.start", self.vehicle.command_trip_start, scope="operate")
        self.router.register("trip.stop", self.vehicle.command_trip_stop, scope="operate")
        self.services += [self.geofences, self.vehicle]
        self.journey = JourneyService(self)
        register_declared(self.router, self.journey.commands())
        self.services.append(self.journey)
        if any(d.enabled and d.driver.startswith("gps.") for d in self.config.drivers):
            self.services.append(self.position)  # a venue has no GPS: no "fix lost" for it
        self._start_people_services()
        if services.kiosk.enabled:  # after the services it reads; registers kiosk.* commands
            from edged.kiosk.server import start_kiosk  # aiohttp: ~10 MB, only with a screen

            self.kiosk = start_kiosk(self, services.kiosk)
            self.services.append(self.kiosk)

    def _start_people_services(self) -> None:
        """Doors, occupancy, access and the panic alarm: what the GPIO and NFC drivers feed."""
        services, node = self.config.services, self.config.node
        self.doors = DoorService(
            self,
            emit=self.emit,
            lock_present=lambda: self.has_subscribers(Unlock),
            default_pulse_s=services.access.pulse_s,
        )
        self.router.register("door.unlock", self.doors.command_unlock, scope="door")
        self.occupancy: OccupancyService | None = None
        if services.occupancy.enabled:
            self.occupancy = OccupancyService(
                self, services.occupancy, timezone=node.timezone, count=self.counters.inc
            )
            self.occupancy.on_change.append(self.vehicle.trips.set_load)
            self.vehicle.trips.on_stop.append(self.occupancy.on_trip_end)
            self.vehicle.trips.set_load(self.occupancy.count)
            self.router.register("occupancy.reset", self.occupancy.command_reset)
            self.services.append(self.occupancy)
        self.access: AccessService | None = None
        if services.access.enabled:
            self.access = AccessService(
                self,
                services.access,
                profile=node.profile.value,
                fleet=node.fleet,
                timezone=node.timezone,
                emit=self.emit,
                occupancy=self.occupancy,
                count=self.counters.inc,
            )
            self.services.append(self.access)  # keeps the last trusted time on disk
            self.router.register(
                "access.update", self.access.command_update, scope="access", max_bytes=LIST_BYTES
            )
            self.router.register("access.status", self.access.command_status, scope="read")
        self.panic = PanicService(
            self,
            services.panic,
            emit=self.emit,
            last_fix=lambda: self.position.last_valid[0] if self.position.last_valid else None,
            connected=lambda: self.uplink.connected,
        )
        self.router.register("alarm.ack", alarm_ack(self.panic.command_ack, self.storage_alarms))
        self.services.append(self.panic)

    def status_line(self) -> str:
        """systemd's STATUS= line: from memory only, it runs every few seconds."""
        drivers = self.supervisor.statuses()
        running = sum(d.state == "running" for d in drivers)
        link = "online" if self.uplink.connected else "offline (no broker)"
        return f"{link}, outbox {self.outbox.depth}, {running}/{len(drivers)} drivers running"

    def has_subscribers(self, event_type: type) -> bool:
        return self.bus.has_subscribers(event_type)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down cleanly within SHUTDOWN_BUDGET_S."""
        self._stop = stop
        self.bus.bind()
        logging.getLogger().addHandler(self.recent_log)
        await self.outbox.open()
        try:
            self.storage_alarms.report_losses()
            self._start_services()
            factories = [(d, self._driver_factory(d)) for d in self.config.drivers if d.enabled]
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self.outbox.run_writer(), name="outbox.writer")
                uplink = tg.create_task(self.uplink.run(), name="uplink")
                others = [
                    tg.create_task(self.lag.run(), name="loop-lag"),
                    tg.create_task(self.storage_alarms.watch(), name="outbox.unwritable"),
                    tg.create_task(
                        every(self.config.health.interval_s, self.publish_health), name="health"
                    ),
                ]
                others += [
                    tg.create_task(
                        self.supervisor.supervise(d.name, d.driver, make), name=f"driver.{d.name}"
                    )
                    for d, make in factories
                ]
                if self.config_path is not None and Probation(self.config_path).active:
                    others.append(tg.create_task(probation_watch(self), name="probation"))
                others += [
                    tg.create_task(svc.run(), name=f"service.{type(svc).__name__}")
                    for svc in self.services
                    if hasattr(svc, "run")
                ]
                # WATCHDOG=1 only while the loop turns and the writer and uplink live; not for
                # what a restart cannot fix (a dead zone, an unplugged device)
                health_checks = [
                    task_alive(writer),
                    task_alive(uplink),
                    beat_recent(lambda: self.lag.last_beat, 5.0, "loop-lag probe"),
                ]
                others.append(
                    tg.create_task(
                        watchdog_loop(self.notifier, health_checks, status=self.status_line),
                        name="watchdog",
                    )
                )
                self.ready.set()
                self.notifier.ready()
                log.info(
                    "edged %s running as %s (%s)",
                    __version__,
                    self.topics.base,
                    self.config.node.profile.value,
                )
                await stop.wait()
                log.info("stopping")
                if self.restart_requested:  # STOPPING=1 is final; the next READY=1 ends this
                    self.notifier.reloading("restarting from the config file")
                else:
                    self.notifier.stopping("stopping")
                for task in others:
                    task.cancel()
                await self._drain_and_say_offline()
                uplink.cancel()
                writer.cancel()
        finally:
            await self.outbox.close()
            logging.getLogger().removeHandler(self.recent_log)
            log.info("stopped")

    async def _drain_and_say_offline(self) -> None:
        """Commit, send what fits in the budget, say offline; a disk that refuses the
        commits (full, failing) must not keep the node from saying offline."""
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        try:
            async with asyncio.timeout(SHUTDOWN_BUDGET_S - 0.5):
                await self._flush_for_shutdown()
                await self.uplink.wait_idle(max(0.0, deadline - time.monotonic() - 1.5))
                await self.uplink.say_offline()
                await self._flush_for_shutdown()
        except TimeoutError:
            log.warning(
                "shutdown: the broker did not answer in time; queued messages stay "
                "in the outbox for the next start"
            )

    async def _flush_for_shutdown(self) -> None:
        try:
            await self.outbox.flush()
        except (sqlite3.Error, OSError, EdgedError) as exc:
            log.error("shutdown: the outbox could not be committed (%s)", exc)

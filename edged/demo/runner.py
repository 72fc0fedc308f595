"""`edged demo`: a simulated shuttle, a broker, and what dispatch sees, in one command.

The node is the real `Node` (outbox, uplink, supervisor, gps.sim) in this process's loop;
the screen is fed by a separate MQTT subscriber on `{prefix}/#`, so it shows what really
crossed the broker. Nothing needs root, a network or hardware: the broker is embedded
(amqtt on loopback) unless `--broker` names one, and the outbox lives in a temporary
directory that is removed at the end.
"""

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console, RenderableType
from rich.live import Live

from core.errors import ConfigError, EdgedError
from edged.config import load_config
from edged.config.loader import format_errors, with_settings
from edged.config.models import DriverConfig, EdgedConfig
from edged.demo.access import demo_access
from edged.demo.broker import PROTOCOL as EMBEDDED_PROTOCOL
from edged.demo.broker import EmbeddedBroker, quiet_amqtt
from edged.demo.view import DemoInfo, screen, summary
from edged.node import Node
from edged.ops.feed import FleetFeed
from edged.ops.fleet import FleetView
from edged.ops.login import Login, Protocol
from edged.ops.loop import run_until, stop_on_signals
from edged.ops.urls import BrokerAddress, parse_broker_url
from edged.services.access import AccessService

log = logging.getLogger(__name__)

DEMO_HEALTH_S = 2.0
"""Health every 2 s instead of 30: a demo should show a live health panel at once."""
SUBSCRIBE_BUDGET_S = 10.0
NODE_STOP_BUDGET_S = 8.0
"""The node's own shutdown budget (4 s) plus margin: it says `offline` within it."""
OFFLINE_WAIT_S = 2.0


class DemoError(EdgedError):
    """The demo could not run; the message says what went wrong."""


def default_config_path() -> Path:
    """The shuttle example shipped in the package (edged/demo/shipped/, links to config/ in
    a checkout; copies in a wheel), with the route and the CAN log it names beside it, so
    `edged demo` works from a checkout and from install.sh's or pip's non-editable install."""
    return Path(str(resources.files("edged.demo") / "shipped" / "shuttle.toml"))


def demo_config(
    config: EdgedConfig,
    *,
    address: BrokerAddress,
    protocol: Protocol,
    outbox_dir: Path,
    speed: float,
    base_dir: Path,
    health_s: float = DEMO_HEALTH_S,
    kiosk_port: int | None = None,
) -> EdgedConfig:
    """The config with the demo's broker, a throw-away outbox, a faster simulated GPS, and
    the kiosk on `kiosk_port` if given (0: a free one)."""
    drivers: list[DriverConfig] = []
    for i, d in enumerate(config.drivers):
        if d.driver == "gps.sim":
            # start 10 s (simulated) before the end of the first stop: the demo moves at once
            options = {**d.options, "speed_factor": speed, "start_s": 110}
            d = DriverConfig(name=d.name, driver=d.driver, enabled=d.enabled, options=options)
            try:
                with_settings(d, base_dir)
            except ValidationError as exc:
                raise ConfigError(
                    f"--speed {speed:g}",
                    format_errors(exc, prefix=("drivers", i, "options")),
                ) from None
        drivers.append(d)
    broker = config.broker.model_copy(
        update={
            "host": address.host,
            "port": address.port,
            "protocol": protocol,
            # a plain mqtt:// URL: no TLS, no credentials from a field config
            "tls": None,
            "username": None,
            "password_file": None,
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 5.0,
            "batch_s": 0.0,  # a demo of seconds shows each position as it is chosen
        }
    )
    services = config.services
    if kiosk_port is not None:
        kiosk = services.kiosk.model_copy(update={"port": kiosk_port})
        services = services.model_copy(update={"kiosk": kiosk})
    return config.model_copy(
        update={
            "broker": broker,
            "outbox": config.outbox.model_copy(update={"path": outbox_dir / "outbox.sqlite"}),
            "health": config.health.model_copy(update={"interval_s": health_s}),
            "drivers": drivers,
            "services": services,
        }
    )


async def kiosk_port_free(host: str, port: int) -> str | None:
    """None if the kiosk can listen on host:port (bound as its server binds, then let go),
    else why not. The kiosk itself only logs and retries: a daemon must not stop for its
    screen, but a demo whose page cannot open should say so once, before it starts."""
    if port == 0:
        return None
    try:
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port)
    except OSError as exc:  # asyncio's strerror repeats the address: the errno's text only
        return os.strerror(exc.errno) if exc.errno else str(exc)
    server.close()
    await server.wait_closed()
    return None


class LogTail(logging.Handler):
    """The last log lines, shown in a panel: a log line written to the terminal under a
    live screen would tear it."""

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def logs_to(handler: logging.Handler) -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:]
    for h in saved:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in saved:
            root.addHandler(h)


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until --duration, Ctrl-C or SIGTERM; 0 when the node came online."""
    quiet_amqtt()
    speed = float(args.speed)
    duration: float | None = args.duration
    if duration is not None and not duration > 0:
        print(
            f"edged demo: --duration must be a positive number of seconds, got {duration:g}",
            file=sys.stderr,
        )
        return 2
    external: BrokerAddress | None = None
    if args.broker:
        try:
            external = parse_broker_url(args.broker)
        except ValueError as exc:
            print(f"edged demo: --broker: {exc}", file=sys.stderr)
            return 2
        if external.tls:
            print(
                "edged demo: --broker: the demo connects without TLS; give a plain "
                "mqtt://host:port listener (edgectl speaks mqtts:// to a secured fleet)",
                file=sys.stderr,
            )
            return 2
    config_path = Path(args.config) if args.config else default_config_path()
    config = load_config(config_path)
    base_dir = config_path.resolve().parent
    kiosk_port: int | None = getattr(args, "kiosk_port", None)
    kiosk = config.services.kiosk
    if kiosk.enabled:
        port = kiosk.port if kiosk_port is None else kiosk_port
        why = await kiosk_port_free(kiosk.host, port)
        if why is not None:
            print(
                f"edged demo: the kiosk page cannot listen on {kiosk.host}:{port} ({why}): "
                "stop what uses that port, or run the demo with --kiosk-port PORT "
                "(--kiosk-port 0 picks a free one)",
                file=sys.stderr,
            )
            return 2
    with tempfile.TemporaryDirectory(prefix="edged-demo-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            protocol: Protocol
            if external is None:
                broker = await stack.enter_async_context(EmbeddedBroker())
                address, protocol, label = broker.address, EMBEDDED_PROTOCOL, "embedded amqtt"
            else:
                address, protocol, label = external, config.broker.protocol, "external"
            demo = demo_config(
                config,
                address=address,
                protocol=protocol,
                outbox_dir=Path(tmp),
                speed=speed,
                base_dir=base_dir,
                kiosk_port=kiosk_port,
            )
            lists: dict[str, Any] | None = None
            if not demo.services.access.enabled:  # a field config brings its own secret
                demo, lists = demo_access(demo, Path(tmp))
            info = DemoInfo(
                fleet=demo.node.fleet,
                node=demo.node.id,
                broker=label,
                url=address.url,
                protocol=protocol,
                prefix=demo.broker.prefix,
                speed=speed,
            )
            return await Demo(demo, base_dir, info, address, lists=lists).run(duration)
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: the with always returns)


class Demo:
    """The node and a dispatch-side subscriber in one loop; the screen reads only the latter,
    and the report compares what it saw while the node ran with what came after the stop."""

    def __init__(
        self,
        config: EdgedConfig,
        base_dir: Path,
        info: DemoInfo,
        address: BrokerAddress,
        *,
        lists: dict[str, Any] | None = None,
    ) -> None:
        self.info = info
        self.lists = lists
        self.view = FleetView(config.broker.prefix)
        self.feed = FleetFeed(
            Login(address, protocol=config.broker.protocol),
            self.view,
            client_id=f"edged-demo-dispatch-{uuid.uuid4().hex[:8]}",
        )
        self.node = Node(config, base_dir=base_dir)
        self.tty = sys.stdout.isatty()
        self.tail = LogTail()
        self.started = time.monotonic()
        self._kiosk: asyncio.Task[None] | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self, duration: float | None) -> int:
        stop, node_stop = asyncio.Event(), asyncio.Event()
        feed_task = asyncio.create_task(self.feed.run(), name="subscriber")
        node_task: asyncio.Task[None] | None = None
        seen, elapsed = self.view, 0.0
        try:
            with stop_on_signals(stop):
                # subscribed before the node starts: dispatch sees its very first message
                stopped = asyncio.create_task(stop.wait(), name="stopped")
                try:
                    why = await run_until(
                        self.feed.subscribed, SUBSCRIBE_BUDGET_S, feed_task, stopped
                    )
                finally:
                    stopped.cancel()
                if why == "duration":
                    raise DemoError(
                        f"could not subscribe at {self.info.url} within {SUBSCRIBE_BUDGET_S:.0f} s"
                    )
                if why == "stopped":
                    print("edged demo: stopped before the node started", file=sys.stderr)
                    return 130
                self.started = time.monotonic()
                node_task = asyncio.create_task(self.node.run(node_stop), name="node")
                self._kiosk = asyncio.create_task(self._show_kiosk(), name="kiosk-url")
                if self.lists is not None:
                    self._loader = asyncio.create_task(self._load_lists(), name="lists")
                if self.tty:
                    await self._live(stop, duration, node_task, feed_task)
                else:
                    await run_until(stop, duration, node_task, feed_task)
                seen = copy.deepcopy(self.view)  # as dispatch saw it while the node ran
                elapsed = self.elapsed
        finally:
            node_stop.set()
            if self._kiosk is not None:
                self._kiosk.cancel()
            if node_task is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(NODE_STOP_BUDGET_S):
                        await asyncio.gather(node_task, return_exceptions=True)
                await self._wait_offline()
            feed_task.cancel()
            await asyncio.gather(feed_task, return_exceptions=True)
        return self._report(seen, elapsed)

    async def _live(
        self, stop: asyncio.Event, duration: float | None, *tasks: "asyncio.Task[None]"
    ) -> None:
        console = Console()
        with (
            logs_to(self.tail),
            Live(
                self._screen(),
                console=console,
                auto_refresh=False,
                redirect_stderr=False,
                screen=False,
            ) as live,
        ):

            async def refresh() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    live.update(self._screen(), refresh=True)

            refresher = asyncio.create_task(refresh(), name="screen")
            try:
                await run_until(stop, duration, *tasks)
            finally:
                refresher.cancel()
                live.update(self._screen(), refresh=True)

    def _screen(self) -> RenderableType:
        return screen(
            self.view,
            self.info,
            elapsed=self.elapsed,
            status=self.feed.status,
            log_lines=list(self.tail.lines),
        )

    async def _show_kiosk(self) -> None:
        """The kiosk's URL on the screen and in the summary once it listens, with the port
        it got (never before: a URL that does not answer sends people looking)."""
        from edged.services.kiosk import KioskService  # only with a kiosk

        await self.node.ready.wait()
        service = self.node.services.get("kiosk")
        if not isinstance(service, KioskService):
            return
        kiosk = service.server
        await kiosk.listening.wait()
        self.info = dataclasses.replace(self.info, kiosk=kiosk.url)
        if not self.tty:
            print(f"edged demo: kiosk screen at {kiosk.url}", flush=True)

    async def _load_lists(self) -> None:
        """The access lists, signed as dispatch signs them, once the node runs."""
        await self.node.ready.wait()
        access = self.node.services.get("access")
        if isinstance(access, AccessService) and self.lists is not None:
            try:
                await access.command_update(self.lists)
            except EdgedError as exc:
                logging.getLogger(__name__).error("the demo's access lists: %s", exc)

    async def _wait_offline(self) -> None:
        """Give the node's `offline` a moment to cross the broker, so the report can say so."""
        deadline = time.monotonic() + OFFLINE_WAIT_S
        while time.monotonic() < deadline:
            node = self.view.node(self.info.fleet, self.info.node)
            if node is None or node.state == "offline":
                return
            await asyncio.sleep(0.05)

    def _report(self, seen: FleetView, elapsed: float) -> int:
        node = seen.node(self.info.fleet, self.info.node)
        after = self.view.node(self.info.fleet, self.info.node)
        said_offline = after is not None and after.state == "offline"
        shutdown = (
            "shutdown  node said offline"
            if said_offline
            else "shutdown  no offline state received from the node"
        )
        if self.tty:
            print(f"{shutdown.split(maxsplit=1)[1]}; {self.view.received} messages received")
        else:
            print("\n".join([*summary(seen, self.info, elapsed=elapsed), shutdown]), flush=True)
        if node is None or node.state != "online":
            print(
                f"edged demo: the node {self.info.key} never came online at {self.info.url}; "
                "see the log lines above",
                file=sys.stderr,
            )
            return 1
        return 0

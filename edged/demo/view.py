"""The demo screen: one node as dispatch sees it, drawn only from received MQTT messages.

`screen()` is the live rich view for a terminal; `summary()` is the same information as
plain `label  value` lines for logs and pipes, stable enough for a test to parse.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from edged.ops.fleet import FleetView, NodeView
from edged.ops.table import DASH, age, num, state_text


@dataclass(frozen=True)
class DemoInfo:
    """What the screen says about the set-up, as opposed to what was received."""

    fleet: str
    node: str
    broker: str  # "embedded amqtt" or "external"
    url: str
    protocol: str
    prefix: str
    speed: float
    kiosk: str | None = None  # the kiosk page's URL, when the kiosk is on

    @property
    def key(self) -> str:
        return f"{self.fleet}/{self.node}"


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    return grid


def _node_panel(node: NodeView | None) -> Panel:
    grid = _grid()
    if node is None:
        grid.add_row("state", Text("nothing received yet", style="yellow"))
        return Panel(grid, title="state", border_style="blue")
    grid.add_row("state", state_text(node))
    grid.add_row("name", Text(node.name or DASH))
    grid.add_row("version", Text(node.version or DASH))
    grid.add_row("profile", Text(node.profile or DASH))
    grid.add_row("config hash", Text(node.config_hash or DASH))
    grid.add_row("drivers", Text(", ".join(node.drivers) or DASH))
    return Panel(grid, title="state", border_style="blue")


def _position_panel(node: NodeView | None, now: float) -> Panel:
    grid = _grid()
    pos = None if node is None else node.position
    if node is None or pos is None:
        grid.add_row("position", Text("no fix received yet", style="yellow"))
        return Panel(grid, title="position", border_style="blue")
    grid.add_row("lat, lon", f"{pos.lat:.5f}, {pos.lon:.5f}")
    grid.add_row("speed", num(pos.speed_kmh, ".1f", "km/h"))
    grid.add_row("course", num(pos.course, ".0f", "°"))
    grid.add_row("odometer", DASH if pos.odometer_m is None else f"{pos.odometer_m / 1000:.2f} km")
    grid.add_row("fix age", age(node.fix_age_s(now)))
    grid.add_row("satellites", num(pos.satellites, "d"))
    grid.add_row("received", str(node.positions))
    return Panel(grid, title="position", border_style="blue")


def _health_panel(node: NodeView | None) -> Panel:
    grid = _grid()
    health = None if node is None else node.health
    if health is None:
        grid.add_row("health", Text("no report yet", style="yellow"))
        return Panel(grid, title="health", border_style="blue")
    grid.add_row("uptime", num(health.uptime_s, ".0f", "s"))
    grid.add_row("RSS", num(health.rss_mb, ".1f", "MB"))
    grid.add_row("CPU", num(health.cpu_pct, ".1f", "%"))
    grid.add_row("loop lag", num(health.loop_lag_ms, ".1f", "ms"))
    grid.add_row("clock", Text(health.clock or DASH))
    grid.add_row("reconnects", num(health.reconnects, "d"))
    grid.add_row("outbox depth", num(health.outbox_depth, "d"))
    for d in health.drivers:
        style = "green" if d.state == "running" else "bold red"
        line = Text(d.state, style=style)
        if d.restarts:
            line.append(f" ({d.restarts} restarts)")
        if d.last_error:
            line.append(f" {d.last_error}", style="dim")
        grid.add_row(f"driver {d.name}", line)
    errors = ", ".join(f"{k} {v}" for k, v in sorted(health.errors.items()))
    grid.add_row("counters", Text(errors or DASH))
    return Panel(grid, title="health", border_style="blue")


def _messages_panel(node: NodeView | None, view: FleetView) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right")
    if node is not None:
        for topic, count in sorted(node.messages.items()):
            table.add_row(Text(topic), str(count))
    table.add_row("all topics", str(view.received))
    if view.rejected:
        table.add_row("rejected", Text(str(view.rejected), style="bold red"))
    return Panel(table, title="messages", border_style="blue")


def screen(
    view: FleetView,
    info: DemoInfo,
    *,
    elapsed: float,
    status: str,
    log_lines: Sequence[str] = (),
    now: float | None = None,
) -> RenderableType:
    """The live screen: header, four panels, the node's recent log lines."""
    now = time.time() if now is None else now
    node = view.node(info.fleet, info.node)
    header = Text.assemble(
        ("edged demo", "bold"),
        f" · simulated shuttle {info.key} at ×{info.speed:g} · broker {info.url} "
        f"({info.broker}, MQTT {info.protocol}) · {elapsed:.0f} s · ",
        (status, "green" if status == "connected" else "yellow"),
        " · Ctrl-C to stop",
        f"\nkiosk screen: open {info.kiosk} in a browser" if info.kiosk else "",
    )
    top = Table.grid(expand=True, padding=(0, 1))
    top.add_column(ratio=1)
    top.add_column(ratio=1)
    top.add_row(_node_panel(node), _position_panel(node, now))
    top.add_row(_health_panel(node), _messages_panel(node, view))
    note = Text(f"Everything above is what a subscriber to {info.prefix}/# received.", style="dim")
    parts: list[RenderableType] = [header, top, note]
    if log_lines:
        parts.append(
            Panel(
                Text("\n".join(log_lines[-6:]), no_wrap=True, overflow="ellipsis"),
                title="node log",
                border_style="dim",
            )
        )
    return Group(*parts)


def summary(
    view: FleetView,
    info: DemoInfo,
    *,
    elapsed: float,
    now: float | None = None,
) -> list[str]:
    """Plain `label  value` lines: `node  FLEET/NODE STATE`, `position  ... (N received)`..."""
    now = time.time() if now is None else now
    node = view.node(info.fleet, info.node)
    lines = [
        f"edged demo: {elapsed:.1f} s, broker {info.url} ({info.broker}, MQTT {info.protocol}), "
        f"what a subscriber to {info.prefix}/# received:",
    ]
    if info.kiosk:
        lines.append(f"kiosk     {info.kiosk}")
    if node is None:
        lines.append(f"node      {info.key} nothing received")
        lines.append(f"messages  {view.received} in all, {view.rejected} rejected")
        return lines
    lines.append(
        f"node      {node.key} {node.state or 'no-state'} (version {node.version or DASH}, "
        f"profile {node.profile or DASH}, config {node.config_hash or DASH})"
    )
    lines.append(f"drivers   {', '.join(node.drivers) or DASH}")
    pos = node.position
    if pos is None:
        lines.append(f"position  none ({node.positions} received)")
    else:
        odometer = DASH if pos.odometer_m is None else f"{pos.odometer_m / 1000:.2f} km"
        lines.append(
            f"position  {pos.lat:.5f}, {pos.lon:.5f} speed {num(pos.speed_kmh, '.1f', 'km/h')} "
            f"odometer {odometer} fix age {age(node.fix_age_s(now))} "
            f"({node.positions} received)"
        )
    health = node.health
    if health is None:
        lines.append("health    none received")
    else:
        lines.append(
            f"health    uptime {num(health.uptime_s, '.0f', 's')} "
            f"rss {num(health.rss_mb, '.1f', 'MB')} cpu {num(health.cpu_pct, '.1f', '%')} "
            f"loop lag {num(health.loop_lag_ms, '.1f', 'ms')} "
            f"reconnects {num(health.reconnects, 'd')} "
            f"outbox depth {num(health.outbox_depth, 'd')}"
        )
        for d in health.drivers:
            lines.append(
                f"driver    {d.name} {d.state}, {d.restarts} restarts"
                + (f", last error: {d.last_error}" if d.last_error else "")
            )
    counts = ", ".join(f"{t} {n}" for t, n in sorted(node.messages.items()))
    lines.append(f"messages  {counts or DASH} ({view.received} in all, {view.rejected} rejected)")
    return lines

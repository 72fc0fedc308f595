"""How the fleet looks on an operator's terminal: one row per node, from a `FleetView`.

Cells are `rich.text.Text`, never markup strings: a node name such as `[red]` must print
as itself, not restyle the screen.
"""

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from edged.ops.fleet import FleetView, NodeView

DASH = "–"


def age(seconds: float | None) -> str:
    """A short human age: 0.4 s, 12 s, 3 min, 2 h, 4 d."""
    if seconds is None:
        return DASH
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def num(value: float | int | None, fmt: str = ".1f", unit: str = "") -> str:
    if value is None:
        return DASH
    text = format(value, fmt)
    return f"{text} {unit}" if unit else text


def state_text(node: NodeView) -> Text:
    if node.state == "online":
        return Text("online", style="bold green")
    if node.state == "offline":
        return Text("offline", style="bold red")
    return Text("no state", style="yellow")


def occupancy_text(node: NodeView) -> Text:
    occ = node.occupancy
    if occ is None:
        return Text(DASH)
    text = f"{occ.count}/{occ.capacity}" if occ.capacity else str(occ.count)
    if occ.percent is not None:
        text += f" ({occ.percent:.0f} %)"
    if occ.doubt:  # a node's own words: a Text, so `[/x]` neither restyles nor raises
        text += " doubt: " + ", ".join(occ.doubt)
    return Text(text)


def lists_text(node: NodeView, now: float) -> Text:
    """The access lists' version and age; red when past their expires (revocations since
    do not reach that node)."""
    lists = None if node.health is None else node.health.lists
    if lists is None:
        return Text(DASH)
    text = f"v{lists.version} {age(node.lists_age_s(now))}"
    if node.lists_expired(now):
        return Text(f"{text} expired", style="bold red")
    return Text(text)


def alarms_text(node: NodeView) -> Text:
    active = node.active_alarms
    if not active:
        return Text(DASH)
    return Text(", ".join(a.kind for a in active), style="bold red")


def fleet_table(
    view: FleetView,
    now: float,
    *,
    title: str | None = None,
    caption: str | None = None,
    named: Iterable[str] = (),
) -> Table:
    """Every node seen under the prefix: state, last position and its age, load, alarms.
    A node `named` (FLEET/NODE, `edgectl watch --node`) that nothing was heard from gets a
    row too: the operator asked for it, and a missing row reads as a typo of the tool's."""
    table = Table(title=title, caption=caption, expand=False)
    table.add_column("fleet/node", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("last seen", justify="right", no_wrap=True)
    table.add_column("position", no_wrap=True)
    table.add_column("km/h", justify="right", no_wrap=True)
    table.add_column("fix age", justify="right", no_wrap=True)
    table.add_column("occupancy", justify="right", no_wrap=True)
    table.add_column("outbox", justify="right", no_wrap=True)
    table.add_column("lists", no_wrap=True)
    table.add_column("alarms")
    for node in view.sorted_nodes():
        pos = node.position
        table.add_row(
            Text(node.key),
            state_text(node),
            age(node.last_seen_age_s(now)),
            DASH if pos is None else f"{pos.lat:.5f}, {pos.lon:.5f}",
            DASH if pos is None else num(pos.speed_kmh, ".0f"),
            age(node.fix_age_s(now)),
            occupancy_text(node),
            num(node.outbox_depth, "d"),
            lists_text(node, now),
            alarms_text(node),
        )
    for key in sorted(set(named) - view.nodes.keys()):
        table.add_row(Text(key), Text("nothing heard", style="yellow"), *[DASH] * 8)
    if table.row_count == 0:
        table.add_row(Text("no node seen yet", style="dim"), *[""] * 9)
    return table

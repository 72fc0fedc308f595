"""`edgectl update FLEET` (a staged rollout) and `edgectl update status FLEET` (a table).

    edgectl update creuse --bundle edged-0.2.0-aarch64.bundle \\
        --url https://files.example/edged-0.2.0-aarch64.bundle --key release.key --canary 10%
    edgectl update status creuse [--node shuttle-07]

The bundle file is read here only for its version, size and SHA-256: the nodes fetch it
from --url (served with a certificate of their [update] ca_file) and check everything.
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edged.cli.release import read_bundle_facts, refused_url
from edged.errors import CommandError
from edged.ops.login import Login
from edged.ops.rollout import NodeUpdate, Outcome, Rollout, fleet_status, parse_canary
from edged.ops.table import DASH

EXIT_OK, EXIT_STOPPED, EXIT_USAGE = 0, 1, 2
EXIT_CODES = """exit codes:
  0  done: every node to update confirmed (or none needed it); `update status`: the table
  1  stopped: a node rolled back, failed, refused update.apply or did not confirm within
     --timeout (STOPPED: on stderr names it); no later wave was sent
  2  usage error: bad arguments, an unreadable bundle, no --key
  4  the broker could not be reached or refused the connection"""
RESULT_STYLE = {"confirmed": "green", "rolled_back": "bold red", "failed": "bold red",
                "refused": "bold red", "trial": "yellow"}  # fmt: skip


def add_parser(
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
    env_note: str,
) -> None:
    up = sub.add_parser(
        "update",
        parents=[common],
        help="roll a release bundle out to a fleet in waves; `update status FLEET`: a table",
        description=__doc__,
        epilog=f"{EXIT_CODES}\n\n{env_note}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("words", nargs="+", metavar="FLEET", help="FLEET, or: status FLEET")
    up.add_argument(
        "--bundle", type=Path, metavar="FILE", help="the bundle (edgectl release build)"
    )
    up.add_argument("--url", help="https:// where the nodes download it")
    up.add_argument("--key", type=Path, metavar="FILE", help="an update-scope signing key")
    up.add_argument("--kid", metavar="ID", help="its id in the nodes' [[security.keys]]")
    up.add_argument(
        "--canary", default="1", help="nodes updated first: a count or a share, e.g. 10%% (1)"
    )
    up.add_argument(
        "--wave-size", type=int, metavar="N", help="nodes per later wave (default: doubling)"
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="longest wait for a wave's confirmations, seconds (1800)",
    )
    up.add_argument(
        "--switch", choices=["now", "parked"], help="override the nodes' [update] switch"
    )
    up.add_argument(
        "--node",
        action="append",
        metavar="NODE",
        help="only these nodes (repeat for more); their retained topics are subscribed by "
        "name, so a broker that gives retained messages only to exact subscriptions "
        "(RabbitMQ 3.10) shows them even when they are silent",
    )
    up.add_argument(
        "--wait",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds to hear from the nodes (3); without --node on RabbitMQ 3.10, a node is "
        "found only if it publishes within them (docs/brokers.md)",
    )


async def run_rollout(
    args: argparse.Namespace, login: Login, prefix: str, fleet: str, key: Any
) -> int:
    if args.bundle is None or not args.url:
        print("edgectl update: --bundle FILE and --url URL are needed", file=sys.stderr)
        return EXIT_USAGE
    if (refused := refused_url(args.url)) is not None:
        print(f"edgectl update: --url: {refused}", file=sys.stderr)
        return EXIT_USAGE
    if key is None:
        print(
            "edgectl update: --key FILE (an update-scope key) signs update.apply", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        version, size, sha256 = read_bundle_facts(args.bundle)
        canary = parse_canary(args.canary)
    except (CommandError, ValueError, OSError) as exc:
        print(f"edgectl update: {exc}", file=sys.stderr)
        return EXIT_USAGE
    apply_args: dict[str, Any] = {
        "version": version,
        "url": args.url,
        "size": size,
        "sha256": sha256,
    }
    if args.switch:
        apply_args["switch"] = args.switch
    rollout = Rollout(
        login, prefix, fleet, version=version, args=apply_args, key=key, kid=args.kid,
        canary=canary, wave_size=args.wave_size, timeout_s=args.timeout, discover_s=args.wait,
        nodes=args.node, say=lambda m: print(f"edgectl update: {m}", file=sys.stderr),
    )  # fmt: skip
    outcome = await rollout.run()
    report(outcome, version)
    return EXIT_OK if outcome.ok else EXIT_STOPPED


def report(outcome: Outcome, version: str) -> None:
    for name, why in sorted(outcome.skipped.items()):
        print(f"{name}: {why}")
    for node in sorted(outcome.nodes.values(), key=lambda n: (n.wave or 99, n.node)):
        if node.wave is not None:
            detail = f" ({node.code}: {node.reason})" if node.code or node.reason else ""
            print(f"{node.node}: wave {node.wave}, {node.state}{detail}")
    if outcome.ok:
        print(f"done: {outcome.why} ({version})")
    else:
        print(f"STOPPED: {outcome.why}", file=sys.stderr)


async def run_status(args: argparse.Namespace, login: Login, prefix: str, fleet: str) -> int:
    say = (lambda m: print(f"edgectl: {m}", file=sys.stderr)) if args.verbose else None
    nodes = await fleet_status(login, prefix, fleet, args.wait, say=say, nodes=args.node)
    console = Console() if sys.stdout.isatty() else Console(width=160, no_color=True)
    console.print(status_table(fleet, nodes))
    return EXIT_OK


def status_table(fleet: str, nodes: dict[str, NodeUpdate]) -> Table:
    table = Table(title=f"edgectl update status {fleet}", caption=time.strftime("%H:%M:%S"))
    for column in ("node", "online", "running", "update", "target", "progress", "reason"):
        table.add_column(column)
    for name in sorted(nodes):
        n = nodes[name]
        progress = f"{n.percent} %" if n.percent is not None and n.state == "downloading" else DASH
        reason = f"{n.code}: {n.reason}" if n.code else (n.reason or DASH)
        table.add_row(
            Text(n.node),
            Text("yes" if n.online else "no", style="green" if n.online else "red"),
            Text(n.running or DASH),
            Text(n.state, style=RESULT_STYLE.get(n.state, "")),
            Text(n.target or DASH),
            Text(progress),
            Text(reason),
        )
    return table


def dispatch(args: argparse.Namespace, login: Login, prefix: str, key: Any, check_name: Any) -> int:
    words = args.words
    if len(words) == 2 and words[0] == "status":
        return asyncio.run(run_status(args, login, prefix, check_name(words[1])))
    if len(words) != 1:
        print("edgectl update: FLEET, or: status FLEET", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(run_rollout(args, login, prefix, check_name(words[0]), key))

"""`python -m hil run SCENARIO`: the rig plays a scenario and says what dispatch received."""

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from hil.rig.report import Report
from hil.rig.rig import Rig
from hil.scenarios import scenarios


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hil", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the scenarios")
    run = sub.add_parser("run", help="play one scenario")
    run.add_argument("scenario", metavar="SCENARIO", help="e.g. shuttle-day (see `list`)")
    run.add_argument(
        "--quick", action="store_true", help="shorter outages and waits (what CI runs)"
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (logs)")
    run.add_argument(
        "--hw",
        type=Path,
        metavar="BENCH.toml",
        help="real devices on a Pi instead of the emulators (see hil/README.md)",
    )
    interop = sub.add_parser(
        "interop", help="broker-check, a node and edgectl against a packaged broker"
    )
    interop.add_argument("broker", metavar="BROKER", help="mosquitto, amqtt, aedes or rabbitmq")
    interop.add_argument("--json", action="store_true", help="print the report as JSON")
    interop.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it")
    fleet = sub.add_parser(
        "fleet", help="a simulated fleet publishing the contract on real routes (for the feed)"
    )
    fleet.add_argument("--nodes", type=int, default=50, metavar="N", help="vehicles (50)")
    fleet.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    fleet.add_argument("--prefix", default="rnst/v1")
    fleet.add_argument("--fleet", default="sim", help="fleet id of the vehicles (sim)")
    fleet.add_argument(
        "--period",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between a vehicle's positions (5)",
    )
    fleet.add_argument(
        "--offline-share",
        type=float,
        default=0.02,
        metavar="F",
        help="share of the fleet going offline every 30 s, back 10-60 s later",
    )
    fleet.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    fleet.add_argument("--seed", type=int, default=16)
    return p


async def play(name: str, workdir: Path, *, quick: bool, verbose: bool, hw: Path | None) -> Report:
    scenario = scenarios()[name]
    report = Report(name, verbose=verbose)
    setup = scenario.setup(quick)
    if hw is not None:
        from hil.rig.hardware import HardwareRig

        rig: Rig = HardwareRig(workdir, setup, bench=hw)
    else:
        rig = Rig(workdir, setup)
    try:
        await report.step("rig up: broker, devices, daemon online, lists loaded", rig.start())
        if report.ok:
            await scenario.run(rig, report, quick)
    finally:
        await rig.close()
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fleet":
        from edged.ops.urls import parse_broker_url
        from hil.fleet.sim import FleetSim

        address = parse_broker_url(args.broker)
        if address.tls or not 1 <= args.nodes <= 100_000 or not 0 <= args.offline_share <= 1:
            print(
                "hil fleet: a plain mqtt:// broker, 1-100000 nodes, a share in 0..1",
                file=sys.stderr,
            )
            return 2
        sim = FleetSim(
            address.host,
            address.port,
            args.nodes,
            prefix=args.prefix,
            fleet=args.fleet,
            period_s=args.period,
            offline_share=args.offline_share,
            seed=args.seed,
        )
        print(f"hil fleet: {args.nodes} vehicles on {address.url}", file=sys.stderr)
        try:
            print(json.dumps(asyncio.run(sim.run(args.duration)), indent=2))
        except KeyboardInterrupt:
            print(json.dumps(sim.summary(), indent=2))
        return 0
    if args.command == "interop":
        from hil import interop

        with tempfile.TemporaryDirectory(prefix="hil-interop-") as tmp:
            workdir = args.keep or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            return interop.main(args.broker, workdir, args.json)
    found = scenarios()
    if args.command == "list":
        for s in found.values():
            print(f"{s.name:14} {s.doc.strip().splitlines()[0]}")
        return 0
    if args.scenario not in found:
        print(f"hil: no scenario {args.scenario!r}; known: {', '.join(found)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hil-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{args.scenario}: rig in {workdir}", file=sys.stderr)
        report = asyncio.run(
            play(args.scenario, workdir, quick=args.quick, verbose=not args.json, hw=args.hw)
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

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

"""`edged`: run the daemon, check a config, print payload schemas, run the demo."""

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, EdgedError
from core.threads import DaemonThreadExecutor
from drivers.nfc import quiet_libnfc
from edged import __version__
from edged.cli.signals import StopSignals
from edged.logs import setup_logging

if TYPE_CHECKING:
    from edged.node import Node

EXIT_CONFIG = 78
"""`edged run` with a config it cannot use: EX_CONFIG of sysexits.h, `status=78/CONFIG` in
`systemctl status`. The unit's RestartPreventExitStatus= names it: restarting cannot fix a
config, so systemd waits for a person instead of restarting every 5 s for ever."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edged", description=__doc__)
    p.add_argument("--version", action="version", version=f"edged {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, type=Path, help="TOML config file")

    check = sub.add_parser("check-config", help="validate config files; exit 2 when one is bad")
    check.add_argument("files", nargs="+", type=Path)

    doctor = sub.add_parser("doctor", help="check this machine: config, devices, broker, clock")
    doctor.add_argument(
        "-c", "--config", type=Path, default=Path("/etc/edged/edged.toml"), help="%(default)s"
    )
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per check")
    doctor.add_argument("--json", action="store_true", help="a JSON list of the checks")

    wifi = sub.add_parser("wifi", help="the riders' hotspot (docs/wifi.md)")
    wifi_sub = wifi.add_subparsers(dest="wifi_command", required=True)
    apply = wifi_sub.add_parser(
        "apply", help="write the access point, DHCP, DNS and firewall from [wifi]; idempotent"
    )
    apply.add_argument(
        "-c", "--config", type=Path, default=Path("/etc/edged/edged.toml"), help="%(default)s"
    )
    apply.add_argument(
        "--dry-run", action="store_true", help="say what would change; write and run nothing"
    )
    apply.add_argument(
        "--root", type=Path, help="write under this directory (an image); run nothing"
    )

    schema = sub.add_parser("schema", help="print the JSON Schema of each payload")
    schema.add_argument("topic", nargs="?", help="one topic, e.g. position")

    demo = sub.add_parser("demo", help="a simulated shuttle with an embedded broker")
    demo.add_argument("--broker", help="mqtt://host:port of a broker to use instead")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--speed", type=float, default=20.0, help="simulation speed factor")
    demo.add_argument("--config", type=Path, help="shuttle config (default: config/shuttle.toml)")
    demo.add_argument(
        "--kiosk-port",
        type=_port,
        metavar="PORT",
        help="the kiosk page's port (default: the config's, 8080); 0 picks a free one",
    )
    return p


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: 0-65535 (0: a free one)")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    # the environment is written here, on the main thread before any other starts, or never
    # (glibc's setenv races a getenv in another thread): a node's config may gain a reader
    # on a `restart`, when threads of the previous node may still run
    quiet_libnfc()
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.files)
    if args.command == "schema":
        return print_schema(args.topic)
    if args.command == "wifi":
        from edged.cli.wifi import wifi_apply

        return wifi_apply(args.config, dry_run=args.dry_run, root=args.root)
    if args.command == "doctor":
        from edged.doctor import doctor

        return doctor(args.config, timeout=args.timeout, json=args.json, verbose=args.verbose)
    setup_logging(args.verbose)
    try:
        if args.command == "run":
            return run(args.config)
        if args.command == "demo":
            from edged.demo.runner import run_demo

            return asyncio.run(run_demo(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        if args.command == "run":
            print(not_started(args.config), file=sys.stderr)
            return EXIT_CONFIG
        return 2
    except EdgedError as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def not_started(config_file: Path) -> str:
    return (
        f"edged: not started: fix {config_file} (`edged check-config {config_file}` lists "
        f"what is wrong). Exit status {EXIT_CONFIG}: systemd does not restart edged until "
        "then; `systemctl restart edged` once it is fixed."
    )


def check_config(files: list[Path]) -> int:
    """Exit 2 when a file is bad; a warning (edged.config.advice) leaves it ok."""
    from edged.config import load_config
    from edged.config.advice import (
        beams_without_their_door,
        broker_in_clear,
        venue_without_rooms,
    )

    bad = 0
    for file in files:
        try:
            config = load_config(file)
        except ConfigError as exc:
            bad += 1
            print(exc, file=sys.stderr)
            continue
        print(f"{file}: ok")
        for advice in (
            broker_in_clear(config.broker),
            venue_without_rooms(config),
            beams_without_their_door(config),
        ):
            if advice is not None:
                what, todo = advice
                print(f"{file}: warning: {what}; {todo}", file=sys.stderr)
    return 2 if bad else 0


def print_schema(topic: str | None) -> int:
    from edged.schema import schemas

    all_schemas = schemas()
    if topic is not None:
        if topic not in all_schemas:
            print(f"edged: no topic {topic!r}; topics: {', '.join(all_schemas)}", file=sys.stderr)
            return 2
        all_schemas = {topic: all_schemas[topic]}
    print(json.dumps(all_schemas, indent=2, ensure_ascii=False))
    return 0


def run(config_file: Path) -> int:
    """Load the config (before the loop starts: a bad config never half-starts a node), run;
    start again from the file after `restart`, `config.set` or a rollback. Exits to switch
    to another release (the launcher starts it) or when the release on trial gives up."""
    signals = StopSignals()
    signals.install()  # first: a SIGTERM during the imports and the config's load is kept
    from edged import startgc

    startgc.hold_full_collections()  # before the imports: see edged.startgc
    from edged.config import load_config
    from edged.config.probation import Probation
    from edged.node import Node
    from edged.update.trial import EX_TEMPFAIL, on_trial_failure, record_asked_stop

    while signals.received is None:
        try:
            config = load_config(config_file)
        except ConfigError as exc:
            probation = Probation(config_file)
            if not probation.active:
                if on_trial_failure("config_rejected", f"rejected the running config: {exc}"):
                    print(exc, file=sys.stderr)  # not 78: systemd must restart, to roll back
                    return EX_TEMPFAIL
                raise
            logging.getLogger("edged").error("the config on probation does not load: rolled back")
            probation.rollback()
            continue
        if signals.received is not None:  # came while the config loaded: start nothing
            break
        probation = Probation(config_file)
        if probation.active and not probation.remaining_s(config.remote.rollback_after_s):
            # restarted by systemd (a crash, the watchdog, OOM) until its time ran out
            logging.getLogger("edged").error(
                "the config on probation did not reach the broker within %g s: rolled back",
                config.remote.rollback_after_s,
            )
            probation.rollback()
            continue
        try:
            node = Node(config, config_path=config_file)
            asyncio.run(serve(node, signals))
        except EdgedError as exc:
            if probation.active:  # its watch never ran: no start would ever decide
                logging.getLogger("edged").error(
                    "the config on probation does not start (%s): rolled back", exc
                )
                probation.rollback()
                continue
            on_trial_failure("crashed", f"stopped at start: {exc}")
            raise
        if node.updates.switch_pending is not None:
            node.updates.finish_switch()
            return 0
        if signals.received is not None:
            record_asked_stop()  # a trial's start stopped on purpose is not held against it
        if signals.received is not None and probation.active:
            probation.pause()  # stopped on purpose: the time until the next start is not its
        if node.exit_code or not node.restart_requested or signals.received is not None:
            return node.exit_code
        logging.getLogger("edged").info("restarting from %s", config_file)
        startgc.hold_full_collections()  # and the old node's cycles collectable again
    record_asked_stop()
    return 0  # stopped by a signal between two nodes


async def serve(node: "Node", signals: StopSignals) -> int:
    """Run `node` until a stop signal; once it runs, start-up is over for the collector.
    Blocking calls go to threads that never hold the exit (`core.threads`)."""
    from edged import startgc

    asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())
    stop = asyncio.Event()

    def stop_for_good() -> None:
        node.terminate()
        stop.set()

    signals.attach(stop_for_good)
    run = asyncio.create_task(node.run(stop), name="node")
    ready = asyncio.create_task(node.ready.wait(), name="node.ready")
    await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    frozen = startgc.running()
    logging.getLogger("edged").debug("start-up over: %d objects frozen (edged.startgc)", frozen)
    settle = asyncio.get_running_loop().call_later(startgc.SETTLE_S, startgc.settled)
    try:
        await run
    finally:
        settle.cancel()
        signals.detach()
    return 0

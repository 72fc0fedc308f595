"""`edgectl`: what operations do with a fleet from a shell, over MQTT only.

  edgectl watch --broker mqtt://host:1883            live table of every node under the prefix
  edgectl cmd creuse/shuttle-07 ping --broker ...    send a command, print the node's reply
  edgectl broker-check mqtts://host:8883 --cafile ca.crt --cert dispatch.crt
                                                     what this broker does that edged relies on
  edgectl feed --broker mqtts://host:8883 --listen 0.0.0.0:8080 --gtfs gtfs.zip
                                                     GTFS-Realtime, SIRI Lite and a fleet page
  edgectl release build --target aarch64 --key release.key --kid release
                                                     a signed release bundle (docs/updates.md)
  edgectl update creuse --bundle FILE --url https://... --key release.key --canary 10%
                                                     roll it out in waves; `update status`

It needs nothing but the broker: the same topics and payloads dispatch uses (docs/topics.md).
MQTT 5 is tried first, then 3.1.1 (-v says which was used).
"""

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console, RenderableType
from rich.live import Live

from core.errors import EdgedError
from edged import __version__
from edged.cli import access as access_cli
from edged.cli import release as release_cli
from edged.cli import update as update_cli
from edged.config.base import NAME_PATTERN
from edged.ops.brokercheck import CHECK_EPILOG, broker_check
from edged.ops.client import BrokerUnreachableError, Say, connect, refused
from edged.ops.commands import (
    Request,
    copy_from,
    default_response_topic,
    make_request,
    reply_of,
)
from edged.ops.feed import DropReport, FleetFeed
from edged.ops.fleet import FleetView
from edged.ops.login import PROTOCOL_CHOICES, Login, LoginError
from edged.ops.loop import run_until, stop_on_signals
from edged.ops.screen import json_for_terminal, printable
from edged.ops.table import fleet_table
from edged.ops.urls import parse_broker_url
from edged.security.signing import generate_key_file, load_private_key
from edged.topics import COMMAND_NAME
from edged.transit import cli as feed_cli

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_BROKER = 4

ENV_NOTE = """Each broker option has an environment default: $EDGECTL_BROKER, $EDGECTL_PROTOCOL,
$EDGECTL_USERNAME, $EDGECTL_PASSWORD_FILE, $EDGECTL_CAFILE, $EDGECTL_CERT, $EDGECTL_CERT_KEY,
$EDGECTL_PREFIX, $EDGECTL_RESPONSE_PREFIX."""

EPILOG = f"""exit codes:
  0  done (cmd: the node replied ok)
  1  the node replied with an error (code and message on stderr)
  2  usage error: bad arguments, bad JSON, bad FLEET/NODE or broker URL
  3  no reply within --timeout: the node may be offline (check with edgectl watch)
  4  the broker could not be reached or refused the connection

{ENV_NOTE}"""

NAME = re.compile(NAME_PATTERN)
PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
"""The same rule as `broker.prefix` in the node config: no wildcards, no empty levels."""


class UsageError(Exception):
    """Bad input on the command line: exit 2 with the message."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _env(name: str) -> str | None:
    return os.environ.get(f"EDGECTL_{name}") or None


def _login_options() -> argparse.ArgumentParser:
    """The broker options every subcommand that talks to the broker shares."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("broker")
    group.add_argument(
        "--broker",
        default=_env("BROKER"),
        metavar="URL",
        help="the broker: mqtt://host:1883, or mqtts://host:8883 for TLS ($EDGECTL_BROKER)",
    )
    group.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default=_env("PROTOCOL") or "auto",
        help="MQTT version: auto tries 5, then 3.1.1 (default: auto; $EDGECTL_PROTOCOL)",
    )
    group.add_argument(
        "--username", default=_env("USERNAME"), help="the broker's user name ($EDGECTL_USERNAME)"
    )
    group.add_argument(
        "--password-file",
        type=Path,
        default=_env("PASSWORD_FILE"),
        metavar="FILE",
        help="file holding the password, mode 600 ($EDGECTL_PASSWORD_FILE)",
    )
    group.add_argument(
        "--cafile",
        type=Path,
        default=_env("CAFILE"),
        metavar="FILE",
        help="CA that signed the broker's certificate (default: the system's; $EDGECTL_CAFILE)",
    )
    group.add_argument(
        "--cert",
        type=Path,
        default=_env("CERT"),
        metavar="FILE",
        help="client certificate, e.g. dispatch.crt from fleet-certs.sh ($EDGECTL_CERT)",
    )
    group.add_argument(
        "--cert-key",
        type=Path,
        default=_env("CERT_KEY"),
        metavar="FILE",
        help="its private key, mode 600 (default: the --cert file with .key; $EDGECTL_CERT_KEY)",
    )
    group.add_argument(
        "--prefix",
        default=_env("PREFIX") or "rnst/v1",
        help="topic prefix (default: rnst/v1; $EDGECTL_PREFIX)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="say how it connected (protocol, fallback)"
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _login_options()
    p = argparse.ArgumentParser(
        prog="edgectl",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"edgectl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    watch = sub.add_parser(
        "watch",
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="live table of every node under the prefix (printed once when not a terminal)",
    )
    watch.add_argument(
        "--duration",
        type=_seconds,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C)",
    )
    watch.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="FLEET/NODE",
        help="show this node even if it is silent: its retained topics are subscribed by name "
        "(for brokers such as RabbitMQ 3.10 that give retained messages only to exact "
        "subscriptions); repeat for more",
    )

    cmd = sub.add_parser(
        "cmd",
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="send a command to one node and print its reply",
    )
    cmd.add_argument("target", metavar="FLEET/NODE", help="e.g. creuse/shuttle-07")
    cmd.add_argument("name", metavar="NAME", help="command name, e.g. ping")
    cmd.add_argument(
        "args",
        metavar="JSON_ARGS",
        nargs="?",
        help="""arguments as a JSON object, e.g. '{"door": "front"}', or @FILE""",
    )
    cmd.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="how long to wait for the reply (default: 10)",
    )
    cmd.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="sign with this Ed25519 private key (door.unlock, access.update, config.set…)",
    )
    cmd.add_argument("--kid", metavar="ID", help="the key's id in the node's [[security.keys]]")
    cmd.add_argument(
        "--response-prefix",
        default=_env("RESPONSE_PREFIX"),
        metavar="TOPIC",
        help="MQTT 5 response topics go under this (the nodes' [broker] "
        "response_topic_prefix; default: PREFIX/FLEET/_replies; $EDGECTL_RESPONSE_PREFIX)",
    )
    cmd.add_argument(
        "--no-response-topic",
        action="store_true",
        help="send no MQTT 5 response topic: wait on reply/NAME only",
    )

    check = sub.add_parser(
        "broker-check",
        parents=[common],
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="probe a broker before deploying: what edged relies on, what it lacks",
    )
    check.add_argument(
        "url", nargs="?", metavar="URL", help="the broker (default: --broker, $EDGECTL_BROKER)"
    )
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument(
        "--window",
        type=int,
        default=32,
        metavar="N",
        help="the nodes' [broker] window, compared with the broker's receive maximum (32)",
    )
    check.add_argument(
        "--wait",
        type=_seconds,
        default=3.0,
        metavar="S",
        help="how long each probe waits for a message that should come (default: 3)",
    )

    update_cli.add_parser(sub, common, ENV_NOTE)
    feed_cli.add_parser(sub, common)

    keys = sub.add_parser("keys", help="signing keys for commands")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser(
        "generate", help="write NAME.key (private, mode 600) and print the public key"
    )
    gen.add_argument("name", metavar="NAME", help="e.g. dispatch")
    gen.add_argument("--dir", type=Path, default=Path("."), help="where to write NAME.key")
    access_cli.add_parsers(sub)
    release_cli.add_parsers(sub)
    return p


def generate_key(name: str, directory: Path) -> int:
    """Write a new key and print the `[[security.keys]]` block a node config needs."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise UsageError(f"key name {name!r}: use letters, digits, '.', '_' or '-'")
    path = directory / f"{name}.key"
    try:
        public = generate_key_file(path)
    except FileExistsError:
        raise UsageError(f"{path} exists; a key is never overwritten (pick another name)") from None
    print(f"# private key written to {path} (keep it at dispatch, mode 600)")
    print("# add this to each node's config:")
    print("[[security.keys]]")
    print(f'id = "{name}"')
    print(f'public_key = "{public}"')
    print(
        'scopes = ["read", "operate"]   # add "door", "access", "config", "update" as this key '
        "needs"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed why; keep its code (2, or 0 for --help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command in ("lists", "card-ref"):
        return access_cli.run(args)
    if args.command == "release":
        return release_cli.run(args)
    if args.command == "keys":
        try:
            return generate_key(args.name, args.dir)
        except UsageError as exc:
            print(f"edgectl: {exc}", file=sys.stderr)
            return EXIT_USAGE
    say = _say if args.verbose else None
    try:
        if args.command == "broker-check":
            login = _login(args, args.url or args.broker)
            return asyncio.run(
                broker_check(
                    login,
                    _prefix(args.prefix),
                    window=args.window,
                    wait_s=args.wait,
                    as_json_output=args.json,
                    say=say,
                )
            )
        login = _login(args, args.broker)
        prefix = _prefix(args.prefix)
        if args.command == "update":
            args.node = [_node(n) for n in args.node] if args.node else None
            return update_cli.dispatch(
                args, login, prefix, key=_signing_key(args.key), check_name=_fleet
            )
        if args.command == "feed":
            return _feed(args, login, prefix, say)
        if args.command == "watch":
            nodes = [_target(n) for n in args.node]
            return asyncio.run(
                watch(login, prefix, args.duration, nodes=[f"{f}/{n}" for f, n in nodes], say=say)
            )
        fleet, node = _target(args.target)
        name = _command_name(args.name)
        cmd_args = _json_args(args.args)
        key = _signing_key(args.key)
        return asyncio.run(
            send_command(
                login,
                prefix,
                fleet,
                node,
                name,
                cmd_args,
                wait_s=args.timeout,
                key=key,
                kid=args.kid,
                response_prefix=None if args.no_response_topic else args.response_prefix,
                response_topic=not args.no_response_topic,
                say=say,
            )
        )
    except (UsageError, LoginError) as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerUnreachableError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except KeyboardInterrupt:
        return 130


def _feed(args: argparse.Namespace, login: Login, prefix: str, say: Say | None) -> int:
    from edged import logs
    from edged.transit.run import (  # protobuf and the page only for this command
        run_feed,
        tune_gc_for_a_long_running_feed,
    )
    from edged.transit.schedule import ScheduleError
    from edged.transit.server import TileError

    logging.basicConfig(level=logging.INFO, format="edgectl feed: %(message)s")
    for handler in logging.getLogger().handlers:  # refusals of a flood of connections
        logs.guard(handler)
    fleets = [f for f in args.fleet if NAME.fullmatch(f)]
    if len(fleets) != len(args.fleet):
        raise UsageError("--fleet: a fleet id is lowercase letters, digits, _ and -")
    try:
        options = feed_cli.options(args, prefix, fleets)
        tune_gc_for_a_long_running_feed()
        asyncio.run(run_feed(login, options, duration=args.duration, say=say))
    except (ValueError, ScheduleError, TileError) as exc:
        raise UsageError(str(exc)) from None
    except BrokerUnreachableError:
        raise
    except EdgedError as exc:  # a broken install (the page's files)
        print(f"edgectl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the port is taken, or not ours to listen on
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    return EXIT_OK


def _say(message: str) -> None:
    print(f"edgectl: {message}", file=sys.stderr)


# -- argument checks: each says what a right value looks like --------------------------------


def _signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    if path is None:
        return None
    try:
        return load_private_key(path)
    except EdgedError as exc:
        raise UsageError(str(exc)) from None


def _login(args: argparse.Namespace, url: str | None) -> Login:
    if not url:
        raise UsageError("no broker: give --broker URL (or set $EDGECTL_BROKER)")
    try:
        address = parse_broker_url(url)
    except ValueError as exc:
        raise UsageError(f"--broker: {exc}") from None
    cert_key = args.cert_key
    if args.cert is not None and cert_key is None:
        cert_key = args.cert.with_suffix(".key")  # fleet-certs.sh writes NAME.crt and NAME.key
        if not cert_key.is_file():
            raise UsageError(f"--cert {args.cert}: give its private key with --cert-key FILE")
    try:
        return Login(
            address,
            protocol=args.protocol,
            username=args.username,
            password_file=args.password_file,
            cafile=args.cafile,
            cert=args.cert,
            key=cert_key,
        )
    except LoginError as exc:
        raise UsageError(str(exc)) from None


def _prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not PREFIX.fullmatch(prefix):
        raise UsageError(
            f"--prefix {prefix!r}: use topic levels of letters, digits, _ . - "
            "separated by /, without wildcards (e.g. rnst/v1)"
        )
    return prefix


def _fleet(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a fleet name: lowercase letters, digits, _ and -, e.g. creuse"
        )
    return name


def _node(name: str) -> str:
    """A node's id (`--node`): a topic level its retained topics are subscribed by."""
    if not NAME.fullmatch(name):
        raise UsageError(
            f"--node {name!r} is not a node id: lowercase letters, digits, _ and -, e.g. shuttle-07"
        )
    return name


def _target(target: str) -> tuple[str, str]:
    parts = target.split("/")
    if len(parts) != 2 or not all(NAME.fullmatch(p) for p in parts):
        raise UsageError(
            f"{target!r} is not FLEET/NODE: expected two names of lowercase "
            "letters, digits, _ and - separated by one /, e.g. creuse/shuttle-07"
        )
    return parts[0], parts[1]


def _command_name(name: str) -> str:
    if not COMMAND_NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a command name: lowercase letters, digits, _ and -, "
            "starting with a letter, e.g. ping or door.unlock"
        )
    return name


def _json_args(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    if text.startswith("@"):  # @FILE: arguments too long for a command line (a full list)
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(
            f"JSON_ARGS is not valid JSON ({exc}); quote it for the shell, "
            """e.g. '{"door": "front"}'"""
        ) from None
    if not isinstance(value, dict):
        raise UsageError(
            f'JSON_ARGS must be a JSON object such as \'{{"door": "front"}}\', '
            f"not {type(value).__name__}"
        )
    return value


# -- cmd --------------------------------------------------------------------------------------


async def send_command(
    login: Login,
    prefix: str,
    fleet: str,
    node: str,
    name: str,
    args: dict[str, Any],
    *,
    wait_s: float,
    key: Ed25519PrivateKey | None = None,
    kid: str | None = None,
    response_prefix: str | None = None,
    response_topic: bool = True,
    say: Say | None = None,
) -> int:
    """Publish the command at QoS 1 and wait for the reply that carries our id.

    The reply subscriptions are in place before the command leaves, so a fast node cannot
    answer into the void; replies to other requesters on the same topics are skipped.
    """
    base = f"{prefix}/{fleet}/{node}"
    client_id = f"edgectl-{uuid.uuid4().hex[:12]}"
    try:
        async with connect(login, client_id, say=say, timeout=min(wait_s, 10.0) + 5.0) as client:
            topic: str | None = None
            if response_topic and client.version == "5":
                topic = (
                    f"{response_prefix.rstrip('/')}/{client_id}"
                    if response_prefix
                    else default_response_topic(prefix, fleet, client_id)
                )
            request = make_request(base, name, args, key=key, kid=kid, response_topic=topic)
            filters = [(request.reply_filter, 1)]
            if topic is not None:
                filters.append((topic, 1))
            granted = await client.subscribe(filters)
            if refused(granted[:1]):
                raise BrokerUnreachableError(
                    f"the broker at {login.address} refused a subscription to "
                    f"{request.reply_filter}: check its ACL for this client"
                )
            if topic is not None and refused(granted[1:]):
                topic = None  # the ACL keeps us off it: wait on reply/# only
                request = make_request(base, name, args, key=key, kid=kid)
            await client.publish(
                request.topic, request.payload, qos=1, properties=_publish_properties(request)
            )
            if say is not None:
                via = f", response topic {topic}" if topic else ""
                say(f"sent {request.topic} (id {request.id}{via})")
            try:
                async with asyncio.timeout(wait_s):
                    reply, how = await _reply(client, request)
            except TimeoutError:
                print(
                    f"edgectl: no reply from {fleet}/{node} to {name!r} within {wait_s:g} s. "
                    "The node may be offline, or not on this broker or prefix; check with:\n"
                    f"  edgectl watch --broker {login.address.url} --prefix {prefix}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
    except aiomqtt.MqttError as exc:
        raise BrokerUnreachableError(
            f"lost the MQTT broker at {login.address}: {exc}. Check that it is running."
        ) from None
    if say is not None:
        say(f"reply on {printable(how)}")
    print(json_for_terminal(reply))
    if reply.get("ok") is True:
        return EXIT_OK
    error = reply.get("error")
    error = error if isinstance(error, dict) else {}
    code = _printable(error.get("code"), "error")
    message = _printable(error.get("message"), "no message")
    print(f"edgectl: {fleet}/{node} refused {name!r}: {code}: {message}", file=sys.stderr)
    if code == "bad_response_topic":
        print(
            "edgectl: the node takes response topics only under its [broker] "
            "response_topic_prefix: pass it as --response-prefix, or use --no-response-topic",
            file=sys.stderr,
        )
    return EXIT_REFUSED


def _publish_properties(request: Request) -> Properties | None:
    if request.response_topic is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = request.response_topic
    props.CorrelationData = request.correlation
    return props


async def _reply(client: aiomqtt.Client, request: Request) -> tuple[dict[str, Any], str]:
    async for message in client.messages:
        correlation = getattr(message.properties, "CorrelationData", None)
        node = copy_from(message.properties)
        found = reply_of(request, str(message.topic), message.payload, correlation, node)
        if found is not None:
            return found
    raise aiomqtt.MqttError("the connection closed before a reply came")


def _printable(value: Any, default: str) -> str:
    if not isinstance(value, str) or not value:
        return default
    return printable(value[:500])


# -- watch ------------------------------------------------------------------------------------


async def watch(
    login: Login,
    prefix: str,
    duration: float | None,
    *,
    nodes: list[str] | None = None,
    say: Say | None = None,
) -> int:
    """Subscribe to `{prefix}/#` and show the fleet until Ctrl-C or `duration`."""
    view = FleetView(prefix)
    feed = FleetFeed(login, view, nodes=nodes or (), say=say)
    stop = asyncio.Event()
    tty = sys.stdout.isatty()
    console = Console() if tty else Console(width=160, no_color=True, highlight=False)
    started = time.monotonic()

    def table() -> RenderableType:
        elapsed = time.monotonic() - started
        dropped = f" · {feed.dropped:,} dropped" if feed.dropped else ""
        if feed.unreadable:
            dropped += f" · {feed.unreadable:,} unreadable"
        caption = (
            f"{login.address.url} · {prefix}/# · {feed.status} · {view.received} messages"
            f"{dropped} · {elapsed:.0f} s" + (" · Ctrl-C to stop" if tty else "")
        )
        return fleet_table(
            view, time.time(), title="edgectl watch", caption=caption, named=nodes or ()
        )

    feed_task = asyncio.create_task(feed.run(), name="feed")
    try:
        with stop_on_signals(stop):
            if tty:
                with Live(
                    table(), console=console, auto_refresh=False, redirect_stderr=False
                ) as live:

                    def above(line: str) -> None:  # over the table, which stays at the bottom
                        live.console.print(f"edgectl: {line}", markup=False, highlight=False)

                    helpers = [
                        asyncio.create_task(_refresh(live, table), name="refresh"),
                        asyncio.create_task(_report_drops(feed, above), name="drops"),
                    ]
                    try:
                        await run_until(stop, duration, feed_task)
                    finally:
                        for helper in helpers:
                            helper.cancel()
                    live.update(table(), refresh=True)
            else:
                reporter = asyncio.create_task(_report_drops(feed, _say), name="drops")
                try:
                    await run_until(stop, duration, feed_task)
                finally:
                    reporter.cancel()
    finally:
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)
    if not tty:
        console.print(table())
    if (total := DropReport.summary(feed.dropped)) is not None:
        _say(total)
    return EXIT_OK


async def _refresh(live: Live, render: Callable[[], RenderableType]) -> None:
    while True:
        await asyncio.sleep(0.5)
        live.update(render(), refresh=True)


async def _report_drops(feed: FleetFeed, say: Callable[[str], None]) -> None:
    """Say when a flood starts and stops costing messages (`DropReport`), twice a second."""
    report = DropReport()
    while True:
        await asyncio.sleep(0.5)
        line = report.poll(feed.dropped, time.monotonic())
        if line is not None:
            say(line)


if __name__ == "__main__":
    raise SystemExit(main())

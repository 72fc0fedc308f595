"""`edgectl`: what operations do with a fleet from a shell, over MQTT only.

  edgectl watch --broker mqtt://host:1883            live table of every node under the prefix
  edgectl cmd creuse/shuttle-07 ping --broker ...    send a command, print the node's reply

It needs nothing but the broker: the same topics and payloads dispatch uses (docs/topics.md).
"""

import argparse
import asyncio
import json
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
from rich.console import Console, RenderableType
from rich.live import Live

from edged import __version__
from edged.cli import access as access_cli
from edged.config.base import NAME_PATTERN
from edged.errors import EdgedError
from edged.ops.feed import BrokerUnreachableError, FleetFeed, Protocol, mqtt_client, refused
from edged.ops.fleet import FleetView
from edged.ops.loop import run_until, stop_on_signals
from edged.ops.table import fleet_table
from edged.ops.urls import BrokerAddress, parse_broker_url
from edged.security.signing import generate_key_file, load_private_key, sign
from edged.topics import COMMAND_NAME, levels

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_BROKER = 4

EPILOG = """exit codes:
  0  done (cmd: the node replied ok)
  1  the node replied with an error (code and message on stderr)
  2  usage error: bad arguments, bad JSON, bad FLEET/NODE or broker URL
  3  no reply within --timeout: the node may be offline (check with edgectl watch)
  4  the broker could not be reached or refused the connection

--broker defaults to $EDGECTL_BROKER when it is set."""

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


def _parser() -> argparse.ArgumentParser:
    env_broker = os.environ.get("EDGECTL_BROKER") or None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--broker",
        default=env_broker,
        required=env_broker is None,
        metavar="URL",
        help="the broker, e.g. mqtt://localhost:1883",
    )
    common.add_argument("--prefix", default="rnst/v1", help="topic prefix (default: rnst/v1)")
    common.add_argument(
        "--protocol", choices=["5", "3.1.1"], default="5", help="MQTT protocol version (default: 5)"
    )

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

    keys = sub.add_parser("keys", help="signing keys for commands")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser(
        "generate", help="write NAME.key (private, mode 600) and print the public key"
    )
    gen.add_argument("name", metavar="NAME", help="e.g. dispatch")
    gen.add_argument("--dir", type=Path, default=Path("."), help="where to write NAME.key")
    access_cli.add_parsers(sub)
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
    print('scopes = ["read", "operate"]   # add "door", "access", "config" as this key needs')
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed why; keep its code (2, or 0 for --help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command in ("lists", "card-ref"):
        return access_cli.run(args)
    if args.command == "keys":
        try:
            return generate_key(args.name, args.dir)
        except UsageError as exc:
            print(f"edgectl: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        address = _broker(args.broker)
        prefix = _prefix(args.prefix)
        if args.command == "watch":
            return asyncio.run(watch(address, prefix, args.protocol, args.duration))
        fleet, node = _target(args.target)
        name = _command_name(args.name)
        cmd_args = _json_args(args.args)
        key = _signing_key(args.key)
        return asyncio.run(
            send_command(
                address,
                prefix,
                fleet,
                node,
                name,
                cmd_args,
                wait_s=args.timeout,
                protocol=args.protocol,
                key=key,
                kid=args.kid,
            )
        )
    except UsageError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerUnreachableError as exc:
        print(f"edgectl: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except KeyboardInterrupt:
        return 130


# -- argument checks: each says what a right value looks like --------------------------------


def _signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    if path is None:
        return None
    try:
        return load_private_key(path)
    except EdgedError as exc:
        raise UsageError(str(exc)) from None


def _broker(url: str) -> BrokerAddress:
    try:
        return parse_broker_url(url)
    except ValueError as exc:
        raise UsageError(f"--broker: {exc}") from None


def _prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if not PREFIX.fullmatch(prefix):
        raise UsageError(
            f"--prefix {prefix!r}: use topic levels of letters, digits, _ . - "
            "separated by /, without wildcards (e.g. rnst/v1)"
        )
    return prefix


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
    address: BrokerAddress,
    prefix: str,
    fleet: str,
    node: str,
    name: str,
    args: dict[str, Any],
    *,
    wait_s: float,
    protocol: Protocol,
    key: Ed25519PrivateKey | None = None,
    kid: str | None = None,
) -> int:
    """Publish `cmd/{name}` at QoS 1 and wait for the `reply/{name}` that carries our id.

    The reply subscription is in place before the command leaves, so a fast node cannot
    answer into the void; replies to other requesters on the same topic are skipped.
    """
    base = f"{prefix}/{fleet}/{node}"
    cmd_id = uuid.uuid4().hex
    ts = int(time.time() * 1000)
    doc: dict[str, Any] = {"id": cmd_id, "ts": ts, "args": args}
    if key is not None:
        doc["sig"] = sign(key, f"{base}/cmd/{name}", cmd_id, ts, args)
        if kid:
            doc["kid"] = kid
    payload = json.dumps(doc)
    reply_topic = f"{base}/reply/{levels(name)}"  # no dots: docs/topics.md
    client_id = f"edgectl-{cmd_id[:12]}"
    try:
        async with mqtt_client(
            address, protocol=protocol, client_id=client_id, timeout=min(wait_s, 10.0) + 5.0
        ) as client:
            if refused(await client.subscribe(reply_topic, qos=1)):
                raise BrokerUnreachableError(
                    f"the broker at {address} refused a subscription to {reply_topic}: "
                    "check its ACL for this client"
                )
            await client.publish(f"{base}/cmd/{name}", payload, qos=1)
            try:
                async with asyncio.timeout(wait_s):
                    reply = await _reply(client, reply_topic, cmd_id)
            except TimeoutError:
                print(
                    f"edgectl: no reply from {fleet}/{node} to {name!r} within {wait_s:g} s. "
                    "The node may be offline, or not on this broker or prefix; check with:\n"
                    f"  edgectl watch --broker {address.url} --prefix {prefix}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
    except aiomqtt.MqttError as exc:
        raise BrokerUnreachableError(
            f"cannot reach the MQTT broker at {address}: {exc}. Check that it is running "
            "and that the host and port are right (the URL looks like mqtt://host:1883)."
        ) from None
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    if reply.get("ok") is True:
        return EXIT_OK
    error = reply.get("error")
    error = error if isinstance(error, dict) else {}
    code = _printable(error.get("code"), "error")
    message = _printable(error.get("message"), "no message")
    print(f"edgectl: {fleet}/{node} refused {name!r}: {code}: {message}", file=sys.stderr)
    return EXIT_REFUSED


async def _reply(client: aiomqtt.Client, topic: str, cmd_id: str) -> dict[str, Any]:
    async for message in client.messages:
        if str(message.topic) != topic or not isinstance(message.payload, bytes | bytearray):
            continue
        try:
            reply = json.loads(message.payload)
        except (ValueError, RecursionError):
            continue
        if isinstance(reply, dict) and reply.get("id") == cmd_id:
            return reply
    raise aiomqtt.MqttError("the connection closed before a reply came")


def _printable(value: Any, default: str) -> str:
    if not isinstance(value, str) or not value:
        return default
    return "".join(c if c.isprintable() else "?" for c in value[:500])


# -- watch ------------------------------------------------------------------------------------


async def watch(
    address: BrokerAddress, prefix: str, protocol: Protocol, duration: float | None
) -> int:
    """Subscribe to `{prefix}/#` and show the fleet until Ctrl-C or `duration`."""
    view = FleetView(prefix)
    feed = FleetFeed(address, view, protocol=protocol)
    stop = asyncio.Event()
    tty = sys.stdout.isatty()
    console = Console() if tty else Console(width=160, no_color=True, highlight=False)
    started = time.monotonic()

    def table() -> RenderableType:
        elapsed = time.monotonic() - started
        caption = (
            f"{address.url} · {prefix}/# · {feed.status} · {view.received} messages · "
            f"{elapsed:.0f} s" + (" · Ctrl-C to stop" if tty else "")
        )
        return fleet_table(view, time.time(), title="edgectl watch", caption=caption)

    feed_task = asyncio.create_task(feed.run(), name="feed")
    try:
        with stop_on_signals(stop):
            if tty:
                with Live(
                    table(), console=console, auto_refresh=False, redirect_stderr=False
                ) as live:
                    refresher = asyncio.create_task(_refresh(live, table), name="refresh")
                    try:
                        await run_until(stop, duration, feed_task)
                    finally:
                        refresher.cancel()
                    live.update(table(), refresh=True)
            else:
                await run_until(stop, duration, feed_task)
    finally:
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)
    if not tty:
        console.print(table())
    return EXIT_OK


async def _refresh(live: Live, render: Callable[[], RenderableType]) -> None:
    while True:
        await asyncio.sleep(0.5)
        live.update(render(), refresh=True)


if __name__ == "__main__":
    raise SystemExit(main())

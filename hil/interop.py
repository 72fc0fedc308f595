"""`python -m hil interop BROKER`: a broker from its package, then `edgectl broker-check`, a
node and `edgectl cmd ping` against it; prints what was measured.

Brokers: `mosquitto` (Debian package), `amqtt` (edged's embedded demo broker), `aedes` (npm:
installed into ~/.cache/edged-hil/aedes on first use, run with node), `rabbitmq` (Debian's
rabbitmq-server with its MQTT plugin, as a throw-away node in the work directory). Each
listens on loopback only (RabbitMQ's MQTT listener is bound to 127.0.0.1 by its config).
"""

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edged.demo.broker import EmbeddedBroker, free_port
from edged.ops.brokercheck import run_checks
from edged.ops.login import Login
from edged.ops.urls import BrokerAddress
from hil.broker import Mosquitto

BROKERS = ("mosquitto", "amqtt", "aedes", "rabbitmq")
AEDES_VERSION = "0.51.3"
CACHE = Path.home() / ".cache" / "edged-hil"


class InteropError(Exception):
    """The broker could not be started here; the message says what is missing."""


def _wait_port(port: int, within_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise InteropError(f"the broker exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            return
        except OSError:
            time.sleep(0.2)
    raise InteropError(f"nothing listens on 127.0.0.1:{port} after {within_s:g} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def broker(name: str, workdir: Path) -> AsyncIterator[tuple[int, str]]:
    """The broker listening on a free loopback port: `(port, version text)`."""
    if name == "mosquitto":
        m = Mosquitto(workdir).start()
        try:
            yield m.port, "mosquitto (Debian)"
        finally:
            m.stop()
    elif name == "amqtt":
        async with EmbeddedBroker() as b:
            assert b.port is not None
            yield b.port, "amqtt (embedded)"
    elif name == "aedes":
        port = free_port()
        proc = await asyncio.to_thread(
            subprocess.Popen,
            ["node", "-e", _AEDES.format(port=port)],
            cwd=_aedes_dir(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_port(port, 15, proc)
            yield port, f"aedes {AEDES_VERSION} (npm)"
        finally:
            _stop(proc)
    elif name == "rabbitmq":
        port, proc, env = _rabbitmq(workdir)
        try:
            _wait_port(port, 90, proc)
            yield port, "rabbitmq-server (Debian) + rabbitmq_mqtt"
        finally:  # the wrapper script execs as the rabbitmq user: stop the Erlang node itself
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                await asyncio.to_thread(
                    subprocess.run,
                    ["rabbitmqctl", "-n", env["RABBITMQ_NODENAME"], "stop"],
                    env=env,
                    capture_output=True,
                    timeout=60,
                )
            _stop(proc)
    else:
        raise InteropError(f"unknown broker {name!r}; known: {', '.join(BROKERS)}")


_AEDES = (
    "const a=require('aedes')();require('net').createServer(a.handle).listen({port},'127.0.0.1')"
)


def _aedes_dir() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise InteropError("aedes needs node and npm (apt-get install nodejs npm)")
    d = CACHE / "aedes"
    if not (d / "node_modules" / "aedes").is_dir():
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", f"aedes@{AEDES_VERSION}"],
            cwd=d,
            check=True,
            capture_output=True,
        )
    return d


def _rabbitmq(workdir: Path) -> tuple[int, subprocess.Popen[bytes], dict[str, str]]:
    server = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
    if not Path(server).exists():
        raise InteropError("rabbitmq needs the Debian package: apt-get install rabbitmq-server")
    base = workdir / "rabbitmq"
    base.mkdir(exist_ok=True)
    port, amqp, dist = free_port(), free_port(), free_port()
    conf = base / "rabbitmq.conf"
    conf.write_text(
        f"listeners.tcp.1 = 127.0.0.1:{amqp}\nmqtt.listeners.tcp.1 = 127.0.0.1:{port}\n"
        "mqtt.allow_anonymous = true\n"
    )
    (base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": f"edged-hil-{port}@localhost",
        "RABBITMQ_BASE": str(base),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_DIST_PORT": str(dist),
    }
    if os.geteuid() == 0:  # Debian's rabbitmq-server drops to its own user
        with contextlib.suppress(LookupError):
            for path in (base, conf, base / "enabled_plugins"):
                shutil.chown(path, "rabbitmq", "rabbitmq")
    with (base / "server.log").open("ab") as out:
        proc = subprocess.Popen([server], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    return port, proc, env


async def interop(name: str, workdir: Path) -> dict[str, Any]:
    """broker-check, then a node on the protocol the broker accepted, then `cmd ping`."""
    from edged.cli.ctl import send_command  # the same code path as the command line

    async with broker(name, workdir) as (port, label):
        login = Login(BrokerAddress("127.0.0.1", port))
        findings, version = await run_checks(login, "rnst/v1", wait_s=2.0)
        node = await _node(workdir, port, version)
        try:
            started = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # the reply; stdout is the report
                code = await send_command(
                    login, "rnst/v1", "hil", "interop", "ping", {}, wait_s=20.0
                )
            ping_s = time.monotonic() - started
        finally:
            _stop(node)
    return {
        "broker": label,
        "protocol": version,
        "findings": [f.to_json() for f in findings],
        "needed_missing": [f.key for f in findings if f.fails],
        "node_ping_exit": code,
        "node_ping_s": round(ping_s, 2),
    }


async def _node(workdir: Path, port: int, version: str) -> subprocess.Popen[bytes]:
    config = workdir / "node.toml"
    config.write_text(
        f'[node]\nfleet = "hil"\nid = "interop"\nprofile = "shuttle"\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {port}\nprotocol = "{version}"\n'
        "reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n\n"
        f'[outbox]\npath = "{workdir / "outbox.sqlite"}"\n\n'
        "[services.kiosk]\nenabled = false\n"
    )
    log = (workdir / "node.log").open("ab")
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "edged", "run", "-c", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while "connected to" not in (workdir / "node.log").read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            _stop(proc)
            raise InteropError(f"the node did not connect: see {workdir / 'node.log'}")
        await asyncio.sleep(0.1)
    return proc


def main(name: str, workdir: Path, as_json: bool) -> int:
    try:
        report = asyncio.run(interop(name, workdir))
    except InteropError as exc:
        print(f"hil interop: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['broker']}: probed with MQTT {report['protocol']}")
        for f in report["findings"]:
            print(f"  {f['verdict']:8} {f['title']}: {f['measured']}")
        print(f"  node ping: exit {report['node_ping_exit']} in {report['node_ping_s']} s")
    return 0 if report["node_ping_exit"] == 0 and not report["needed_missing"] else 1

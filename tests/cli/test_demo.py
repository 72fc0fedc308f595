"""`edged demo`: a real process, a real broker, and a summary built from received messages."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiomqtt

from edged.config import load_config
from edged.demo.broker import EmbeddedBroker
from edged.demo.runner import default_config_path, demo_config
from edged.ops.urls import BrokerAddress
from tests.helpers.broker import Mosquitto
from tests.helpers.nodes import ROOT

NODE_LINE = re.compile(r"^node\s+creuse/shuttle-07 (\S+)", re.MULTILINE)
POSITION_LINE = re.compile(
    r"^position\s+(-?\d+\.\d+), (-?\d+\.\d+) .*\((\d+) received\)$", re.MULTILINE
)


def _demo(*args: str) -> "subprocess.Popen[str]":
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _finish(proc: "subprocess.Popen[str]", timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_demo_with_its_embedded_broker_shows_the_node_online_with_a_position() -> None:
    started = time.monotonic()
    code, out, err = _finish(_demo("--duration", "6"), timeout=30)
    assert code == 0, err
    assert time.monotonic() - started < 20
    node = NODE_LINE.search(out)
    assert node is not None, out
    assert node.group(1) == "online", out
    position = POSITION_LINE.search(out)
    assert position is not None, out
    assert int(position.group(3)) >= 1
    assert 45 < float(position.group(1)) < 47  # Creuse, where the route runs
    assert "(embedded amqtt, MQTT 3.1.1)" in out
    assert "Traceback" not in err
    assert "DeprecationWarning" not in err


def test_demo_against_an_external_broker_shows_the_node_online(broker: Mosquitto) -> None:
    code, out, err = _finish(_demo("--broker", broker.url, "--duration", "3"), timeout=30)
    assert code == 0, err
    node = NODE_LINE.search(out)
    assert node is not None, out
    assert node.group(1) == "online", out
    assert f"{broker.url} (external, MQTT 5)" in out


def test_demo_stops_cleanly_on_sigterm_and_the_node_says_offline() -> None:
    proc = _demo()
    connected = threading.Event()
    lines: list[str] = []

    def read_stderr() -> None:  # the node logs its connection: then it is worth stopping
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "connected to" in line:
                connected.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert connected.wait(15), "".join(lines)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.stdout is not None
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert "shutdown  node said offline" in out


def test_demo_with_a_bad_broker_url_exits_2_and_says_what_to_type() -> None:
    code, _, err = _finish(
        _demo("--broker", "http://localhost:1883", "--duration", "1"), timeout=30
    )
    assert code == 2
    assert "mqtt://host:port" in err


def test_demo_config_points_the_node_at_the_demo_broker_and_a_temporary_outbox(
    tmp_path: Path,
) -> None:
    path = default_config_path()
    config = demo_config(
        load_config(path),
        address=BrokerAddress("127.0.0.1", 4242),
        protocol="3.1.1",
        outbox_dir=tmp_path,
        speed=50,
        base_dir=path.parent,
    )
    assert (config.broker.host, config.broker.port, config.broker.protocol) == (
        "127.0.0.1",
        4242,
        "3.1.1",
    )
    assert config.outbox.path == tmp_path / "outbox.sqlite"
    assert config.health.interval_s <= 5
    gps = [d for d in config.drivers if d.driver == "gps.sim"]
    assert gps
    assert all(d.options["speed_factor"] == 50 for d in gps)


async def test_embedded_broker_delivers_retained_messages_over_mqtt_3_1_1() -> None:
    async with EmbeddedBroker() as broker:
        address = broker.address
        async with aiomqtt.Client(
            address.host, address.port, identifier="pub", protocol=aiomqtt.ProtocolVersion.V311
        ) as client:
            await client.publish("t/state", b'{"state": "online"}', qos=1, retain=True)
        async with aiomqtt.Client(
            address.host, address.port, identifier="sub", protocol=aiomqtt.ProtocolVersion.V311
        ) as client:
            await client.subscribe("t/#", qos=1)
            async with asyncio.timeout(5):
                message = await anext(aiter(client.messages))
    assert message.payload == b'{"state": "online"}'
    assert message.retain
